//! v2 events (what a write did, as etcd's `Event`) and the history of the last 1,000 that
//! `wait=true&waitIndex=` reads from, with etcd's rules for which event a watch sees.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

use super::error::{V2Error, EVENT_INDEX_CLEARED};
use super::node::NodeOut;

/// etcd's event history capacity.
pub const HISTORY: usize = 1000;

/// What a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// get, set, create, update, delete, compareAndSwap, compareAndDelete, expire.
    pub action: &'static str,
    /// The node after (for a delete: its key and indexes).
    pub node: NodeOut,
    /// The node before.
    pub prev: Option<NodeOut>,
    /// The store index when answered (X-Etcd-Index).
    pub etcd_index: u64,
    /// A TTL refresh (watchers are not told).
    pub refresh: bool,
}

impl Event {
    /// An event.
    pub fn new(action: &'static str, node: NodeOut, prev: Option<NodeOut>, index: u64) -> Self {
        Event { action, node, prev, etcd_index: index, refresh: false }
    }

    /// Its index (the node's modifiedIndex).
    pub fn index(&self) -> u64 {
        self.node.modified
    }

    /// Created a node (HTTP 201 rather than 200)?
    pub fn is_created(&self) -> bool {
        self.action == "create" || (self.action == "set" && self.prev.is_none())
    }

    /// Go's JSON of it.
    pub fn to_json(&self) -> String {
        let mut o = serde_json::Map::new();
        o.insert("action".into(), self.action.into());
        o.insert("node".into(), self.node.to_json());
        if let Some(p) = &self.prev {
            o.insert("prevNode".into(), p.to_json());
        }
        serde_json::Value::Object(o).to_string()
    }

    /// Would a watcher of `key` (`recursive` or not) be told of it? etcd has two rules.
    /// `live` (a waiting watcher): the watchers of the event's key and of its parents
    /// (recursive ones only) unless the path between is hidden, and, when a directory is
    /// removed, the watchers below it. Not `live` (an event found in the history when the
    /// watch begins): no hidden filter, and a removed directory's key is a plain string
    /// prefix of the watched key.
    pub fn concerns(&self, key: &str, recursive: bool, live: bool) -> bool {
        if self.refresh {
            return false;
        }
        let k = self.node.key.as_str();
        if k == key {
            return true;
        }
        if recursive && under(k, key) && !(live && hidden_between(key, k)) {
            return true;
        }
        let removed_dir =
            matches!(self.action, "delete" | "expire") && self.prev.as_ref().is_some_and(|p| p.dir);
        removed_dir && if live { under(key, k) } else { key.starts_with(k) }
    }
}

/// Is `path` strictly below `dir`?
fn under(path: &str, dir: &str) -> bool {
    if dir == "/" {
        return path != "/";
    }
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

/// etcd's `isHidden`: is a component between the watched path and the key hidden?
fn hidden_between(watch: &str, key: &str) -> bool {
    let rest = &key[watch.len().min(key.len())..];
    format!("/{rest}").contains("/_")
}

/// The last [`HISTORY`] events, in index order.
#[derive(Debug, Clone, Default)]
pub struct History {
    events: VecDeque<Event>,
    /// The first index a watch may still ask for: every event from it on is kept (after a
    /// restart: the next index).
    start: u64,
}

impl History {
    /// An empty history whose next event is `index + 1`.
    pub fn starting_after(index: u64) -> Self {
        History { events: VecDeque::new(), start: index + 1 }
    }

    /// Records an event.
    pub fn push(&mut self, e: Event) {
        if self.events.len() == HISTORY {
            if let Some(gone) = self.events.pop_front() {
                self.start = gone.index() + 1;
            }
        }
        self.events.push_back(e);
    }

    /// The first event at or after `since` that a watcher of `key` is told of (by the rules
    /// of `live`, see [`Event::concerns`]); `None`: none yet; an error when `since` is older
    /// than the history keeps.
    pub fn scan(
        &self,
        key: &str,
        recursive: bool,
        since: u64,
        live: bool,
    ) -> Result<Option<&Event>, V2Error> {
        if since < self.start {
            return Err(V2Error::new(
                EVENT_INDEX_CLEARED,
                format!("the requested history has been cleared [{}/{}]", self.start, since),
                0,
            ));
        }
        let mut newer = self.events.iter().filter(|e| e.index() >= since);
        Ok(newer.find(|e| e.concerns(key, recursive, live)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &'static str, key: &str, index: u64, prev_dir: bool) -> Event {
        let node = NodeOut { key: key.into(), modified: index, ..Default::default() };
        let prev = NodeOut { key: key.into(), dir: prev_dir, ..Default::default() };
        Event::new(action, node, Some(prev), index)
    }

    #[test]
    fn which_watchers_hear() {
        let e = ev("set", "/a/b/c", 5, false);
        for live in [true, false] {
            assert!(e.concerns("/a/b/c", false, live));
            assert!(e.concerns("/a", true, live));
            assert!(!e.concerns("/a", false, live));
            assert!(e.concerns("/", true, live));
            assert!(!e.concerns("/a/b/c/d", true, live));
            assert!(!e.concerns("/a/bb", true, live));
        }
        let hidden = ev("set", "/a/_h/c", 6, false);
        assert!(!hidden.concerns("/a", true, true));
        assert!(hidden.concerns("/a", true, false), "the history scan has no hidden filter");
        assert!(hidden.concerns("/a/_h", true, true));
        let rmdir = ev("delete", "/a", 7, true);
        assert!(rmdir.concerns("/a/b/c", false, true));
        assert!(!rmdir.concerns("/ab", false, true));
        assert!(rmdir.concerns("/ab", false, false), "etcd's scan: a plain prefix");
        assert!(!ev("delete", "/a", 7, false).concerns("/a/b", false, true));
    }

    #[test]
    fn history_scans_and_clears() {
        let mut h = History::starting_after(0);
        assert_eq!(h.scan("/a", false, 1, false).unwrap(), None);
        for i in 1..=1005u64 {
            h.push(ev("set", if i % 2 == 0 { "/a" } else { "/b" }, i, false));
        }
        let e = h.scan("/a", false, 5, false).unwrap_err();
        assert_eq!(
            (e.code, e.cause.as_str()),
            (401, "the requested history has been cleared [6/5]")
        );
        assert_eq!(h.scan("/a", false, 7, false).unwrap().map(Event::index), Some(8));
        assert_eq!(h.scan("/b", false, 1000, false).unwrap().map(Event::index), Some(1001));
        assert_eq!(h.scan("/a", false, 1006, false).unwrap(), None);
    }
}
