//! The writer's tests, with a reader of their own (independent of [`crate::read`]).

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Instant;

// ---- A reader, independent of the writer's code, checking what bbolt's Tx.Check does and
// more: metas and checksums, page ids and kinds, every page below the high-water mark
// reachable exactly once, keys strictly increasing across each tree, and each branch key
// equal to the smallest key under its child.

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadMeta {
    page_size: u32,
    root: u64,
    freelist: u64,
    hwm: u64,
    txid: u64,
}

fn read_meta(file: &[u8], slot: usize, page_size: usize) -> Result<ReadMeta, String> {
    let p = &file[slot * page_size..(slot + 1) * page_size];
    if u64_at(p, 0) != slot as u64 || u16_at(p, 8) != FLAG_META {
        return Err(format!("meta {slot}: bad header"));
    }
    let m = &p[16..];
    if u32_at(m, 0) != MAGIC || u32_at(m, 4) != VERSION || u32_at(m, 12) != 0 {
        return Err(format!("meta {slot}: bad magic/version/flags"));
    }
    if fnv1a64(&m[..56]) != u64_at(m, 56) {
        return Err(format!("meta {slot}: checksum mismatch"));
    }
    if u64_at(m, 24) != 0 {
        return Err(format!("meta {slot}: root sequence not 0"));
    }
    let meta = ReadMeta {
        page_size: u32_at(m, 8),
        root: u64_at(m, 16),
        freelist: u64_at(m, 32),
        hwm: u64_at(m, 40),
        txid: u64_at(m, 48),
    };
    if meta.txid % 2 != slot as u64 {
        return Err(format!("meta {slot}: txid {} in the wrong slot", meta.txid));
    }
    Ok(meta)
}

struct Walker<'f> {
    file: &'f [u8],
    page_size: usize,
    hwm: u64,
    seen: Vec<bool>,
}

impl<'f> Walker<'f> {
    fn mark(&mut self, id: u64, overflow: u32) -> Result<(), String> {
        for p in id..=id + u64::from(overflow) {
            if p >= self.hwm {
                return Err(format!("page {p} beyond high-water mark {}", self.hwm));
            }
            if std::mem::replace(&mut self.seen[p as usize], true) {
                return Err(format!("page {p} referenced twice"));
            }
        }
        Ok(())
    }

    /// Node at page `id`: (flags, count, bytes of the node).
    fn node(&mut self, id: u64) -> Result<(u16, usize, &'f [u8]), String> {
        let file = self.file;
        let start = id as usize * self.page_size;
        let p = file.get(start..start + self.page_size).ok_or(format!("page {id} past EOF"))?;
        if u64_at(p, 0) != id {
            return Err(format!("page {id} says it is {}", u64_at(p, 0)));
        }
        let overflow = u32_at(p, 12);
        self.mark(id, overflow)?;
        let end = start + (overflow as usize + 1) * self.page_size;
        let node = file.get(start..end).ok_or(format!("node {id} past EOF"))?;
        Ok((u16_at(p, 8), usize::from(u16_at(p, 10)), node))
    }

    /// Appends the tree's entries (flags, key, value) to `out`; returns nothing, checks all.
    fn walk(&mut self, id: u64, out: &mut Vec<(u32, &'f [u8], &'f [u8])>) -> Result<(), String> {
        let (flags, count, node) = self.node(id)?;
        let slice = |at: usize, len: usize| {
            node.get(at..at + len).ok_or(format!("page {id}: element data out of bounds"))
        };
        match flags {
            FLAG_LEAF => {
                for i in 0..count {
                    let e = HEADER + ELEM * i;
                    let (f, pos, ks, vs) = (
                        u32_at(node, e),
                        u32_at(node, e + 4) as usize,
                        u32_at(node, e + 8) as usize,
                        u32_at(node, e + 12) as usize,
                    );
                    let key = slice(e + pos, ks)?;
                    let value = slice(e + pos + ks, vs)?;
                    if let Some(&(_, prev, _)) = out.last() {
                        if prev >= key {
                            return Err(format!("page {id}: key {i} not above its predecessor"));
                        }
                    }
                    out.push((f, key, value));
                }
            }
            FLAG_BRANCH => {
                if count < 2 {
                    // bbolt's rebalancing asserts a parent has two children or more
                    return Err(format!("branch page {id} has {count} children"));
                }
                for i in 0..count {
                    let e = HEADER + ELEM * i;
                    let (pos, ks, child) = (
                        u32_at(node, e) as usize,
                        u32_at(node, e + 4) as usize,
                        u64_at(node, e + 8),
                    );
                    let key = slice(e + pos, ks)?;
                    let before = out.len();
                    self.walk(child, out)?;
                    match out.get(before) {
                        Some(&(_, first, _)) if first == key => {}
                        _ => {
                            return Err(format!(
                                "page {id}: branch key {i} is not its child's first key"
                            ))
                        }
                    }
                }
            }
            f => return Err(format!("page {id}: unexpected flags {f:#x} in a tree")),
        }
        Ok(())
    }
}

/// Reads a whole bbolt file as written here; also returns the chosen meta.
fn read_bolt(file: &[u8]) -> Result<(Vec<BoltBucket>, ReadMeta), String> {
    if file.len() < 4 * MIN_PAGE_SIZE {
        return Err("file too short".into());
    }
    let page_size = u32_at(file, 24) as usize;
    if !page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(format!("page size {page_size}"));
    }
    let m0 = read_meta(file, 0, page_size)?;
    let m1 = read_meta(file, 1, page_size)?;
    if (ReadMeta { txid: 0, ..m0 }) != (ReadMeta { txid: 0, ..m1 }) {
        return Err("the metas differ".into());
    }
    let meta = if m0.txid > m1.txid { m0 } else { m1 };
    if meta.page_size as usize != page_size || meta.hwm * page_size as u64 != file.len() as u64 {
        return Err(format!("high-water mark {} vs file length {}", meta.hwm, file.len()));
    }
    let mut w = Walker { file, page_size, hwm: meta.hwm, seen: vec![false; meta.hwm as usize] };
    w.mark(0, 0)?;
    w.mark(1, 0)?;
    let fl = meta.freelist as usize * page_size;
    let flp = file.get(fl..fl + page_size).ok_or("freelist past EOF")?;
    if u64_at(flp, 0) != meta.freelist || u16_at(flp, 8) != FLAG_FREELIST || u16_at(flp, 10) != 0 {
        return Err("freelist page is not an empty freelist".into());
    }
    w.mark(meta.freelist, u32_at(flp, 12))?;

    let mut root = Vec::new();
    w.walk(meta.root, &mut root)?;
    let mut buckets = Vec::new();
    for (flags, name, header) in root {
        if flags != BUCKET_ENTRY || header.len() != 16 {
            return Err(format!("root entry {name:?} is not a bucket header"));
        }
        let (broot, seq) = (u64_at(header, 0), u64_at(header, 8));
        if broot == 0 || seq != 0 {
            return Err(format!("bucket {name:?}: root {broot}, sequence {seq}"));
        }
        let mut entries = Vec::new();
        w.walk(broot, &mut entries)?;
        let mut items = Vec::with_capacity(entries.len());
        for (f, k, v) in entries {
            if f != 0 {
                return Err(format!("bucket {name:?}: nested bucket {k:?}"));
            }
            items.push((k.to_vec(), v.to_vec()));
        }
        buckets.push(BoltBucket { name: name.to_vec(), items });
    }
    if let Some(p) = w.seen.iter().position(|s| !s) {
        return Err(format!("page {p} unreachable"));
    }
    Ok((buckets, meta))
}

fn roundtrip(page_size: usize, buckets: &[BoltBucket]) -> (u64, ReadMeta) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let size = write_bolt(&path, page_size, buckets).unwrap();
    let file = fs::read(&path).unwrap();
    assert_eq!(size, file.len() as u64);
    let (read, meta) = read_bolt(&file).unwrap();
    assert_eq!(read, buckets);
    assert_eq!(meta.txid, 2);
    (size, meta)
}

fn bucket(name: &str, items: Vec<(Vec<u8>, Vec<u8>)>) -> BoltBucket {
    BoltBucket { name: name.as_bytes().to_vec(), items }
}

fn numbered(n: usize, value_len: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n as u64).map(|i| (i.to_be_bytes().to_vec(), vec![(i % 251) as u8; value_len])).collect()
}

#[test]
fn fnv_vectors() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn empty_database() {
    let (size, meta) = roundtrip(4096, &[]);
    // metas, freelist, the root bucket's empty leaf
    assert_eq!(size, 4 * 4096);
    assert_eq!((meta.freelist, meta.root, meta.hwm), (2, 3, 4));
    // the smallest page size still gives bbolt its 4096-byte first read
    assert_eq!(roundtrip(1024, &[]).0, 4096);
}

#[test]
fn empty_and_small_buckets() {
    let buckets = vec![
        bucket("a", vec![]),
        bucket("b", vec![(b"k".to_vec(), b"v".to_vec()), (b"l".to_vec(), vec![])]),
        bucket("c", vec![]),
    ];
    let (size, _) = roundtrip(4096, &buckets);
    // 3 bucket roots + root bucket leaf after metas and freelist
    assert_eq!(size, 7 * 4096);
}

#[test]
fn multi_level_trees() {
    // 1024-byte pages: ~25 items a leaf, ~50 children a branch: three levels.
    let buckets = vec![bucket("big", numbered(50_000, 16)), bucket("small", numbered(3, 1))];
    roundtrip(1024, &buckets);
    roundtrip(4096, &buckets);
}

#[test]
fn many_buckets() {
    // enough bucket names that the root bucket itself needs branch pages
    let buckets: Vec<BoltBucket> = (0..3000u32)
        .map(|i| BoltBucket {
            name: format!("bucket-{i:06}").into_bytes(),
            items: numbered((i % 5) as usize, 3),
        })
        .collect();
    roundtrip(1024, &buckets);
    roundtrip(4096, &buckets);
}

#[test]
fn overflow_nodes() {
    let big = |n: usize, b: u8| vec![b; n];
    let buckets = vec![
        bucket(
            "a",
            vec![
                (b"a".to_vec(), big(10, 1)),
                (b"b".to_vec(), big(100_000, 2)),
                (b"c".to_vec(), big(4096 - 32 - 1, 3)), // exactly one page with its element
                (b"d".to_vec(), big(4096 - 32, 4)),     // one byte over: two pages
                (b"e".to_vec(), big(5, 5)),
            ],
        ),
        // big keys overflow the leaves and the branch above them
        bucket(
            "k",
            (0..20u8)
                .map(|i| (big(MAX_KEY_SIZE - 20 + usize::from(i), i + 1), big(3, i)))
                .collect(),
        ),
    ];
    roundtrip(4096, &buckets);
    roundtrip(1024, &buckets);
}

#[test]
fn branch_nodes_have_two_children() {
    let key = [7u8; 100];
    for key_len in [1usize, 50, 100] {
        for n in 2..300 {
            let children: Vec<Child> =
                (0..n).map(|i| (key[..key_len].to_vec(), i as u64)).collect();
            let ends = branch_ends(1024, &children);
            assert_eq!(ends.last(), Some(&n));
            let mut start = 0;
            for &end in &ends {
                assert!(end - start >= 2, "n {n}, key {key_len}: {ends:?}");
                // only a merged trio may pass a page
                let size = HEADER + (end - start) * (ELEM + key_len);
                assert!(size <= 1024 || end - start <= 3, "n {n}: {ends:?}");
                start = end;
            }
            // Built as the children arrive, the lowest level splits the same way.
            let mut written: Vec<Vec<u64>> = Vec::new();
            let mut write = |c: &[Child]| -> std::io::Result<u64> {
                written.push(c.iter().map(|c| c.1).collect());
                Ok(1_000_000 + written.len() as u64)
            };
            let mut b = Branches::new(1024);
            for c in children {
                b.add(0, c, &mut write).unwrap();
            }
            let root = b.finish(&mut write).unwrap();
            assert_eq!(root, 1_000_000 + written.len() as u64, "the last node written is the root");
            let lowest: Vec<usize> = written
                .iter()
                .filter(|ids| ids[0] < 1_000_000)
                .scan(0, |end, ids| {
                    *end += ids.len();
                    Some(*end)
                })
                .collect();
            assert_eq!(lowest, ends, "n {n}, key {key_len}");
        }
    }
}

#[test]
fn rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let kv = |k: &[u8]| (k.to_vec(), b"v".to_vec());
    let cases: Vec<(usize, Vec<BoltBucket>)> = vec![
        (4096, vec![bucket("a", vec![kv(b"b"), kv(b"a")])]),
        (4096, vec![bucket("a", vec![kv(b"a"), kv(b"a")])]),
        (4096, vec![bucket("a", vec![kv(b"")])]),
        (4096, vec![bucket("a", vec![kv(&vec![1; MAX_KEY_SIZE + 1])])]),
        (4096, vec![bucket("", vec![])]),
        (4096, vec![bucket("b", vec![]), bucket("a", vec![])]),
        (4096, vec![bucket("a", vec![]), bucket("a", vec![])]),
        (4095, vec![]),
        (512, vec![]),
        (131_072, vec![]),
    ];
    for (page_size, buckets) in cases {
        let err = write_bolt(&path, page_size, &buckets).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{buckets:?}: {err}");
        assert!(!path.exists());
    }
}

#[test]
fn reader_catches_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    write_bolt(&path, 4096, &[bucket("a", numbered(10, 4))]).unwrap();
    let good = fs::read(&path).unwrap();
    for (at, what) in
        [(16 + 30, "meta 0"), (4096 + 16 + 50, "meta 1"), (3 * 4096 + 8, "leaf flags")]
    {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        assert!(read_bolt(&bad).is_err(), "{what}");
    }
}

/// `lo..hi` pseudo-random bytes from a seed (cheaper to generate than a byte-wise vec).
fn arb_bytes(lo: usize, hi: usize) -> impl Strategy<Value = Vec<u8>> {
    (lo..hi, any::<u64>())
        .prop_map(|(n, mut seed)| (0..n).map(|_| splitmix(&mut seed) as u8).collect())
}

fn arb_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // a small alphabet, so keys share prefixes and collide
        8 => prop::collection::vec(0u8..4, 1..10),
        3 => arb_bytes(1, 300),
        1 => arb_bytes(1000, 6000),
    ]
}

fn arb_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => arb_bytes(0, 64),
        2 => arb_bytes(0, 1500),
        1 => arb_bytes(3000, 12_000),
    ]
}

fn arb_buckets() -> impl Strategy<Value = Vec<BoltBucket>> {
    let items = prop_oneof![
        prop::collection::btree_map(arb_key(), arb_value(), 0..4),
        prop::collection::btree_map(arb_key(), arb_value(), 0..300),
    ];
    prop::collection::btree_map(arb_key(), items, 0..6).prop_map(|m: BTreeMap<_, _>| {
        m.into_iter()
            .map(|(name, items)| BoltBucket { name, items: items.into_iter().collect() })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn reads_back_what_was_written(
        buckets in arb_buckets(),
        page_size in prop_oneof![Just(1024usize), Just(4096), Just(65_536)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let size = write_bolt(&path, page_size, &buckets).unwrap();
        let file = fs::read(&path).unwrap();
        prop_assert_eq!(size, file.len() as u64);
        let (read, _) = read_bolt(&file).map_err(TestCaseError::fail)?;
        prop_assert_eq!(read, buckets);
    }
}

// ---- Sample files for checking with real bbolt and etcdctl:
// BOLT_SAMPLES_DIR=/tmp/samples cargo test -p rusted-engine --lib bolt -- --ignored --nocapture
// Each X.db comes with X.expect: "bucket <hex name>" lines, each followed by its
// "<hex key> <hex value>" lines, the form the Go checker prints.

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_expect(path: &Path, buckets: &[BoltBucket]) {
    let mut out = BufWriter::new(File::create(path).unwrap());
    for b in buckets {
        writeln!(out, "bucket {}", hex(&b.name)).unwrap();
        for (k, v) in &b.items {
            writeln!(out, "{} {}", hex(k), hex(v)).unwrap();
        }
    }
    out.flush().unwrap();
}

/// A deterministic pseudo-random sequence (splitmix64).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn revision(main: u64, sub: u64) -> Vec<u8> {
    let mut k = main.to_be_bytes().to_vec();
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    k
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An mvccpb.KeyValue (key 1, create_revision 2, mod_revision 3, version 4, value 5), so
/// that `etcdctl snapshot restore` can load the sample too.
fn key_value(key: &[u8], create: u64, modr: u64, version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(0x0a);
    varint(&mut out, key.len() as u64);
    out.extend_from_slice(key);
    for (tag, v) in [(0x10, create), (0x18, modr), (0x20, version)] {
        out.push(tag);
        varint(&mut out, v);
    }
    out.push(0x2a);
    varint(&mut out, value.len() as u64);
    out.extend_from_slice(value);
    out
}

/// An etcd backend: `key` holds `revs` revisions (main 2.., sub 0) over a few hundred keys,
/// `meta` holds the consistent index.
fn etcd_sample(revs: u64, value_len: usize) -> Vec<BoltBucket> {
    let mut seed = 7;
    let mut versions = BTreeMap::new();
    let items = (0..revs)
        .map(|i| {
            let main = i + 2;
            let key = format!("/registry/k{:04}", splitmix(&mut seed) % 500).into_bytes();
            let ver = versions.entry(key.clone()).or_insert((main, 0u64));
            ver.1 += 1;
            let value: Vec<u8> =
                (0..value_len).map(|j| b'a' + ((i as usize + j) % 26) as u8).collect();
            (revision(main, 0), key_value(&key, ver.0, main, ver.1, &value))
        })
        .collect();
    vec![
        BoltBucket { name: b"key".to_vec(), items },
        BoltBucket {
            name: b"meta".to_vec(),
            items: vec![(b"consistent_index".to_vec(), (revs + 10).to_be_bytes().to_vec())],
        },
    ]
}

#[test]
#[ignore = "writes sample files for the bbolt/etcdctl cross-check; needs BOLT_SAMPLES_DIR"]
fn write_bolt_samples() {
    let dir =
        std::path::PathBuf::from(std::env::var("BOLT_SAMPLES_DIR").expect("BOLT_SAMPLES_DIR"));
    fs::create_dir_all(&dir).unwrap();
    let mut seed = 1;
    let mut rand_bytes = |lo: usize, hi: usize| -> Vec<u8> {
        let n = lo + (splitmix(&mut seed) as usize) % (hi - lo);
        (0..n).map(|_| splitmix(&mut seed) as u8).collect()
    };
    let sorted = |m: BTreeMap<Vec<u8>, Vec<u8>>| m.into_iter().collect::<Vec<_>>();

    let mut samples: Vec<(&str, usize, Vec<BoltBucket>)> = vec![
        ("empty", 4096, vec![]),
        ("empty_buckets", 4096, vec![bucket("a", vec![]), bucket("zz", vec![])]),
        (
            "small",
            4096,
            vec![
                bucket("alpha", vec![(b"k1".to_vec(), b"v1".to_vec()), (b"k2".to_vec(), vec![])]),
                bucket("beta", numbered(40, 7)),
                bucket("gamma", vec![]),
            ],
        ),
        ("100k", 4096, vec![bucket("items", numbered(100_000, 32))]),
    ];
    let mut big = BTreeMap::new();
    for i in 0..40u32 {
        let len = if i % 3 == 0 { 100_000 } else { rand_bytes(0, 9000).len() };
        big.insert(format!("big{i:03}").into_bytes(), rand_bytes(len, len + 1));
    }
    samples.push(("big_values", 4096, vec![bucket("big", sorted(big))]));
    let mut varied = BTreeMap::new();
    while varied.len() < 3000 {
        let hi = if varied.len() % 100 == 0 { MAX_KEY_SIZE } else { 200 };
        let k = rand_bytes(1, hi);
        varied.insert(k, rand_bytes(0, 300));
    }
    let varied = sorted(varied);
    samples.push(("varied_keys", 4096, vec![bucket("varied", varied.clone())]));
    samples.push(("varied_keys_1k", 1024, vec![bucket("varied", varied)]));
    let many: Vec<BoltBucket> = (0..2000u32)
        .map(|i| BoltBucket {
            name: format!("b{i:05}").into_bytes(),
            items: numbered((i % 4) as usize, 5),
        })
        .collect();
    samples.push(("many_buckets", 4096, many));
    samples.push(("etcd", 4096, etcd_sample(5000, 40)));

    for (name, page_size, buckets) in &samples {
        let t = Instant::now();
        let size = write_bolt(&dir.join(format!("{name}.db")), *page_size, buckets).unwrap();
        println!("{name}: {size} bytes in {:?}", t.elapsed());
        write_expect(&dir.join(format!("{name}.expect")), buckets);
    }

    // Sizes and timings at 100k and 1M etcd-like items (17-byte revision keys, ~100-byte
    // values); only the 1M file's meta is kept for etcdctl, its dump would be large.
    for (name, n) in [("etcd_100k", 100_000u64), ("etcd_1m", 1_000_000)] {
        let buckets = etcd_sample(n, 60);
        let t = Instant::now();
        let size = write_bolt(&dir.join(format!("{name}.db")), 4096, &buckets).unwrap();
        println!("{name}: {n} items, {size} bytes in {:?}", t.elapsed());
        let t = Instant::now();
        let file = fs::read(dir.join(format!("{name}.db"))).unwrap();
        let (read, _) = read_bolt(&file).unwrap();
        assert!(read == buckets);
        println!("{name}: read back and checked in {:?}", t.elapsed());
    }
}
