//! The repository's HEAD: the commit it points to and the current branch,
//! read from the files under `.git/` (no libgit2).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub oid: Option<String>,
    pub branch: Option<String>,
}

/// The git directory of a workspace: `.git/`, or where a `.git` file points.
pub fn git_dir(root: &Path) -> Option<PathBuf> {
    let dot = root.join(".git");
    let meta = std::fs::symlink_metadata(&dot).ok()?;
    if meta.is_dir() {
        return Some(dot);
    }
    let text = std::fs::read_to_string(&dot).ok()?;
    let target = text.strip_prefix("gitdir:")?.trim();
    Some(root.join(target))
}

/// Where the refs live: the common dir of a linked worktree, else the git dir.
fn common_dir(git_dir: &Path) -> PathBuf {
    match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(t) => git_dir.join(t.trim()),
        Err(_) => git_dir.to_owned(),
    }
}

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn resolve_ref(git_dir: &Path, name: &str) -> Option<String> {
    let common = common_dir(git_dir);
    for dir in [git_dir, common.as_path()] {
        if let Ok(t) = std::fs::read_to_string(dir.join(name)) {
            let t = t.trim();
            if is_oid(t) {
                return Some(t.to_owned());
            }
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (oid, r) = l.split_once(' ')?;
        (r == name && is_oid(oid)).then(|| oid.to_owned())
    })
}

/// Reads HEAD; a repository before its first commit has no oid.
pub fn read_head(git_dir: &Path) -> Head {
    let Ok(text) = std::fs::read_to_string(git_dir.join("HEAD")) else {
        return Head::default();
    };
    let text = text.trim();
    if let Some(r) = text.strip_prefix("ref:") {
        let r = r.trim();
        Head {
            oid: resolve_ref(git_dir, r),
            branch: Some(r.strip_prefix("refs/heads/").unwrap_or(r).to_owned()),
        }
    } else if is_oid(text) {
        Head {
            oid: Some(text.to_owned()),
            branch: None,
        }
    } else {
        Head::default()
    }
}
