//! The apply engine: a batch of changes is planned against an in-memory
//! overlay of the disk (so every base is checked, and every patch and edit
//! computed, before the first write), then carried out in order.

use std::collections::HashMap;

use super::disk::{self, Kind, ReadError};
use super::edit::{self, Encoding, TextEdit};
use super::oid::blob_oid;
use super::patch;
use super::{Effect, Entry};
use crate::confine::{components, PathError, Root};

/// What a change does.
#[derive(Debug, Clone)]
pub enum Op {
    Write {
        content: Vec<u8>,
    },
    Patch {
        diff: String,
    },
    Edit {
        edits: Vec<TextEdit>,
        encoding: Encoding,
    },
    Delete,
    Rename {
        to: String,
        to_base: Option<String>,
    },
    Mkdir,
}

/// One change of a batch. `base` is the oid the client saw (`None`: the
/// path must not exist, only meaningful for `write`).
#[derive(Debug, Clone)]
pub struct Change {
    pub path: String,
    pub base: Option<String>,
    pub op: Op,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictCode {
    VersionConflict,
    NotFound,
    PatchDoesNotApply,
    TargetExists,
}

impl ConflictCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictCode::VersionConflict => "version_conflict",
            ConflictCode::NotFound => "not_found",
            ConflictCode::PatchDoesNotApply => "patch_does_not_apply",
            ConflictCode::TargetExists => "target_exists",
        }
    }
}

/// A change that cannot be made against the current files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Its index in the batch.
    pub index: usize,
    pub path: String,
    pub code: ConflictCode,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub message: String,
}

/// The whole request is refused, whatever `atomic` says.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("change {index} ({path}): {why}")]
    InvalidEdit {
        index: usize,
        path: String,
        why: String,
    },
}

/// How one change ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeResult {
    Done { path: String, oid: Option<String> },
    Failed(Conflict),
}

#[derive(Debug)]
pub enum Outcome {
    /// Carried out (all of it when atomic; the non-failed ones otherwise).
    Applied { results: Vec<ChangeResult> },
    /// Atomic and some change failed: nothing was written.
    Conflicts(Vec<Conflict>),
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A write failed half-way (disk full, permissions): internal.
    #[error("apply change {index} ({path}): {source}")]
    Io {
        index: usize,
        path: String,
        source: PathError,
    },
}

/// The state of a path as the plan sees it.
#[derive(Debug, Clone)]
enum Slot {
    Missing,
    Dir,
    /// A file or symlink with its content.
    Blob {
        kind: Kind,
        bytes: Vec<u8>,
    },
    /// A socket, FIFO or device.
    Other,
}

impl Slot {
    fn oid(&self) -> Option<String> {
        match self {
            Slot::Blob { bytes, .. } => Some(blob_oid(bytes)),
            _ => None,
        }
    }
}

/// A write to carry out once every check passed.
#[derive(Debug)]
enum Action {
    Write { path: String, bytes: Vec<u8> },
    Remove { path: String, kind: Kind },
    Rename { from: String, to: String },
    Mkdir { path: String },
}

/// A change that passed its checks: what to do, its result's oid and path.
type Planned = (Vec<Action>, Option<String>, String);

struct Planner<'r> {
    root: &'r Root,
    overlay: HashMap<String, Slot>,
}

fn normalize(path: &str) -> Result<String, PathError> {
    let parts = components(path)?;
    if parts.is_empty() {
        return Err(PathError::Invalid("it names the workspace root"));
    }
    Ok(parts.join("/"))
}

impl Planner<'_> {
    /// Plans writing `bytes` to `path`; later changes of the batch see them.
    fn plan_write(&mut self, path: String, bytes: Vec<u8>) -> Planned {
        let oid = blob_oid(&bytes);
        let slot = Slot::Blob {
            kind: Kind::File,
            bytes: bytes.clone(),
        };
        self.overlay.insert(path.clone(), slot);
        (
            vec![Action::Write {
                path: path.clone(),
                bytes,
            }],
            Some(oid),
            path,
        )
    }

    fn current(&mut self, path: &str) -> Result<Slot, PathError> {
        if let Some(s) = self.overlay.get(path) {
            return Ok(s.clone());
        }
        let slot = match self.root.open_parent(path) {
            Err(PathError::NotFound) => Slot::Missing,
            Err(e) => return Err(e),
            Ok((dir, name)) => match disk::read_at(&dir, name) {
                Ok(None) => Slot::Missing,
                Ok(Some(c)) => Slot::Blob {
                    kind: c.meta.kind,
                    bytes: c.bytes,
                },
                Err(ReadError::IsDir) => Slot::Dir,
                Err(ReadError::NotAFile) => Slot::Other,
                Err(ReadError::Path(e)) => return Err(e),
            },
        };
        self.overlay.insert(path.to_owned(), slot.clone());
        Ok(slot)
    }

    /// Checks `base` against the current slot: the slot's bytes when it matches.
    fn check_base(
        &mut self,
        index: usize,
        path: &str,
        base: Option<&str>,
    ) -> Result<Result<Slot, Conflict>, PathError> {
        let slot = self.current(path)?;
        let actual = slot.oid();
        let conflict = |code, message: String| Conflict {
            index,
            path: path.to_owned(),
            code,
            expected: base.map(str::to_owned),
            actual: actual.clone(),
            message,
        };
        Ok(match (base, &slot) {
            (None, Slot::Missing) => Ok(slot),
            (None, _) => Err(conflict(
                ConflictCode::VersionConflict,
                format!("{path} exists but the change expects it not to"),
            )),
            (Some(_), Slot::Missing) => Err(conflict(
                ConflictCode::NotFound,
                format!("{path} does not exist"),
            )),
            (Some(b), _) if actual.as_deref() == Some(b) => Ok(slot),
            (Some(_), Slot::Dir) => Err(conflict(
                ConflictCode::VersionConflict,
                format!("{path} is a directory"),
            )),
            (Some(_), _) => Err(conflict(
                ConflictCode::VersionConflict,
                format!("{path} has changed since the version the change is based on"),
            )),
        })
    }

    /// Like `check_base`, for changes that act on an existing file or symlink.
    fn check_blob(
        &mut self,
        index: usize,
        path: &str,
        base: Option<&str>,
    ) -> Result<Result<(Kind, Vec<u8>), Conflict>, PathError> {
        Ok(match self.check_base(index, path, base)? {
            Ok(Slot::Blob { kind, bytes }) => Ok((kind, bytes)),
            Ok(_) => Err(Conflict {
                index,
                path: path.to_owned(),
                code: ConflictCode::NotFound,
                expected: None,
                actual: None,
                message: format!("the change of {path} needs the base version of a file"),
            }),
            Err(c) => Err(c),
        })
    }

    /// Plans one change: the actions and the slots it leaves, or its conflict.
    fn plan(
        &mut self,
        index: usize,
        change: &Change,
    ) -> Result<Result<Planned, Conflict>, Refusal> {
        let path = normalize(&change.path)?;
        let base = change.base.as_deref();
        match &change.op {
            Op::Mkdir => match self.current(&path)? {
                Slot::Dir => Ok(Ok((vec![], None, path))),
                Slot::Missing => {
                    self.overlay.insert(path.clone(), Slot::Dir);
                    Ok(Ok((vec![Action::Mkdir { path: path.clone() }], None, path)))
                }
                s => Ok(Err(Conflict {
                    index,
                    message: format!("{path} exists and is not a directory"),
                    path,
                    code: ConflictCode::VersionConflict,
                    expected: None,
                    actual: s.oid(),
                })),
            },
            Op::Write { content } => {
                if let Err(c) = self.check_base(index, &path, base)? {
                    return Ok(Err(c));
                }
                Ok(Ok(self.plan_write(path, content.clone())))
            }
            Op::Patch { diff } => {
                let (_, bytes) = match self.check_blob(index, &path, base)? {
                    Ok(b) => b,
                    Err(c) => return Ok(Err(c)),
                };
                match patch::apply(&bytes, diff) {
                    Ok(new) => Ok(Ok(self.plan_write(path, new))),
                    Err(e) => {
                        let oid = blob_oid(&bytes);
                        Ok(Err(Conflict {
                            index,
                            message: format!("the diff does not apply to {path}: {e}"),
                            path,
                            code: ConflictCode::PatchDoesNotApply,
                            expected: Some(oid.clone()),
                            actual: Some(oid),
                        }))
                    }
                }
            }
            Op::Edit { edits, encoding } => {
                let (_, bytes) = match self.check_blob(index, &path, base)? {
                    Ok(b) => b,
                    Err(c) => return Ok(Err(c)),
                };
                let text = String::from_utf8(bytes).map_err(|_| Refusal::InvalidEdit {
                    index,
                    path: path.clone(),
                    why: "the file is not UTF-8 text".into(),
                })?;
                let new =
                    edit::apply(&text, edits, *encoding).map_err(|e| Refusal::InvalidEdit {
                        index,
                        path: path.clone(),
                        why: e.to_string(),
                    })?;
                Ok(Ok(self.plan_write(path, new.into_bytes())))
            }
            Op::Delete => {
                let (kind, _) = match self.check_blob(index, &path, base)? {
                    Ok(b) => b,
                    Err(c) => return Ok(Err(c)),
                };
                self.overlay.insert(path.clone(), Slot::Missing);
                Ok(Ok((
                    vec![Action::Remove {
                        path: path.clone(),
                        kind,
                    }],
                    None,
                    path,
                )))
            }
            Op::Rename { to, to_base } => {
                let to = normalize(to)?;
                let slot = match self.check_base(index, &path, base)? {
                    Ok(s) => s,
                    Err(c) => return Ok(Err(c)),
                };
                let target = self.current(&to)?;
                let actual = target.oid();
                let ok = match (&target, to_base) {
                    (Slot::Missing, None) => true,
                    (Slot::Missing, Some(_)) => {
                        return Ok(Err(Conflict {
                            index,
                            message: format!("{to} does not exist"),
                            path: to,
                            code: ConflictCode::NotFound,
                            expected: to_base.clone(),
                            actual: None,
                        }))
                    }
                    (Slot::Blob { .. }, Some(tb)) => actual.as_deref() == Some(tb.as_str()),
                    _ => false,
                };
                if !ok || to == path {
                    return Ok(Err(Conflict {
                        index,
                        message: format!("the rename's target {to} exists with another version"),
                        path: to,
                        code: ConflictCode::TargetExists,
                        expected: to_base.clone(),
                        actual,
                    }));
                }
                let oid = slot.oid();
                self.overlay.insert(path.clone(), Slot::Missing);
                self.overlay.insert(to.clone(), slot);
                Ok(Ok((
                    vec![Action::Rename {
                        from: path,
                        to: to.clone(),
                    }],
                    oid,
                    to,
                )))
            }
        }
    }
}

fn entry_of(root: &Root, path: &str) -> Result<Option<Entry>, PathError> {
    let (dir, name) = match root.open_parent(path) {
        Ok(x) => x,
        Err(PathError::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    Entry::read(&dir, name, path)
}

fn execute(
    root: &Root,
    action: &Action,
    pending: &mut disk::PendingDirs,
    effects: &mut dyn FnMut(Effect),
) -> Result<(), PathError> {
    match action {
        Action::Write { path, bytes } => {
            let (dir, name) = disk::open_parent_creating(root, path)?;
            disk::write_atomic(&dir, name, bytes, pending)?;
            if let Some(e) = Entry::read(&dir, name, path)? {
                effects(Effect::Changed(e));
            }
        }
        Action::Remove { path, kind } => {
            let (dir, name) = root.open_parent(path)?;
            disk::remove_at(&dir, name, pending)?;
            effects(Effect::Deleted {
                path: path.clone(),
                kind: *kind,
            });
        }
        Action::Rename { from, to } => {
            let (from_dir, from_name) = root.open_parent(from)?;
            let kind = disk::stat_at(&from_dir, from_name)?
                .map(|m| m.kind)
                .unwrap_or(Kind::File);
            let (to_dir, to_name) = disk::open_parent_creating(root, to)?;
            disk::rename_at(&from_dir, from_name, &to_dir, to_name, pending)?;
            effects(Effect::Deleted {
                path: from.clone(),
                kind,
            });
            if let Some(e) = Entry::read(&to_dir, to_name, to)? {
                effects(Effect::Changed(e));
            }
        }
        Action::Mkdir { path } => {
            // Parents it creates are reported too.
            let parts: Vec<&str> = path.split('/').collect();
            let mut missing = Vec::new();
            for i in 1..=parts.len() {
                let p = parts[..i].join("/");
                if entry_of(root, &p)?.is_none() {
                    missing.push(p);
                }
            }
            disk::mkdir_all(root, path)?;
            for p in missing {
                if let Some(e) = entry_of(root, &p)? {
                    effects(Effect::Changed(e));
                }
            }
        }
    }
    Ok(())
}

/// Checks then applies a batch; `on_effect` hears of each change on disk
/// right after it is made. The caller serialises batches.
pub fn apply(
    root: &Root,
    changes: &[Change],
    atomic: bool,
    on_effect: &mut dyn FnMut(Effect),
) -> Result<Outcome, ApplyError> {
    // Every path is checked as text first: a bad one refuses the whole batch.
    for c in changes {
        normalize(&c.path).map_err(Refusal::from)?;
        if let Op::Rename { to, .. } = &c.op {
            normalize(to).map_err(Refusal::from)?;
        }
    }
    let mut planner = Planner {
        root,
        overlay: HashMap::new(),
    };
    let mut plans = Vec::with_capacity(changes.len());
    let mut conflicts = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        match planner.plan(i, c)? {
            Ok(p) => plans.push(Ok(p)),
            Err(conflict) => {
                conflicts.push(conflict.clone());
                plans.push(Err(conflict));
            }
        }
    }
    if atomic && !conflicts.is_empty() {
        return Ok(Outcome::Conflicts(conflicts));
    }
    drop(planner);
    let mut results = Vec::with_capacity(plans.len());
    let mut pending = disk::PendingDirs::default();
    for (index, plan) in plans.into_iter().enumerate() {
        match plan {
            Ok((actions, oid, path)) => {
                for a in &actions {
                    execute(root, a, &mut pending, on_effect).map_err(|source| ApplyError::Io {
                        index,
                        path: path.clone(),
                        source,
                    })?;
                }
                results.push(ChangeResult::Done { path, oid });
            }
            Err(c) => results.push(ChangeResult::Failed(c)),
        }
    }
    // The renames are durable before the batch is answered.
    pending.sync().map_err(|source| ApplyError::Io {
        index: changes.len().saturating_sub(1),
        path: "(directory sync)".into(),
        source,
    })?;
    Ok(Outcome::Applied { results })
}
