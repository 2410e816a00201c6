//! The v2 store on disk, in the page store's `meta` bucket, format version 2:
//!
//! | key | value |
//! |---|---|
//! | `x-v2` | `rustedpb.V2State`: version (2), index, cluster_version_set; no nodes |
//! | `x-v2/` + a node's path (`x-v2//a/b`) | `rustedpb.V2Node`: that node (every node but the root) |
//!
//! (Field tables in `proposal.proto`.) A write saves the meta record and only the nodes it
//! made, changed or removed, so its cost does not grow with the store. A parent's path is a
//! prefix of its children's, so key order lists parents first, as a tree is rebuilt.
//!
//! Version 1 kept every node inside the `x-v2` record (its `nodes` field). It is still read;
//! a tree read from it counts all its nodes as changed, so the first save after the upgrade
//! writes them as version 2.
//!
//! Decoding checks every path, so a damaged record is an error, never a panic or a
//! half-built tree.
#![forbid(unsafe_code)]

use prost::Message;
use rusted_proto::rustedpb::{V2Node, V2State};

use super::node::{Kind, Node};
use super::store::Tree;

/// The meta key of the store's record (index, format version).
pub const V2_KEY: &[u8] = b"x-v2";
/// The prefix of the nodes' keys; the node's path follows.
pub const NODE_PREFIX: &[u8] = b"x-v2/";
/// The format version written.
pub const VERSION: u32 = 2;

/// What one write stores: the record, and each changed node's key with its new value
/// (`None`: removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Save {
    /// The `x-v2` record.
    pub meta: Vec<u8>,
    /// `x-v2/<path>` entries to write or delete.
    pub nodes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn node_key(path: &str) -> Vec<u8> {
    [NODE_PREFIX, path.as_bytes()].concat()
}

fn node_record(n: &Node) -> V2Node {
    V2Node {
        key: n.path.clone(),
        dir: n.is_dir(),
        value: n.value().to_string(),
        created: n.created,
        modified: n.modified,
        expiration: n.expire.unwrap_or(0),
    }
}

fn node_of(n: V2Node) -> Node {
    Node {
        path: n.key,
        created: n.created,
        modified: n.modified,
        expire: (n.expiration != 0).then_some(n.expiration),
        kind: if n.dir { Kind::Dir(Default::default()) } else { Kind::File(n.value) },
    }
}

/// What to store after a write: the record, and the nodes changed since the last save.
pub fn save(t: &mut Tree) -> Save {
    let nodes = t
        .take_changed()
        .into_iter()
        .map(|p| {
            let v = t.node(&p).map(|n| node_record(n).encode_to_vec());
            (node_key(&p), v)
        })
        .collect();
    let meta = V2State {
        version: VERSION,
        index: t.index,
        nodes: Vec::new(),
        cluster_version_set: t.version_set,
    }
    .encode_to_vec();
    Save { meta, nodes }
}

/// The tree of a record and the node entries stored beside it, in key order (no record: an
/// empty store).
pub fn decode(meta: Option<&[u8]>, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Tree, String> {
    let Some(b) = meta else {
        if let Some((k, _)) = entries.first() {
            return Err(format!("v2 store: node {:?} without the store's record", lossy(k)));
        }
        return Ok(Tree::default());
    };
    let s = V2State::decode(b).map_err(|e| format!("v2 store: {e}"))?;
    let (nodes, old) = match s.version {
        1 if entries.is_empty() => (s.nodes.into_iter().map(node_of).collect(), true),
        1 => return Err("v2 store: version 1 record with version 2 nodes".into()),
        VERSION if s.nodes.is_empty() => {
            let mut nodes = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let n = V2Node::decode(v.as_slice())
                    .map_err(|e| format!("v2 store: node {:?}: {e}", lossy(&k)))?;
                if k != node_key(&n.key) {
                    return Err(format!("v2 store: node {:?} under key {:?}", n.key, lossy(&k)));
                }
                nodes.push(node_of(n));
            }
            (nodes, false)
        }
        VERSION => return Err("v2 store: version 2 record holding nodes".into()),
        v => return Err(format!("v2 store: unknown format version {v}")),
    };
    let mut t = Tree::from_nodes(s.index, nodes)?;
    t.version_set = s.cluster_version_set;
    if old {
        t.change_all();
    }
    Ok(t)
}

fn lossy(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A `meta` bucket: what each save writes, applied in order.
    #[derive(Default)]
    struct Bucket {
        meta: Option<Vec<u8>>,
        nodes: BTreeMap<Vec<u8>, Vec<u8>>,
    }

    impl Bucket {
        fn apply(&mut self, s: Save) {
            self.meta = Some(s.meta);
            for (k, v) in s.nodes {
                match v {
                    Some(v) => self.nodes.insert(k, v),
                    None => self.nodes.remove(&k),
                };
            }
        }
        fn read(&self) -> Result<Tree, String> {
            let e = self.nodes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            decode(self.meta.as_deref(), e)
        }
    }

    const LATER: i64 = 2_000_000_000_000_000_000;

    #[test]
    fn each_save_writes_only_what_changed_and_reads_back() {
        let mut t = Tree::default();
        let mut b = Bucket::default();
        t.set("/a/b", false, "1".into(), Some(LATER), false, 0).unwrap();
        t.create("/q", false, "x".into(), true, None, 0).unwrap();
        t.set("/d", true, String::new(), None, false, 0).unwrap();
        let s = save(&mut t);
        assert_eq!(s.nodes.len(), 5, "/a, /a/b, /q, /q/<index>, /d: {s:?}");
        b.apply(s);
        assert_eq!(b.read().unwrap(), t);

        t.update("/a/b", "2".into(), None, false, 0).unwrap();
        let s = save(&mut t);
        assert_eq!(
            s.nodes.iter().map(|n| n.0.clone()).collect::<Vec<_>>(),
            [b"x-v2//a/b".to_vec()]
        );
        b.apply(s);
        assert_eq!(b.read().unwrap(), t);

        // A recursive delete removes the whole subtree's entries.
        t.set("/a/c/d", false, "3".into(), None, false, 0).unwrap();
        b.apply(save(&mut t));
        t.delete("/a", true, true, 0).unwrap();
        let s = save(&mut t);
        assert!(s.nodes.iter().all(|n| n.1.is_none()), "{s:?}");
        assert_eq!(s.nodes.len(), 4, "/a, /a/b, /a/c, /a/c/d");
        b.apply(s);
        assert_eq!(b.read().unwrap(), t);
        assert_eq!(b.nodes.len(), 3, "/q, /q/<index>, /d");

        // Expiry removes too; a save with nothing changed writes only the record.
        t.set("/ttl", false, "v".into(), Some(LATER), false, 0).unwrap();
        b.apply(save(&mut t));
        assert!(t.has_ttl_keys());
        assert_eq!(t.expire(LATER, 0).len(), 1);
        b.apply(save(&mut t));
        assert_eq!(b.read().unwrap(), t);
        assert!(!b.read().unwrap().has_ttl_keys());
        assert!(save(&mut t).nodes.is_empty());
    }

    #[test]
    fn version_1_records_are_read_and_rewritten_whole_by_the_next_save() {
        let mut t = Tree::default();
        t.set("/a/b", false, "1".into(), Some(LATER), false, 0).unwrap();
        t.set("/c", false, "2".into(), None, false, 0).unwrap();
        let v1 = V2State {
            version: 1,
            index: t.index,
            nodes: t.nodes().into_iter().map(node_record).collect(),
            cluster_version_set: true,
        }
        .encode_to_vec();
        let mut back = decode(Some(&v1), Vec::new()).unwrap();
        t.version_set = true;
        assert_eq!(back, t);
        let mut b = Bucket { meta: Some(v1), nodes: BTreeMap::new() };
        back.set("/c", false, "3".into(), None, false, 0).unwrap();
        t.set("/c", false, "3".into(), None, false, 0).unwrap();
        b.apply(save(&mut back));
        assert_eq!(b.nodes.len(), 3);
        assert_eq!(b.read().unwrap(), t);
    }

    #[test]
    fn damaged_stores_are_errors() {
        let rec = |version, nodes| V2State { version, index: 1, nodes, cluster_version_set: false };
        let node = V2Node { key: "/a".into(), ..Default::default() };
        let entry = |k: &[u8], n: &V2Node| (k.to_vec(), n.encode_to_vec());
        let cases = [
            (None, vec![entry(b"x-v2//a", &node)]),
            (Some(rec(3, vec![])), vec![]),
            (Some(rec(1, vec![node.clone()])), vec![entry(b"x-v2//a", &node)]),
            (Some(rec(2, vec![node.clone()])), vec![]),
            (Some(rec(2, vec![])), vec![entry(b"x-v2//b", &node)]),
            (Some(rec(2, vec![])), vec![(b"x-v2//a".to_vec(), vec![0xff])]),
            // A child without its directory.
            (
                Some(rec(2, vec![])),
                vec![entry(b"x-v2//a/b", &V2Node { key: "/a/b".into(), ..Default::default() })],
            ),
        ];
        for (meta, entries) in cases {
            let meta = meta.map(|m| m.encode_to_vec());
            assert!(decode(meta.as_deref(), entries.clone()).is_err(), "{meta:?} {entries:?}");
        }
    }

    proptest! {
        #[test]
        fn damaged_records_are_errors_not_panics(
            b in proptest::collection::vec(any::<u8>(), 0..200),
            n in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let _ = decode(Some(&b), Vec::new());
            let _ = decode(Some(&save(&mut Tree::default()).meta), vec![(b"x-v2//a".to_vec(), n)]);
        }
    }
}
