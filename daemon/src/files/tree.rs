//! Tree listings: entries below a directory with their blob ids, reusing
//! the git index's cached ids for files whose stat data matches, and
//! leaving out what git ignores unless asked. Directories are opened
//! relative to their parent's handle, never following a symlink.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;

use nix::dir::Dir;
use nix::fcntl::{readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};

use super::disk::{self, meta_of, Kind};
use super::ignore_rules::Rules;
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
    let mut entries = Vec::new();
    let mut stack = vec![(first, real_rel, out_prefix)];
    while let Some((mut dir, rel_dir, out_dir)) = stack.pop() {
        if !opts.ignored && !rel_dir.is_empty() {
            rules.load_dir(&rel_dir);
        }
        let names: Vec<std::ffi::CString> = dir
            .iter()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        for cname in names {
            let Ok(name) = cname.to_str() else {
                tracing::debug!(dir = %rel_dir, "skipping a name that is not UTF-8");
                continue;
            };
            let rel = join(&rel_dir, name);
            if name.starts_with(disk::TEMP_PREFIX) {
                continue;
            }
            let meta = match fstatat(&dir, cname.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => meta_of(&st),
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let is_dir = meta.kind == Kind::Dir;
            if !opts.ignored && rules.is_ignored_in_walk(&rel, is_dir) {
                continue;
            }
            let out = join(&out_dir, name);
            match meta.kind {
                Kind::Dir => {
                    entries.push(Entry {
                        path: out.clone(),
                        kind: Kind::Dir,
                        oid: None,
                        size: 0,
                        mode: "040000",
                    });
                    if opts.recursive {
                        match open_sub(&dir, cname.as_c_str()) {
                            Ok(sub) => stack.push((sub, rel, out)),
                            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ELOOP) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Kind::Symlink => {
                    let Ok(target) = readlinkat(&dir, OsStr::from_bytes(cname.as_bytes())) else {
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
                    let (oid, size) = match index.oid_if_fresh(&rel, &meta) {
                        Some(oid) => (oid.to_owned(), meta.size),
                        None => match disk::read_at(&dir, name) {
                            Ok(Some(c)) => (c.oid(), c.bytes.len() as u64),
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
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Listing { entries, head })
}
