//! `install`: copies the tools into a new sibling of the tools dir with a
//! checksummed manifest, verifies it, then switches the tools dir (a
//! symlink) over with one rename, so a workspace sees either the old
//! complete toolset or the new one, never half of one.
//!
//! Layout for `--to /projects/.gl-tools`:
//! `/projects/.gl-tools -> .gl-tools.v-<fingerprint>` (relative symlink),
//! `/projects/.gl-tools.v-<fingerprint>/` (complete, verified versions),
//! `/projects/.gl-tools.tmp-*` (a copy in progress; removed on the next run).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::assets::Assets;

/// Where the init container image keeps the tools to install.
pub const DEFAULT_FROM: &str = "/opt/gl-tools";

/// `/opt/gl-tools` under the image root the running binary sits in: the
/// binary is `<root>/usr/local/bin/workspace-injector`, `<root>` being `/`
/// in the image and a directory laid out by `init-container/assemble.sh`
/// elsewhere. Anywhere else, [`DEFAULT_FROM`].
pub fn default_from() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let bin = exe.parent()?;
            if !bin.ends_with("usr/local/bin") {
                return None;
            }
            Some(bin.parent()?.parent()?.parent()?.join("opt/gl-tools"))
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FROM))
}
pub const MANIFEST: &str = "manifest.json";
const MANIFEST_FORMAT: u32 = 1;

/// One entry of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Entry {
    File {
        path: String,
        mode: u32,
        size: u64,
        sha256: String,
    },
    Dir {
        path: String,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. } | Entry::Dir { path } | Entry::Symlink { path, .. } => path,
        }
    }
}

/// `manifest.json`: every file with its SHA-256, and the versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Digest of the source listing (paths, sizes, modes, mtimes) and of the
    /// embedded assets: equal fingerprints mean nothing to copy.
    pub fingerprint: String,
    pub versions: BTreeMap<String, String>,
    pub files: Vec<Entry>,
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    UpToDate {
        version_dir: PathBuf,
    },
    Installed {
        version_dir: PathBuf,
        files: usize,
        bytes: u64,
    },
}

/// Why a tree does not match its manifest.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("checksum mismatch for {path}: manifest says {expected}, file has {actual}")]
    Checksum {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: {problem}")]
    Shape { path: String, problem: String },
    #[error("read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A source file or directory found while walking `--from`.
struct SourceItem {
    rel: String,
    abs: PathBuf,
    meta: fs::Metadata,
}

/// The embedded files installed beside the copied ones.
fn asset_items() -> Vec<(String, Vec<u8>, u32)> {
    let mut v: Vec<_> = Assets::iter()
        .map(|name| {
            let data = Assets::get(&name).expect("listed asset").data.into_owned();
            let mode = if name.ends_with(".sh") { 0o755 } else { 0o644 };
            (name.to_string(), data, mode)
        })
        .collect();
    v.sort();
    v
}

fn walk(root: &Path, rel: &str, out: &mut Vec<SourceItem>) -> anyhow::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .with_context(|| format!("read directory {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("read directory {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("non UTF-8 file name {n:?} in {}", dir.display()))?;
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = e
            .path()
            .symlink_metadata()
            .with_context(|| format!("stat {}", e.path().display()))?;
        let is_dir = meta.is_dir();
        out.push(SourceItem {
            rel: child.clone(),
            abs: e.path(),
            meta,
        });
        if is_dir {
            walk(root, &child, out)?;
        }
    }
    Ok(())
}

/// The source items to install: `workspaced` and `editor/` from `from`.
fn source(from: &Path) -> anyhow::Result<Vec<SourceItem>> {
    let daemon = from.join("workspaced");
    let meta = daemon
        .symlink_metadata()
        .with_context(|| format!("the daemon {} is missing", daemon.display()))?;
    let mut items = vec![SourceItem {
        rel: "workspaced".into(),
        abs: daemon,
        meta,
    }];
    let editor = from.join("editor");
    let meta = editor
        .symlink_metadata()
        .with_context(|| format!("the editor distribution {} is missing", editor.display()))?;
    if !meta.is_dir() {
        bail!("{} must be a directory", editor.display());
    }
    items.push(SourceItem {
        rel: "editor".into(),
        abs: editor.clone(),
        meta,
    });
    walk(from, "editor", &mut items)?;
    Ok(items)
}

fn fingerprint(items: &[SourceItem], versions: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(format!("format {MANIFEST_FORMAT}\n"));
    for (k, v) in versions {
        h.update(format!("version {k} {v}\n"));
    }
    for it in items {
        let target = fs::read_link(&it.abs)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        h.update(format!(
            "{}\t{:o}\t{}\t{}.{}\t{target}\n",
            it.rel,
            it.meta.mode(),
            it.meta.len(),
            it.meta.mtime(),
            it.meta.mtime_nsec()
        ));
    }
    for (name, data, mode) in asset_items() {
        h.update(format!(
            "asset {name} {mode:o} {}\n",
            hex::encode(Sha256::digest(&data))
        ));
    }
    hex::encode(h.finalize())
}

fn versions(from: &Path) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert(
        "workspace-injector".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    // Written by init-container/assemble.sh and the Containerfile.
    if let Ok(text) = fs::read_to_string(from.join("versions.json")) {
        if let Ok(extra) = serde_json::from_str::<BTreeMap<String, String>>(&text) {
            v.extend(extra);
        }
    }
    if !v.contains_key("editor") {
        let pkg = from.join("editor/package.json");
        if let Some(ver) = fs::read_to_string(pkg)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|p| {
                p.get("version")
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
            })
        {
            v.insert("editor".into(), ver);
        }
    }
    v
}

/// File modes for arbitrary UIDs in group 0: the group may read everything,
/// run what the owner may run, and (for directories) list and clean up.
fn file_mode(mode: u32) -> u32 {
    let mut m = (mode & 0o777) | 0o440;
    if m & 0o100 != 0 {
        m |= 0o010;
    }
    m
}
const DIR_MODE: u32 = 0o775;

fn copy_file(src: &Path, dst: &Path, mode: u32) -> anyhow::Result<(String, u64)> {
    let mut input = fs::File::open(src).with_context(|| format!("open {}", src.display()))?;
    let mut output = fs::File::create(dst).with_context(|| format!("create {}", dst.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = input
            .read(&mut buf)
            .with_context(|| format!("read {}", src.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .with_context(|| format!("write {}", dst.display()))?;
        size += n as u64;
    }
    output
        .set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dst.display()))?;
    Ok((hex::encode(h.finalize()), size))
}

/// Runs `f` over `items` on a few threads (copying and hashing are I/O and
/// CPU bound in turns); results come back in input order, or the first error.
fn parallel<T: Sync, R: Send, E: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
        .min(items.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut done: Vec<(usize, Result<R, E>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        let r = f(item);
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        out.push((i, r));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a copy worker panicked"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Checks every entry of `manifest` against the tree at `dir`.
pub fn verify_tree(dir: &Path, manifest: &Manifest) -> Result<(), VerifyError> {
    parallel(&manifest.files, |e| verify_entry(dir, e)).map(|_| ())
}

fn verify_entry(dir: &Path, e: &Entry) -> Result<(), VerifyError> {
    let p = dir.join(e.path());
    let io = |source| VerifyError::Io {
        path: e.path().to_string(),
        source,
    };
    let meta = p.symlink_metadata().map_err(io)?;
    let shape = |problem: &str| VerifyError::Shape {
        path: e.path().to_string(),
        problem: problem.to_string(),
    };
    match e {
        Entry::Dir { .. } if !meta.is_dir() => return Err(shape("should be a directory")),
        Entry::Symlink { target, .. } => {
            if !meta.file_type().is_symlink() {
                return Err(shape("should be a symlink"));
            }
            let actual = fs::read_link(&p).map_err(io)?;
            if actual != Path::new(target) {
                return Err(shape(&format!(
                    "symlink points at {} instead of {target}",
                    actual.display()
                )));
            }
        }
        Entry::File { sha256, size, .. } => {
            if !meta.is_file() {
                return Err(shape("should be a regular file"));
            }
            let actual = hash_file(&p).map_err(io)?;
            if &actual != sha256 {
                return Err(VerifyError::Checksum {
                    path: e.path().to_string(),
                    expected: sha256.clone(),
                    actual,
                });
            }
            if meta.len() != *size {
                return Err(shape(&format!(
                    "has {} bytes instead of {size}",
                    meta.len()
                )));
            }
        }
        Entry::Dir { .. } => {}
    }
    Ok(())
}

/// Reads the manifest of an installed tree.
pub fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let p = dir.join(MANIFEST);
    let text = fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))
}

/// The sibling paths of the tools dir `to`.
struct Siblings {
    parent: PathBuf,
    base: String,
}

impl Siblings {
    fn new(to: &Path) -> anyhow::Result<Self> {
        let base = to
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable file name", to.display()))?
            .to_string();
        let parent = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Self { parent, base })
    }
    fn version_name(&self, fp: &str) -> String {
        format!("{}.v-{}", self.base, &fp[..16])
    }
    fn tmp_prefix(&self) -> String {
        format!("{}.tmp-", self.base)
    }
    fn old_prefix(&self) -> String {
        format!("{}.v-", self.base)
    }
}

/// Removes leftovers of interrupted runs and versions no longer in use.
fn clean(sib: &Siblings, keep: Option<&str>) -> anyhow::Result<usize> {
    let mut removed = 0;
    for e in fs::read_dir(&sib.parent)
        .with_context(|| format!("read directory {}", sib.parent.display()))?
    {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let stale = name.starts_with(&sib.tmp_prefix())
            || (name.starts_with(&sib.old_prefix()) && Some(name.as_str()) != keep);
        if stale {
            let p = e.path();
            if p.symlink_metadata()?.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            }
            .with_context(|| format!("remove leftover {}", p.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Installs the tools from `from` into `to` (see the module docs).
pub fn install(from: &Path, to: &Path, verify_installed: bool) -> anyhow::Result<Outcome> {
    let sib = Siblings::new(to)?;
    fs::create_dir_all(&sib.parent).with_context(|| format!("create {}", sib.parent.display()))?;
    let items = source(from)?;
    let versions = versions(from);
    let fp = fingerprint(&items, &versions);
    let mut version_name = sib.version_name(&fp);
    let current = fs::read_link(to)
        .ok()
        .and_then(|t| t.to_str().map(str::to_string));

    // Already in place: the link points at a complete version with this fingerprint.
    if let Some(cur) = current.as_deref().filter(|c| c.starts_with(&version_name)) {
        let dir = sib.parent.join(cur);
        if let Ok(m) = read_manifest(&dir) {
            let intact = !verify_installed || verify_tree(&dir, &m).is_ok();
            if m.fingerprint == fp && intact {
                clean(&sib, Some(cur))?;
                return Ok(Outcome::UpToDate { version_dir: dir });
            }
        }
        // The version in use is damaged: install beside it, never over it.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        version_name = format!("{version_name}-{nanos}");
    }
    let version_dir = sib.parent.join(&version_name);
    clean(&sib, current.as_deref())?;

    let tmp = sib.parent.join(format!(
        "{}{}-{}",
        sib.tmp_prefix(),
        &fp[..16],
        std::process::id()
    ));
    fs::create_dir(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(DIR_MODE))?;
    // Directories and symlinks first, in order, so every file's parent exists;
    // then the files, copied and hashed on a few threads.
    let mut files = Vec::new();
    let mut bytes = 0;
    let mut to_copy = Vec::new();
    for it in &items {
        let dst = tmp.join(&it.rel);
        let ft = it.meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&it.abs)?;
            std::os::unix::fs::symlink(&target, &dst)
                .with_context(|| format!("symlink {}", dst.display()))?;
            files.push(Some(Entry::Symlink {
                path: it.rel.clone(),
                target: target.display().to_string(),
            }));
        } else if ft.is_dir() {
            fs::create_dir(&dst).with_context(|| format!("create {}", dst.display()))?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(DIR_MODE))?;
            files.push(Some(Entry::Dir {
                path: it.rel.clone(),
            }));
        } else if ft.is_file() {
            to_copy.push((files.len(), it, dst, file_mode(it.meta.mode())));
            files.push(None);
        } else {
            bail!(
                "{} is neither a file, a directory nor a symlink",
                it.abs.display()
            );
        }
    }
    let copied = parallel(&to_copy, |(_, it, dst, mode)| {
        copy_file(&it.abs, dst, *mode)
    })?;
    for ((slot, it, _, mode), (sha256, size)) in to_copy.iter().zip(copied) {
        bytes += size;
        files[*slot] = Some(Entry::File {
            path: it.rel.clone(),
            mode: *mode,
            size,
            sha256,
        });
    }
    let mut files: Vec<Entry> = files
        .into_iter()
        .map(|e| e.expect("every slot is filled"))
        .collect();
    for (name, data, mode) in asset_items() {
        let dst = tmp.join(&name);
        if let Some(parent) = dst.parent() {
            if !parent.exists() {
                fs::create_dir_all(parent)?;
                fs::set_permissions(parent, fs::Permissions::from_mode(DIR_MODE))?;
                let rel = parent.strip_prefix(&tmp)?.to_string_lossy().into_owned();
                files.push(Entry::Dir { path: rel });
            }
        }
        fs::write(&dst, &data).with_context(|| format!("write {}", dst.display()))?;
        let mode = file_mode(mode);
        fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
        bytes += data.len() as u64;
        files.push(Entry::File {
            path: name,
            mode,
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(&data)),
        });
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        fingerprint: fp,
        versions,
        files,
    };
    let mpath = tmp.join(MANIFEST);
    fs::write(&mpath, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("write {}", mpath.display()))?;
    fs::set_permissions(&mpath, fs::Permissions::from_mode(0o644))?;

    if let Err(e) = verify_tree(&tmp, &manifest) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e).context("verify the copied tools");
    }

    if version_dir.symlink_metadata().is_ok() {
        // A copy of this version never switched to: the fresh, verified
        // copy replaces it (the version in use is never touched).
        fs::remove_dir_all(&version_dir)
            .with_context(|| format!("remove {}", version_dir.display()))?;
    }
    fs::rename(&tmp, &version_dir)
        .with_context(|| format!("rename {} to {}", tmp.display(), version_dir.display()))?;
    switch(to, &sib, &version_name)?;
    clean(&sib, Some(&version_name))?;
    let count = manifest
        .files
        .iter()
        .filter(|e| !matches!(e, Entry::Dir { .. }))
        .count();
    Ok(Outcome::Installed {
        version_dir,
        files: count,
        bytes,
    })
}

/// Points `to` at `version_name` with one rename of a fresh symlink.
fn switch(to: &Path, sib: &Siblings, version_name: &str) -> anyhow::Result<()> {
    if let Ok(meta) = to.symlink_metadata() {
        if meta.is_dir() {
            // A plain directory from elsewhere: move it aside (it is removed
            // as an old version); only this first switch is not atomic.
            let aside =
                sib.parent
                    .join(format!("{}legacy-{}", sib.old_prefix(), std::process::id()));
            fs::rename(to, &aside).with_context(|| format!("move {} aside", to.display()))?;
        }
    }
    let link = sib
        .parent
        .join(format!("{}link-{}", sib.tmp_prefix(), std::process::id()));
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(version_name, &link)
        .with_context(|| format!("symlink {}", link.display()))?;
    fs::rename(&link, to).with_context(|| format!("switch {} to {version_name}", to.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_group_readable_and_keep_exec() {
        assert_eq!(file_mode(0o600), 0o640);
        assert_eq!(file_mode(0o700), 0o750);
        assert_eq!(file_mode(0o755), 0o755);
        assert_eq!(file_mode(0o4755), 0o755);
    }

    #[test]
    fn verify_names_the_corrupted_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"hello").unwrap();
        let good = hex::encode(Sha256::digest(b"hello"));
        let m = Manifest {
            format: 1,
            fingerprint: "x".into(),
            versions: BTreeMap::new(),
            files: vec![Entry::File {
                path: "a".into(),
                mode: 0o644,
                size: 5,
                sha256: good,
            }],
        };
        verify_tree(dir.path(), &m).unwrap();
        fs::write(dir.path().join("a"), b"jello").unwrap();
        let e = verify_tree(dir.path(), &m).unwrap_err().to_string();
        assert!(e.starts_with("checksum mismatch for a: "), "{e}");
    }

    #[test]
    fn manifest_entries_serialize_with_a_type_tag() {
        let e = Entry::Symlink {
            path: "editor/bin".into(),
            target: "../x".into(),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"type": "symlink", "path": "editor/bin", "target": "../x"})
        );
    }
}
