//! A reader of git's index (`.git/index`, versions 2 to 4) for the blob ids
//! git cached with each file's stat data, so listings need not hash files
//! whose stat data still matches. The index is a file of the workspace, so
//! it is hostile input: every length and offset is checked against the
//! bytes actually there, and a corrupt index is ignored (files are hashed).

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use sha1::{Digest, Sha1};

/// An index larger than this is not read (files are hashed instead): a
/// repository of a million files has an index of about 100 MB.
pub const MAX_INDEX_BYTES: u64 = 256 * 1024 * 1024;

/// Header, then entries of at least this many bytes, then the checksum.
const HEADER: usize = 12;
const MIN_ENTRY: usize = 62;
const CHECKSUM: usize = 20;

/// What the index remembers of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub mtime_s: u32,
    pub mtime_ns: u32,
    pub ino: u32,
    pub size: u32,
    /// The raw blob id; hex-encoded only when a listing uses it.
    pub oid: [u8; 20],
}

/// The entries of an index by path: every path in one buffer, the entries
/// sorted by path and found by binary search, so that reading an index of
/// 30,000 files costs two allocations, not one per path and a hash of each.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Entries {
    paths: String,
    /// Where each path is in `paths`, and what the index cached for it.
    list: Vec<(usize, usize, Cached)>,
}

impl Entries {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn path(&self, at: usize, len: usize) -> &str {
        self.paths.get(at..at + len).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<&Cached> {
        // git writes entries sorted by path bytes, as `str` compares.
        let i = self
            .list
            .binary_search_by(|(at, len, _)| self.path(*at, *len).cmp(path))
            .ok()?;
        self.list.get(i).map(|(_, _, c)| c)
    }
}

/// The paths of an index may take at most this many times its size: v4
/// compresses each path against the one before, so a hostile file of a few
/// bytes per entry could otherwise claim gigabytes of paths. A real index
/// holds about its own size in paths (each entry has 62 fixed bytes).
const MAX_PATHS_RATIO: usize = 8;

#[derive(Debug, Default)]
pub struct Index {
    pub entries: Entries,
    /// The index file's own mtime in ns: a file modified at or after it may
    /// have changed within the same timestamp ("racy git"), so it is hashed.
    pub written_ns: i128,
}

/// Why an index was not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("it does not start with DIRC")]
    Signature,
    #[error("version {0} is not one of 2, 3, 4")]
    Version(u32),
    #[error("it says {count} entries but its {len} bytes hold at most {max}")]
    Count { count: u32, len: usize, max: usize },
    #[error("entry {0} runs past the end of the file")]
    Truncated(u32),
    #[error("entry {0} has a path prefix longer than the path before it")]
    Prefix(u32),
    #[error("its checksum does not match its content")]
    Checksum,
    #[error("its paths take more than {MAX_PATHS_RATIO} times its {0} bytes")]
    Paths(usize),
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    Some(u32::from_be_bytes(b.get(at..end)?.try_into().ok()?))
}

/// The bytes from `at` up to the next NUL, and the offset after that NUL.
fn nul_terminated(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(at..)?;
    let len = rest.iter().position(|c| *c == 0)?;
    Some((&rest[..len], at.checked_add(len)?.checked_add(1)?))
}

/// Parses the bytes of an index: the stage-0 entries with UTF-8 paths, by
/// path. Pure, so it can be fuzzed; nothing it allocates is sized by a
/// number read from the bytes beyond what the bytes can hold.
pub fn parse(b: &[u8]) -> Result<Entries, ParseError> {
    if b.get(0..4) != Some(b"DIRC".as_slice()) {
        return Err(ParseError::Signature);
    }
    let version = be32(b, 4).ok_or(ParseError::Signature)?;
    if !(2..=4).contains(&version) {
        return Err(ParseError::Version(version));
    }
    let count = be32(b, 8).ok_or(ParseError::Signature)?;
    let max = b.len().saturating_sub(HEADER + CHECKSUM) / MIN_ENTRY;
    if count as usize > max {
        return Err(ParseError::Count {
            count,
            len: b.len(),
            max,
        });
    }
    // git writes a SHA-1 of everything before it, or zeros with
    // `index.skipHash`; any other trailer is a corrupt (or SHA-256) index.
    // The trailer follows the whole header: a shorter file (a 12-byte index
    // of no entries) is truncated, never a trailer overlapping the header.
    let body_len = b
        .len()
        .checked_sub(CHECKSUM)
        .filter(|&l| l >= HEADER)
        .ok_or(ParseError::Truncated(0))?;
    let (body, trailer) = b.split_at(body_len);
    if trailer.iter().any(|c| *c != 0) && Sha1::digest(body)[..] != *trailer {
        return Err(ParseError::Checksum);
    }
    let mut list = Vec::with_capacity(count as usize);
    let mut paths = String::new();
    let max_paths = b.len().saturating_mul(MAX_PATHS_RATIO);
    let mut at = HEADER;
    let mut prev: Vec<u8> = Vec::new();
    for n in 0..count {
        let entry = (|| {
            let start = at;
            let fixed = body.get(start..start.checked_add(MIN_ENTRY)?)?;
            let word =
                |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
            let mut oid = [0u8; 20];
            oid.copy_from_slice(&fixed[40..60]);
            let cached = Cached {
                mtime_s: word(8),
                mtime_ns: word(12),
                ino: word(20),
                size: word(36),
                oid,
            };
            let flags = u16::from_be_bytes([fixed[60], fixed[61]]);
            let mut at = start + MIN_ENTRY;
            if flags & 0x4000 != 0 {
                at = at.checked_add(2)?;
            }
            Some((cached, flags, start, at))
        })();
        let (cached, flags, start, path_at) = entry.ok_or(ParseError::Truncated(n))?;
        let stage = (flags >> 12) & 0x3;
        if version == 4 {
            // A varint of bytes to drop from the previous path, then the suffix.
            let mut strip: usize = 0;
            let mut p = path_at;
            loop {
                let byte = *body.get(p).ok_or(ParseError::Truncated(n))?;
                p += 1;
                strip = strip
                    .checked_mul(128)
                    .and_then(|s| s.checked_add((byte & 0x7f) as usize))
                    .ok_or(ParseError::Prefix(n))?;
                if byte & 0x80 == 0 {
                    break;
                }
                strip = strip.checked_add(1).ok_or(ParseError::Prefix(n))?;
            }
            let (suffix, next) = nul_terminated(body, p).ok_or(ParseError::Truncated(n))?;
            let keep = prev.len().checked_sub(strip).ok_or(ParseError::Prefix(n))?;
            prev.truncate(keep);
            prev.extend_from_slice(suffix);
            at = next;
        } else {
            let (path, next) = nul_terminated(body, path_at).ok_or(ParseError::Truncated(n))?;
            prev.clear();
            prev.extend_from_slice(path);
            // Entries are padded with 1 to 8 NULs to a multiple of 8.
            at = start
                .checked_add(((next - 1 - start) / 8 + 1) * 8)
                .ok_or(ParseError::Truncated(n))?;
            if at > body.len() {
                return Err(ParseError::Truncated(n));
            }
        }
        if stage == 0 {
            if let Ok(s) = std::str::from_utf8(&prev) {
                if paths.len().saturating_add(s.len()) > max_paths {
                    return Err(ParseError::Paths(b.len()));
                }
                list.push((paths.len(), s.len(), cached));
                paths.push_str(s);
            }
        }
    }
    // Sorted by git; a file that is not is sorted here rather than trusted.
    let mut entries = Entries { paths, list };
    let sorted = entries
        .list
        .windows(2)
        .all(|w| entries.path(w[0].0, w[0].1) <= entries.path(w[1].0, w[1].1));
    if !sorted {
        let Entries { paths, list } = &mut entries;
        list.sort_by(|a, b| {
            let key = |e: &(usize, usize, Cached)| paths.get(e.0..e.0 + e.1).unwrap_or_default();
            key(a).cmp(key(b))
        });
    }
    Ok(entries)
}

/// Reads the index file: a regular file (never a FIFO or a device, never
/// followed if a symlink), at most `MAX_INDEX_BYTES`.
fn read_file(path: &Path) -> std::io::Result<Option<(Vec<u8>, i128)>> {
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    if meta.len() > MAX_INDEX_BYTES {
        return Err(std::io::Error::other(format!(
            "it is {} bytes; at most {MAX_INDEX_BYTES} are read",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // A file that grows while it is read is cut at the cap, and then
    // fails its checksum.
    f.take(MAX_INDEX_BYTES).read_to_end(&mut bytes)?;
    let written_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
    Ok(Some((bytes, written_ns)))
}

impl Index {
    /// Reads the index of a git dir; an empty index when there is none, or
    /// when it cannot be read or parsed (with a warning): everything is
    /// then hashed.
    pub fn read(git_dir: &Path) -> Index {
        let path = git_dir.join("index");
        let parsed = read_file(&path).map(|r| r.map(|(b, w)| (parse(&b), w)));
        match parsed {
            Ok(None) => Index::default(),
            Ok(Some((Ok(entries), written_ns))) => Index {
                entries,
                written_ns,
            },
            Ok(Some((Err(e), _))) => {
                tracing::warn!(index = %path.display(), error = %e, "the git index is corrupt; hashing files instead");
                Index::default()
            }
            Err(e) => {
                tracing::warn!(index = %path.display(), error = %e, "cannot read the git index; hashing files instead");
                Index::default()
            }
        }
    }

    /// The cached oid of `path` if its stat data matches.
    pub fn oid_if_fresh(&self, path: &str, m: &super::disk::Meta) -> Option<&[u8; 20]> {
        let c = self.entries.get(path)?;
        let ns = c.mtime_s as i128 * 1_000_000_000 + c.mtime_ns as i128;
        let fresh = ns == m.mtime_ns
            && c.size == m.size as u32
            && c.ino == m.ino as u32
            && m.mtime_ns < self.written_ns;
        fresh.then_some(&c.oid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index as git writes it (version 2), with a valid checksum.
    fn index(version: u32, paths: &[&str]) -> Vec<u8> {
        let mut b = b"DIRC".to_vec();
        b.extend(version.to_be_bytes());
        b.extend((paths.len() as u32).to_be_bytes());
        let mut prev: &str = "";
        for (i, p) in paths.iter().enumerate() {
            let start = b.len();
            let mut fixed = [0u8; 62];
            fixed[8..12].copy_from_slice(&(1000 + i as u32).to_be_bytes());
            fixed[36..40].copy_from_slice(&(i as u32).to_be_bytes());
            fixed[40..60].copy_from_slice(&[i as u8; 20]);
            fixed[60..62].copy_from_slice(&(p.len() as u16).to_be_bytes());
            b.extend(fixed);
            if version == 4 {
                let common = prev
                    .bytes()
                    .zip(p.bytes())
                    .take_while(|(a, c)| a == c)
                    .count();
                b.push((prev.len() - common) as u8);
                b.extend(&p.as_bytes()[common..]);
                b.push(0);
            } else {
                b.extend(p.as_bytes());
                let pad = 8 - (b.len() - start) % 8;
                b.extend(std::iter::repeat_n(0, pad));
            }
            prev = p;
        }
        let sum = Sha1::digest(&b);
        b.extend(sum);
        b
    }

    #[test]
    fn reads_versions_2_and_4() {
        for v in [2, 4] {
            let e = parse(&index(v, &["a/b.txt", "a/bc.txt", "z"])).unwrap();
            assert_eq!(e.len(), 3, "version {v}");
            assert_eq!(e.get("a/bc.txt").unwrap().oid, [1u8; 20]);
            assert_eq!(e.get("z").unwrap().size, 2);
            assert_eq!(e.get("a/b.txt").unwrap().mtime_s, 1000);
            assert_eq!(e.get("a"), None);
        }
    }

    #[test]
    fn an_unsorted_index_is_found_by_path_all_the_same() {
        let e = parse(&index(2, &["z", "a/b.txt", "m"])).unwrap();
        assert_eq!(e.get("z").unwrap().size, 0);
        assert_eq!(e.get("a/b.txt").unwrap().size, 1);
        assert_eq!(e.get("m").unwrap().size, 2);
    }

    #[test]
    fn paths_that_grow_past_the_files_size_are_refused() {
        // Version 4 keeps each path's prefix from the one before: a long
        // first path then entries that each keep it all and add one byte
        // make gigabytes of paths from a small file.
        let long = "p".repeat(4000);
        let paths: Vec<String> = (0..300).map(|i| format!("{long}{i:04}")).collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let b = index(4, &refs);
        assert!(paths.iter().map(String::len).sum::<usize>() > b.len() * MAX_PATHS_RATIO);
        assert_eq!(parse(&b), Err(ParseError::Paths(b.len())));
        // The same paths as version 2 hold themselves: read.
        assert_eq!(parse(&index(2, &refs)).unwrap().len(), 300);
    }

    #[test]
    fn a_huge_count_in_12_bytes_is_refused_without_allocating() {
        let mut b = b"DIRC".to_vec();
        b.extend(2u32.to_be_bytes());
        b.extend(u32::MAX.to_be_bytes());
        assert!(matches!(parse(&b), Err(ParseError::Count { .. })));
    }

    #[test]
    fn a_header_of_no_entries_without_its_trailer_is_an_error() {
        // The replayed fuzz corpus found it: the trailer's offset underflowed.
        let mut b = b"DIRC".to_vec();
        b.extend(2u32.to_be_bytes());
        b.extend(0u32.to_be_bytes());
        for extra in 0..CHECKSUM {
            let mut short = b.clone();
            short.extend(std::iter::repeat_n(0u8, extra));
            assert!(parse(&short).is_err(), "{} bytes", short.len());
        }
    }

    #[test]
    fn truncated_garbage_and_bad_checksums_are_errors() {
        let good = index(2, &["one", "two/three"]);
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = good.clone();
        bad[30] ^= 1;
        assert_eq!(parse(&bad), Err(ParseError::Checksum));
        assert_eq!(
            parse(b"garbage garbage garbage"),
            Err(ParseError::Signature)
        );
        let mut v9 = good.clone();
        v9[7] = 9;
        assert_eq!(parse(&v9), Err(ParseError::Version(9)));
    }

    #[test]
    fn hostile_lengths_with_a_skipped_hash_are_errors() {
        // `index.skipHash` leaves the trailer zero: the structure alone
        // must then stop a hostile file.
        let mut b = index(4, &["abc", "abd"]);
        let len = b.len();
        b[len - 20..].fill(0);
        assert!(parse(&b).is_ok());
        // A prefix to strip longer than the previous path.
        let mut p = b.clone();
        let second_varint = 12 + 62 + 1 + "abc\0".len() + 62;
        p[second_varint] = 0x7f;
        assert_eq!(parse(&p), Err(ParseError::Prefix(1)));
        assert!(parse(&p).is_err());
        // A varint that would overflow.
        let mut p = b.clone();
        p.truncate(12 + 62);
        p.extend([0xff; 16]);
        p.extend([0u8; 80]);
        assert_eq!(parse(&p), Err(ParseError::Prefix(0)));
        // A path without its NUL.
        let mut p = index(2, &["x"]);
        let len = p.len();
        p[len - 20..].fill(0);
        p[12 + 62 + 1..len - 20].fill(b'y');
        assert!(parse(&p).is_err());
    }
}
