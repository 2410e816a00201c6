//! A checking reader for bbolt database files (etcd's backend and snapshot format, laid out
//! as documented at the top of [`crate`]). It is what `rustedctl snapshot status` uses to
//! hash a snapshot: it opens the newest valid meta page, then walks the root bucket and every
//! bucket below it, checking as it goes what bbolt's `Tx.Check` checks (every page below the
//! high-water mark reached exactly once or listed free, page ids and kinds, keys in order) and
//! that every offset stays inside its node. The file is untrusted: any inconsistency is an
//! error, never a panic or an unbounded allocation.
//!
//! Pages are read one node at a time with positional reads, so memory stays at one node per
//! tree level whatever the file's size.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{
    fnv1a64, BUCKET_ENTRY, ELEM, FLAG_BRANCH, FLAG_FREELIST, FLAG_LEAF, FLAG_META, HEADER, MAGIC,
    MAX_PAGE_SIZE, MIN_PAGE_SIZE, VERSION,
};

/// Bucket header size in a bucket entry's value (root page id, sequence).
const BUCKET_HEADER: usize = 16;
/// Deepest nesting followed, counting every tree level and every bucket inside a bucket on
/// the way down (a tree of 1 KiB pages holding the largest file has a few dozen levels;
/// anything deeper is a crafted or corrupt file, and would otherwise exhaust the stack).
const MAX_DEPTH: usize = 128;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BoltReadError {
    /// Reading the file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The file is not a valid bbolt database.
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, BoltReadError>;

fn invalid<T>(m: String) -> Result<T> {
    Err(BoltReadError::Invalid(m))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// What [`BoltReader::scan`] reports, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoltEvent<'a> {
    /// A bucket begins; its items (and buckets inside it) follow.
    Bucket {
        /// 1 for a top-level bucket, 2 for one inside it, and so on.
        depth: usize,
        /// Its name.
        name: &'a [u8],
    },
    /// An item of the bucket last begun at this depth.
    Item(BoltItem<'a>),
}

/// The meta page a reader opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoltMeta {
    /// Page size in bytes.
    pub page_size: usize,
    /// Root bucket's root page.
    pub root: u64,
    /// Freelist page (`u64::MAX` when the freelist is not stored).
    pub freelist: u64,
    /// High-water mark: pages in use.
    pub hwm: u64,
    /// Transaction id.
    pub txid: u64,
}

/// An open bbolt file.
#[derive(Debug)]
pub struct BoltReader {
    file: File,
    meta: BoltMeta,
}

/// One item of a bucket, as `Bucket.ForEach` yields it: a nested bucket has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoltItem<'a> {
    /// 1 for an item of a top-level bucket, 2 for one of a bucket inside it, and so on.
    pub depth: usize,
    /// The bucket's name (the path of names for nested buckets is not kept).
    pub bucket: &'a [u8],
    /// The key.
    pub key: &'a [u8],
    /// The value; `None` for a nested bucket.
    pub value: Option<&'a [u8]>,
}

fn parse_meta(page: &[u8], slot: u64) -> Option<BoltMeta> {
    if u64_at(page, 0) != slot || u16_at(page, 8) != FLAG_META {
        return None;
    }
    let m = page.get(HEADER..HEADER + 64)?;
    if u32_at(m, 0) != MAGIC || u32_at(m, 4) != VERSION || fnv1a64(&m[..56]) != u64_at(m, 56) {
        return None;
    }
    let page_size = u32_at(m, 8) as usize;
    if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) || !page_size.is_power_of_two() {
        return None;
    }
    Some(BoltMeta {
        page_size,
        root: u64_at(m, 16),
        freelist: u64_at(m, 32),
        hwm: u64_at(m, 40),
        txid: u64_at(m, 48),
    })
}

/// etcd's refusal of a file whose walk found `problems` (`None` when there are none).
pub fn integrity_error(problems: &[String]) -> Option<String> {
    (!problems.is_empty()).then(|| {
        format!(
            "snapshot file integrity check failed. {} errors found.\n{}",
            problems.len(),
            problems.join("\n")
        )
    })
}

impl BoltReader {
    /// Opens `path` with its newest valid meta page.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut first = vec![0u8; HEADER + 64];
        if len < first.len() as u64 {
            return invalid("invalid database".into());
        }
        file.read_exact_at(&mut first, 0)?;
        let m0 = parse_meta(&first, 0);
        // Meta 1 sits one page in: its page size is meta 0's, or any size bbolt allows.
        let sizes: Vec<usize> = match m0 {
            Some(m) => vec![m.page_size],
            None => (10..=16).map(|s| 1usize << s).collect(),
        };
        let mut m1 = None;
        for ps in sizes {
            let mut page = vec![0u8; HEADER + 64];
            if len >= (ps + page.len()) as u64 && file.read_exact_at(&mut page, ps as u64).is_ok() {
                if let Some(m) = parse_meta(&page, 1).filter(|m| m.page_size == ps) {
                    m1 = Some(m);
                    break;
                }
            }
        }
        let meta = match (m0, m1) {
            (Some(a), Some(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return invalid("invalid database".into()),
        };
        if meta.hwm < 2 || meta.root < 2 || meta.root >= meta.hwm {
            return invalid(format!(
                "invalid database: root page {} and high-water mark {}",
                meta.root, meta.hwm
            ));
        }
        let need = meta.hwm.checked_mul(meta.page_size as u64);
        if need.is_none_or(|n| n > len) {
            return invalid(format!(
                "file size too small: {len} bytes for {} pages of {}",
                meta.hwm, meta.page_size
            ));
        }
        Ok(BoltReader { file, meta })
    }

    /// The meta page in use.
    pub fn meta(&self) -> BoltMeta {
        self.meta
    }

    /// The database's logical size (`Tx.Size`): high-water mark × page size.
    pub fn size(&self) -> u64 {
        self.meta.hwm * self.meta.page_size as u64
    }

    /// Walks every bucket under the root (depth first, keys in order), calling `f` for each
    /// bucket (before its items, even when it has none) and each item, and checks the whole
    /// file as it goes. Returns the integrity problems found (empty
    /// when the file is sound); a file too broken to walk is an error.
    pub fn scan(&self, mut f: impl FnMut(BoltEvent<'_>)) -> Result<Vec<String>> {
        let mut w = Walk {
            r: self,
            seen: vec![false; usize::try_from(self.meta.hwm).unwrap_or(usize::MAX)],
            problems: Vec::new(),
            level: 0,
        };
        w.seen[0] = true;
        w.seen[1] = true;
        if self.meta.freelist != u64::MAX {
            w.freelist()?;
        }
        w.tree(self.meta.root, b"", &mut |_, key, flags, value, w| {
            if flags & BUCKET_ENTRY == 0 {
                w.problems.push(format!("root bucket entry {:?} is not a bucket", key));
                return Ok(());
            }
            w.bucket(key, value, 1, &mut f)
        })?;
        // Without a stored freelist (bbolt's NoFreelistSync, as etcd runs it) the free pages
        // are exactly the unreachable ones; with one, every page must be reached or listed.
        if self.meta.freelist != u64::MAX {
            for (id, seen) in w.seen.iter().enumerate() {
                if !seen {
                    w.problems.push(format!("page {id}: unreachable unfreed"));
                }
            }
        }
        Ok(w.problems)
    }
}

type Visit<'v> = dyn FnMut(&[u8], &[u8], u32, &[u8], &mut Walk<'_>) -> Result<()> + 'v;

struct Walk<'r> {
    r: &'r BoltReader,
    seen: Vec<bool>,
    problems: Vec<String>,
    /// Current recursion depth (trees and nested buckets).
    level: usize,
}

impl Walk<'_> {
    /// Reads node `id` (with its overflow pages) and marks its pages as reached.
    fn node(&mut self, id: u64) -> Result<(u16, usize, Vec<u8>)> {
        let ps = self.r.meta.page_size;
        if id < 2 || id >= self.r.meta.hwm {
            return invalid(format!("page {id}: out of bounds: {}", self.r.meta.hwm));
        }
        let mut head = [0u8; HEADER];
        self.r.file.read_exact_at(&mut head, id * ps as u64)?;
        if u64_at(&head, 0) != id {
            return invalid(format!("page {id}: invalid page id {}", u64_at(&head, 0)));
        }
        let overflow = u64::from(u32_at(&head, 12));
        if id + overflow >= self.r.meta.hwm {
            return invalid(format!("page {id}: overflow {overflow} past the high-water mark"));
        }
        for p in id..=id + overflow {
            if std::mem::replace(&mut self.seen[p as usize], true) {
                return invalid(format!("page {p}: multiple references"));
            }
        }
        let mut node = vec![0u8; (overflow as usize + 1) * ps];
        self.r.file.read_exact_at(&mut node, id * ps as u64)?;
        Ok((u16_at(&head, 8), usize::from(u16_at(&head, 10)), node))
    }

    fn freelist(&mut self) -> Result<()> {
        let id = self.r.meta.freelist;
        let (flags, count, node) = self.node(id)?;
        if flags != FLAG_FREELIST {
            return invalid(format!("page {id}: invalid freelist page type {flags:#x}"));
        }
        let (count, first) =
            if count == 0xFFFF { (u64_at(&node, HEADER) as usize, 1) } else { (count, 0) };
        for i in 0..count {
            let at = HEADER + 8 * (first + i);
            if at + 8 > node.len() {
                return invalid(format!("page {id}: freelist count {count} past the page"));
            }
            let free = u64_at(&node, at);
            match self.seen.get_mut(free as usize) {
                Some(s) if free >= 2 => {
                    if std::mem::replace(s, true) {
                        self.problems.push(format!("page {free}: already freed"));
                    }
                }
                _ => self.problems.push(format!("page {free}: freed page out of bounds")),
            }
        }
        Ok(())
    }

    /// Walks the bucket whose header is `value`, giving its items to `f`.
    fn bucket(
        &mut self,
        name: &[u8],
        value: &[u8],
        depth: usize,
        f: &mut dyn FnMut(BoltEvent<'_>),
    ) -> Result<()> {
        self.nested(|w| w.bucket_at(name, value, depth, f))
    }

    /// Runs `step` one level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested(&mut self, step: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        self.level += 1;
        let r = if self.level > MAX_DEPTH {
            invalid(format!("trees and buckets nested more than {MAX_DEPTH} deep"))
        } else {
            step(self)
        };
        self.level -= 1;
        r
    }

    fn bucket_at(
        &mut self,
        name: &[u8],
        value: &[u8],
        depth: usize,
        f: &mut dyn FnMut(BoltEvent<'_>),
    ) -> Result<()> {
        if value.len() < BUCKET_HEADER {
            return invalid(format!(
                "bucket {:?}: header too short",
                String::from_utf8_lossy(name)
            ));
        }
        let root = u64_at(value, 0);
        f(BoltEvent::Bucket { depth, name });
        let mut visit = |bucket: &[u8], key: &[u8], flags: u32, v: &[u8], w: &mut Walk<'_>| {
            if flags & BUCKET_ENTRY != 0 {
                f(BoltEvent::Item(BoltItem { depth, bucket, key, value: None }));
                w.bucket(key, v, depth + 1, &mut *f)
            } else {
                f(BoltEvent::Item(BoltItem { depth, bucket, key, value: Some(v) }));
                Ok(())
            }
        };
        if root == 0 {
            // An inline bucket: its one leaf page follows the header inside the value.
            let page = value[BUCKET_HEADER..].to_vec();
            if u16_at(&page, 8) != FLAG_LEAF {
                return invalid(format!(
                    "inline bucket {:?}: not a leaf page",
                    String::from_utf8_lossy(name)
                ));
            }
            let count = usize::from(u16_at(&page, 10));
            let mut prev: Option<Vec<u8>> = None;
            return self.leaf(0, &page, count, name, &mut prev, &mut visit);
        }
        self.tree(root, name, &mut visit)
    }

    /// Walks the tree rooted at `root`, calling `visit` for each leaf element in key order.
    fn tree(&mut self, root: u64, name: &[u8], visit: &mut Visit<'_>) -> Result<()> {
        let mut prev: Option<Vec<u8>> = None;
        self.subtree(root, name, &mut prev, visit)
    }

    fn subtree(
        &mut self,
        id: u64,
        name: &[u8],
        prev: &mut Option<Vec<u8>>,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        self.nested(|w| w.subtree_at(id, name, prev, visit))
    }

    fn subtree_at(
        &mut self,
        id: u64,
        name: &[u8],
        prev: &mut Option<Vec<u8>>,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        let (flags, count, node) = self.node(id)?;
        match flags {
            FLAG_LEAF => self.leaf(id, &node, count, name, prev, visit),
            FLAG_BRANCH => {
                for i in 0..count {
                    let e = HEADER + ELEM * i;
                    if e + ELEM > node.len() {
                        return invalid(format!("page {id}: branch element {i} out of bounds"));
                    }
                    let (pos, ks, child) = (
                        u32_at(&node, e) as usize,
                        u32_at(&node, e + 4) as usize,
                        u64_at(&node, e + 8),
                    );
                    let Some(key) = node.get(e + pos..e + pos + ks) else {
                        return invalid(format!("page {id}: branch element {i} out of bounds"));
                    };
                    if prev.as_deref().is_some_and(|p| p >= key) {
                        self.problems.push(format!("page {id}: keys out of order"));
                    }
                    self.subtree(child, name, prev, visit)?;
                }
                Ok(())
            }
            other => invalid(format!("page {id}: invalid type: {other:#x}")),
        }
    }

    fn leaf(
        &mut self,
        id: u64,
        node: &[u8],
        count: usize,
        name: &[u8],
        prev: &mut Option<Vec<u8>>,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        for i in 0..count {
            let e = HEADER + ELEM * i;
            if e + ELEM > node.len() {
                return invalid(format!("page {id}: leaf element {i} out of bounds"));
            }
            let (flags, pos, ks, vs) = (
                u32_at(node, e),
                u32_at(node, e + 4) as usize,
                u32_at(node, e + 8) as usize,
                u32_at(node, e + 12) as usize,
            );
            let (Some(key), Some(value)) =
                (node.get(e + pos..e + pos + ks), node.get(e + pos + ks..e + pos + ks + vs))
            else {
                return invalid(format!("page {id}: leaf element {i} out of bounds"));
            };
            if prev.as_deref().is_some_and(|p| p >= key) {
                self.problems.push(format!("page {id}: keys out of order"));
            }
            *prev = Some(key.to_vec());
            visit(name, key, flags, value, self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{write_bolt, BoltBucket};

    fn sample(dir: &Path, n: usize) -> std::path::PathBuf {
        let path = dir.join("db");
        let items: Vec<(Vec<u8>, Vec<u8>)> =
            (0..n).map(|i| (format!("k{i:06}").into_bytes(), vec![b'v'; i % 300])).collect();
        let buckets = vec![
            BoltBucket { name: b"empty".to_vec(), items: vec![] },
            BoltBucket { name: b"key".to_vec(), items },
            BoltBucket { name: b"meta".to_vec(), items: vec![(b"x".to_vec(), b"y".to_vec())] },
        ];
        write_bolt(&path, 4096, &buckets).unwrap();
        path
    }

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 5000);
        let r = BoltReader::open(&path).unwrap();
        let mut seen = Vec::new();
        let mut buckets = Vec::new();
        let problems = r
            .scan(|ev| match ev {
                BoltEvent::Bucket { depth, name } => buckets.push((depth, name.to_vec())),
                BoltEvent::Item(it) => {
                    assert_eq!(it.depth, 1);
                    seen.push((it.bucket.to_vec(), it.key.to_vec(), it.value.map(<[u8]>::len)))
                }
            })
            .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            buckets,
            vec![(1, b"empty".to_vec()), (1, b"key".to_vec()), (1, b"meta".to_vec())]
        );
        assert_eq!(seen.len(), 5001);
        assert_eq!(seen[0], (b"key".to_vec(), b"k000000".to_vec(), Some(0)));
        assert_eq!(seen[4999].1, b"k004999".to_vec());
        assert_eq!(seen[5000], (b"meta".to_vec(), b"x".to_vec(), Some(1)));
        assert_eq!(r.size(), std::fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn damaged_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 2000);
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad");
        // Not a bbolt file at all, and a truncated one.
        std::fs::write(&bad, b"hello").unwrap();
        assert!(BoltReader::open(&bad).is_err());
        std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
        assert!(BoltReader::open(&bad).is_err());
        // Flip bytes all over the file: open and scan must return, whatever they answer.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..300 {
            let mut b = good.clone();
            for _ in 0..4 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let at = (rng % b.len() as u64) as usize;
                b[at] ^= (rng >> 32) as u8 | 1;
            }
            std::fs::write(&bad, &b).unwrap();
            if let Ok(r) = BoltReader::open(&bad) {
                let _ = r.scan(|_| {});
            }
        }
    }
}
