//! Copy-on-write edits of one B+tree inside a write transaction.
//!
//! A node touched by an edit is copied into memory (its page goes to the transaction's freed
//! list) and gets a dirty id; its parent is already dirty, because edits copy the whole path from
//! the root down. Leaves split as soon as they outgrow a page: in half (fill factor 0.5, as
//! bbolt) — or, when the key went to the end of the node, so that the left node stays full (fill
//! 1.0), which keeps sequential loads such as MVCC revisions dense. After a delete, a child under
//! a quarter page is merged into a sibling when the two fit in one page; a root branch with one
//! child is replaced by it. At commit, [`Dirty::spill`] writes children before parents and
//! returns the root's page id.
#![forbid(unsafe_code)]

use std::sync::Arc;

use crate::cursor::{NodeRef, Source, MAX_DEPTH};
use crate::error::{EngineError, Result};
use crate::mmap::Map;
use crate::node::{Node, NodeId, DIRTY};
use crate::page::{PageId, PageView};

/// Reads pages from the map, bounds-checked against a high-water mark.
#[derive(Debug, Clone)]
pub struct Pages {
    /// The mapped file (held: a transaction keeps the map it started with).
    pub map: Arc<Map>,
    /// Page size.
    pub page_size: usize,
    /// Pages below this are in use.
    pub hwm: PageId,
}

impl Pages {
    /// The raw bytes of page `id` and its overflow pages.
    pub fn raw(&self, id: PageId) -> Result<&[u8]> {
        self.raw_with_header(id).map(|(b, _)| b)
    }

    /// The raw bytes of page `id` and its overflow pages, and its header (read once).
    #[inline]
    fn raw_with_header(&self, id: PageId) -> Result<(&[u8], crate::page::Header)> {
        let bad = |why: String| EngineError::Corrupt { page: id, reason: why };
        if id < 2 || id >= self.hwm {
            return Err(bad(format!("page id outside 2..{}", self.hwm)));
        }
        let start = id as usize * self.page_size;
        let bytes = self.map.bytes();
        let head = bytes
            .get(start..start + self.page_size)
            .ok_or_else(|| bad("page outside the mapped file".into()))?;
        let header = crate::page::Header::read(head);
        let overflow = header.overflow as u64;
        if overflow == 0 {
            return Ok((head, header));
        }
        if id + overflow >= self.hwm {
            return Err(bad(format!("{overflow} overflow pages run past the high-water mark")));
        }
        let end = start + (1 + overflow as usize) * self.page_size;
        let all =
            bytes.get(start..end).ok_or_else(|| bad("overflow outside the mapped file".into()))?;
        Ok((all, header))
    }

    /// A branch or leaf page.
    #[inline]
    pub fn view(&self, id: PageId) -> Result<PageView<'_>> {
        let (bytes, header) = self.raw_with_header(id)?;
        PageView::with_header(bytes, header, id)
    }
}

impl Source for Pages {
    fn node(&self, id: NodeId) -> Result<NodeRef<'_>> {
        Ok(NodeRef::Page(self.view(id)?))
    }
}

/// The dirty nodes of a write transaction over the pages it started from.
#[derive(Debug)]
pub struct Dirty {
    /// The committed pages.
    pub pages: Pages,
    nodes: Vec<Option<Node>>,
    /// Pages replaced by dirty copies: (id, overflow).
    pub freed: Vec<(PageId, u32)>,
    /// Fill factor for splits not at the end of a node.
    pub fill: f64,
}

impl Source for Dirty {
    fn node(&self, id: NodeId) -> Result<NodeRef<'_>> {
        if id & DIRTY != 0 {
            match self.nodes.get((id & !DIRTY) as usize) {
                Some(Some(n)) => Ok(NodeRef::Dirty(n)),
                _ => Err(EngineError::Corrupt { page: id, reason: "dangling dirty node".into() }),
            }
        } else {
            Ok(NodeRef::Page(self.pages.view(id)?))
        }
    }
}

impl Dirty {
    /// A transaction's dirty set over `pages`.
    pub fn new(pages: Pages, fill: f64) -> Self {
        Dirty { pages, nodes: Vec::new(), freed: Vec::new(), fill }
    }

    fn add(&mut self, n: Node) -> NodeId {
        self.nodes.push(Some(n));
        (self.nodes.len() - 1) as u64 | DIRTY
    }

    fn get_mut(&mut self, id: NodeId) -> &mut Node {
        debug_assert!(id & DIRTY != 0);
        match self.nodes.get_mut((id & !DIRTY) as usize) {
            Some(Some(n)) => n,
            _ => unreachable!("dirty ids come from add() and are taken only by spill"),
        }
    }

    /// Makes `id` dirty (copying its page) and returns the dirty id.
    fn cow(&mut self, id: NodeId) -> Result<NodeId> {
        if id & DIRTY != 0 {
            // Only ids made by add() are dirty; anything else came from damaged bytes.
            return match self.nodes.get((id & !DIRTY) as usize) {
                Some(Some(_)) => Ok(id),
                _ => Err(EngineError::Corrupt {
                    page: id,
                    reason: "not a node of this transaction".into(),
                }),
            };
        }
        let v = self.pages.view(id)?;
        let n = Node::from_page(&v)?;
        self.freed.push((id, v.header.overflow));
        Ok(self.add(n))
    }

    /// A new empty leaf (a new bucket's root).
    pub fn empty_leaf(&mut self) -> NodeId {
        self.add(Node::Leaf(Vec::new()))
    }

    /// Inserts or replaces `key` in the tree at `root`; returns the new root.
    pub fn put(&mut self, root: NodeId, key: &[u8], value: &[u8]) -> Result<NodeId> {
        let mut placed = self.insert(root, key, value, 0)?;
        // Grow the tree while the root splits.
        for _ in 0..MAX_DEPTH {
            let mut parts = match placed {
                Placed::Kept(d) => return Ok(d),
                Placed::Split(parts) => parts,
            };
            if parts.len() <= 1 {
                return Ok(parts.pop().map_or(root, |p| p.1));
            }
            let d = self.add(Node::Branch(Vec::new()));
            placed = self.place(d, Node::Branch(parts), true);
        }
        Err(EngineError::Corrupt { page: root, reason: "tree too deep".into() })
    }

    /// Stores `n` at dirty slot `d`, splitting it first if it outgrew a page.
    fn place(&mut self, d: NodeId, n: Node, at_end: bool) -> Placed {
        let ps = self.pages.page_size;
        let min = if matches!(n, Node::Branch(_)) { 4 } else { 2 };
        if n.size() <= ps || n.len() < min {
            *self.get_mut(d) = n;
            return Placed::Kept(d);
        }
        let threshold = if at_end { ps } else { ((ps as f64) * self.fill) as usize };
        let parts = n.split(threshold.max(ps / 4));
        let mut out = Vec::with_capacity(parts.len());
        for (i, p) in parts.into_iter().enumerate() {
            let k = p.first_key().to_vec();
            if i == 0 {
                *self.get_mut(d) = p;
                out.push((k, d));
            } else {
                out.push((k, self.add(p)));
            }
        }
        Placed::Split(out)
    }

    fn insert(&mut self, id: NodeId, key: &[u8], value: &[u8], depth: usize) -> Result<Placed> {
        if depth > MAX_DEPTH {
            return Err(EngineError::Corrupt { page: id, reason: "tree too deep".into() });
        }
        let d = self.cow(id)?;
        let mut n = std::mem::replace(self.get_mut(d), Node::Leaf(Vec::new()));
        let at_end = match &mut n {
            Node::Leaf(v) => {
                let i = v.partition_point(|e| e.0.as_slice() < key);
                if i < v.len() && v[i].0 == key {
                    v[i].1 = value.to_vec();
                } else {
                    v.insert(i, (key.to_vec(), value.to_vec()));
                }
                i + 1 >= v.len()
            }
            Node::Branch(v) => {
                if v.is_empty() {
                    return Err(EngineError::Corrupt { page: id, reason: "empty branch".into() });
                }
                let i = child_index(v, key);
                let repl = match self.insert(v[i].1, key, value, depth + 1) {
                    Ok(r) => r,
                    Err(e) => {
                        *self.get_mut(d) = n;
                        return Err(e);
                    }
                };
                let at_end = i + 1 == v.len();
                match repl {
                    Placed::Kept(c) => {
                        // A branch's key for a child is the child's first key.
                        let first = self.get_mut(c).first_key();
                        if first != v[i].0.as_slice() {
                            v[i].0 = first.to_vec();
                        }
                        v[i].1 = c;
                    }
                    Placed::Split(parts) => {
                        v.splice(i..i + 1, parts);
                    }
                }
                at_end
            }
        };
        Ok(self.place(d, n, at_end))
    }

    /// Removes `key` from the tree at `root`; returns the new root and whether it was there.
    /// Nothing is copied when the key is absent.
    pub fn delete(&mut self, root: NodeId, key: &[u8]) -> Result<(NodeId, bool)> {
        if crate::cursor::get(self, root, key)?.is_none() {
            return Ok((root, false));
        }
        let mut r = self.remove(root, key, 0)?;
        // Collapse a root branch with a single child.
        for _ in 0..MAX_DEPTH {
            match self.get_mut(r) {
                Node::Branch(v) if v.len() == 1 => {
                    let child = v[0].1;
                    self.nodes[(r & !DIRTY) as usize] = None;
                    r = child;
                    if r & DIRTY == 0 {
                        break;
                    }
                }
                Node::Branch(v) if v.is_empty() => {
                    *self.get_mut(r) = Node::Leaf(Vec::new());
                    break;
                }
                _ => break,
            }
        }
        Ok((r, true))
    }

    fn remove(&mut self, id: NodeId, key: &[u8], depth: usize) -> Result<NodeId> {
        if depth > MAX_DEPTH {
            return Err(EngineError::Corrupt { page: id, reason: "tree too deep".into() });
        }
        let d = self.cow(id)?;
        let mut n = std::mem::replace(self.get_mut(d), Node::Leaf(Vec::new()));
        let res = match &mut n {
            Node::Leaf(v) => {
                let i = v.partition_point(|e| e.0.as_slice() < key);
                if i < v.len() && v[i].0 == key {
                    v.remove(i);
                }
                Ok(())
            }
            Node::Branch(v) => self.remove_in_branch(v, key, depth),
        };
        *self.get_mut(d) = n;
        res.map(|()| d)
    }

    fn remove_in_branch(
        &mut self,
        v: &mut Vec<(Vec<u8>, NodeId)>,
        key: &[u8],
        depth: usize,
    ) -> Result<()> {
        if v.is_empty() {
            return Ok(());
        }
        let i = child_index(v, key);
        let c = self.remove(v[i].1, key, depth + 1)?;
        v[i].1 = c;
        let ps = self.pages.page_size;
        let size = self.get_mut(c).size();
        if self.get_mut(c).is_empty() {
            self.nodes[(c & !DIRTY) as usize] = None;
            v.remove(i);
            return Ok(());
        }
        if size >= ps / 4 || v.len() < 2 {
            return Ok(());
        }
        // Merge with a neighbour when both fit in one page.
        let (l, r) = if i > 0 { (i - 1, i) } else { (i, i + 1) };
        let sib = if l == i { r } else { l };
        let sib_size = match self.node(v[sib].1)? {
            NodeRef::Page(p) => p.bytes.len().min(Node::from_page(&p)?.size()),
            NodeRef::Dirty(n) => n.size(),
        };
        if size + sib_size - crate::page::PAGE_HEADER > ps {
            return Ok(());
        }
        let ld = self.cow(v[l].1)?;
        let rd = self.cow(v[r].1)?;
        v[l].1 = ld;
        let right = std::mem::replace(self.get_mut(rd), Node::Leaf(Vec::new()));
        self.nodes[(rd & !DIRTY) as usize] = None;
        match (self.get_mut(ld), right) {
            (Node::Leaf(a), Node::Leaf(b)) => a.extend(b),
            (Node::Branch(a), Node::Branch(b)) => a.extend(b),
            _ => {
                return Err(EngineError::Corrupt {
                    page: v[l].1,
                    reason: "siblings of different kinds".into(),
                })
            }
        }
        v.remove(r);
        Ok(())
    }

    /// Writes every dirty node reachable from `id` (children first), allocating pages with
    /// `alloc(pages)`; appends (page id, bytes) to `out`; returns `id`'s page id.
    pub fn spill(
        &mut self,
        id: NodeId,
        alloc: &mut dyn FnMut(usize) -> PageId,
        out: &mut Vec<(PageId, Vec<u8>)>,
    ) -> Result<PageId> {
        if id & DIRTY == 0 {
            return Ok(id);
        }
        let Some(mut n) = self.nodes.get_mut((id & !DIRTY) as usize).and_then(Option::take) else {
            return Err(EngineError::Corrupt {
                page: id,
                reason: "dirty node spilled twice".into(),
            });
        };
        if let Node::Branch(v) = &mut n {
            for e in v.iter_mut() {
                e.1 = self.spill(e.1, alloc, out)?;
            }
        }
        let ps = self.pages.page_size;
        // Edits keep every node with more than one entry within a page; only a damaged page
        // copied as it was can break that (and its key offsets would not fit the leaf format).
        if matches!(n, Node::Leaf(_)) && n.len() > 1 && n.size() > ps {
            return Err(EngineError::Corrupt {
                page: id,
                reason: "oversized node copied from a damaged page".into(),
            });
        }
        let pg = alloc(n.pages(ps));
        let mut buf = Vec::new();
        n.write(pg, ps, &mut buf);
        out.push((pg, buf));
        Ok(pg)
    }

    /// Frees every page of the tree at `root` (dropping a bucket).
    pub fn free_tree(&mut self, root: NodeId, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(EngineError::Corrupt { page: root, reason: "tree too deep".into() });
        }
        let (children, freed): (Vec<NodeId>, Option<u32>) = match self.node(root)? {
            NodeRef::Page(p) => {
                let c = if p.is_leaf() {
                    Vec::new()
                } else {
                    (0..p.len()).map(|i| p.child(i)).collect()
                };
                (c, Some(p.header.overflow))
            }
            NodeRef::Dirty(Node::Branch(v)) => (v.iter().map(|e| e.1).collect(), None),
            NodeRef::Dirty(Node::Leaf(_)) => (Vec::new(), None),
        };
        if let Some(overflow) = freed {
            self.freed.push((root, overflow));
        }
        for c in children {
            self.free_tree(c, depth + 1)?;
        }
        Ok(())
    }
}

/// What storing an edited node did: kept it in its dirty slot (its parent points there and
/// updates its key if the first key changed), or split it into parts of (first key, id), the
/// first part in the node's slot.
enum Placed {
    Kept(NodeId),
    Split(Vec<(Vec<u8>, NodeId)>),
}

/// The child of a branch that may hold `key`.
fn child_index(v: &[(Vec<u8>, NodeId)], key: &[u8]) -> usize {
    let i = v.partition_point(|e| e.0.as_slice() < key);
    if i < v.len() && v[i].0 == key {
        i
    } else {
        i.saturating_sub(1)
    }
}
