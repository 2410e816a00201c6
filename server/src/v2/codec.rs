//! The v2 store on disk: the meta blob `x-v2`, a `rustedpb.V2State` message (its field
//! table is in `proposal.proto`), version 1. Decoding checks every path, so a damaged blob
//! is an error, never a panic or a half-built tree.
#![forbid(unsafe_code)]

use prost::Message;
use rusted_proto::rustedpb::{V2Node, V2State};

use super::node::{Kind, Node};
use super::store::Tree;

/// The meta key the blob is kept under.
pub const V2_KEY: &[u8] = b"x-v2";
/// The format version written.
pub const VERSION: u32 = 1;

/// The blob of a tree.
pub fn encode(t: &Tree) -> Vec<u8> {
    let nodes = t
        .nodes()
        .into_iter()
        .map(|n| V2Node {
            key: n.path.clone(),
            dir: n.is_dir(),
            value: n.value().to_string(),
            created: n.created,
            modified: n.modified,
            expiration: n.expire.unwrap_or(0),
        })
        .collect();
    V2State { version: VERSION, index: t.index, nodes, cluster_version_set: t.version_set }
        .encode_to_vec()
}

/// The tree of a blob (none: an empty store).
pub fn decode(blob: Option<&[u8]>) -> Result<Tree, String> {
    let Some(b) = blob else { return Ok(Tree::default()) };
    let s = V2State::decode(b).map_err(|e| format!("v2 store: {e}"))?;
    if s.version != VERSION {
        return Err(format!("v2 store: unknown format version {}", s.version));
    }
    let nodes = s
        .nodes
        .into_iter()
        .map(|n| Node {
            path: n.key,
            created: n.created,
            modified: n.modified,
            expire: (n.expiration != 0).then_some(n.expiration),
            kind: if n.dir { Kind::Dir(Default::default()) } else { Kind::File(n.value) },
        })
        .collect();
    let mut t = Tree::from_nodes(s.index, nodes)?;
    t.version_set = s.cluster_version_set;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut t = Tree::default();
        t.set("/a/b", false, "1".into(), Some(2_000_000_000_000_000_000), false, 0).unwrap();
        t.create("/q", false, "x".into(), true, None, 0).unwrap();
        t.set("/d", true, String::new(), None, false, 0).unwrap();
        let back = decode(Some(&encode(&t))).unwrap();
        assert_eq!(back, t);
        assert!(back.has_ttl_keys());
    }

    proptest! {
        #[test]
        fn damaged_blobs_are_errors_not_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(Some(&b));
        }
    }
}
