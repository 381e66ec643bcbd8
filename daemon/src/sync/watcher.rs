//! The watcher actor: a dedicated thread that owns the inotify watches (one
//! per directory, so the daemon knows what it watches and what it must
//! rescan), coalesces notifications, and turns them into events by looking
//! at the disk through `confine`. The `notify` callback only forwards.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::coalesce::Coalescer;
use super::git::{self, Head};
use super::{
    is_self_or_ancestor, send_held_delete, EventKind, Known, Settings, Shared, State, COALESCE,
    RESCAN_EVERY,
};
use crate::confine::PathError;
use crate::files::disk::{self, Meta};
use crate::files::ignore_rules::{is_git_internal, Rules};
use crate::files::{Entry, Kind};

enum Msg {
    Fs(notify::Result<notify::Event>),
    Stop,
}

struct Actor {
    shared: Arc<Shared>,
    root: PathBuf,
    watcher: notify::RecommendedWatcher,
    watch_limit: usize,
    watched: HashSet<String>,
    /// Directories without a watch (limit reached): rescanned periodically.
    unwatched: BTreeSet<String>,
    rules: Rules,
    coalescer: Coalescer,
    git_dir: Option<PathBuf>,
    head: Head,
    git_dirty: bool,
    full_rescan: bool,
    /// When the first and the last of the held deletions were found.
    held_since: Option<(Instant, Instant)>,
}

/// A deletion is held until no other was found for this long, so that
/// `rm -r` (children first) ends in one event for the directory...
const HOLD_DELETES: std::time::Duration = COALESCE;
/// ...but never longer than this, so a long removal still shows progress.
const MAX_HOLD: std::time::Duration = std::time::Duration::from_secs(2);

fn sig(m: &Meta) -> (u64, u64, i128, u32) {
    (m.size, m.ino, m.mtime_ns, m.perm | ((m.kind as u32) << 16))
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}/{b}")
    }
}

fn parent_of(rel: &str) -> &str {
    rel.rfind('/').map(|i| &rel[..i]).unwrap_or("")
}

pub(super) fn start(
    shared: Arc<Shared>,
    root: PathBuf,
    settings: Settings,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<Msg>();
    // Unbounded on purpose: the callback runs on notify's own thread, which
    // must never block, or the actor (adding a watch) and it would deadlock.
    let fs_tx = tx.clone();
    let watcher = notify::RecommendedWatcher::new(
        move |res| {
            let _ = fs_tx.send(Msg::Fs(res));
        },
        notify::Config::default().with_follow_symlinks(false),
    )?;
    let git_dir = git::git_dir(&root);
    let head = git_dir.as_deref().map(git::read_head).unwrap_or_default();
    let mut actor = Actor {
        rules: Rules::new(&root),
        shared,
        root,
        watcher,
        watch_limit: settings.watch_limit,
        watched: HashSet::new(),
        unwatched: BTreeSet::new(),
        coalescer: Coalescer::new(COALESCE),
        git_dir,
        head,
        git_dirty: false,
        full_rescan: false,
        held_since: None,
    };
    actor.baseline();
    let span = tracing::info_span!("watcher");
    let thread = std::thread::Builder::new()
        .name("watcher".into())
        .spawn(move || {
            let _enter = span.enter();
            actor.run(rx)
        })?;
    tracker.spawn(
        async move {
            cancel.cancelled().await;
            let _ = tx.send(Msg::Stop);
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        .instrument(tracing::info_span!("watcher_stop")),
    );
    Ok(())
}

impl Actor {
    fn abs(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn rel(&self, abs: &Path) -> Option<String> {
        let r = abs.strip_prefix(&self.root).ok()?;
        Some(r.to_str()?.to_owned())
    }

    /// Watches one directory, or puts it on the rescan list.
    fn watch(&mut self, rel: &str) {
        if self.watched.contains(rel) {
            return;
        }
        let allowed = self.watch_limit == 0 || self.watched.len() < self.watch_limit;
        let res = if allowed {
            self.watcher
                .watch(&self.abs(rel), RecursiveMode::NonRecursive)
        } else {
            Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch))
        };
        match res {
            Ok(()) => {
                self.watched.insert(rel.to_owned());
                self.unwatched.remove(rel);
            }
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                if !self.shared.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        watches = self.watched.len(),
                        "the watch limit is reached; the rest of the tree is watched by rescans"
                    );
                }
                self.unwatched.insert(rel.to_owned());
            }
            Err(e) => tracing::debug!(dir = %rel, error = %e, "cannot watch a directory"),
        }
    }

    fn unwatch_subtree(&mut self, rel: &str) {
        let prefix = format!("{rel}/");
        let gone: Vec<String> = self
            .watched
            .iter()
            .filter(|w| *w == rel || w.starts_with(&prefix))
            .cloned()
            .collect();
        for w in gone {
            let _ = self.watcher.unwatch(&self.abs(&w));
            self.watched.remove(&w);
        }
        self.unwatched
            .retain(|w| !(w == rel || w.starts_with(&prefix)));
    }

    /// The names in a directory, opened through `confine`.
    fn list(&self, rel: &str) -> Vec<String> {
        let Ok(fd) = self.shared.root.open_dir(rel) else {
            return Vec::new();
        };
        let Ok(mut dir) = Dir::openat(
            &fd,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            return Vec::new();
        };
        dir.iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .filter(|n| n != "." && n != "..")
            .collect()
    }

    fn stat(&self, rel: &str) -> Option<Meta> {
        let (dir, name) = self.shared.root.open_parent(rel).ok()?;
        disk::stat_at(&dir, name).ok().flatten()
    }

    /// The start-up walk: watches and stat data, no events, no hashing.
    fn baseline(&mut self) {
        let shared = self.shared.clone();
        let mut st = shared.state.lock().unwrap();
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            self.rules.load_dir(&dir);
            self.watch(&dir);
            for name in self.list(&dir) {
                let rel = join(&dir, &name);
                let Some(m) = self.stat(&rel) else { continue };
                if self.rules.is_ignored(&rel, m.kind == Kind::Dir) || m.kind == Kind::Other {
                    continue;
                }
                st.known.insert(
                    rel.clone(),
                    Known {
                        kind: m.kind,
                        oid: None,
                        mode: m.git_mode(),
                        sig: Some(sig(&m)),
                    },
                );
                if m.kind == Kind::Dir {
                    stack.push(rel);
                }
            }
        }
        drop(st);
        self.watch_git();
    }

    /// HEAD and the branches: `.git/` itself and `refs/heads/` below it.
    fn watch_git(&mut self) {
        let Some(git_dir) = self.git_dir.clone() else {
            return;
        };
        for dir in [git_dir.clone(), git_dir.join("refs/heads")] {
            if let Err(e) = self.watcher.watch(&dir, RecursiveMode::Recursive) {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch the git dir");
            }
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut next_rescan = Instant::now() + RESCAN_EVERY;
        loop {
            let now = Instant::now();
            let mut wake = self.coalescer.deadline();
            if !self.unwatched.is_empty() {
                wake = Some(wake.map_or(next_rescan, |w| w.min(next_rescan)));
            }
            if let Some(held) = self.held_deadline() {
                wake = Some(wake.map_or(held, |w| w.min(held)));
            }
            let msg = match wake {
                Some(w) => match rx.recv_timeout(w.saturating_duration_since(now)) {
                    Ok(m) => Some(m),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                },
            };
            let mut due = false;
            if let Some(msg) = msg {
                let mut batch = vec![msg];
                while let Ok(m) = rx.try_recv() {
                    batch.push(m);
                }
                for m in batch {
                    match m {
                        Msg::Stop => return,
                        Msg::Fs(res) => due |= self.on_fs(res),
                    }
                }
            }
            let now = Instant::now();
            if !self.unwatched.is_empty() && now >= next_rescan {
                due |= self.rescan_unwatched();
                next_rescan = now + RESCAN_EVERY;
            }
            if self.full_rescan {
                self.full_rescan = false;
                due |= self.rescan_all();
            }
            if due || self.coalescer.deadline().is_some_and(|d| now >= d) {
                self.flush();
            }
            if self.held_deadline().is_some_and(|d| Instant::now() >= d) {
                self.send_held_deletes();
            }
        }
    }

    fn held_deadline(&self) -> Option<Instant> {
        let (first, last) = self.held_since?;
        Some((last + HOLD_DELETES).min(first + MAX_HOLD))
    }

    /// Holds the deletion of `rel` (found gone), or of the topmost known
    /// directory above it that is gone too.
    fn hold_delete(&mut self, st: &mut State, rel: &str) {
        let top = self.top_gone(st, rel);
        if !st.known.contains_key(&top) {
            return;
        }
        self.unwatch_subtree(&top);
        if st.held_deletes.iter().any(|h| is_self_or_ancestor(h, &top)) {
            return;
        }
        st.held_deletes.retain(|h| !is_self_or_ancestor(&top, h));
        st.held_deletes.insert(top);
        let now = Instant::now();
        self.held_since = Some((self.held_since.map_or(now, |(first, _)| first), now));
    }

    /// `rel`, or its topmost known ancestor that is gone from the disk.
    fn top_gone(&self, st: &State, rel: &str) -> String {
        let mut top = rel.to_owned();
        loop {
            let parent = parent_of(&top);
            if parent.is_empty() || !st.known.contains_key(parent) || self.stat(parent).is_some() {
                return top;
            }
            top = parent.to_owned();
        }
    }

    /// Sends the held deletions: one event per topmost path that is gone.
    fn send_held_deletes(&mut self) {
        self.held_since = None;
        let shared = self.shared.clone();
        let mut st = shared.state.lock().unwrap();
        let held = std::mem::take(&mut st.held_deletes);
        let tops: std::collections::BTreeSet<String> =
            held.iter().map(|h| self.top_gone(&st, h)).collect();
        let mut sent: Vec<&str> = Vec::new();
        // Sorted, so a directory comes before what is below it.
        for top in &tops {
            if sent.iter().any(|s| is_self_or_ancestor(s, top)) {
                continue;
            }
            self.unwatch_subtree(top);
            st.held_deletes.insert(top.clone());
            send_held_delete(&shared, &mut st, top);
            sent.push(top);
        }
    }

    /// Sends the held deletions of `rel` and of what is above it, before an
    /// event that says `rel` exists again.
    fn send_held_above(&mut self, st: &mut State, rel: &str) {
        if st.held_deletes.is_empty() {
            return;
        }
        let above: Vec<String> = st
            .held_deletes
            .iter()
            .filter(|h| is_self_or_ancestor(h, rel))
            .cloned()
            .collect();
        for h in above {
            send_held_delete(&self.shared, st, &h);
        }
    }

    /// Notes the paths of a notification; returns whether to flush now.
    fn on_fs(&mut self, res: notify::Result<notify::Event>) -> bool {
        let ev = match res {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "watch error; rescanning");
                self.full_rescan = true;
                return false;
            }
        };
        // Reads (ours included) are not changes.
        if matches!(ev.kind, notify::EventKind::Access(_)) {
            return false;
        }
        if ev.need_rescan() {
            tracing::warn!("the kernel dropped notifications; rescanning");
            self.full_rescan = true;
        }
        let mut due = false;
        for p in &ev.paths {
            if let Some(g) = &self.git_dir {
                if p.starts_with(g) {
                    self.git_dirty = true;
                    due |= self.coalescer.note(String::new(), Instant::now());
                    continue;
                }
            }
            let Some(rel) = self.rel(p) else { continue };
            if rel.is_empty() || is_git_internal(&rel) {
                continue;
            }
            due |= self.coalescer.note(rel, Instant::now());
        }
        due
    }

    /// Compares the children of unwatched directories with what is known.
    fn rescan_unwatched(&mut self) -> bool {
        let dirs: Vec<String> = self.unwatched.iter().cloned().collect();
        let mut due = false;
        for d in dirs {
            due |= self.rescan_dir(&d);
        }
        due
    }

    fn rescan_all(&mut self) -> bool {
        let mut dirs = vec![String::new()];
        {
            let st = self.shared.state.lock().unwrap();
            dirs.extend(
                st.known
                    .iter()
                    .filter(|(_, k)| k.kind == Kind::Dir)
                    .map(|(p, _)| p.clone()),
            );
        }
        self.git_dirty = true;
        let mut due = self.coalescer.note(String::new(), Instant::now());
        for d in dirs {
            due |= self.rescan_dir(&d);
        }
        due
    }

    fn rescan_dir(&mut self, dir: &str) -> bool {
        let mut changed = Vec::new();
        {
            let st = self.shared.state.lock().unwrap();
            let names = self.list(dir);
            let mut seen = HashSet::new();
            for name in names {
                let rel = join(dir, &name);
                let Some(m) = self.stat(&rel) else { continue };
                if self.rules.is_ignored(&rel, m.kind == Kind::Dir) {
                    continue;
                }
                let same = st.known.get(&rel).is_some_and(|k| {
                    k.sig == Some(sig(&m)) || (k.kind == Kind::Dir && m.kind == Kind::Dir)
                });
                if !same {
                    changed.push(rel.clone());
                }
                seen.insert(rel);
            }
            let prefix = if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            };
            for (p, _) in st.known.range(prefix.clone()..) {
                if !p.starts_with(&prefix) {
                    break;
                }
                if !p[prefix.len()..].contains('/') && !seen.contains(p) {
                    changed.push(p.clone());
                }
            }
        }
        let mut due = false;
        for c in changed {
            due |= self.coalescer.note(c, Instant::now());
        }
        due
    }

    fn flush(&mut self) {
        let paths = self.coalescer.take(Instant::now());
        let shared = self.shared.clone();
        let mut st = shared.state.lock().unwrap();
        for rel in paths {
            if rel.is_empty() {
                continue;
            }
            self.look(&mut st, &rel);
        }
        if std::mem::take(&mut self.git_dirty) {
            if let Some(g) = &self.git_dir {
                let head = git::read_head(g);
                if head != self.head {
                    self.head = head.clone();
                    shared.emit(
                        &mut st,
                        EventKind::Git {
                            head: head.oid,
                            branch: head.branch,
                        },
                        None,
                    );
                }
            }
        }
    }

    fn entry(&self, rel: &str) -> Result<Option<(Entry, Meta)>, PathError> {
        let (dir, name) = match self.shared.root.open_parent(rel) {
            Ok(x) => x,
            Err(PathError::NotFound | PathError::NotADirectory) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(meta) = disk::stat_at(&dir, name)? else {
            return Ok(None);
        };
        Ok(Entry::read(&dir, name, rel)?.map(|e| (e, meta)))
    }

    /// Looks at one path and emits what changed since it was last known.
    fn look(&mut self, st: &mut State, rel: &str) {
        let found = match self.entry(rel) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %rel, error = %e, "cannot look at a changed path");
                None
            }
        };
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if name == ".gitignore" {
            // New rules may un-ignore siblings: look at the ones not known.
            let parent = parent_of(rel).to_owned();
            self.rules.load_dir(&parent);
            for sibling in self.list(&parent) {
                let p = join(&parent, &sibling);
                if sibling != ".gitignore" && !st.known.contains_key(&p) {
                    self.look(st, &p);
                }
            }
        }
        let Some((entry, meta)) = found else {
            self.hold_delete(st, rel);
            return;
        };
        self.send_held_above(st, rel);
        let is_dir = entry.kind == Kind::Dir;
        if self.rules.is_ignored(rel, is_dir) {
            return;
        }
        if is_dir {
            // Another directory by the same name (removed and made again
            // within one window): the old one, its watches included, is gone.
            let replaced = st
                .known
                .get(rel)
                .is_some_and(|k| k.kind != Kind::Dir || k.sig.is_some_and(|s| s.1 != meta.ino));
            if replaced {
                self.unwatch_subtree(rel);
                send_held_delete(&self.shared, st, rel);
            }
            if !st.known.contains_key(rel) {
                st.known.insert(
                    rel.to_owned(),
                    Known {
                        kind: Kind::Dir,
                        oid: None,
                        mode: "040000",
                        sig: Some(sig(&meta)),
                    },
                );
                self.shared.emit(st, EventKind::Changed(entry), None);
            }
            if !self.watched.contains(rel) && !self.unwatched.contains(rel) {
                // New to the watcher (created, moved in, or made by an
                // apply): watch it, then look at what is already inside.
                self.rules.load_dir(rel);
                self.watch(rel);
                for child in self.list(rel) {
                    self.look(st, &join(rel, &child));
                }
            }
            return;
        }
        // Known from the start-up walk (no oid yet): unchanged stat data
        // means unchanged content.
        let same = st.known.get(rel).is_some_and(|k| {
            k.kind == entry.kind
                && k.mode == entry.mode
                && match &k.oid {
                    Some(oid) => Some(oid.as_str()) == entry.oid.as_deref(),
                    None => k.sig == Some(sig(&meta)),
                }
        });
        let known = Known {
            kind: entry.kind,
            oid: entry.oid.clone(),
            mode: entry.mode,
            sig: Some(sig(&meta)),
        };
        st.known.insert(rel.to_owned(), known);
        if !same {
            self.shared.emit(st, EventKind::Changed(entry), None);
        }
    }
}
