//! Tree listings: entries below a directory with their blob ids, reusing
//! the git index's cached ids for files whose stat data matches, and
//! leaving out what git ignores unless asked. Directories are opened
//! relative to their parent's handle, never following a symlink, and
//! walked by a few threads at once (a directory is one unit of work).

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Condvar, Mutex, RwLock};

use nix::dir::Dir;
use nix::fcntl::{readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};

use super::disk::{self, meta_of, Kind};
use super::ignore_rules::{self, Rules};
use super::index::Index;
use super::oid::blob_oid;
use super::Entry;
use crate::confine::{components, PathError, Root};
use crate::sync::git;

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub recursive: bool,
    /// Include what git ignores (and `.git/`).
    pub ignored: bool,
}

#[derive(Debug)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub head: Option<String>,
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}/{b}")
    }
}

fn open_sub(dir: &Dir, name: &CStr) -> Result<Dir, nix::Error> {
    Dir::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// A blob id in hex: one allocation of its final size (a listing makes
/// tens of thousands).
fn hex40(oid: &[u8; 20]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(40);
    for b in oid {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Threads of one recursive listing: the walk is bound by `fstatat` and
/// `getdents`, which scale with cores, like git's parallel `lstat`s.
const MAX_WALKERS: usize = 4;

/// A directory to list: its handle, its real path and its path as shown.
struct Job {
    dir: Dir,
    rel: String,
    out: String,
}

/// The work shared by the walkers: directories to list, how many are being
/// listed (the walk is over when none is queued and none is being listed),
/// and the first error, which stops it.
struct Walk<'a> {
    root: &'a std::path::Path,
    opts: Options,
    index: &'a Index,
    rules: RwLock<Rules>,
    queue: Mutex<Queue>,
    more: Condvar,
}

struct Queue {
    jobs: Vec<Job>,
    busy: usize,
    error: Option<PathError>,
}

/// Lists `path` (a directory, followed, that must stay inside).
pub fn list(root: &Root, path: &str, opts: Options) -> Result<Listing, PathError> {
    let start = root.open_dir(path)?;
    let out_prefix = components(path)?.join("/");
    let real = root.real_path(&start)?;
    let real_rel = real
        .strip_prefix(root.path())
        .map_err(|_| PathError::Outside)?
        .to_string_lossy()
        .into_owned();
    let git_dir = git::git_dir(root.path());
    let head = git_dir.as_deref().and_then(|g| git::read_head(g).oid);
    let index = git_dir.as_deref().map(Index::read).unwrap_or_default();
    let mut rules = Rules::new(root.path());
    if !opts.ignored {
        rules.load_ancestors(&real_rel);
    }
    let first = Dir::openat(
        &start,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let walk = Walk {
        root: root.path(),
        opts,
        index: &index,
        rules: RwLock::new(rules),
        queue: Mutex::new(Queue {
            jobs: vec![Job {
                dir: first,
                rel: real_rel,
                out: out_prefix,
            }],
            busy: 0,
            error: None,
        }),
        more: Condvar::new(),
    };
    let walkers = if opts.recursive {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WALKERS)
    } else {
        1
    };
    let mut entries = if walkers == 1 {
        walk.run()
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..walkers).map(|_| s.spawn(|| walk.run())).collect();
            let mut all = walk.run();
            for h in handles {
                // A walker that panicked lost its part: report it, never
                // answer with a partial tree.
                match h.join() {
                    Ok(part) => all.extend(part),
                    Err(_) => {
                        walk.fail(PathError::Io(std::io::Error::other("a tree walker failed")))
                    }
                }
            }
            all
        })
    };
    if let Some(e) = walk
        .queue
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .error
    {
        return Err(e);
    }
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(Listing { entries, head })
}

impl Walk<'_> {
    fn fail(&self, e: PathError) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.error.get_or_insert(e);
        q.jobs.clear();
        self.more.notify_all();
    }

    /// One walker: takes directories until the walk is over.
    fn run(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut subdirs = Vec::new();
        loop {
            let job = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if q.error.is_some() {
                        return entries;
                    }
                    if let Some(job) = q.jobs.pop() {
                        q.busy += 1;
                        break job;
                    }
                    if q.busy == 0 {
                        return entries;
                    }
                    q = self.more.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let result = self.list_dir(job, &mut entries, &mut subdirs);
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.busy -= 1;
            match result {
                Ok(()) => {
                    q.jobs.append(&mut subdirs);
                    self.more.notify_all();
                }
                Err(e) => {
                    q.error.get_or_insert(e);
                    q.jobs.clear();
                    self.more.notify_all();
                }
            }
        }
    }

    /// Lists one directory into `entries`; its subdirectories (when
    /// recursive) go to `subdirs`.
    fn list_dir(
        &self,
        job: Job,
        entries: &mut Vec<Entry>,
        subdirs: &mut Vec<Job>,
    ) -> Result<(), PathError> {
        let Job {
            mut dir,
            rel: rel_dir,
            out: out_dir,
        } = job;
        let opts = self.opts;
        if !opts.ignored && !rel_dir.is_empty() {
            // Read outside the lock; most directories have no `.gitignore`.
            if let Some(g) = ignore_rules::read_dir_rules(self.root, &rel_dir) {
                self.rules
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert_dir(&rel_dir, g);
            }
        }
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
        // The names, NUL-terminated, in one buffer: one allocation per
        // directory rather than one per entry.
        let mut names: Vec<u8> = Vec::new();
        for e in dir.iter().filter_map(Result::ok) {
            let n = e.file_name().to_bytes_with_nul();
            if n != b".\0" && n != b"..\0" {
                names.extend_from_slice(n);
            }
        }
        let mut rel = String::with_capacity(rel_dir.len() + 64);
        for cname in names
            .split_inclusive(|b| *b == 0)
            .filter_map(|n| CStr::from_bytes_with_nul(n).ok())
        {
            let Ok(name) = cname.to_str() else {
                tracing::debug!(dir = %rel_dir, "skipping a name that is not UTF-8");
                continue;
            };
            if name.starts_with(disk::TEMP_PREFIX) {
                continue;
            }
            rel.clear();
            if !rel_dir.is_empty() {
                rel.push_str(&rel_dir);
                rel.push('/');
            }
            rel.push_str(name);
            let meta = match fstatat(&dir, cname, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => meta_of(&st),
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let is_dir = meta.kind == Kind::Dir;
            if !opts.ignored && rules.is_ignored_in_walk(&rel, is_dir) {
                continue;
            }
            let out = if out_dir == rel_dir {
                rel.clone()
            } else {
                join(&out_dir, name)
            };
            match meta.kind {
                Kind::Dir => {
                    if opts.recursive {
                        match open_sub(&dir, cname) {
                            Ok(sub) => subdirs.push(Job {
                                dir: sub,
                                rel: rel.clone(),
                                out: out.clone(),
                            }),
                            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    entries.push(Entry {
                        path: out,
                        kind: Kind::Dir,
                        oid: None,
                        size: 0,
                        mode: "040000",
                    });
                }
                Kind::Symlink => {
                    let Ok(target) = readlinkat(&dir, OsStr::from_bytes(cname.to_bytes())) else {
                        continue;
                    };
                    let bytes = target.as_bytes();
                    entries.push(Entry {
                        path: out,
                        kind: Kind::Symlink,
                        oid: Some(blob_oid(bytes)),
                        size: bytes.len() as u64,
                        mode: "120000",
                    });
                }
                Kind::File => {
                    let (oid, size) = match self.index.oid_if_fresh(&rel, &meta) {
                        Some(oid) => (hex40(oid), meta.size),
                        // Hashed in pieces: a listing holds no file whole.
                        None => match disk::version_at(&dir, name) {
                            Ok(Some((meta, oid, _))) => (oid, meta.size),
                            Ok(None) | Err(disk::ReadError::IsDir | disk::ReadError::NotAFile) => {
                                continue
                            }
                            Err(disk::ReadError::Path(e)) => return Err(e),
                        },
                    };
                    entries.push(Entry {
                        path: out,
                        kind: Kind::File,
                        oid: Some(oid),
                        size,
                        mode: meta.git_mode(),
                    });
                }
                Kind::Other => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex40_is_lowercase_hex() {
        let mut oid = [0u8; 20];
        for (i, b) in oid.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37);
        }
        assert_eq!(hex40(&oid), hex::encode(oid));
    }
}
