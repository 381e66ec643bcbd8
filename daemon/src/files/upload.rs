//! Streamed writes of one file (`PUT /api/v1/files/...`): the body goes to
//! a temporary file piece by piece while it is hashed, so a write of any size
//! holds a bounded amount of memory; the version check is made before the
//! body is read and again, under the sync lock, just before the rename.

use std::os::fd::OwnedFd;

use sha1::{Digest, Sha1};

use super::disk::{self, Kind, ReadError, Sig, TempFile};
use crate::confine::{PathError, Root};

/// What a path holds, as far as a precondition cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    Missing,
    /// A directory, socket, FIFO or device: no version.
    NotABlob,
    /// A file or symlink: its blob id, and a file's signature when read.
    Blob {
        oid: String,
        sig: Option<Sig>,
    },
}

impl Current {
    pub fn oid(&self) -> Option<&str> {
        match self {
            Current::Blob { oid, .. } => Some(oid),
            _ => None,
        }
    }
}

/// The current version of `name` in `dir`. When `seen` is a file whose
/// signature is unchanged, its oid is taken without reading it again.
pub fn current_at(dir: &OwnedFd, name: &str, seen: Option<&Current>) -> Result<Current, PathError> {
    if let Some(Current::Blob {
        sig: Some(sig),
        oid,
    }) = seen
    {
        if let Ok(st) = nix::sys::stat::fstatat(
            dir,
            std::ffi::OsStr::new(name),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            let now = disk::sig_of(&st);
            if now == *sig && disk::meta_of(&st).kind == Kind::File {
                return Ok(Current::Blob {
                    oid: oid.clone(),
                    sig: Some(now),
                });
            }
        }
    }
    match disk::version_at(dir, name) {
        Ok(None) => Ok(Current::Missing),
        Ok(Some((_, oid, sig))) => Ok(Current::Blob { oid, sig }),
        Err(ReadError::IsDir | ReadError::NotAFile) => Ok(Current::NotABlob),
        Err(ReadError::Path(e)) => Err(e),
    }
}

/// The current version of `path` (missing parents mean missing).
pub fn current(root: &Root, path: &str) -> Result<Current, PathError> {
    match root.open_parent(path) {
        Err(PathError::NotFound) => Ok(Current::Missing),
        Err(e) => Err(e),
        Ok((dir, name)) => current_at(&dir, name, None),
    }
}

/// Whether `current` is what a write expecting `base` (`None`: create
/// only) may replace.
pub fn matches(base: Option<&str>, current: &Current) -> bool {
    match (base, current) {
        (None, Current::Missing) => true,
        (Some(b), Current::Blob { oid, .. }) => oid == b,
        _ => false,
    }
}

/// A write in progress: the temporary file beside its target, and the hash
/// of what it holds when the length was announced.
#[derive(Debug)]
pub struct Upload {
    tmp: TempFile,
    /// The target's name in `tmp`'s directory.
    name: String,
    /// Hashing as the bytes come, when the length is known in advance.
    hasher: Option<(Sha1, u64)>,
    written: u64,
}

impl Upload {
    /// Starts a write of `path`, creating its missing parent directories.
    /// `length` is the body's announced length, if any.
    pub fn start(root: &Root, path: &str, length: Option<u64>) -> Result<Upload, PathError> {
        let (dir, name) = disk::open_parent_creating(root, path)?;
        let tmp = TempFile::create(&dir, name)?;
        let hasher = length.map(|n| {
            let mut h = Sha1::new();
            h.update(format!("blob {n}\0").as_bytes());
            (h, n)
        });
        Ok(Upload {
            tmp,
            name: name.to_owned(),
            hasher,
            written: 0,
        })
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), PathError> {
        self.written = self
            .written
            .checked_add(bytes.len() as u64)
            .ok_or_else(|| PathError::Io(std::io::Error::other("the body's length overflows")))?;
        self.tmp.write_all(bytes)?;
        if let Some((h, _)) = &mut self.hasher {
            h.update(bytes);
        }
        Ok(())
    }

    /// Makes the bytes durable with the mode the target will have, and
    /// names their version: (oid, size, permission bits).
    pub fn finish(mut self) -> Result<Finished, PathError> {
        let oid = match self.hasher.take() {
            Some((h, n)) if n == self.written => hex::encode(h.finalize()),
            // No announced length (or a wrong one): a bounded re-read.
            _ => {
                let file = self.tmp.file().ok_or_else(|| {
                    PathError::Io(std::io::Error::other("the temporary file is closed"))
                })?;
                match disk::hash_file(file) {
                    Ok((oid, sig)) if sig.size == self.written => oid,
                    Ok(_) => {
                        return Err(PathError::Io(std::io::Error::other(
                            "the temporary file changed while it was written",
                        )))
                    }
                    Err(ReadError::Path(e)) => return Err(e),
                    Err(e) => return Err(PathError::Io(std::io::Error::other(e.to_string()))),
                }
            }
        };
        let perm = disk::perm_for(self.tmp.dir(), &self.name)?;
        self.tmp.finish(perm)?;
        Ok(Finished {
            tmp: self.tmp,
            name: self.name,
            oid,
            size: self.written,
            perm,
        })
    }
}

/// A durable temporary file, ready to be renamed over its target.
#[derive(Debug)]
pub struct Finished {
    pub tmp: TempFile,
    pub name: String,
    pub oid: String,
    pub size: u64,
    pub perm: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::oid::blob_oid;

    #[test]
    fn hashes_with_and_without_a_length_and_cleans_up() {
        let ws = tempfile::tempdir().unwrap();
        let root = Root::open(ws.path()).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for length in [Some(data.len() as u64), None, Some(3)] {
            let mut u = Upload::start(&root, "d/f", length).unwrap();
            for piece in data.chunks(7000) {
                u.write(piece).unwrap();
            }
            let f = u.finish().unwrap();
            assert_eq!(f.oid, blob_oid(&data), "{length:?}");
            assert_eq!(f.size, data.len() as u64);
            // Dropped without a rename: no temporary file is left.
            drop(f);
            let left: Vec<_> = std::fs::read_dir(ws.path().join("d")).unwrap().collect();
            assert!(left.is_empty(), "{left:?}");
        }
    }

    #[test]
    fn preconditions() {
        let blob = Current::Blob {
            oid: "a".into(),
            sig: None,
        };
        assert!(matches(None, &Current::Missing));
        assert!(!matches(None, &blob));
        assert!(!matches(None, &Current::NotABlob));
        assert!(matches(Some("a"), &blob));
        assert!(!matches(Some("b"), &blob));
        assert!(!matches(Some("a"), &Current::Missing));
        assert!(!matches(Some("a"), &Current::NotABlob));
    }
}
