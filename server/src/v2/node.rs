//! A v2 node (a file with a value, or a directory of children) and its JSON form: etcd's
//! `NodeExtern`, field for field, with Go's omission rules.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

/// What a node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A key with a value.
    File(String),
    /// A directory: children by name.
    Dir(BTreeMap<String, Node>),
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The full path ("/" for the root).
    pub path: String,
    /// The index that created it.
    pub created: u64,
    /// The index that last wrote it.
    pub modified: u64,
    /// When it expires (Unix nanoseconds); `None`: permanent.
    pub expire: Option<i64>,
    /// Value or children.
    pub kind: Kind,
}

impl Node {
    /// A directory at `path`.
    pub fn dir(path: String, index: u64, expire: Option<i64>) -> Self {
        Node { path, created: index, modified: index, expire, kind: Kind::Dir(BTreeMap::new()) }
    }

    /// A file at `path`.
    pub fn file(path: String, value: String, index: u64, expire: Option<i64>) -> Self {
        Node { path, created: index, modified: index, expire, kind: Kind::File(value) }
    }

    /// Is it a directory?
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    /// Is its name hidden (starts with `_`: listings leave it out)?
    pub fn is_hidden(&self) -> bool {
        name_of(&self.path).starts_with('_')
    }

    /// Its value ("" for a directory).
    pub fn value(&self) -> &str {
        match &self.kind {
            Kind::File(v) => v,
            Kind::Dir(_) => "",
        }
    }

    /// Its children (none for a file).
    pub fn children(&self) -> Option<&BTreeMap<String, Node>> {
        match &self.kind {
            Kind::Dir(c) => Some(c),
            Kind::File(_) => None,
        }
    }

    /// Its children, mutably.
    pub fn children_mut(&mut self) -> Option<&mut BTreeMap<String, Node>> {
        match &mut self.kind {
            Kind::Dir(c) => Some(c),
            Kind::File(_) => None,
        }
    }

    /// etcd's `Repr`: the node with its value or (when `recursive`) its visible children.
    pub fn repr(&self, recursive: bool, now: i64) -> NodeOut {
        let mut out = self.head(now);
        if recursive {
            out.nodes = self.listing(true, now);
        }
        out
    }

    /// etcd's `loadInternalNode`: a directory lists its visible children (each a `repr`).
    pub fn load(&self, recursive: bool, now: i64) -> NodeOut {
        let mut out = self.head(now);
        out.nodes = self.listing(recursive, now);
        out
    }

    fn listing(&self, recursive: bool, now: i64) -> Option<Vec<NodeOut>> {
        let c = self.children()?;
        Some(c.values().filter(|n| !n.is_hidden()).map(|n| n.repr(recursive, now)).collect())
    }

    fn head(&self, now: i64) -> NodeOut {
        let (expiration, ttl) = self.expiration_and_ttl(now);
        NodeOut {
            key: self.path.clone(),
            value: match &self.kind {
                Kind::File(v) => Some(v.clone()),
                Kind::Dir(_) => None,
            },
            dir: self.is_dir(),
            expiration,
            ttl,
            nodes: None,
            modified: self.modified,
            created: self.created,
        }
    }

    /// The expiration and the seconds left, rounded up (etcd's `expirationAndTTL`).
    pub fn expiration_and_ttl(&self, now: i64) -> (Option<i64>, i64) {
        match self.expire {
            None => (None, 0),
            Some(at) => {
                let left = i128::from(at) - i128::from(now);
                let secs = left / 1_000_000_000;
                let ttl = if left % 1_000_000_000 > 0 { secs + 1 } else { secs };
                (Some(at), ttl as i64)
            }
        }
    }
}

/// The last component of a path.
pub fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A node as the API shows it (etcd's `NodeExtern`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeOut {
    /// Its path ("/" for the root, shown as no key).
    pub key: String,
    /// A file's value.
    pub value: Option<String>,
    /// Is it a directory?
    pub dir: bool,
    /// When it expires (Unix nanoseconds).
    pub expiration: Option<i64>,
    /// Seconds left.
    pub ttl: i64,
    /// A directory's listing.
    pub nodes: Option<Vec<NodeOut>>,
    /// modifiedIndex.
    pub modified: u64,
    /// createdIndex.
    pub created: u64,
}

impl NodeOut {
    /// Go's JSON of it: fields in etcd's order, zero values omitted.
    pub fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        if self.key != "/" && !self.key.is_empty() {
            o.insert("key".into(), self.key.clone().into());
        }
        if let Some(v) = &self.value {
            o.insert("value".into(), v.clone().into());
        }
        if self.dir {
            o.insert("dir".into(), true.into());
        }
        if let Some(at) = self.expiration {
            o.insert("expiration".into(), rfc3339_nano(at).into());
        }
        if self.ttl != 0 {
            o.insert("ttl".into(), self.ttl.into());
        }
        if let Some(nodes) = self.nodes.as_ref().filter(|n| !n.is_empty()) {
            o.insert("nodes".into(), nodes.iter().map(NodeOut::to_json).collect());
        }
        if self.modified != 0 {
            o.insert("modifiedIndex".into(), self.modified.into());
        }
        if self.created != 0 {
            o.insert("createdIndex".into(), self.created.into());
        }
        serde_json::Value::Object(o)
    }
}

/// Go's `time.RFC3339Nano` of a UTC instant (trailing zeros of the fraction dropped).
pub fn rfc3339_nano(unix_nanos: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_nanos))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_nano_as_go() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(1_500_000_000_120_000_000), "2017-07-14T02:40:00.12Z");
        assert_eq!(rfc3339_nano(1_500_000_000_000_000_001), "2017-07-14T02:40:00.000000001Z");
    }

    #[test]
    fn ttl_rounds_up() {
        let n = Node::file("/a".into(), "v".into(), 1, Some(10_000_000_001));
        assert_eq!(n.expiration_and_ttl(0).1, 11);
        assert_eq!(n.expiration_and_ttl(1).1, 10);
        assert_eq!(n.expiration_and_ttl(20_000_000_000).1, -9);
    }

    #[test]
    fn json_omits_zero_fields() {
        let root = Node::dir("/".into(), 0, None);
        assert_eq!(root.load(false, 0).to_json().to_string(), r#"{"dir":true}"#);
        let f = Node::file("/a".into(), "".into(), 3, None);
        assert_eq!(
            f.repr(false, 0).to_json().to_string(),
            r#"{"key":"/a","value":"","modifiedIndex":3,"createdIndex":3}"#
        );
    }
}
