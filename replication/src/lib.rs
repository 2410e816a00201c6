//! rusted-replication: will hold the raft-rs driven propose → WAL → replicate → commit → apply path
//! and the peer transport (issue 5). Not built yet.
#![forbid(unsafe_code)]
