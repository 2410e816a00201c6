//! The range permission cache: for each user, the key ranges its roles may read and write,
//! merged into disjoint sorted intervals, so a check is a binary search, not a scan of every
//! permission (etcd's range_perm_cache).
//!
//! A permission `(key, range_end)` covers: `range_end` empty — the single key `key`;
//! `range_end` = `"\0"` — every key from `key` on; otherwise `[key, range_end)`. A request for
//! a range is allowed only if the union of the user's intervals covers all of it.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use rusted_proto::authpb::permission::Type;
use rusted_proto::authpb::{Role, User};

/// The end of an interval: a key (exclusive) or past every key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// Exclusive end key.
    Key(Vec<u8>),
    /// Past every key.
    Inf,
}

/// The interval a permission or request `(key, range_end)` names.
pub fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    let end = match range_end {
        [] => {
            let mut k = key.to_vec();
            k.push(0);
            End::Key(k)
        }
        [0] => End::Inf,
        e => End::Key(e.to_vec()),
    };
    (key.to_vec(), end)
}

/// Disjoint, sorted, non-touching intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<(Vec<u8>, End)>);

impl Intervals {
    /// Merges `items` (any order, overlapping or touching) into disjoint intervals.
    pub fn merge(mut items: Vec<(Vec<u8>, End)>) -> Self {
        items.retain(|(s, e)| match e {
            End::Key(k) => s < k,
            End::Inf => true,
        });
        items.sort();
        let mut out: Vec<(Vec<u8>, End)> = Vec::with_capacity(items.len());
        for (s, e) in items {
            match out.last_mut() {
                Some((_, last_end)) if reaches(last_end, &s) => {
                    if e > *last_end {
                        *last_end = e;
                    }
                }
                _ => out.push((s, e)),
            }
        }
        Intervals(out)
    }

    /// Is every key of `[key, range_end)` (the request's form) inside the intervals?
    pub fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        let (start, mut end) = interval(key, range_end);
        // An empty request range (end at or before the key) is checked as its first key.
        if End::Key(start.clone()) >= end {
            end = interval(key, b"").1;
        }
        // The last interval starting at or before `start`.
        let i = self.0.partition_point(|(s, _)| s.as_slice() <= start.as_slice());
        if i == 0 {
            return false;
        }
        let (_, e) = &self.0[i - 1];
        let starts_inside = match e {
            End::Key(k) => start.as_slice() < k.as_slice(),
            End::Inf => true,
        };
        starts_inside && *e >= end
    }
}

/// Does an interval ending at `end` reach (overlap or touch) one starting at `start`?
fn reaches(end: &End, start: &[u8]) -> bool {
    match end {
        End::Key(k) => start <= k.as_slice(),
        End::Inf => true,
    }
}

/// What one user may read and write.
#[derive(Debug, Clone, Default)]
pub struct UserPerms {
    /// Readable ranges.
    pub read: Intervals,
    /// Writable ranges.
    pub write: Intervals,
}

/// Every user's merged permissions.
#[derive(Debug, Clone, Default)]
pub struct PermCache(HashMap<String, UserPerms>);

impl PermCache {
    /// Builds the cache from the users and roles (a role a user names that does not exist
    /// grants nothing).
    pub fn build<'a>(
        users: impl IntoIterator<Item = &'a User>,
        roles: &std::collections::BTreeMap<String, Role>,
    ) -> Self {
        let mut out = HashMap::new();
        for u in users {
            let (mut read, mut write) = (Vec::new(), Vec::new());
            for r in u.roles.iter().filter_map(|r| roles.get(r)) {
                for p in &r.key_permission {
                    let iv = interval(&p.key, &p.range_end);
                    match Type::try_from(p.perm_type) {
                        Ok(Type::Read) => read.push(iv),
                        Ok(Type::Write) => write.push(iv),
                        Ok(Type::Readwrite) => {
                            read.push(iv.clone());
                            write.push(iv);
                        }
                        Err(_) => {}
                    }
                }
            }
            let name = String::from_utf8_lossy(&u.name).into_owned();
            out.insert(
                name,
                UserPerms { read: Intervals::merge(read), write: Intervals::merge(write) },
            );
        }
        PermCache(out)
    }

    /// May `user` read (`write` false) or write all of `[key, range_end)`?
    pub fn permitted(&self, user: &str, key: &[u8], range_end: &[u8], write: bool) -> bool {
        self.0.get(user).is_some_and(|p| {
            let iv = if write { &p.write } else { &p.read };
            iv.covers(key, range_end)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn iv(k: &[u8], e: &[u8]) -> (Vec<u8>, End) {
        interval(k, e)
    }

    #[test]
    fn single_keys_prefixes_and_open_ends() {
        let p = Intervals::merge(vec![iv(b"a", b""), iv(b"c", b"e"), iv(b"x", b"\0")]);
        assert!(p.covers(b"a", b""));
        assert!(!p.covers(b"a\0", b""));
        assert!(!p.covers(b"a", b"b"));
        assert!(p.covers(b"c", b"e") && p.covers(b"d", b""));
        assert!(!p.covers(b"c", b"f") && !p.covers(b"e", b""));
        assert!(p.covers(b"x", b"\0") && p.covers(b"zzz", b"") && p.covers(b"y", b"z"));
        assert!(!p.covers(b"w", b"\0"));
    }

    #[test]
    fn touching_ranges_join() {
        let p = Intervals::merge(vec![iv(b"k", b""), iv(b"k\0", b"m"), iv(b"m", b"p")]);
        assert!(p.covers(b"k", b"p"));
        assert_eq!(p.0.len(), 1);
        let q = Intervals::merge(vec![iv(b"a", b"c"), iv(b"d", b"f")]);
        assert!(!q.covers(b"a", b"f"), "a gap at [c, d)");
    }

    #[test]
    fn the_whole_key_space() {
        let p = Intervals::merge(vec![iv(b"\0", b"\0")]);
        assert!(p.covers(b"\0", b"\0") && p.covers(b"anything", b""));
        assert!(Intervals::merge(vec![iv(b"b", b"a")]).0.is_empty(), "empty ranges grant nothing");
    }

    /// The model: walk from the request's start, jumping to the furthest end of any unmerged
    /// permission holding the current key, until past the request's end or stuck.
    fn model_covers(perms: &[(Vec<u8>, Vec<u8>)], key: &[u8], range_end: &[u8]) -> bool {
        let (mut cur, mut stop) = interval(key, range_end);
        if End::Key(cur.clone()) >= stop {
            stop = interval(key, b"").1;
        }
        loop {
            if End::Key(cur.clone()) >= stop {
                return true;
            }
            let best = perms
                .iter()
                .map(|(k, e)| interval(k, e))
                .filter(|(s, e)| s.as_slice() <= cur.as_slice() && End::Key(cur.clone()) < *e)
                .map(|(_, e)| e)
                .max();
            match best {
                None => return false,
                Some(End::Inf) => return true,
                Some(End::Key(k)) => cur = k,
            }
        }
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(b'c')], 1..3)
    }

    fn end() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![Just(vec![]), Just(vec![0u8]), key()]
    }

    proptest! {
        #[test]
        fn agrees_with_the_model(
            perms in proptest::collection::vec((key(), end()), 0..6),
            req in (key(), end()),
        ) {
            let merged = Intervals::merge(perms.iter().map(|(k, e)| interval(k, e)).collect());
            let (rk, re) = &req;
            prop_assert_eq!(merged.covers(rk, re), model_covers(&perms, rk, re), "{:?} {:?}", perms, req);
        }
    }
}
