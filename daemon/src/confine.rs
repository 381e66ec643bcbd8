//! Path confinement: the one door through which every workspace path passes
//! before any I/O. Paths are checked as text first (`invalid_path`), then
//! walked component by component from a directory handle on the workspace
//! root with `O_NOFOLLOW`, resolving each symlink by hand, so no check can be
//! raced by a symlink swapped in between the check and the use.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};

/// At most this many symlinks are followed in one path, like the kernel's `ELOOP`.
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Absolute, empty component, NUL, or `..`, raw or percent-decoded.
    #[error("invalid path: {0}")]
    Invalid(&'static str),
    /// A symlink on the way leads outside the workspace.
    #[error("the path leads outside the workspace")]
    Outside,
    #[error("no such file or directory")]
    NotFound,
    #[error("a component of the path is not a directory")]
    NotADirectory,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<Errno> for PathError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::ENOENT => PathError::NotFound,
            Errno::ENOTDIR => PathError::NotADirectory,
            Errno::ELOOP => PathError::Invalid("too many levels of symbolic links"),
            e => PathError::Io(e.into()),
        }
    }
}

fn check_text(path: &str) -> Result<(), PathError> {
    if path.contains('\0') {
        return Err(PathError::Invalid("it contains a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(PathError::Invalid(
            "it is absolute; paths are relative to the workspace root",
        ));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(PathError::Invalid("it has an empty component")),
            ".." => return Err(PathError::Invalid("it has a '..' component")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a workspace-relative path as text, in its raw and its
/// percent-decoded form, and splits it into components (`""` is the root).
pub fn components(path: &str) -> Result<Vec<&str>, PathError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    check_text(path)?;
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    if decoded != path {
        check_text(&decoded)?;
    }
    Ok(path.split('/').filter(|c| *c != ".").collect())
}

/// A handle on the workspace root.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

fn open_dir_at(dir: impl AsFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn is_symlink(fd: &OwnedFd) -> Result<bool, Errno> {
    let st = fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
}

fn is_dir(fd: &OwnedFd) -> Result<bool, Errno> {
    let st = fstat(fd)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

impl Root {
    /// Opens the workspace root (an existing, canonical directory).
    pub fn open(path: &Path) -> std::io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Walks `parts` from the root, following every symlink but keeping
    /// inside the workspace. Returns the stack of directory handles, the
    /// innermost last; `stack[0]` is the root.
    fn walk(&self, parts: &[&str]) -> Result<Vec<OwnedFd>, PathError> {
        let mut stack = vec![self.fd.try_clone()?];
        let mut pending: Vec<Vec<u8>> = parts.iter().rev().map(|p| p.as_bytes().to_vec()).collect();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            match name.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    // Only reachable through a symlink's target.
                    if stack.len() == 1 {
                        return Err(PathError::Outside);
                    }
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            let dir = stack.last().expect("root stays");
            let fd = open_dir_at(dir, OsStr::from_bytes(&name))?;
            if is_symlink(&fd)? {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP.into());
                }
                let target = readlinkat(dir, OsStr::from_bytes(&name))?;
                let target = target.as_bytes();
                if let Some(abs) = target.strip_prefix(b"/") {
                    let root = self.path.as_os_str().as_bytes();
                    let root = root.strip_prefix(b"/").unwrap_or(root);
                    let rest = if root.is_empty() {
                        Some(abs)
                    } else {
                        abs.strip_prefix(root)
                            .filter(|r| r.is_empty() || r.starts_with(b"/"))
                    };
                    let Some(rest) = rest else {
                        return Err(PathError::Outside);
                    };
                    stack.truncate(1);
                    pending.extend(rest.split(|b| *b == b'/').rev().map(<[u8]>::to_vec));
                } else {
                    pending.extend(target.split(|b| *b == b'/').rev().map(<[u8]>::to_vec));
                }
                continue;
            }
            if !is_dir(&fd)? {
                return Err(PathError::NotADirectory);
            }
            stack.push(fd);
        }
        Ok(stack)
    }

    /// Opens a directory named by a workspace-relative path: every component,
    /// the last included, is followed and must stay inside. The handle is
    /// `O_PATH`; use it as a directory for `*at` calls.
    pub fn open_dir(&self, path: &str) -> Result<OwnedFd, PathError> {
        let parts = components(path)?;
        Ok(self.walk(&parts)?.pop().expect("root stays"))
    }

    /// Opens the parent directory of a path whose last component is acted on
    /// itself (never followed): returns the parent's handle and the name.
    pub fn open_parent<'p>(&self, path: &'p str) -> Result<(OwnedFd, &'p str), PathError> {
        let parts = components(path)?;
        let Some((last, parents)) = parts.split_last() else {
            return Err(PathError::Invalid("it names the workspace root"));
        };
        let parent = self.walk(parents)?.pop().expect("root stays");
        Ok((parent, last))
    }

    /// The real path of a directory handle, for APIs that want a path (a
    /// child's working directory). Checked again to lie inside the root.
    pub fn real_path(&self, fd: &OwnedFd) -> Result<PathBuf, PathError> {
        use std::os::fd::AsRawFd;
        let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        if p.starts_with(&self.path) {
            Ok(p)
        } else {
            Err(PathError::Outside)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn text_checks() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "%2e%2e/x",
            "a//b",
            "a/\0",
            "a/%2E%2E/b",
            "a/",
        ] {
            assert!(
                matches!(components(bad), Err(PathError::Invalid(_))),
                "{bad}"
            );
        }
        assert_eq!(components("a/./b").unwrap(), vec!["a", "b"]);
        assert_eq!(components("").unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn symlinks_inside_are_followed_and_outside_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().canonicalize().unwrap().join("ws");
        std::fs::create_dir_all(root_path.join("real/sub")).unwrap();
        symlink("real", root_path.join("rel")).unwrap();
        symlink(root_path.join("real"), root_path.join("abs")).unwrap();
        symlink("/etc", root_path.join("etc")).unwrap();
        symlink("../..", root_path.join("real/up")).unwrap();
        symlink("loop", root_path.join("loop")).unwrap();
        std::fs::create_dir(tmp.path().join("wsx")).unwrap();
        symlink("../wsx", root_path.join("sibling")).unwrap();
        let root = Root::open(&root_path).unwrap();

        for ok in ["real/sub", "rel/sub", "abs/sub", ""] {
            let fd = root.open_dir(ok).unwrap();
            assert!(root.real_path(&fd).unwrap().starts_with(&root_path), "{ok}");
        }
        for out in ["etc", "etc/ssl", "real/up", "real/up/x", "sibling"] {
            assert!(
                matches!(root.open_dir(out), Err(PathError::Outside)),
                "{out}"
            );
        }
        assert!(matches!(root.open_dir("loop"), Err(PathError::Invalid(_))));
        assert!(matches!(root.open_dir("missing"), Err(PathError::NotFound)));
        let (_, name) = root.open_parent("rel/sub/file").unwrap();
        assert_eq!(name, "file");
        assert!(matches!(
            root.open_parent("etc/passwd"),
            Err(PathError::Outside)
        ));
    }
}
