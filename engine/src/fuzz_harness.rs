//! The `pagefile_open` fuzz harness, kept here so the default test suite runs it too: arbitrary
//! bytes as the page file, then open, walk every bucket forwards and backwards, look keys up,
//! run the consistency check, and (when it opened) commit a write. Ok or a clear error; a panic
//! is a bug.
#![forbid(unsafe_code)]

use std::path::Path;

use crate::{Db, DbOptions};

/// Writes `data` to `dir/db` and exercises the store over it.
pub fn pagefile_open(data: &[u8], dir: &Path) {
    let path = dir.join("db");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let opts = DbOptions { initial_mmap_size: 0, ..DbOptions::default() };
    let Ok(db) = Db::open(&path, opts) else { return };
    if let Ok(tx) = db.begin_read() {
        if let Ok(names) = tx.buckets() {
            for name in names {
                let Ok(mut c) = tx.cursor(&name) else { continue };
                let mut n = 0;
                let mut it = c.first();
                while let Ok(Some((k, _))) = it {
                    let _ = tx.get(&name, k);
                    n += 1;
                    if n > 100_000 {
                        break;
                    }
                    it = c.next();
                }
                let mut it = c.last();
                while let Ok(Some(_)) = it {
                    n += 1;
                    if n > 200_000 {
                        break;
                    }
                    it = c.prev();
                }
                let _ = c.seek(b"m");
            }
        }
    }
    let _ = db.check();
    let tx = db.begin_write();
    if let Ok(mut tx) = tx {
        let _ = tx.create_bucket_if_missing(b"fuzz");
        let _ = tx.put(b"fuzz", b"k", b"v");
        let _ = tx.commit();
    }
}
