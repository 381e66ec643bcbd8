//! File sync: the event log that every client reads (with `seq`, `epoch`
//! and replay), the watcher actor that fills it from inotify (or rescans),
//! and the apply entry point, which records its own changes with their
//! origin under the same lock, so the watcher never reports them twice.

pub mod coalesce;
pub mod git;
pub mod log;
mod watcher;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::confine::Root;
use crate::files::apply::{self, ApplyError, Change, Outcome};
use crate::files::{upload, Effect, Kind};
pub use log::{Event, EventKind, Resync};

/// Events kept for replay: at least this many, and at least this long.
pub const KEEP_EVENTS: usize = 10_000;
pub const KEEP_FOR: Duration = Duration::from_secs(5 * 60);
/// ...and at most this many, and this much memory: past either the oldest
/// go, and a client that asks for them is told to resync.
pub const MAX_EVENTS: usize = 100_000;
pub const MAX_EVENT_BYTES: usize = 32 << 20;
/// Changes within this window after a flush go out together.
pub const COALESCE: Duration = Duration::from_millis(50);
/// How often directories without a watch are rescanned.
pub const RESCAN_EVERY: Duration = Duration::from_millis(250);

/// What the watcher last knew of a path. Kept for every path of the
/// workspace, so it is small: the blob id in binary, the stat data in 32
/// bytes (a tree of 30,000 files holds 30,000 of them).
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub kind: Kind,
    /// `None` until the content was read (the start-up walk only stats).
    pub oid: Option<Oid>,
    pub mode: &'static str,
    /// Stat data, for rescans; `None` after an apply (re-read on the next look).
    pub sig: Option<Sig>,
}

/// A blob id, binary.
pub(crate) type Oid = [u8; 20];

/// The hex blob id of an entry in binary; `None` for one that is not
/// (never the case for the ids the daemon computes).
pub(crate) fn oid_bin(hex: Option<&str>) -> Option<Oid> {
    let mut oid = [0u8; 20];
    hex::decode_to_slice(hex?, &mut oid).ok()?;
    Some(oid)
}

/// The stat data that tells a changed file: size, inode, mtime and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sig {
    size: u64,
    ino: u64,
    /// Nanoseconds since the epoch: i64 holds them until 2262.
    mtime_ns: i64,
    perm_kind: u32,
}

impl Sig {
    pub fn of(m: &crate::files::disk::Meta) -> Sig {
        Sig {
            size: m.size,
            ino: m.ino,
            // Saturated: a file dated past 2262 still compares as itself.
            mtime_ns: i64::try_from(m.mtime_ns).unwrap_or(if m.mtime_ns < 0 {
                i64::MIN
            } else {
                i64::MAX
            }),
            perm_kind: m.perm | ((m.kind as u32) << 16),
        }
    }

    pub fn ino(&self) -> u64 {
        self.ino
    }
}

pub(crate) struct State {
    pub log: log::EventLog,
    pub known: BTreeMap<Box<str>, Known>,
    /// Paths found gone whose `deleted` event is held back for a moment:
    /// `rm -r` removes the children first, and the contract wants one
    /// event for the directory. They stay in `known` until sent.
    pub held_deletes: BTreeSet<String>,
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub tx: broadcast::Sender<Arc<Event>>,
    pub degraded: AtomicBool,
    pub root: Root,
}

impl Shared {
    /// Appends an event and tells the connected clients.
    pub fn emit(&self, st: &mut State, kind: EventKind, origin: Option<Arc<str>>) {
        let ev = st.log.push(kind, origin, Instant::now());
        let _ = self.tx.send(ev);
    }
}

/// Whether `a` is `b` or a directory above it.
pub(crate) fn is_self_or_ancestor(a: &str, b: &str) -> bool {
    a.is_empty() || (b.starts_with(a) && (b.len() == a.len() || b.as_bytes()[a.len()] == b'/'))
}

/// Sends the held deletion of `path` (one event, for the topmost path).
pub(crate) fn send_held_delete(shared: &Shared, st: &mut State, path: &str) {
    st.held_deletes.remove(path);
    if let Some(k) = forget_subtree(&mut st.known, path) {
        shared.emit(
            st,
            EventKind::Deleted {
                path: path.to_owned(),
                kind: k.kind,
            },
            None,
        );
    }
}

/// Sends the held deletions that concern `path` (it, what is above it,
/// what is below it) before an event for `path`, so that the events of one
/// path stay in the order they happened.
pub(crate) fn send_held_deletes_of(shared: &Shared, st: &mut State, path: &str) {
    if st.held_deletes.is_empty() {
        return;
    }
    let related: Vec<String> = st
        .held_deletes
        .iter()
        .filter(|h| is_self_or_ancestor(h, path) || is_self_or_ancestor(path, h))
        .cloned()
        .collect();
    for h in related {
        send_held_delete(shared, st, &h);
    }
}

/// Removes a path and everything below it from `known`.
pub(crate) fn forget_subtree(known: &mut BTreeMap<Box<str>, Known>, path: &str) -> Option<Known> {
    let prefix = format!("{path}/");
    let below: Vec<Box<str>> = known
        .range::<str, _>((
            std::ops::Bound::Included(prefix.as_str()),
            std::ops::Bound::Unbounded,
        ))
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in below {
        known.remove(&k);
    }
    known.remove(path)
}

/// The settings of the watcher.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watches the daemon allows itself (0: as many as the OS gives); past
    /// it, directories are rescanned instead.
    pub watch_limit: usize,
}

/// A client's view at connection: the last seq, and the replay or `Resync`.
#[derive(Debug)]
pub struct Subscription {
    pub epoch: String,
    pub seq: u64,
    pub replay: Result<Vec<Arc<Event>>, Resync>,
    pub rx: broadcast::Receiver<Arc<Event>>,
}

/// The handle on file sync that the HTTP layer holds.
#[derive(Clone)]
pub struct SyncHub {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SyncHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHub").finish_non_exhaustive()
    }
}

fn new_epoch() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex::encode(b)
}

impl SyncHub {
    /// Walks the workspace, sets up the watches and starts the watcher
    /// thread, which stops when `cancel` fires.
    pub fn start(
        root_path: &Path,
        settings: Settings,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> anyhow::Result<SyncHub> {
        let root_path: PathBuf = root_path.to_owned();
        let root = Root::open(&root_path)
            .with_context(|| format!("open workspace {} for the watcher", root_path.display()))?;
        let (tx, _) = broadcast::channel(16 * 1024);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                log: log::EventLog::new(new_epoch(), KEEP_EVENTS, KEEP_FOR)
                    .with_max(MAX_EVENTS, MAX_EVENT_BYTES),
                known: BTreeMap::new(),
                held_deletes: BTreeSet::new(),
            }),
            tx,
            degraded: AtomicBool::new(false),
            root,
        });
        watcher::start(shared.clone(), root_path, settings, tracker, cancel)?;
        Ok(SyncHub { shared })
    }

    /// `ready`, or `degraded` when part of the tree is watched by rescans.
    pub fn watcher_state(&self) -> &'static str {
        if self.shared.degraded.load(Ordering::Relaxed) {
            "degraded"
        } else {
            "ready"
        }
    }

    pub fn epoch(&self) -> String {
        self.shared.state.lock().unwrap().log.epoch().to_owned()
    }

    /// Registers a client: `since` is the client's `(epoch, seq)`, if any.
    pub fn subscribe(&self, since: Option<(&str, u64)>) -> Subscription {
        let st = self.shared.state.lock().unwrap();
        let rx = self.shared.tx.subscribe();
        let replay = match since {
            Some((epoch, seq)) => st.log.since(epoch, seq),
            None => Ok(Vec::new()),
        };
        Subscription {
            epoch: st.log.epoch().to_owned(),
            seq: st.log.last_seq(),
            replay,
            rx,
        }
    }

    /// The events after `seq` of this run, for a client that fell behind.
    pub fn since(&self, seq: u64) -> Result<Vec<Arc<Event>>, Resync> {
        let st = self.shared.state.lock().unwrap();
        let epoch = st.log.epoch().to_owned();
        st.log.since(&epoch, seq)
    }

    /// Applies a batch (blocking: call from a blocking thread). Batches are
    /// serialised, and their changes enter the event log with `origin`.
    pub fn apply(
        &self,
        root: &Root,
        changes: &[Change],
        atomic: bool,
        limits: apply::Limits,
        origin: Option<Arc<str>>,
    ) -> Result<Outcome, ApplyError> {
        let mut st = self.shared.state.lock().unwrap();
        let outcome = apply::apply(root, changes, atomic, limits, &mut |effect| {
            record(&self.shared, &mut st, effect, origin.clone())
        })?;
        Ok(outcome)
    }
}

/// How a streamed write ended.
#[derive(Debug)]
pub enum Committed {
    /// Renamed over its target: the new entry.
    Done(crate::files::Entry),
    /// The target is no longer at the expected version: nothing written.
    Conflict(upload::Current),
}

impl SyncHub {
    /// Renames a streamed write over its target if the target is still at
    /// `base` (`seen` is how it looked before the body was read), under the
    /// lock applies hold, so the check and the rename are one step for every
    /// writer that goes through the daemon.
    pub fn commit_upload(
        &self,
        path: &str,
        base: Option<&str>,
        seen: &upload::Current,
        done: upload::Finished,
    ) -> Result<Committed, crate::confine::PathError> {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = upload::current_at(done.tmp.dir(), &done.name, Some(seen))?;
        if !upload::matches(base, &now) {
            return Ok(Committed::Conflict(now));
        }
        let mut pending = crate::files::disk::PendingDirs::default();
        done.tmp.rename_over(&done.name, &mut pending)?;
        pending.sync()?;
        let entry = crate::files::Entry {
            path: path.to_owned(),
            kind: Kind::File,
            oid: Some(done.oid),
            size: done.size,
            mode: crate::files::disk::git_mode(Kind::File, done.perm),
        };
        record(&self.shared, &mut st, Effect::Changed(entry.clone()), None);
        Ok(Committed::Done(entry))
    }
}

fn record(shared: &Shared, st: &mut State, effect: Effect, origin: Option<Arc<str>>) {
    match &effect {
        Effect::Changed(e) => send_held_deletes_of(shared, st, &e.path),
        // The apply's own event covers what was held below it.
        Effect::Deleted { path, .. } => st.held_deletes.retain(|h| !is_self_or_ancestor(path, h)),
    }
    match effect {
        Effect::Changed(e) => {
            st.known.insert(
                e.path.as_str().into(),
                Known {
                    kind: e.kind,
                    oid: oid_bin(e.oid.as_deref()),
                    mode: e.mode,
                    sig: None,
                },
            );
            shared.emit(st, EventKind::Changed(e.into()), origin);
        }
        Effect::Deleted { path, kind } => {
            forget_subtree(&mut st.known, &path);
            shared.emit(st, EventKind::Deleted { path, kind }, origin);
        }
    }
}
