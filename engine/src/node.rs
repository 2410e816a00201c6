//! In-memory nodes: what a write transaction edits (copy-on-write) before they are written as
//! pages at commit. See [`crate::page`] for the on-disk layout they serialize to.
#![forbid(unsafe_code)]

use crate::error::Result;
use crate::page::{
    Header, PageId, PageView, BRANCH_ELEM, KIND_BRANCH, KIND_LEAF, LEAF_ELEM, PAGE_HEADER,
};

/// A node reference: a page id, or (with [`DIRTY`] set) a node edited in this transaction.
pub type NodeId = u64;
/// Marks a [`NodeId`] as a dirty in-memory node rather than a page.
pub const DIRTY: u64 = 1 << 63;

/// A leaf or branch node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Sorted key/value pairs.
    Leaf(Vec<(Vec<u8>, Vec<u8>)>),
    /// Sorted (first key of child, child) pairs; the first key also stands for everything below.
    Branch(Vec<(Vec<u8>, NodeId)>),
}

impl Node {
    /// Decodes a page into a node.
    pub fn from_page(p: &PageView<'_>) -> Result<Node> {
        let n = p.len();
        if p.is_leaf() {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push((p.key(i)?.to_vec(), p.value(i)?.to_vec()));
            }
            Ok(Node::Leaf(v))
        } else {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let c = p.child(i);
                if c & DIRTY != 0 || c < 2 {
                    return Err(crate::error::EngineError::Corrupt {
                        page: p.header.id,
                        reason: format!("child {i} has impossible page id {c:#x}"),
                    });
                }
                v.push((p.key(i)?.to_vec(), c));
            }
            Ok(Node::Branch(v))
        }
    }

    /// Bytes this node takes on disk.
    pub fn size(&self) -> usize {
        match self {
            Node::Leaf(v) => {
                PAGE_HEADER + v.iter().map(|(k, x)| LEAF_ELEM + k.len() + x.len()).sum::<usize>()
            }
            Node::Branch(v) => {
                PAGE_HEADER + v.iter().map(|(k, _)| BRANCH_ELEM + k.len()).sum::<usize>()
            }
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Node::Leaf(v) => v.len(),
            Node::Branch(v) => v.len(),
        }
    }

    /// No elements?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// First key (empty for an empty node).
    pub fn first_key(&self) -> &[u8] {
        match self {
            Node::Leaf(v) => v.first().map_or(&[][..], |e| &e.0),
            Node::Branch(v) => v.first().map_or(&[][..], |e| &e.0),
        }
    }

    /// Pages needed to write this node.
    pub fn pages(&self, page_size: usize) -> usize {
        self.size().div_ceil(page_size).max(1)
    }

    /// Serializes as page `id` into `out` (which is extended by `pages * page_size` bytes).
    /// Every child id of a branch must be a page id by now (the caller writes children first).
    pub fn write(&self, id: PageId, page_size: usize, out: &mut Vec<u8>) {
        let pages = self.pages(page_size);
        let base = out.len();
        out.resize(base + pages * page_size, 0);
        let b = &mut out[base..];
        let (kind, elem) = match self {
            Node::Leaf(_) => (KIND_LEAF, LEAF_ELEM),
            Node::Branch(_) => (KIND_BRANCH, BRANCH_ELEM),
        };
        debug_assert!(self.len() <= u16::MAX as usize, "nodes are split long before 64k elements");
        Header { id, kind, count: self.len() as u16, overflow: (pages - 1) as u32 }.write(b);
        let n = self.len();
        let mut data = PAGE_HEADER + n * elem;
        match self {
            Node::Leaf(v) => {
                let slots = PAGE_HEADER + 4 * n;
                for (i, (k, x)) in v.iter().enumerate() {
                    let p = PAGE_HEADER + 4 * i;
                    b[p..p + 4].copy_from_slice(&crate::page::leaf_prefix(k).to_le_bytes());
                    let e = slots + 8 * i;
                    debug_assert!(data <= u16::MAX as usize && k.len() <= u16::MAX as usize);
                    b[e..e + 2].copy_from_slice(&(data as u16).to_le_bytes());
                    b[e + 2..e + 4].copy_from_slice(&(k.len() as u16).to_le_bytes());
                    b[e + 4..e + 8].copy_from_slice(&(x.len() as u32).to_le_bytes());
                    b[data..data + k.len()].copy_from_slice(k);
                    data += k.len();
                    b[data..data + x.len()].copy_from_slice(x);
                    data += x.len();
                }
            }
            Node::Branch(v) => {
                let slots = PAGE_HEADER + 8 * n;
                for (i, (k, c)) in v.iter().enumerate() {
                    debug_assert_eq!(c & DIRTY, 0, "children are written before their parent");
                    let p = PAGE_HEADER + 8 * i;
                    b[p..p + 8].copy_from_slice(&crate::page::key_prefix(k).to_le_bytes());
                    let e = slots + 16 * i;
                    b[e..e + 4].copy_from_slice(&(data as u32).to_le_bytes());
                    b[e + 4..e + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
                    b[e + 8..e + 16].copy_from_slice(&c.to_le_bytes());
                    b[data..data + k.len()].copy_from_slice(k);
                    data += k.len();
                }
            }
        }
        debug_assert_eq!(data, self.size());
    }

    /// Splits an oversized node into nodes of at most `threshold` bytes each. A leaf entry
    /// larger than that gets a leaf of its own (written with overflow pages); a branch part
    /// always keeps at least two children (as bbolt's minimum keys per page), since splitting a
    /// branch into single-child parts would only add levels — such a branch may overflow.
    pub fn split(self, threshold: usize) -> Vec<Node> {
        fn chunks<T>(
            v: Vec<T>,
            threshold: usize,
            min: usize,
            size: impl Fn(&T) -> usize,
        ) -> Vec<Vec<T>> {
            let mut out: Vec<Vec<T>> = Vec::new();
            let mut cur = Vec::new();
            let mut cur_size = PAGE_HEADER;
            for e in v {
                let s = size(&e);
                if cur.len() >= min && cur_size + s > threshold {
                    out.push(std::mem::take(&mut cur));
                    cur_size = PAGE_HEADER;
                }
                cur_size += s;
                cur.push(e);
            }
            if !cur.is_empty() {
                match out.last_mut() {
                    Some(last) if cur.len() < min => last.extend(cur),
                    _ => out.push(cur),
                }
            }
            out
        }
        match self {
            Node::Leaf(v) => chunks(v, threshold, 1, |(k, x)| LEAF_ELEM + k.len() + x.len())
                .into_iter()
                .map(Node::Leaf)
                .collect(),
            Node::Branch(v) => chunks(v, threshold, 2, |(k, _)| BRANCH_ELEM + k.len())
                .into_iter()
                .map(Node::Branch)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_split() {
        let n = Node::Leaf(
            (0..100u32).map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 50])).collect(),
        );
        let mut buf = Vec::new();
        n.write(7, 4096, &mut buf);
        assert_eq!(buf.len(), n.pages(4096) * 4096);
        let v = PageView::new(&buf, 7).unwrap();
        v.validate().unwrap();
        assert_eq!(Node::from_page(&v).unwrap(), n);
        let parts = n.clone().split(2048);
        assert!(parts.len() >= 3);
        assert!(parts.iter().all(|p| p.size() <= 2048));
        let back: Vec<_> = parts
            .into_iter()
            .flat_map(|p| match p {
                Node::Leaf(v) => v,
                Node::Branch(_) => unreachable!(),
            })
            .collect();
        assert_eq!(Node::Leaf(back), n);
        let b = Node::Branch(vec![(b"a".to_vec(), 5), (b"m".to_vec(), 9)]);
        let mut buf = Vec::new();
        b.write(3, 4096, &mut buf);
        let v = PageView::new(&buf, 3).unwrap();
        assert_eq!((v.child(1), v.key(1).unwrap()), (9, &b"m"[..]));
    }
}
