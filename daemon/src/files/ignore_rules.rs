//! Which paths git would ignore: `.gitignore` files at any depth, the
//! repository's `info/exclude` and the global excludes file (only the
//! `.gitignore` files outside a repository). `.git/` itself and the daemon's
//! temporary files always count as ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::disk::TEMP_PREFIX;

#[derive(Debug)]
pub struct Rules {
    root: PathBuf,
    /// By directory (workspace-relative, `""` the root): its `.gitignore`.
    dirs: HashMap<String, Gitignore>,
    repo: Vec<Gitignore>,
}

fn build(dir: &Path, file: &Path) -> Option<Gitignore> {
    if !file.is_file() {
        return None;
    }
    let mut b = GitignoreBuilder::new(dir);
    if let Some(e) = b.add(file) {
        tracing::debug!(file = %file.display(), error = %e, "part of an ignore file was not understood");
    }
    b.build().ok().filter(|g| !g.is_empty())
}

/// The `.gitignore` of a workspace-relative directory, if it has rules.
pub fn read_dir_rules(root: &Path, rel_dir: &str) -> Option<Gitignore> {
    let dir = if rel_dir.is_empty() {
        root.to_owned()
    } else {
        root.join(rel_dir)
    };
    build(&dir, &dir.join(".gitignore"))
}

/// Whether a workspace-relative path is `.git` or inside it.
pub fn is_git_internal(rel: &str) -> bool {
    rel == ".git" || rel.starts_with(".git/")
}

impl Rules {
    /// The repository-wide rules; directories' `.gitignore` files are added
    /// with `load_dir` as they are met.
    pub fn new(root: &Path) -> Rules {
        let mut repo = Vec::new();
        if let Some(git_dir) = crate::sync::git::git_dir(root) {
            if let Some(g) = build(root, &git_dir.join("info/exclude")) {
                repo.push(g);
            }
            let (global, _) = Gitignore::global();
            if !global.is_empty() {
                repo.push(global);
            }
        }
        Rules {
            root: root.to_owned(),
            dirs: HashMap::new(),
            repo,
        }
    }

    /// Sets the rules of a directory, read by `read_dir_rules`.
    pub fn insert_dir(&mut self, rel_dir: &str, rules: Gitignore) {
        self.dirs.insert(rel_dir.to_owned(), rules);
    }

    /// (Re)reads the `.gitignore` of a workspace-relative directory.
    pub fn load_dir(&mut self, rel_dir: &str) {
        match read_dir_rules(&self.root, rel_dir) {
            Some(g) => {
                self.dirs.insert(rel_dir.to_owned(), g);
            }
            None => {
                self.dirs.remove(rel_dir);
            }
        }
    }

    /// Loads the `.gitignore` files of every directory above `rel` (itself included).
    pub fn load_ancestors(&mut self, rel: &str) {
        self.load_dir("");
        let mut at = 0;
        while let Some(i) = rel[at..].find('/') {
            self.load_dir(&rel[..at + i]);
            at += i + 1;
        }
        if !rel.is_empty() {
            self.load_dir(rel);
        }
    }

    pub fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        self.check(rel, is_dir, true)
    }

    /// Like `is_ignored`, for a walk that already left out ignored
    /// directories: the parents are not matched again.
    pub fn is_ignored_in_walk(&self, rel: &str, is_dir: bool) -> bool {
        self.check(rel, is_dir, false)
    }

    fn check(&self, rel: &str, is_dir: bool, parents: bool) -> bool {
        // 1: ignored, -1: whitelisted, 0: no rule matches.
        let matched = |g: &Gitignore, p: &str| -> i8 {
            let m = if parents {
                g.matched_path_or_any_parents(p, is_dir)
            } else {
                g.matched(p, is_dir)
            };
            if m.is_ignore() {
                1
            } else if m.is_whitelist() {
                -1
            } else {
                0
            }
        };
        if is_git_internal(rel) {
            return true;
        }
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if name.starts_with(TEMP_PREFIX) {
            return true;
        }
        // Deepest `.gitignore` first: it overrides the ones above.
        let mut dir = rel;
        loop {
            dir = match dir.rfind('/') {
                Some(i) => &dir[..i],
                None if dir.is_empty() => break,
                None => "",
            };
            if let Some(g) = self.dirs.get(dir) {
                let sub = if dir.is_empty() {
                    rel
                } else {
                    &rel[dir.len() + 1..]
                };
                match matched(g, sub) {
                    1 => return true,
                    -1 => return false,
                    _ => {}
                }
            }
            if dir.is_empty() {
                break;
            }
        }
        self.repo.iter().any(|g| matched(g, rel) == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_gitignores() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("sub/deep")).unwrap();
        std::fs::write(root.join(".gitignore"), "*.log\ntarget/\n").unwrap();
        std::fs::write(root.join("sub/.gitignore"), "!keep.log\nlocal\n").unwrap();
        let mut r = Rules::new(root);
        r.load_dir("");
        r.load_dir("sub");
        assert!(r.is_ignored("a.log", false));
        assert!(r.is_ignored("target", true));
        assert!(r.is_ignored("target/debug/x", false));
        assert!(r.is_ignored("sub/deep/b.log", false));
        assert!(!r.is_ignored("sub/keep.log", false));
        assert!(r.is_ignored("sub/local", false));
        assert!(!r.is_ignored("local", false));
        assert!(!r.is_ignored("src/main.rs", false));
        assert!(r.is_ignored(".git/HEAD", false));
        assert!(r.is_ignored("sub/.workspaced-tmp-abc-x", false));
        assert!(r.is_ignored_in_walk("sub/deep/b.log", false));
        assert!(!r.is_ignored_in_walk("sub/keep.log", false));
    }
}
