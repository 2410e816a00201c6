//! The v2 store's operations, as etcd's `v2store`: get, set, create (and POST's in-order
//! keys), update, compare-and-swap, delete, compare-and-delete, and the expiry of TTL keys.
//! Each write moves the store's index by one and yields the event it makes.
//!
//! Invariants: `ttl` holds exactly the (expiry, path) of every node that has one; the root
//! is a permanent directory at index 0 and cannot be written or deleted.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use super::error::*;
use super::event::Event;
use super::node::{Kind, Node};

/// Go's `time.Time` zero is "permanent"; etcd also treats any expiry before 2000 as none.
const MIN_EXPIRE: i64 = 946_684_800_000_000_000;

/// etcd's v2 store.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The root directory ("/").
    pub root: Node,
    /// The index of the last write.
    pub index: u64,
    /// Every node with an expiry: (expiry, path).
    ttl: BTreeSet<(i64, String)>,
    /// The index counts etcd's one write of the cluster version (see `V2Store::membership`).
    pub version_set: bool,
    /// Paths of nodes made, changed or removed since [`Tree::take_changed`] last ran (what a
    /// save writes).
    changed: BTreeSet<String>,
}

/// Trees are equal when they hold the same nodes and indexes, whatever is yet to be saved.
impl PartialEq for Tree {
    fn eq(&self, o: &Self) -> bool {
        (&self.root, self.index, &self.ttl, self.version_set)
            == (&o.root, o.index, &o.ttl, o.version_set)
    }
}

impl Eq for Tree {}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            root: Node::dir("/".into(), 0, None),
            index: 0,
            ttl: BTreeSet::new(),
            version_set: false,
            changed: BTreeSet::new(),
        }
    }
}

/// The most components a key may have. etcd has no limit, but its recursion lives on
/// growable goroutine stacks; the tree's walks here recurse once per component, on threads
/// with fixed stacks, so a key of thousands of components would stop every member.
pub const MAX_KEY_DEPTH: usize = 256;
/// The longest key, in bytes: each directory keeps its whole path, so a deep key costs its
/// length once per component.
pub const MAX_KEY_BYTES: usize = 64 << 10;

/// Refuses keys deeper than [`MAX_KEY_DEPTH`] or longer than [`MAX_KEY_BYTES`] (checked before
/// proposing and at apply).
pub fn check_key(path: &str) -> Result<(), V2Error> {
    if path.len() > MAX_KEY_BYTES {
        return Err(V2Error::new(
            INVALID_FIELD,
            format!("key is {} bytes long; at most {MAX_KEY_BYTES} are allowed", path.len()),
            0,
        ));
    }
    let depth = path.split('/').filter(|c| !c.is_empty()).count();
    if depth > MAX_KEY_DEPTH {
        return Err(V2Error::new(
            INVALID_FIELD,
            format!("key has {depth} components; at most {MAX_KEY_DEPTH} are allowed"),
            0,
        ));
    }
    Ok(())
}

/// etcd's key normalisation: `path.Clean(path.Join("/", p))`.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn expiry(e: Option<i64>) -> Option<i64> {
    e.filter(|&t| t >= MIN_EXPIRE)
}

impl Tree {
    /// Rebuilds a tree from nodes listed parents first (a decoded snapshot).
    pub fn from_nodes(index: u64, nodes: Vec<Node>) -> Result<Self, String> {
        let mut t = Tree { index, ..Tree::default() };
        for n in nodes {
            let path = clean(&n.path);
            if path != n.path || path == "/" {
                return Err(format!("v2 store: bad node path {:?}", n.path));
            }
            let (dir, name) = split(&path);
            let dir = if dir.is_empty() { "/" } else { dir };
            let expire = n.expire;
            let parent =
                t.node_mut(dir).ok_or_else(|| format!("v2 store: {path} before its dir"))?;
            let kids = parent.children_mut().ok_or_else(|| format!("v2 store: {dir} is a file"))?;
            if kids.insert(name.to_string(), n).is_some() {
                return Err(format!("v2 store: {path} twice"));
            }
            if let Some(e) = expire {
                t.ttl.insert((e, path.clone()));
            }
        }
        Ok(t)
    }

    /// The paths changed since the last call (made, changed or removed), and none from now.
    pub fn take_changed(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.changed)
    }

    /// Counts every node as changed (a tree read from a format that is saved differently).
    pub fn change_all(&mut self) {
        let all: Vec<String> = self.nodes().into_iter().map(|n| n.path.clone()).collect();
        self.changed.extend(all);
    }

    /// Every node but the root, parents first.
    pub fn nodes(&self) -> Vec<&Node> {
        fn walk<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
            if let Some(c) = n.children() {
                for k in c.values() {
                    out.push(k);
                    walk(k, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// Does any node have an expiry (the leader then proposes SYNCs)?
    pub fn has_ttl_keys(&self) -> bool {
        !self.ttl.is_empty()
    }

    /// The node at a clean path.
    pub fn node(&self, path: &str) -> Option<&Node> {
        let mut n = &self.root;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            n = n.children()?.get(c)?;
        }
        Some(n)
    }

    fn node_mut(&mut self, path: &str) -> Option<&mut Node> {
        let mut n = &mut self.root;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            n = n.children_mut()?.get_mut(c)?;
        }
        Some(n)
    }

    /// The clean path of a write and the index before it; the root is read only.
    fn writable(&self, path: &str) -> Result<(String, u64), V2Error> {
        let path = clean(path);
        if path == "/" {
            return Err(V2Error::new(ROOT_RONLY, "/", self.index));
        }
        Ok((path, self.index))
    }

    /// etcd's `internalGet`: the node, or "not a directory" at the first file on the way, or
    /// "key not found" naming the first missing component.
    fn lookup(&self, path: &str) -> Result<&Node, V2Error> {
        let mut n = &self.root;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            let Some(kids) = n.children() else {
                return Err(V2Error::new(NOT_DIR, n.path.clone(), self.index));
            };
            n = kids
                .get(c)
                .ok_or_else(|| V2Error::new(KEY_NOT_FOUND, join(&n.path, c), self.index))?;
        }
        Ok(n)
    }

    /// A read.
    pub fn get(
        &self,
        path: &str,
        recursive: bool,
        sorted: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let _ = sorted; // children are kept in name order: every listing is sorted.
        let path = clean(path);
        let n = self.lookup(&path)?;
        let mut node = n.load(recursive, now);
        node.key = path;
        Ok(Event::new("get", node, None, self.index))
    }

    /// PUT without conditions: create or replace a file (or create a directory).
    pub fn set(
        &mut self,
        path: &str,
        dir: bool,
        value: String,
        expire: Option<i64>,
        refresh: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        let prev = match self.lookup(&path) {
            Ok(n) => Some(n.clone()),
            Err(e) if e.code == KEY_NOT_FOUND => None,
            Err(e) => return Err(e),
        };
        let value = match (&prev, refresh) {
            (None, true) => return Err(V2Error::new(KEY_NOT_FOUND, path, self.index)),
            (Some(p), true) => p.value().to_string(),
            (_, false) => value,
        };
        let mut e = self.create_at(&path, dir, value, true, expire, "set", now)?;
        e.refresh = refresh;
        Ok(e)
    }

    /// PUT with prevExist=false, or POST (`unique`: a new in-order key under `path`).
    pub fn create(
        &mut self,
        path: &str,
        dir: bool,
        value: String,
        unique: bool,
        expire: Option<i64>,
        now: i64,
    ) -> Result<Event, V2Error> {
        let path = if unique { format!("{path}/{:020}", self.index + 1) } else { path.to_string() };
        self.create_at(&clean(&path), dir, value, false, expire, "create", now)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_at(
        &mut self,
        path: &str,
        dir: bool,
        value: String,
        replace: bool,
        expire: Option<i64>,
        action: &'static str,
        now: i64,
    ) -> Result<Event, V2Error> {
        let (cur, next) = (self.index, self.index + 1);
        if path == "/" {
            return Err(V2Error::new(ROOT_RONLY, "/", cur));
        }
        let expire = expiry(expire);
        let (dir_path, name) = split(path);
        // Missing directories on the way are made (at the next index); a file on the way
        // refuses the write.
        let mut at = "/".to_string();
        for c in dir_path.split('/').filter(|c| !c.is_empty()) {
            let child = join(&at, c);
            match self.node(&child) {
                Some(n) if n.is_dir() => {}
                Some(_) => return Err(V2Error::new(NOT_DIR, child, cur)),
                None => {
                    let parent = self.node_mut(&at).and_then(Node::children_mut);
                    let parent = parent.ok_or_else(|| V2Error::new(NOT_DIR, at.clone(), cur))?;
                    parent.insert(c.to_string(), Node::dir(child.clone(), next, None));
                    self.changed.insert(child.clone());
                }
            }
            at = child;
        }
        let mut prev = None;
        if let Some(n) = self.node(path) {
            if !replace {
                return Err(V2Error::new(NODE_EXIST, path, cur));
            }
            if n.is_dir() {
                return Err(V2Error::new(NOT_FILE, path, cur));
            }
            prev = Some(n.repr(false, now));
            self.detach(path);
        }
        let n = if dir {
            Node::dir(path.to_string(), next, expire)
        } else {
            Node::file(path.to_string(), value, next, expire)
        };
        if let Some(e) = expire {
            self.ttl.insert((e, path.to_string()));
        }
        let out = n.repr(false, now);
        let parent = self.node_mut(&at).and_then(Node::children_mut);
        debug_assert!(parent.is_some(), "the directories were just made");
        if let Some(kids) = parent {
            kids.insert(name.to_string(), n);
        }
        self.changed.insert(path.to_string());
        self.index = next;
        Ok(Event::new(action, out, prev, next))
    }

    /// Removes the node at `path` and every expiry below it; returns it.
    fn detach(&mut self, path: &str) -> Option<Node> {
        let (dir, name) = split(path);
        let dir = if dir.is_empty() { "/" } else { dir };
        let n = self.node_mut(dir)?.children_mut()?.remove(name)?;
        fn forget(ttl: &mut BTreeSet<(i64, String)>, changed: &mut BTreeSet<String>, n: &Node) {
            if let Some(e) = n.expire {
                ttl.remove(&(e, n.path.clone()));
            }
            changed.insert(n.path.clone());
            if let Some(c) = n.children() {
                c.values().for_each(|k| forget(ttl, changed, k));
            }
        }
        forget(&mut self.ttl, &mut self.changed, &n);
        Some(n)
    }

    fn set_expiry(&mut self, path: &str, expire: Option<i64>) {
        let Some(n) = self.node_mut(path) else { return };
        let old = std::mem::replace(&mut n.expire, expire);
        self.changed.insert(path.to_string());
        if let Some(e) = old {
            self.ttl.remove(&(e, path.to_string()));
        }
        if let Some(e) = expire {
            self.ttl.insert((e, path.to_string()));
        }
    }

    /// PUT with prevExist=true and no compare: a new value (a directory only its TTL).
    pub fn update(
        &mut self,
        path: &str,
        value: String,
        expire: Option<i64>,
        refresh: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let (path, cur) = self.writable(path)?;
        let next = cur + 1;
        let n = self.lookup(&path)?;
        if n.is_dir() && !value.is_empty() {
            return Err(V2Error::new(NOT_FILE, path, cur));
        }
        let value = if refresh { n.value().to_string() } else { value };
        let prev = n.repr(false, now);
        let created = n.created;
        let is_dir = n.is_dir();
        if let Some(n) = self.node_mut(&path) {
            if let Kind::File(v) = &mut n.kind {
                *v = value.clone();
                n.modified = next;
            }
        }
        // (set_expiry counts the node as changed.)
        self.set_expiry(&path, expiry(expire));
        let mut node = match self.node(&path) {
            Some(n) => n.repr(false, now),
            None => return Err(V2Error::new(KEY_NOT_FOUND, path, cur)),
        };
        node.modified = next;
        node.created = created;
        node.nodes = None;
        if is_dir {
            node.value = None;
        }
        self.index = next;
        let mut e = Event::new("update", node, Some(prev), next);
        e.refresh = refresh;
        Ok(e)
    }

    fn compare_fail(n: &Node, prev_value: &str, prev_index: u64) -> Option<String> {
        let index_ok = prev_index == 0 || n.modified == prev_index;
        let value_ok = prev_value.is_empty() || n.value() == prev_value;
        match (value_ok, index_ok) {
            (true, true) => None,
            (false, true) => Some(format!("[{} != {}]", prev_value, n.value())),
            (true, false) => Some(format!("[{} != {}]", prev_index, n.modified)),
            (false, false) => Some(format!(
                "[{} != {}] [{} != {}]",
                prev_value,
                n.value(),
                prev_index,
                n.modified
            )),
        }
    }

    /// PUT with prevValue or prevIndex.
    #[allow(clippy::too_many_arguments)]
    pub fn compare_and_swap(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
        value: String,
        expire: Option<i64>,
        refresh: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let (path, cur) = self.writable(path)?;
        let n = self.lookup(&path)?;
        if n.is_dir() {
            return Err(V2Error::new(NOT_FILE, path, cur));
        }
        if let Some(cause) = Self::compare_fail(n, prev_value, prev_index) {
            return Err(V2Error::new(TEST_FAILED, cause, cur));
        }
        let value = if refresh { n.value().to_string() } else { value };
        let prev = n.repr(false, now);
        let next = cur + 1;
        if let Some(n) = self.node_mut(&path) {
            n.kind = Kind::File(value);
            n.modified = next;
        }
        // (set_expiry counts the node as changed.)
        self.set_expiry(&path, expiry(expire));
        let node = match self.node(&path) {
            Some(n) => n.repr(false, now),
            None => return Err(V2Error::new(KEY_NOT_FOUND, path, cur)),
        };
        self.index = next;
        let mut e = Event::new("compareAndSwap", node, Some(prev), next);
        e.refresh = refresh;
        Ok(e)
    }

    /// DELETE without conditions (`dir` for a directory, `recursive` for one with children).
    pub fn delete(
        &mut self,
        path: &str,
        dir: bool,
        recursive: bool,
        now: i64,
    ) -> Result<Event, V2Error> {
        let (path, cur) = self.writable(path)?;
        let dir = dir || recursive;
        let n = self.lookup(&path)?;
        if let Some(kids) = n.children() {
            if !dir {
                return Err(V2Error::new(NOT_FILE, path, cur));
            }
            if !kids.is_empty() && !recursive {
                return Err(V2Error::new(DIR_NOT_EMPTY, path, cur));
            }
        }
        let dir = n.is_dir();
        Ok(self.remove(&path, "delete", dir, now))
    }

    /// Removes the node at `path` (which exists) at the next index: the event shows its key
    /// (and `dir`), its indexes, and the node before.
    fn remove(&mut self, path: &str, action: &'static str, dir: bool, now: i64) -> Event {
        let next = self.index + 1;
        let (prev, created) = match self.node(path) {
            Some(n) => (Some(n.repr(false, now)), n.created),
            None => (None, 0),
        };
        debug_assert!(prev.is_some(), "removing a node that is not there");
        let node = crate::v2::node::NodeOut {
            key: path.to_string(),
            dir,
            modified: next,
            created,
            ..Default::default()
        };
        self.detach(path);
        self.index = next;
        Event::new(action, node, prev, next)
    }

    /// DELETE with prevValue or prevIndex (files only).
    pub fn compare_and_delete(
        &mut self,
        path: &str,
        prev_value: &str,
        prev_index: u64,
        now: i64,
    ) -> Result<Event, V2Error> {
        let path = clean(path);
        let cur = self.index;
        let n = self.lookup(&path)?;
        if n.is_dir() {
            let cause = if path == "/" { String::new() } else { path };
            return Err(V2Error::new(NOT_FILE, cause, cur));
        }
        if let Some(cause) = Self::compare_fail(n, prev_value, prev_index) {
            return Err(V2Error::new(TEST_FAILED, cause, cur));
        }
        Ok(self.remove(&path, "compareAndDelete", false, now))
    }

    /// Expires every node whose expiry is at or before `cutoff` (a SYNC's time), earliest
    /// first: one `expire` event (and index) each.
    pub fn expire(&mut self, cutoff: i64, now: i64) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some((at, path)) = self.ttl.first().cloned() {
            if at > cutoff {
                break;
            }
            let Some(n) = self.node(&path) else {
                self.ttl.remove(&(at, path));
                continue;
            };
            let dir = n.is_dir();
            out.push(self.remove(&path, "expire", dir, now));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The model: files only, by path, with (value, created, modified); dirs implied.
    #[derive(Debug, Default)]
    struct Model {
        files: BTreeMap<String, (String, u64, u64)>,
        dirs: BTreeMap<String, u64>,
        index: u64,
    }

    impl Model {
        fn parents(p: &str) -> Vec<String> {
            let parts: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
            (1..parts.len()).map(|i| format!("/{}", parts[..i].join("/"))).collect()
        }
        /// A file on the way: 104; else whether the target exists.
        fn blocked(&self, p: &str) -> bool {
            Self::parents(p).iter().any(|d| self.files.contains_key(d))
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(usize, u8),
        Create(usize, u8),
        Update(usize, u8),
        Delete(usize),
        Cas(usize, u8, u8),
        Get(usize),
    }

    const KEYS: [&str; 6] = ["/a", "/b", "/a/x", "/a/y", "/c/d/e", "/c"];

    fn op() -> impl Strategy<Value = Op> {
        let k = 0..KEYS.len();
        prop_oneof![
            (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Set(k, v % 4)),
            (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Create(k, v % 4)),
            (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Update(k, v % 4)),
            k.clone().prop_map(Op::Delete),
            (k.clone(), any::<u8>(), any::<u8>()).prop_map(|(k, a, b)| Op::Cas(k, a % 4, b % 4)),
            k.prop_map(Op::Get),
        ]
    }

    proptest! {
        /// Files only (directories made implicitly): every answer, error code and index as a
        /// simple model says, and the saved tree reads back equal after every step.
        #[test]
        fn tree_matches_a_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut t = Tree::default();
            let mut m = Model::default();
            let mut bucket = BTreeMap::new();
            for o in ops {
                let (path, res) = match &o {
                    Op::Set(k, v) => (KEYS[*k], t.set(KEYS[*k], false, v.to_string(), None, false, 0)),
                    Op::Create(k, v) => (KEYS[*k], t.create(KEYS[*k], false, v.to_string(), false, None, 0)),
                    Op::Update(k, v) => (KEYS[*k], t.update(KEYS[*k], v.to_string(), None, false, 0)),
                    Op::Delete(k) => (KEYS[*k], t.delete(KEYS[*k], false, false, 0)),
                    Op::Cas(k, p, v) => (KEYS[*k], t.compare_and_swap(KEYS[*k], &p.to_string(), 0, v.to_string(), None, false, 0)),
                    Op::Get(k) => (KEYS[*k], t.get(KEYS[*k], false, false, 0)),
                };
                let is_dir = m.dirs.contains_key(path);
                let file = m.files.get(path).cloned();
                let blocked = m.blocked(path);
                let next = m.index + 1;
                let expect: Result<(&str, Option<String>), u32> = match &o {
                    _ if blocked => Err(NOT_DIR),
                    Op::Get(_) if is_dir => Ok(("get", None)),
                    Op::Get(_) => file.clone().map(|f| ("get", Some(f.0))).ok_or(KEY_NOT_FOUND),
                    Op::Set(_, v) | Op::Create(_, v) if is_dir => {
                        Err(if matches!(o, Op::Set(..)) { NOT_FILE } else { NODE_EXIST })
                    }
                    Op::Create(_, _) if file.is_some() => Err(NODE_EXIST),
                    Op::Set(_, v) | Op::Create(_, v) => {
                        for d in Model::parents(path) {
                            m.dirs.entry(d).or_insert(next);
                        }
                        m.files.insert(path.to_string(), (v.to_string(), next, next));
                        m.index = next;
                        Ok((if matches!(o, Op::Set(..)) { "set" } else { "create" }, Some(v.to_string())))
                    }
                    Op::Update(_, _) | Op::Cas(..) | Op::Delete(_) if is_dir => Err(NOT_FILE),
                    Op::Update(_, _) | Op::Cas(..) | Op::Delete(_) if file.is_none() => Err(KEY_NOT_FOUND),
                    Op::Update(_, v) => {
                        let f = file.clone().unwrap_or_default();
                        m.files.insert(path.to_string(), (v.to_string(), f.1, next));
                        m.index = next;
                        Ok(("update", Some(v.to_string())))
                    }
                    Op::Cas(_, p, _) if file.as_ref().is_some_and(|f| f.0 != p.to_string()) => Err(TEST_FAILED),
                    Op::Cas(_, _, v) => {
                        let f = file.clone().unwrap_or_default();
                        m.files.insert(path.to_string(), (v.to_string(), f.1, next));
                        m.index = next;
                        Ok(("compareAndSwap", Some(v.to_string())))
                    }
                    Op::Delete(_) => {
                        m.files.remove(path);
                        m.index = next;
                        Ok(("delete", None))
                    }
                };
                match (res, expect) {
                    (Ok(e), Ok((action, value))) => {
                        prop_assert_eq!(e.action, action);
                        prop_assert_eq!(e.node.value, value);
                        prop_assert_eq!(e.etcd_index, m.index);
                        if let Some(f) = m.files.get(path).filter(|_| action != "delete") {
                            prop_assert_eq!((e.node.created, e.node.modified), (f.1, f.2));
                        }
                    }
                    (Err(e), Err(code)) => {
                        prop_assert_eq!(e.code, code);
                        prop_assert_eq!(e.index, m.index);
                    }
                    (got, want) => prop_assert!(false, "{:?}: got {:?}, want {:?}", o, got, want),
                }
                prop_assert_eq!(t.index, m.index);
                // What each write saves, applied to a bucket, reads back as the tree.
                let save = crate::v2::codec::save(&mut t);
                for (k, v) in save.nodes {
                    match v {
                        Some(v) => bucket.insert(k, v),
                        None => bucket.remove(&k),
                    };
                }
                let entries = bucket.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let back = crate::v2::codec::decode(Some(&save.meta), entries);
                prop_assert_eq!(back.as_ref(), Ok(&t));
            }
        }
    }
}
