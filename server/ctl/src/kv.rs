//! How etcdctl 3.4 prints put, range and delete responses in the simple and fields formats
//! (shared by the put/get/del commands, txn and watch).
#![forbid(unsafe_code)]

use super::print;
use super::Ctl;
use rusted_proto::etcdserverpb as pb;
use rusted_proto::mvccpb;

/// A key and value, each on its own line (`--print-value-only`: the value alone).
pub fn simple_kv(ctl: &Ctl, value_only: bool, kv: &mvccpb::KeyValue) {
    if !value_only {
        println!("{}", print::bytes(&kv.key, ctl.hex));
    }
    println!("{}", print::bytes(&kv.value, ctl.hex));
}

/// `OK`, then the previous pair if asked for.
pub fn simple_put(ctl: &Ctl, r: &pb::PutResponse) {
    println!("OK");
    if let Some(p) = &r.prev_kv {
        simple_kv(ctl, false, p);
    }
}

/// Every pair found.
pub fn simple_get(ctl: &Ctl, r: &pb::RangeResponse, value_only: bool) {
    for kv in &r.kvs {
        simple_kv(ctl, value_only, kv);
    }
}

/// The count deleted, then the deleted pairs if asked for.
pub fn simple_del(ctl: &Ctl, r: &pb::DeleteRangeResponse) {
    println!("{}", r.deleted);
    for kv in &r.prev_kvs {
        simple_kv(ctl, false, kv);
    }
}

/// The response header as `"Name" : value` lines.
pub fn fields_header(h: &Option<pb::ResponseHeader>) {
    let h = (*h).unwrap_or_default();
    println!("\"ClusterID\" : {}", h.cluster_id);
    println!("\"MemberID\" : {}", h.member_id);
    println!("\"Revision\" : {}", h.revision);
    println!("\"RaftTerm\" : {}", h.raft_term);
}

/// A pair as `"Name" : value` lines, each name after `prefix` ("" or "Prev").
pub fn fields_kv(prefix: &str, kv: &mvccpb::KeyValue) {
    println!("\"{prefix}Key\" : {}", print::go_quote_bytes(&kv.key));
    println!("\"{prefix}CreateRevision\" : {}", kv.create_revision);
    println!("\"{prefix}ModRevision\" : {}", kv.mod_revision);
    println!("\"{prefix}Version\" : {}", kv.version);
    println!("\"{prefix}Value\" : {}", print::go_quote_bytes(&kv.value));
    println!("\"{prefix}Lease\" : {}", kv.lease);
}

/// A put response in the fields format.
pub fn fields_put(r: &pb::PutResponse) {
    fields_header(&r.header);
    if let Some(p) = &r.prev_kv {
        fields_kv("Prev", p);
    }
}

/// A range response in the fields format.
pub fn fields_get(r: &pb::RangeResponse) {
    fields_header(&r.header);
    for kv in &r.kvs {
        fields_kv("", kv);
    }
    println!("\"More\" : {}", r.more);
    println!("\"Count\" : {}", r.count);
}

/// A delete response in the fields format.
pub fn fields_del(r: &pb::DeleteRangeResponse) {
    fields_header(&r.header);
    println!("\"Deleted\" : {}", r.deleted);
    for kv in &r.prev_kvs {
        fields_kv("Prev", kv);
    }
}
