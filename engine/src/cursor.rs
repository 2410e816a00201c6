//! Cursors: ordered iteration over one tree (seek, first, last, next, prev), for read
//! transactions (pages in the map) and write transactions (dirty nodes and pages) alike.
#![forbid(unsafe_code)]

use crate::error::{EngineError, Result};
use crate::node::{Node, NodeId};
use crate::page::{key_cmp, PageView};

/// Maximum tree depth followed (a cycle in damaged pages would otherwise loop forever).
pub const MAX_DEPTH: usize = 64;

/// A node as a cursor sees it.
#[derive(Debug, Clone, Copy)]
pub enum NodeRef<'a> {
    /// A page in the map.
    Page(PageView<'a>),
    /// A dirty node of a write transaction.
    Dirty(&'a Node),
}

impl<'a> NodeRef<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            NodeRef::Page(p) => p.len(),
            NodeRef::Dirty(n) => n.len(),
        }
    }

    /// No elements?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Leaf?
    pub fn is_leaf(&self) -> bool {
        match self {
            NodeRef::Page(p) => p.is_leaf(),
            NodeRef::Dirty(n) => matches!(n, Node::Leaf(_)),
        }
    }

    /// Key `i`.
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        match *self {
            NodeRef::Page(p) => p.key(i),
            NodeRef::Dirty(Node::Leaf(v)) => Ok(&v[i].0),
            NodeRef::Dirty(Node::Branch(v)) => Ok(&v[i].0),
        }
    }

    /// Leaf entry `i`.
    pub fn entry(&self, i: usize) -> Result<(&'a [u8], &'a [u8])> {
        match *self {
            NodeRef::Page(p) => Ok((p.key(i)?, p.value(i)?)),
            NodeRef::Dirty(Node::Leaf(v)) => Ok((&v[i].0, &v[i].1)),
            NodeRef::Dirty(Node::Branch(_)) => unreachable!("entry() on a branch"),
        }
    }

    /// Value of leaf entry `i`.
    #[inline]
    pub fn value(&self, i: usize) -> Result<&'a [u8]> {
        match *self {
            NodeRef::Page(p) => p.value(i),
            NodeRef::Dirty(Node::Leaf(v)) => Ok(&v[i].1),
            NodeRef::Dirty(Node::Branch(_)) => unreachable!("value() on a branch"),
        }
    }

    /// Child `i` of a branch.
    pub fn child(&self, i: usize) -> NodeId {
        match *self {
            NodeRef::Page(p) => p.child(i),
            NodeRef::Dirty(Node::Branch(v)) => v[i].1,
            NodeRef::Dirty(Node::Leaf(_)) => unreachable!("child() on a leaf"),
        }
    }

    /// First element with key ≥ `key`.
    pub fn lower_bound(&self, key: &[u8]) -> Result<usize> {
        match *self {
            NodeRef::Page(p) => p.lower_bound(key),
            NodeRef::Dirty(Node::Leaf(v)) => Ok(v.partition_point(|e| key_cmp(&e.0, key).is_lt())),
            NodeRef::Dirty(Node::Branch(v)) => {
                Ok(v.partition_point(|e| key_cmp(&e.0, key).is_lt()))
            }
        }
    }

    /// The child of a branch that may hold `key`: the last whose first key is ≤ `key`
    /// (the first child also takes everything below its key).
    #[inline]
    pub fn child_for(&self, key: &[u8]) -> Result<usize> {
        Ok(match self.search(key)? {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        })
    }

    /// `Ok(i)`: key `i` equals `key`; `Err(i)`: `i` is where it would go.
    #[inline]
    pub fn search(&self, key: &[u8]) -> Result<Result<usize, usize>> {
        match *self {
            NodeRef::Page(p) => p.search(key),
            NodeRef::Dirty(Node::Leaf(v)) => Ok(v.binary_search_by(|e| key_cmp(&e.0, key))),
            NodeRef::Dirty(Node::Branch(v)) => Ok(v.binary_search_by(|e| key_cmp(&e.0, key))),
        }
    }
}

/// Where nodes come from.
pub trait Source {
    /// The node with this id.
    fn node(&self, id: NodeId) -> Result<NodeRef<'_>>;
}

/// Looks `key` up in the tree at `root`.
pub fn get<'a, S: Source>(src: &'a S, root: NodeId, key: &[u8]) -> Result<Option<&'a [u8]>> {
    let mut n = src.node(root)?;
    for _ in 0..MAX_DEPTH {
        if n.is_leaf() {
            return match n.search(key)? {
                Ok(i) => n.value(i).map(Some),
                Err(_) => Ok(None),
            };
        }
        if n.is_empty() {
            return Ok(None);
        }
        n = src.node(n.child(n.child_for(key)?))?;
    }
    Err(too_deep(root))
}

fn too_deep(root: NodeId) -> EngineError {
    EngineError::Corrupt { page: root, reason: format!("tree deeper than {MAX_DEPTH} levels") }
}

/// A position in a tree.
pub struct Cursor<'a, S: Source> {
    src: &'a S,
    root: NodeId,
    stack: Vec<(NodeRef<'a>, usize)>,
    /// Ran off the end (seek past the last key, or next at the last): prev gives the last.
    past_end: bool,
}

impl<S: Source> std::fmt::Debug for Cursor<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("root", &self.root)
            .field("depth", &self.stack.len())
            .finish()
    }
}

/// A key/value pair borrowed from the transaction.
pub type Item<'a> = (&'a [u8], &'a [u8]);

impl<'a, S: Source> Cursor<'a, S> {
    /// A cursor over the tree at `root` (not positioned yet).
    pub fn new(src: &'a S, root: NodeId) -> Self {
        Cursor { src, root, stack: Vec::with_capacity(8), past_end: false }
    }

    fn push(&mut self, id: NodeId, at_end: bool) -> Result<()> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(too_deep(self.root));
        }
        let n = self.src.node(id)?;
        let i = if at_end { n.len().saturating_sub(1) } else { 0 };
        self.stack.push((n, i));
        Ok(())
    }

    /// Descends from the top frame to a leaf along first (or last) children.
    fn descend(&mut self, at_end: bool) -> Result<()> {
        loop {
            let Some(&(n, i)) = self.stack.last() else { return Ok(()) };
            if n.is_leaf() {
                return Ok(());
            }
            if n.is_empty() {
                return Err(EngineError::Corrupt {
                    page: self.root,
                    reason: "empty branch".into(),
                });
            }
            self.push(n.child(i), at_end)?;
        }
    }

    /// The entry under the cursor, moving on past empty leaves in direction `forward`.
    fn current(&mut self, forward: bool) -> Result<Option<Item<'a>>> {
        loop {
            let Some(&(n, i)) = self.stack.last() else { return Ok(None) };
            if i < n.len() {
                return n.entry(i).map(Some);
            }
            // An empty leaf (only the root can be): step on.
            if !self.step(forward)? {
                return Ok(None);
            }
        }
    }

    /// Moves the leaf position one step; false at the end.
    fn step(&mut self, forward: bool) -> Result<bool> {
        // Pop exhausted frames.
        loop {
            let Some((n, i)) = self.stack.last_mut() else { return Ok(false) };
            let can = if forward { *i + 1 < n.len() } else { *i > 0 };
            if can {
                if forward {
                    *i += 1;
                } else {
                    *i -= 1;
                }
                break;
            }
            self.stack.pop();
        }
        self.descend(!forward)?;
        Ok(true)
    }

    /// First entry.
    pub fn first(&mut self) -> Result<Option<Item<'a>>> {
        self.past_end = false;
        self.stack.clear();
        self.push(self.root, false)?;
        self.descend(false)?;
        self.current(true)
    }

    /// Last entry.
    pub fn last(&mut self) -> Result<Option<Item<'a>>> {
        self.past_end = false;
        self.stack.clear();
        self.push(self.root, true)?;
        self.descend(true)?;
        self.current(false)
    }

    /// First entry with key ≥ `key`.
    pub fn seek(&mut self, key: &[u8]) -> Result<Option<Item<'a>>> {
        self.past_end = false;
        let r = self.seek_inner(key)?;
        self.past_end = r.is_none();
        Ok(r)
    }

    fn seek_inner(&mut self, key: &[u8]) -> Result<Option<Item<'a>>> {
        self.stack.clear();
        let mut n = self.src.node(self.root)?;
        loop {
            if self.stack.len() >= MAX_DEPTH {
                return Err(too_deep(self.root));
            }
            if n.is_leaf() {
                let i = n.lower_bound(key)?;
                self.stack.push((n, i));
                break;
            }
            if n.is_empty() {
                return Err(EngineError::Corrupt {
                    page: self.root,
                    reason: "empty branch".into(),
                });
            }
            let i = n.child_for(key)?;
            self.stack.push((n, i));
            n = self.src.node(n.child(i))?;
        }
        // Past the end of this leaf: the answer is the first entry of the next one.
        let &(n, i) = self.stack.last().ok_or_else(|| too_deep(self.root))?;
        if i >= n.len() {
            if let Some((_, li)) = self.stack.last_mut() {
                *li = n.len().saturating_sub(1);
            }
            if n.is_empty() || !self.step(true)? {
                return Ok(None);
            }
        }
        self.current(true)
    }

    /// Last entry with key ≤ `key`.
    pub fn seek_back(&mut self, key: &[u8]) -> Result<Option<Item<'a>>> {
        match self.seek(key)? {
            Some((k, v)) if k == key => Ok(Some((k, v))),
            _ => self.prev(),
        }
    }

    /// Next entry. (Not `Iterator`: every step can fail on a damaged page.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Item<'a>>> {
        if self.stack.is_empty() || !self.step(true)? {
            self.stack.clear();
            self.past_end = true;
            return Ok(None);
        }
        self.current(true)
    }

    /// Previous entry.
    pub fn prev(&mut self) -> Result<Option<Item<'a>>> {
        if self.past_end {
            return self.last();
        }
        if self.stack.is_empty() || !self.step(false)? {
            self.stack.clear();
            return Ok(None);
        }
        self.current(false)
    }
}
