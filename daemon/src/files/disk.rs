//! OS glue for files: every call acts relative to a directory handle from
//! `confine`, on a last component that is never followed. Writes are durable
//! and atomic: a temporary file in the same directory, fsync, rename over the
//! target, fsync of the directory.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fsync, unlinkat, UnlinkatFlags};

use super::oid::blob_oid;
use crate::confine::{PathError, Root};

/// Temporary files start with this, so a crash's leftovers are recognised.
pub const TEMP_PREFIX: &str = ".workspaced-tmp-";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A socket, FIFO or device: listed, never read.
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File | Kind::Other => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        }
    }
}

/// What `lstat` says about an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits.
    pub perm: u32,
    pub size: u64,
    pub ino: u64,
    pub mtime_ns: i128,
}

impl Meta {
    /// Git's mode string: `100644`, `100755`, `120000` or `040000`.
    pub fn git_mode(&self) -> &'static str {
        git_mode(self.kind, self.perm)
    }
}

pub fn git_mode(kind: Kind, perm: u32) -> &'static str {
    match kind {
        Kind::Dir => "040000",
        Kind::Symlink => "120000",
        _ if perm & 0o111 != 0 => "100755",
        _ => "100644",
    }
}

pub fn meta_of(st: &nix::sys::stat::FileStat) -> Meta {
    let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let kind = if fmt == SFlag::S_IFREG {
        Kind::File
    } else if fmt == SFlag::S_IFDIR {
        Kind::Dir
    } else if fmt == SFlag::S_IFLNK {
        Kind::Symlink
    } else {
        Kind::Other
    };
    Meta {
        kind,
        perm: st.st_mode & 0o7777,
        size: st.st_size as u64,
        ino: st.st_ino,
        mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
    }
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub fn stat_at(dir: impl AsFd, name: &str) -> Result<Option<Meta>, PathError> {
    match fstatat(dir, OsStr::new(name), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(meta_of(&st))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An entry's content as git sees it: a file's bytes, a symlink's target.
#[derive(Debug)]
pub struct Content {
    pub meta: Meta,
    pub bytes: Vec<u8>,
}

impl Content {
    pub fn oid(&self) -> String {
        blob_oid(&self.bytes)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("it is a directory")]
    IsDir,
    #[error("it is not a regular file or a symlink")]
    NotAFile,
    #[error(transparent)]
    Path(#[from] PathError),
}

impl From<Errno> for ReadError {
    fn from(e: Errno) -> Self {
        ReadError::Path(e.into())
    }
}

/// What says that a file's content may have changed: any write moves its
/// ctime, which no caller can set back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sig {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

pub fn sig_of(st: &nix::sys::stat::FileStat) -> Sig {
    Sig {
        dev: st.st_dev,
        ino: st.st_ino,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
        ctime_ns: st.st_ctime as i128 * 1_000_000_000 + st.st_ctime_nsec as i128,
    }
}

/// Written to every time it was read: no version can be named.
fn changing() -> ReadError {
    ReadError::Path(PathError::Io(std::io::Error::other(
        "the file kept changing while it was read",
    )))
}

/// An entry opened for reading: a regular file (read in bounded pieces,
/// never whole) or a symlink's target text.
#[derive(Debug)]
pub enum Opened {
    File { file: std::fs::File, meta: Meta },
    Symlink { meta: Meta, target: Vec<u8> },
}

/// Opens `name` in `dir` without following it; `None` when it does not exist.
pub fn open_at<D: AsFd>(dir: &D, name: &str) -> Result<Option<Opened>, ReadError> {
    // A regular file swapped for a symlink between stat and open is read as
    // that symlink; a bounded number of swaps, then it is refused.
    for _ in 0..8 {
        let Some(meta) = stat_at(dir, name)? else {
            return Ok(None);
        };
        match meta.kind {
            Kind::Dir => return Err(ReadError::IsDir),
            Kind::Other => return Err(ReadError::NotAFile),
            Kind::Symlink => {
                return match readlinkat(dir, OsStr::new(name)) {
                    Ok(t) => Ok(Some(Opened::Symlink {
                        meta,
                        target: t.as_bytes().to_vec(),
                    })),
                    Err(Errno::ENOENT) => Ok(None),
                    Err(Errno::EINVAL) => continue,
                    Err(e) => Err(e.into()),
                }
            }
            Kind::File => {
                let fd = match openat(
                    dir,
                    OsStr::new(name),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT) => return Ok(None),
                    Err(Errno::ELOOP) => continue,
                    Err(e) => return Err(e.into()),
                };
                let file = std::fs::File::from(fd);
                let meta = meta_of(&nix::sys::stat::fstat(&file)?);
                if meta.kind != Kind::File {
                    return Err(ReadError::NotAFile);
                }
                return Ok(Some(Opened::File { file, meta }));
            }
        }
    }
    Err(changing())
}

/// Bytes read at once by a bounded pass over a file.
pub const READ_CHUNK: usize = 64 * 1024;

/// Reads exactly `buf.len()` bytes at `offset`; false when the file ended first.
pub fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut done = 0usize;
    while done < buf.len() {
        let at = offset
            .checked_add(done as u64)
            .ok_or_else(|| std::io::Error::other("file offset overflows"))?;
        match file.read_at(&mut buf[done..], at) {
            Ok(0) => return Ok(false),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// The blob id of an open file, hashed in `READ_CHUNK` pieces, with the
/// signature it had throughout; an error when it was written to every
/// time it was read.
pub fn hash_file(file: &std::fs::File) -> Result<(String, Sig), ReadError> {
    use sha1::{Digest, Sha1};
    let mut buf = vec![0u8; READ_CHUNK];
    for _ in 0..3 {
        let before = sig_of(&nix::sys::stat::fstat(file)?);
        let mut h = Sha1::new();
        h.update(format!("blob {}\0", before.size).as_bytes());
        let mut offset = 0u64;
        let mut complete = true;
        while offset < before.size {
            let n = usize::try_from(before.size - offset).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
            let piece = &mut buf[..n];
            if !read_exact_at(file, piece, offset).map_err(PathError::Io)? {
                complete = false;
                break;
            }
            h.update(&*piece);
            offset += n as u64;
        }
        let after = sig_of(&nix::sys::stat::fstat(file)?);
        if complete && after == before {
            return Ok((hex::encode(h.finalize()), before));
        }
    }
    Err(changing())
}

/// The meta, blob id and signature of `name` in `dir`, read in bounded
/// pieces whatever its size; `None` when it does not exist.
pub fn version_at<D: AsFd>(
    dir: &D,
    name: &str,
) -> Result<Option<(Meta, String, Option<Sig>)>, ReadError> {
    Ok(match open_at(dir, name)? {
        None => None,
        Some(Opened::Symlink { meta, target }) => Some((meta, blob_oid(&target), None)),
        Some(Opened::File { file, meta }) => {
            let (oid, sig) = hash_file(&file)?;
            Some((
                Meta {
                    size: sig.size,
                    ..meta
                },
                oid,
                Some(sig),
            ))
        }
    })
}

/// Reads `name` in `dir` without following it; `None` when it does not exist.
pub fn read_at<D: AsFd>(dir: &D, name: &str) -> Result<Option<Content>, ReadError> {
    match open_at(dir, name)? {
        None => Ok(None),
        Some(Opened::Symlink { meta, target }) => Ok(Some(Content {
            meta,
            bytes: target,
        })),
        Some(Opened::File { mut file, meta }) => {
            // The size is a hint only: a sparse file may claim terabytes.
            let hint = usize::try_from(meta.size).map_or(0, |n| n.min(16 << 20));
            let mut bytes = Vec::with_capacity(hint);
            file.read_to_end(&mut bytes).map_err(PathError::Io)?;
            Ok(Some(Content { meta, bytes }))
        }
    }
}

fn temp_name(name: &str) -> String {
    let mut r = [0u8; 6];
    let _ = getrandom::fill(&mut r);
    let short: String = name.chars().take(40).collect();
    format!("{TEMP_PREFIX}{}-{short}", hex::encode(r))
}

/// A read-write handle on a directory, for fsync.
fn sync_dir(dir: &OwnedFd) -> Result<(), Errno> {
    let d = openat(
        dir,
        OsStr::new("."),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    fsync(&d)
}

/// Directories whose entries a batch changed: each is fsync'd once, before
/// the batch is answered, rather than once per file.
#[derive(Debug, Default)]
pub struct PendingDirs(std::collections::HashMap<(u64, u64), OwnedFd>);

impl PendingDirs {
    /// At most this many handles are held; past it they are synced early.
    const MAX_HELD: usize = 256;

    pub fn add(&mut self, dir: &OwnedFd) -> Result<(), PathError> {
        let st = nix::sys::stat::fstat(dir)?;
        if !self.0.contains_key(&(st.st_dev, st.st_ino)) {
            if self.0.len() >= Self::MAX_HELD {
                self.sync()?;
            }
            self.0.insert((st.st_dev, st.st_ino), dir.try_clone()?);
        }
        Ok(())
    }

    /// Fsyncs every pending directory.
    pub fn sync(&mut self) -> Result<(), PathError> {
        for (_, d) in self.0.drain() {
            sync_dir(&d)?;
        }
        Ok(())
    }
}

/// The permission bits a write of `name` gives it: an existing regular
/// file's are kept; anything else becomes 0644.
pub fn perm_for(dir: &OwnedFd, name: &str) -> Result<u32, PathError> {
    Ok(match stat_at(dir, name)? {
        Some(m) if m.kind == Kind::File => m.perm,
        _ => 0o644,
    })
}

/// A temporary file beside the file it will replace; removed when dropped
/// unless it was renamed over its target.
#[derive(Debug)]
pub struct TempFile {
    dir: OwnedFd,
    name: String,
    file: Option<std::fs::File>,
}

impl TempFile {
    /// Creates a temporary file for `target` in `dir` (mode 0600 until
    /// `finish`).
    pub fn create(dir: &OwnedFd, target: &str) -> Result<TempFile, PathError> {
        let dir = dir.try_clone()?;
        let name = temp_name(target);
        let fd = openat(
            &dir,
            OsStr::new(&name),
            // Readable too, for a hash of what was written.
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )?;
        Ok(TempFile {
            dir,
            name,
            file: Some(std::fs::File::from(fd)),
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), PathError> {
        match &mut self.file {
            Some(f) => Ok(f.write_all(bytes)?),
            None => Err(PathError::Io(std::io::Error::other(
                "the temporary file is closed",
            ))),
        }
    }

    /// The directory it is in.
    pub fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    /// The file as written so far, for a bounded re-read.
    pub fn file(&self) -> Option<&std::fs::File> {
        self.file.as_ref()
    }

    /// Gives it its final mode and makes its bytes durable.
    pub fn finish(&mut self, perm: u32) -> Result<(), PathError> {
        let Some(f) = &self.file else {
            return Err(PathError::Io(std::io::Error::other(
                "the temporary file is closed",
            )));
        };
        fchmod(f, Mode::from_bits_truncate(perm))?;
        fsync(f)?;
        Ok(())
    }

    /// Renames it over `name` in its directory, which goes to `pending`.
    pub fn rename_over(mut self, name: &str, pending: &mut PendingDirs) -> Result<(), PathError> {
        self.file = None;
        renameat(
            &self.dir,
            OsStr::new(&self.name),
            &self.dir,
            OsStr::new(name),
        )?;
        // Renamed: nothing is left to remove.
        self.name.clear();
        pending.add(&self.dir)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            let _ = unlinkat(
                &self.dir,
                OsStr::new(&self.name),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// Replaces `name` in `dir` with `bytes` atomically: temporary file, fsync,
/// rename. The directory goes to `pending` (its fsync makes the rename
/// durable). The mode of an existing regular file is kept; anything else
/// becomes 0644.
pub fn write_atomic(
    dir: &OwnedFd,
    name: &str,
    bytes: &[u8],
    pending: &mut PendingDirs,
) -> Result<(), PathError> {
    let perm = perm_for(dir, name)?;
    let mut tmp = TempFile::create(dir, name)?;
    tmp.write_all(bytes)?;
    tmp.finish(perm)?;
    tmp.rename_over(name, pending)
}

/// Removes a file or symlink (never a directory).
pub fn remove_at(dir: &OwnedFd, name: &str, pending: &mut PendingDirs) -> Result<(), PathError> {
    unlinkat(dir, OsStr::new(name), UnlinkatFlags::NoRemoveDir)?;
    pending.add(dir)
}

pub fn rename_at(
    from: &OwnedFd,
    from_name: &str,
    to: &OwnedFd,
    to_name: &str,
    pending: &mut PendingDirs,
) -> Result<(), PathError> {
    renameat(from, OsStr::new(from_name), to, OsStr::new(to_name))?;
    pending.add(to)?;
    pending.add(from)
}

/// Opens the parent of `path` inside the workspace, creating missing
/// directories one confined step at a time.
pub fn open_parent_creating<'p>(
    root: &Root,
    path: &'p str,
) -> Result<(OwnedFd, &'p str), PathError> {
    match root.open_parent(path) {
        Err(PathError::NotFound) => {}
        other => return other,
    }
    let parts: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
    for &end in &parts {
        let prefix = &path[..end];
        let (dir, name) = root.open_parent(prefix)?;
        match mkdirat(&dir, OsStr::new(name), Mode::from_bits_truncate(0o755)) {
            Ok(()) => sync_dir(&dir)?,
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    root.open_parent(path)
}

/// Creates a directory and its parents; an existing directory is fine.
pub fn mkdir_all(root: &Root, path: &str) -> Result<(), PathError> {
    let (dir, name) = open_parent_creating(root, path)?;
    match mkdirat(&dir, OsStr::new(name), Mode::from_bits_truncate(0o755)) {
        Ok(()) => sync_dir(&dir)?,
        Err(Errno::EEXIST) => {
            if stat_at(&dir, name)?.map(|m| m.kind) != Some(Kind::Dir) {
                return Err(PathError::NotADirectory);
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Removes temporary files a crash left behind, anywhere in the workspace
/// but `.git/`. Symlinks are not followed. Returns how many were removed.
pub fn remove_leftover_temps(root: &std::path::Path) -> usize {
    let mut removed = 0;
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || e.file_name() != ".git");
    for entry in walk.flatten() {
        if entry.file_type().is_file()
            && entry
                .file_name()
                .as_bytes()
                .starts_with(TEMP_PREFIX.as_bytes())
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}
