//! A reader of git's index (`.git/index`, versions 2 to 4) for the blob ids
//! git cached with each file's stat data, so listings need not hash files
//! whose stat data still matches.

use std::collections::HashMap;
use std::path::Path;

/// What the index remembers of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub mtime_s: u32,
    pub mtime_ns: u32,
    pub ino: u32,
    pub size: u32,
    pub oid: String,
}

#[derive(Debug, Default)]
pub struct Index {
    pub entries: HashMap<String, Cached>,
    /// The index file's own mtime in ns: a file modified at or after it may
    /// have changed within the same timestamp ("racy git"), so it is hashed.
    pub written_ns: i128,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn parse(b: &[u8]) -> Option<HashMap<String, Cached>> {
    if b.get(0..4)? != b"DIRC" {
        return None;
    }
    let version = be32(b, 4)?;
    if !(2..=4).contains(&version) {
        return None;
    }
    let count = be32(b, 8)? as usize;
    let mut entries = HashMap::with_capacity(count);
    let mut at = 12;
    let mut prev: Vec<u8> = Vec::new();
    for _ in 0..count {
        let start = at;
        let mtime_s = be32(b, at + 8)?;
        let mtime_ns = be32(b, at + 12)?;
        let ino = be32(b, at + 20)?;
        let size = be32(b, at + 36)?;
        let oid = hex::encode(b.get(at + 40..at + 60)?);
        let flags = u16::from_be_bytes(b.get(at + 60..at + 62)?.try_into().ok()?);
        at += 62;
        if flags & 0x4000 != 0 {
            at += 2;
        }
        let stage = (flags >> 12) & 0x3;
        let path = if version == 4 {
            // A varint of bytes to drop from the previous path, then the suffix.
            let mut strip: usize = 0;
            loop {
                let byte = *b.get(at)?;
                at += 1;
                strip = (strip << 7) | (byte & 0x7f) as usize;
                if byte & 0x80 == 0 {
                    break;
                }
                strip += 1;
            }
            let end = at + b.get(at..)?.iter().position(|c| *c == 0)?;
            let keep = prev.len().checked_sub(strip)?;
            let mut p = prev[..keep].to_vec();
            p.extend_from_slice(&b[at..end]);
            at = end + 1;
            p
        } else {
            let end = at + b.get(at..)?.iter().position(|c| *c == 0)?;
            let p = b[at..end].to_vec();
            // Entries are padded with 1 to 8 NULs to a multiple of 8.
            at = start + ((end - start) / 8 + 1) * 8;
            p
        };
        if stage == 0 {
            if let Ok(s) = String::from_utf8(path.clone()) {
                entries.insert(
                    s,
                    Cached {
                        mtime_s,
                        mtime_ns,
                        ino,
                        size,
                        oid,
                    },
                );
            }
        }
        prev = path;
    }
    Some(entries)
}

impl Index {
    /// Reads the index of a git dir; an empty index when there is none or
    /// it cannot be parsed (everything is then hashed).
    pub fn read(git_dir: &Path) -> Index {
        use std::os::unix::fs::MetadataExt;
        let path = git_dir.join("index");
        let (Ok(meta), Ok(bytes)) = (std::fs::metadata(&path), std::fs::read(&path)) else {
            return Index::default();
        };
        Index {
            entries: parse(&bytes).unwrap_or_default(),
            written_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        }
    }

    /// The cached oid of `path` if its stat data matches.
    pub fn oid_if_fresh(&self, path: &str, m: &super::disk::Meta) -> Option<&str> {
        let c = self.entries.get(path)?;
        let ns = c.mtime_s as i128 * 1_000_000_000 + c.mtime_ns as i128;
        let fresh = ns == m.mtime_ns
            && c.size == m.size as u32
            && c.ino == m.ino as u32
            && m.mtime_ns < self.written_ns;
        fresh.then_some(c.oid.as_str())
    }
}
