//! The apply engine: a batch of changes is planned against an in-memory
//! overlay of the disk (so every base is checked, and every patch and edit
//! computed, before the first write), then carried out in order. Files on
//! disk are hashed in pieces; only a patch or an edit reads one whole, and
//! what a batch reads and computes is bounded (see [`Limits`]).

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

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
    /// A file too large to patch or edit, or a batch that would hold too
    /// much: 413 `too_large`.
    #[error("change {index} ({path}): {why}")]
    TooLarge {
        index: usize,
        path: String,
        why: String,
    },
}

/// What one batch may hold in memory besides its request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest file a patch or an edit reads whole.
    pub max_file_bytes: u64,
    /// The most the contents computed by patches and edits may add up to
    /// (each is held until the batch is written).
    pub max_computed_bytes: u64,
}

impl Limits {
    /// Both from `max_body_bytes`: a patch or an edit works on what a PUT
    /// could have written, and holds no more than one body's worth.
    pub fn from_body_limit(max_body_bytes: usize) -> Limits {
        let n = u64::try_from(max_body_bytes).unwrap_or(u64::MAX);
        Limits {
            max_file_bytes: n,
            max_computed_bytes: n,
        }
    }
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

/// Where the plan finds a blob's bytes.
#[derive(Debug, Clone)]
enum Content {
    /// In memory: planned by this batch, or a symlink's target.
    Held(Arc<Vec<u8>>),
    /// A regular file at `path` on disk (where it was when planning began),
    /// hashed but not read: only a patch or an edit reads it.
    OnDisk { path: String, size: u64 },
}

/// The state of a path as the plan sees it.
#[derive(Debug, Clone)]
enum Slot {
    Missing,
    Dir,
    /// A file or symlink, its blob id and where its content is.
    Blob {
        kind: Kind,
        oid: String,
        content: Content,
    },
    /// A socket, FIFO or device.
    Other,
}

impl Slot {
    fn oid(&self) -> Option<String> {
        match self {
            Slot::Blob { oid, .. } => Some(oid.clone()),
            _ => None,
        }
    }
}

/// A write to carry out once every check passed.
#[derive(Debug)]
enum Action {
    Write { path: String, bytes: Arc<Vec<u8>> },
    Remove { path: String, kind: Kind },
    Rename { from: String, to: String },
    Mkdir { path: String },
}

/// A change that passed its checks: what to do, its result's oid and path.
type Planned = (Vec<Action>, Option<String>, String);

struct Planner<'r> {
    root: &'r Root,
    overlay: HashMap<String, Slot>,
    limits: Limits,
    /// Bytes computed by patches and edits so far.
    computed: u64,
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
        let bytes = Arc::new(bytes);
        let slot = Slot::Blob {
            kind: Kind::File,
            oid: oid.clone(),
            content: Content::Held(bytes.clone()),
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

    /// Plans the result of a patch or an edit, within `max_computed_bytes`.
    fn plan_computed(
        &mut self,
        index: usize,
        path: String,
        bytes: Vec<u8>,
    ) -> Result<Planned, Refusal> {
        let total = self
            .computed
            .checked_add(bytes.len() as u64)
            .filter(|&t| t <= self.limits.max_computed_bytes)
            .ok_or_else(|| Refusal::TooLarge {
                index,
                path: path.clone(),
                why: format!(
                    "the patches and edits of this apply would produce more than {} bytes \
                     (max_body_bytes); send fewer at once, or write the file with PUT",
                    self.limits.max_computed_bytes
                ),
            })?;
        self.computed = total;
        Ok(self.plan_write(path, bytes))
    }

    fn current(&mut self, path: &str) -> Result<Slot, PathError> {
        if let Some(s) = self.overlay.get(path) {
            return Ok(s.clone());
        }
        let slot = match self.root.open_parent(path) {
            Err(PathError::NotFound) => Slot::Missing,
            Err(e) => return Err(e),
            // Hashed in pieces: a base check costs no memory, whatever the size.
            Ok((dir, name)) => match disk::open_at(&dir, name) {
                Ok(None) => Slot::Missing,
                Ok(Some(disk::Opened::Symlink { meta, target })) => Slot::Blob {
                    kind: meta.kind,
                    oid: blob_oid(&target),
                    content: Content::Held(Arc::new(target)),
                },
                Ok(Some(disk::Opened::File { file, meta })) => match disk::hash_file(&file) {
                    Ok((oid, sig)) => Slot::Blob {
                        kind: meta.kind,
                        oid,
                        content: Content::OnDisk {
                            path: path.to_owned(),
                            size: sig.size,
                        },
                    },
                    Err(ReadError::Path(e)) => return Err(e),
                    Err(ReadError::IsDir) => Slot::Dir,
                    Err(ReadError::NotAFile) => Slot::Other,
                },
                Err(ReadError::IsDir) => Slot::Dir,
                Err(ReadError::NotAFile) => Slot::Other,
                Err(ReadError::Path(e)) => return Err(e),
            },
        };
        self.overlay.insert(path.to_owned(), slot.clone());
        Ok(slot)
    }

    /// The bytes of a blob the plan found, for a patch or an edit of
    /// `path`: read from disk only up to `max_file_bytes`, and only if they
    /// are still the version that was hashed.
    fn bytes_of(
        &self,
        index: usize,
        path: &str,
        oid: &str,
        content: &Content,
    ) -> Result<Result<Arc<Vec<u8>>, Conflict>, Refusal> {
        let (from, size) = match content {
            Content::Held(b) => return Ok(Ok(b.clone())),
            Content::OnDisk { path, size } => (path, *size),
        };
        let max = self.limits.max_file_bytes;
        let too_large = |size: u64| Refusal::TooLarge {
            index,
            path: path.to_owned(),
            why: format!(
                "the file is {size} bytes; patch and edit take files up to {max} bytes \
                 (max_body_bytes), write a larger one whole with PUT"
            ),
        };
        if size > max {
            return Err(too_large(size));
        }
        let changed = || Conflict {
            index,
            path: path.to_owned(),
            code: ConflictCode::VersionConflict,
            expected: Some(oid.to_owned()),
            actual: None,
            message: format!("{path} changed while the apply was checked"),
        };
        let (dir, name) = match self.root.open_parent(from) {
            Ok(x) => x,
            Err(PathError::NotFound) => return Ok(Err(changed())),
            Err(e) => return Err(e.into()),
        };
        let file = match disk::open_at(&dir, name) {
            Ok(Some(disk::Opened::File { file, .. })) => file,
            Ok(_) | Err(ReadError::IsDir | ReadError::NotAFile) => return Ok(Err(changed())),
            Err(ReadError::Path(e)) => return Err(e.into()),
        };
        // Never more than the bound, whatever the file grew to meanwhile.
        let cap = usize::try_from(size).unwrap_or(usize::MAX);
        let mut bytes = Vec::with_capacity(cap);
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(PathError::Io)?;
        if bytes.len() as u64 > max {
            return Err(too_large(bytes.len() as u64));
        }
        if blob_oid(&bytes) != oid {
            return Ok(Err(changed()));
        }
        Ok(Ok(Arc::new(bytes)))
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

    /// Like `check_base`, for changes that act on an existing file or
    /// symlink: its kind, blob id and where its content is.
    fn check_blob(
        &mut self,
        index: usize,
        path: &str,
        base: Option<&str>,
    ) -> Result<Result<(Kind, String, Content), Conflict>, PathError> {
        Ok(match self.check_base(index, path, base)? {
            Ok(Slot::Blob { kind, oid, content }) => Ok((kind, oid, content)),
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
                let (_, oid, content) = match self.check_blob(index, &path, base)? {
                    Ok(b) => b,
                    Err(c) => return Ok(Err(c)),
                };
                let bytes = match self.bytes_of(index, &path, &oid, &content)? {
                    Ok(b) => b,
                    Err(c) => return Ok(Err(c)),
                };
                match patch::apply(&bytes, diff) {
                    Ok(new) => Ok(Ok(self.plan_computed(index, path, new)?)),
                    Err(e) => Ok(Err(Conflict {
                        index,
                        message: format!("the diff does not apply to {path}: {e}"),
                        path,
                        code: ConflictCode::PatchDoesNotApply,
                        expected: Some(oid.clone()),
                        actual: Some(oid),
                    })),
                }
            }
            Op::Edit { edits, encoding } => {
                let (_, oid, content) = match self.check_blob(index, &path, base)? {
                    Ok(b) => b,
                    Err(c) => return Ok(Err(c)),
                };
                let bytes = match self.bytes_of(index, &path, &oid, &content)? {
                    Ok(b) => b,
                    Err(c) => return Ok(Err(c)),
                };
                let text = std::str::from_utf8(&bytes).map_err(|_| Refusal::InvalidEdit {
                    index,
                    path: path.clone(),
                    why: "the file is not UTF-8 text".into(),
                })?;
                let new =
                    edit::apply(text, edits, *encoding).map_err(|e| Refusal::InvalidEdit {
                        index,
                        path: path.clone(),
                        why: e.to_string(),
                    })?;
                Ok(Ok(self.plan_computed(index, path, new.into_bytes())?))
            }
            Op::Delete => {
                let (kind, _, _) = match self.check_blob(index, &path, base)? {
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
    limits: Limits,
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
        limits,
        computed: 0,
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
