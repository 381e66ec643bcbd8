//! The watcher actor: a dedicated thread that owns the inotify watches (one
//! per directory, so the daemon knows what it watches and what it must
//! rescan), coalesces notifications, and turns them into events by looking
//! at the disk through `confine`. A second thread only reads the inotify
//! descriptor and forwards what it read.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::coalesce::Coalescer;
use super::git::{self, Head};
use super::{
    is_self_or_ancestor, oid_bin, send_held_delete, EventKind, Known, Settings, Shared, Sig, State,
    COALESCE, RESCAN_EVERY,
};
use crate::confine::PathError;
use crate::files::disk::{self, Meta};
use crate::files::ignore_rules::{is_git_internal, Rules};
use crate::files::{Entry, Kind};

/// What the watcher asks inotify for: changes, and nothing else. Opens,
/// reads and closes without a write (the tree walk's own, a build's, an
/// editor's) would each wake two threads for nothing; a symlink is never
/// followed and only a directory is watched.
const MASK: WatchMask = WatchMask::ATTRIB
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MODIFY)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::DONT_FOLLOW)
    .union(WatchMask::ONLYDIR);

/// One notification as read: the watch, what happened, and the name in the
/// watched directory (`None`: the directory itself).
struct Raw {
    wd: i32,
    mask: EventMask,
    name: Option<Box<str>>,
}

enum Msg {
    Fs(Vec<Raw>),
    /// The kernel dropped notifications (`IN_Q_OVERFLOW`): rescan.
    Overflow,
    /// Reading the inotify descriptor failed for good: no more notifications.
    Lost(std::io::Error),
    Stop,
}

/// A flush of more paths than this is a burst, after which memory is trimmed.
const BIG_FLUSH: usize = 1000;

/// Branch directories below `refs/heads` watched at most: a ref name's
/// slashes make directories, and this bounds what a hostile `.git` costs.
const MAX_GIT_WATCHES: usize = 1024;

struct Actor {
    shared: Arc<Shared>,
    root: PathBuf,
    watches: Watches,
    /// Closed when the actor ends, which ends the reader thread.
    stop: Option<OwnedFd>,
    reader: Option<std::thread::JoinHandle<()>>,
    watch_limit: usize,
    /// Watched directories by path, and the same paths by watch: a path is
    /// stored once, shared by both maps.
    watched: BTreeMap<Arc<str>, WatchDescriptor>,
    dirs: HashMap<i32, Arc<str>>,
    /// The watches on `.git/` and the directories of `refs/heads`.
    git_watches: HashMap<i32, PathBuf>,
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

fn sig(m: &Meta) -> Sig {
    Sig::of(m)
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
    let inotify = Inotify::init()?;
    let watches = inotify.watches();
    let (stop_rx, stop_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // Unbounded on purpose: the reader must drain the kernel's queue while
    // the actor is busy looking at a burst, or the queue overflows and the
    // whole tree is rescanned.
    let fs_tx = tx.clone();
    let read_span = tracing::info_span!("inotify");
    let reader = std::thread::Builder::new()
        .name("inotify".into())
        .spawn(move || {
            let _enter = read_span.enter();
            read_loop(inotify, stop_rx, fs_tx)
        })?;
    let git_dir = git::git_dir(&root);
    let head = git_dir.as_deref().map(git::read_head).unwrap_or_default();
    let mut actor = Actor {
        rules: Rules::new(&root),
        shared,
        root,
        watches,
        stop: Some(stop_tx),
        reader: Some(reader),
        watch_limit: settings.watch_limit,
        watched: BTreeMap::new(),
        dirs: HashMap::new(),
        git_watches: HashMap::new(),
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

    /// Watches one directory, or puts it on the rescan list.
    fn watch(&mut self, rel: &str) {
        if self.watched.contains_key(rel) {
            return;
        }
        let allowed = self.watch_limit == 0 || self.watched.len() < self.watch_limit;
        let res = if allowed {
            self.watches.add(self.abs(rel), MASK)
        } else {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        };
        match res {
            Ok(wd) => {
                let path: Arc<str> = rel.into();
                // The same directory under another name (moved, and its old
                // name not yet looked at): the watch is this name's now.
                if let Some(old) = self.dirs.insert(wd.get_watch_descriptor_id(), path.clone()) {
                    if *old != *rel {
                        self.watched.remove(&old);
                    }
                }
                self.watched.insert(path, wd);
                self.unwatched.remove(rel);
            }
            // ENOSPC is inotify's "no more watches" (max_user_watches).
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
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
        let below = (Bound::Included(prefix.as_str()), Bound::Unbounded);
        let gone: Vec<Arc<str>> = self
            .watched
            .get_key_value(rel)
            .map(|(p, _)| p)
            .into_iter()
            .chain(
                self.watched
                    .range::<str, _>(below)
                    .map(|(p, _)| p)
                    .take_while(|p| p.starts_with(&prefix)),
            )
            .cloned()
            .collect();
        for w in gone {
            let Some(wd) = self.watched.remove(&w) else {
                continue;
            };
            let id = wd.get_watch_descriptor_id();
            if self.dirs.get(&id).is_some_and(|p| *p == w) {
                self.dirs.remove(&id);
                let _ = self.watches.remove(wd);
            }
        }
        self.unwatched
            .retain(|w| !(w == rel || w.starts_with(&prefix)));
    }

    /// A watch the kernel removed (its directory is gone, or we removed it).
    fn forget_watch(&mut self, id: i32) {
        self.git_watches.remove(&id);
        if let Some(path) = self.dirs.remove(&id) {
            if self
                .watched
                .get(&path)
                .is_some_and(|wd| wd.get_watch_descriptor_id() == id)
            {
                self.watched.remove(&path);
            }
        }
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
                    rel.as_str().into(),
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

    /// HEAD and the branches: `.git/` itself (HEAD, `packed-refs`) and every
    /// directory of `refs/heads/` (a branch `a/b` is a file in a directory).
    fn watch_git(&mut self) {
        let Some(git_dir) = self.git_dir.clone() else {
            return;
        };
        self.watch_git_dir(git_dir.clone());
        self.watch_git_tree(git_dir.join("refs/heads"));
    }

    fn watch_git_dir(&mut self, dir: PathBuf) {
        if self.git_watches.len() >= MAX_GIT_WATCHES {
            return;
        }
        match self.watches.add(&dir, MASK) {
            Ok(wd) => {
                self.git_watches.insert(wd.get_watch_descriptor_id(), dir);
            }
            Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "cannot watch the git dir"),
        }
    }

    /// Watches `top` and the directories below it (a loop, bounded by
    /// `MAX_GIT_WATCHES`).
    fn watch_git_tree(&mut self, top: PathBuf) {
        let mut stack = vec![top];
        while let Some(dir) = stack.pop() {
            if self.git_watches.len() >= MAX_GIT_WATCHES {
                return;
            }
            if let Ok(rd) = std::fs::read_dir(&dir) {
                stack.extend(
                    rd.filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            self.watch_git_dir(dir);
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
                        Msg::Fs(raw) => due |= self.on_fs(raw),
                        Msg::Overflow => {
                            tracing::warn!("the kernel dropped notifications; rescanning");
                            self.full_rescan = true;
                        }
                        Msg::Lost(e) => self.lost(&e),
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
        if !st.known.contains_key(top.as_str()) {
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

    /// Notes the paths of notifications; returns whether to flush now.
    fn on_fs(&mut self, batch: Vec<Raw>) -> bool {
        let mut due = false;
        let now = Instant::now();
        for raw in batch {
            if raw.mask.contains(EventMask::IGNORED) {
                self.forget_watch(raw.wd);
                continue;
            }
            if let Some(dir) = self.git_watches.get(&raw.wd) {
                if raw.mask.contains(EventMask::CREATE | EventMask::ISDIR) {
                    if let Some(name) = &raw.name {
                        let sub = dir.join(&**name);
                        if self
                            .git_dir
                            .as_ref()
                            .is_some_and(|g| sub.starts_with(g.join("refs/heads")))
                        {
                            self.watch_git_tree(sub);
                        }
                    }
                }
                self.git_dirty = true;
                due |= self.coalescer.note(String::new(), now);
                continue;
            }
            let Some(dir) = self.dirs.get(&raw.wd) else {
                continue;
            };
            let rel = match &raw.name {
                Some(name) => join(dir, name),
                None => dir.to_string(),
            };
            if rel.is_empty() || is_git_internal(&rel) {
                continue;
            }
            due |= self.coalescer.note(rel, now);
        }
        due
    }

    /// The reader stopped: every directory is rescanned from now on.
    fn lost(&mut self, e: &std::io::Error) {
        tracing::error!(error = %e, "reading inotify failed; the tree is watched by rescans");
        self.shared.degraded.store(true, Ordering::Relaxed);
        let all: Vec<Arc<str>> = self.watched.keys().cloned().collect();
        self.unwatched.extend(all.iter().map(|p| p.to_string()));
        self.full_rescan = true;
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
                    .map(|(p, _)| p.to_string()),
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
                let same = st.known.get(rel.as_str()).is_some_and(|k| {
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
            let from = (Bound::Included(prefix.as_str()), Bound::Unbounded);
            for (p, _) in st.known.range::<str, _>(from) {
                if !p.starts_with(&prefix) {
                    break;
                }
                if !p[prefix.len()..].contains('/') && !seen.contains(&**p) {
                    changed.push(p.to_string());
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
        if paths.len() > BIG_FLUSH {
            // What a burst's looks allocated and freed goes back once it ends
            // (the trim waits for things to settle).
            crate::memory::soon();
        }
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
                if sibling != ".gitignore" && !st.known.contains_key(p.as_str()) {
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
                .is_some_and(|k| k.kind != Kind::Dir || k.sig.is_some_and(|s| s.ino() != meta.ino));
            if replaced {
                self.unwatch_subtree(rel);
                send_held_delete(&self.shared, st, rel);
            }
            if !st.known.contains_key(rel) {
                st.known.insert(
                    rel.into(),
                    Known {
                        kind: Kind::Dir,
                        oid: None,
                        mode: "040000",
                        sig: Some(sig(&meta)),
                    },
                );
                self.shared.emit(st, EventKind::Changed(entry.into()), None);
            }
            if !self.watched.contains_key(rel) && !self.unwatched.contains(rel) {
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
                    Some(oid) => Some(*oid) == oid_bin(entry.oid.as_deref()),
                    None => k.sig == Some(sig(&meta)),
                }
        });
        let known = Known {
            kind: entry.kind,
            oid: oid_bin(entry.oid.as_deref()),
            mode: entry.mode,
            sig: Some(sig(&meta)),
        };
        st.known.insert(rel.into(), known);
        if !same {
            self.shared.emit(st, EventKind::Changed(entry.into()), None);
        }
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        // The reader sees the hang-up of the stop pipe and returns.
        self.stop.take();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The reader thread: waits for the inotify descriptor (or the hang-up of
/// the stop pipe), reads what is there and forwards it, nothing more.
fn read_loop(mut inotify: Inotify, stop: OwnedFd, tx: mpsc::Sender<Msg>) {
    // Room for hundreds of events per read; a read never splits an event.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = [
            PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                let _ = tx.send(Msg::Lost(e.into()));
                return;
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return;
        }
        let events = match inotify.read_events(&mut buf) {
            Ok(events) => events,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                let _ = tx.send(Msg::Lost(e));
                return;
            }
        };
        let mut batch = Vec::new();
        let mut overflow = false;
        for ev in events {
            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                overflow = true;
                continue;
            }
            let name = match ev.name {
                // A name that is not UTF-8 has no path in the API.
                Some(n) => match n.to_str() {
                    Some(n) => Some(n.into()),
                    None => continue,
                },
                None => None,
            };
            batch.push(Raw {
                wd: ev.wd.get_watch_descriptor_id(),
                mask: ev.mask,
                name,
            });
        }
        if overflow && tx.send(Msg::Overflow).is_err() {
            return;
        }
        if !batch.is_empty() && tx.send(Msg::Fs(batch)).is_err() {
            return;
        }
    }
}
