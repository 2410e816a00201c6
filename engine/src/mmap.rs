//! The only module of this crate with `unsafe` code: the read-only memory map of the file.
//!
//! The map may be larger than the file (a reservation, so the file can grow without remapping);
//! callers only touch pages below the high-water mark of a meta they read, which the store
//! guarantees lie inside the file (the file is grown before a meta that needs the space is
//! written, and open checks that the chosen meta's pages fit the file).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

/// A read-only shared mapping of the page file.
#[derive(Debug)]
pub struct Map {
    map: Option<memmap2::Mmap>,
}

impl Map {
    /// Maps `len` bytes of `file` (zero: an empty map).
    pub fn new(file: &File, len: usize) -> io::Result<Map> {
        if len == 0 {
            return Ok(Map { map: None });
        }
        // SAFETY: memmap2 requires that the mapped file is not modified in ways that break the
        // references handed out. This store never modifies a page a reader can see: writes are
        // copy-on-write into pages that are free (unreachable from every meta an open
        // transaction holds, see `freelist`), the meta page written is the one not in use, and
        // the file only ever grows while mapped. Another process changing the file under us is
        // outside this contract (as for bbolt), which is why the store takes an exclusive lock
        // on the file (see `db::lock_file`).
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
        // Random access: no read-ahead of neighbouring pages on a miss.
        let _ = map.advise(memmap2::Advice::Random);
        Ok(Map { map: Some(map) })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Empty mapping?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
