//! Terminals: PTYs whose output is kept (a byte ring and a headless terminal
//! emulator) whether or not anyone watches, so a reload gets exact bytes or
//! the current screen. The PTY is read and written by the async runtime
//! (only the child's reaping has a thread); clients pull from the ring at
//! their own pace. Flow control is a real terminal's:
//! the PTY is read only as fast as the fastest reading client takes output,
//! and a client that stops reading is skipped ahead instead of waited for.

pub mod attach;
pub mod emulator;
mod process;
pub mod ring;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::confine::Root;
use crate::events::{Event, EventBus};
use ring::Ring;

pub const MIN_SIZE: u16 = 1;
pub const MAX_SIZE: u16 = 1000;

/// A size (`cols` or `rows`) given as JSON: an integer from 1 to 1000.
pub fn size_of(v: &serde_json::Value) -> Option<u16> {
    v.as_u64()
        .filter(|n| (MIN_SIZE as u64..=MAX_SIZE as u64).contains(n))
        .and_then(|n| u16::try_from(n).ok())
}

/// How a terminal ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<&'static str>,
}

/// Sent to attached clients besides output.
#[derive(Clone, Debug)]
pub enum Control {
    /// The password-prompt state changed: `echo` false while in it.
    Mode { echo: bool },
}

/// Bytes fed to the emulator at once.
const PARSE_BATCH: usize = 256 * 1024;
/// Unparsed output kept beyond the scrollback before the reader parses the
/// oldest of it: the emulator is fed in large batches, and only with bytes
/// about to leave the ring, or when someone asks for the screen.
const PARSE_SLACK: u64 = 1 << 20;
/// Unparsed output beyond the scrollback at which the reader waits for the
/// emulator's catch-up to finish before reading on: the parse runs beside
/// the reader, and this bounds what it can fall behind.
const PARSE_BEHIND_MAX: u64 = 4 * PARSE_SLACK;
/// A client is reading while it has taken output (or had none to take)
/// within this window (PROTOCOL.md, "Flow control").
const READING_WINDOW: Duration = Duration::from_secs(1);
/// How often a held reader looks again at clients that may have stalled.
const HOLD_RECHECK: Duration = Duration::from_millis(100);
/// A reading client this many times `client_queue_bytes` behind holds the
/// program even when another client keeps up: bytes kept for a slow reader
/// are bounded, and it still never misses one.
const HARD_QUEUE_FACTOR: u64 = 16;

/// One attached client as flow control sees it.
#[derive(Debug)]
struct Client {
    /// Offset of the next byte to send.
    cursor: u64,
    /// When it last took output, or was found with none to take.
    took: Instant,
    /// Waiting for output with nothing unsent: it is reading.
    idle: bool,
    /// Set when it was skipped ahead while not reading; it is told `lagged`.
    skipped: bool,
    /// `client_queue_bytes` for this client.
    queue: u64,
}

impl Client {
    fn reading(&self, now: Instant) -> bool {
        self.idle || now.saturating_duration_since(self.took) <= READING_WINDOW
    }
}

/// What an attached client is to do next, decided under the output lock.
pub struct Step {
    /// Skipped ahead to this offset: send `lagged` first.
    pub lagged: Option<u64>,
    /// Output bytes were appended to the caller's buffer.
    pub sent: usize,
    /// Everything is sent and the process has ended.
    pub exited: Option<ExitStatus>,
}

/// Everything mutable about a terminal's output and clients, under one
/// lock so that offsets, kept bytes and the client count always agree.
pub struct Output {
    ring: Ring,
    /// `scrollback_bytes`: how much output stays available for replay.
    keep: u64,
    pub cols: u16,
    pub rows: u16,
    pub exited: Option<ExitStatus>,
    pub echo: bool,
    clients: BTreeMap<u64, Client>,
    next_client: u64,
    /// The PTY reader is waiting for a client to take output.
    held: bool,
}

impl Output {
    fn new(cols: u16, rows: u16, keep: usize) -> Self {
        Output {
            ring: Ring::default(),
            keep: keep as u64,
            cols,
            rows,
            exited: None,
            echo: true,
            clients: BTreeMap::new(),
            next_client: 0,
            held: false,
        }
    }

    /// Attached clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Registers a client whose next byte is `cursor`; returns its key.
    fn add_client(&mut self, cursor: u64, queue: usize) -> u64 {
        let key = self.next_client;
        self.next_client += 1;
        self.clients.insert(
            key,
            Client {
                cursor,
                took: Instant::now(),
                idle: false,
                skipped: false,
                queue: queue as u64,
            },
        );
        key
    }

    /// The oldest offset still available for replay.
    pub fn start(&self) -> u64 {
        self.ring.start().max(self.end().saturating_sub(self.keep))
    }

    /// The total output so far.
    pub fn end(&self) -> u64 {
        self.ring.end()
    }
}

/// The headless terminal, fed lazily: with output about to leave the ring,
/// and up to the end whenever someone needs the screen or resizes.
/// Lock order: emulator, then output.
struct Emulator {
    vt: emulator::Emulator,
    /// Output offset up to which `vt` has been fed.
    parsed: u64,
}

/// A running (or lingering) terminal.
pub struct Terminal {
    pub id: String,
    pub pid: u32,
    pub command: Vec<String>,
    pub cwd: String,
    pub title: String,
    pub created_at: String,
    pub output: Mutex<Output>,
    emulator: Mutex<Emulator>,
    /// The emulator's progress, for the reader's trimming.
    parsed: AtomicU64,
    /// Signalled (under `output`) when a client takes output or leaves
    /// while the reader is held.
    paced: Notify,
    /// Bumped whenever output arrives or the terminal exits.
    pub changed: watch::Sender<u64>,
    pub control: broadcast::Sender<Control>,
    /// Input from several clients goes to the PTY one message at a time.
    input: tokio::sync::Mutex<()>,
    pty: process::Pty,
    /// Cancelled when the daemon shuts down: clients are told and closed.
    pub closing: CancellationToken,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Its ring and emulator were megabytes: give them back to the OS.
        crate::memory::soon();
    }
}

/// The wire form of a terminal.
#[derive(Debug, Serialize)]
pub struct TerminalInfo {
    pub id: String,
    pub pid: u32,
    pub command: Vec<String>,
    pub cwd: String,
    pub title: String,
    pub cols: u16,
    pub rows: u16,
    pub created_at: String,
    pub exited: bool,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<&'static str>,
    pub clients: usize,
    pub output_offset: u64,
    pub container: Option<String>,
}

impl Terminal {
    pub fn info(&self) -> TerminalInfo {
        let out = self.output.lock().unwrap();
        TerminalInfo {
            id: self.id.clone(),
            pid: self.pid,
            command: self.command.clone(),
            cwd: self.cwd.clone(),
            title: self.title.clone(),
            cols: out.cols,
            rows: out.rows,
            created_at: self.created_at.clone(),
            exited: out.exited.is_some(),
            exit_code: out.exited.as_ref().and_then(|e| e.code),
            exit_signal: out.exited.as_ref().and_then(|e| e.signal),
            clients: out.clients(),
            output_offset: out.end(),
            container: None,
        }
    }

    /// Sends input bytes to the terminal (waits only while the PTY is full).
    pub async fn write(&self, bytes: Vec<u8>) {
        let order = self.input.lock().await;
        let written = self.pty.write_all(&bytes).await;
        drop(order);
        if written.is_ok() {
            self.check_mode();
        }
    }

    /// Resizes the PTY and the emulator together, at one output offset, so
    /// that bytes before the resize are interpreted at the old size.
    pub fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        let mut emu = self.emulator.lock().unwrap();
        self.catch_up(&mut emu, u64::MAX);
        let mut out = self.output.lock().unwrap();
        if out.exited.is_some() {
            return Ok(());
        }
        self.feed_rest(&mut emu, &out);
        emu.vt.set_size(rows, cols);
        out.cols = cols;
        out.rows = rows;
        self.pty.resize(cols, rows)
    }

    /// Feeds the emulator the output up to `until`, in batches, without
    /// holding the output lock while parsing.
    fn catch_up(&self, emu: &mut Emulator, until: u64) {
        let mut buf = Vec::with_capacity(PARSE_BATCH);
        loop {
            buf.clear();
            let n = {
                let out = self.output.lock().unwrap();
                let want = until.min(out.end()).saturating_sub(emu.parsed);
                if want == 0 {
                    return;
                }
                let max = usize::try_from(want).unwrap_or(usize::MAX).min(PARSE_BATCH);
                // Unparsed output is never trimmed (see `trim`).
                out.ring.read(emu.parsed, max, &mut buf).unwrap_or(0)
            };
            if n == 0 {
                return;
            }
            emu.vt.feed(&buf);
            emu.parsed += n as u64;
            self.parsed.store(emu.parsed, Ordering::Release);
        }
    }

    /// Feeds the emulator the last bytes while the caller holds the output
    /// lock, so the screen matches `out.end()` exactly.
    fn feed_rest(&self, emu: &mut Emulator, out: &Output) {
        let mut buf = Vec::new();
        if let Some(n) = out.ring.read(emu.parsed, usize::MAX, &mut buf) {
            emu.vt.feed(&buf);
            emu.parsed += n as u64;
            self.parsed.store(emu.parsed, Ordering::Release);
        }
    }

    /// Appends output (called by the PTY reader task), skips ahead the clients
    /// that stopped reading, and returns once the terminal may read again:
    /// at once unless every reading client has more than its queue unsent
    /// (or one is far behind), as a real terminal blocks a program whose
    /// output nobody takes. `catching_up` is the reader's emulator catch-up
    /// still running, if any.
    async fn append(
        self: &Arc<Self>,
        data: &[u8],
        catching_up: &mut Option<tokio::task::JoinHandle<()>>,
    ) {
        {
            let mut out = self.output.lock().unwrap();
            out.ring.push(data);
        }
        self.changed.send_modify(|v| *v += 1);
        loop {
            // Registered under the lock, before it is released: a client
            // that takes output afterwards wakes it (`notify_waiters`).
            let paced = self.paced.notified();
            tokio::pin!(paced);
            {
                let mut out = self.output.lock().unwrap();
                if !self.must_hold(&mut out) {
                    out.held = false;
                    break;
                }
                out.held = true;
                paced.as_mut().enable();
            }
            let _ = tokio::time::timeout(HOLD_RECHECK, paced).await;
        }
        let (beyond, until) = {
            let mut out = self.output.lock().unwrap();
            self.trim(&mut out);
            let unparsed = out
                .end()
                .saturating_sub(self.parsed.load(Ordering::Acquire));
            (
                unparsed.saturating_sub(out.keep),
                out.end().saturating_sub(out.keep),
            )
        };
        if beyond <= PARSE_SLACK {
            return;
        }
        // Parsing a megabyte takes milliseconds: off the runtime, and beside
        // the reader, which goes on reading (a program's output is not
        // stalled while the screen catches up) unless the parse is far
        // behind.
        match catching_up.take() {
            Some(h) if !h.is_finished() => {
                if beyond > PARSE_BEHIND_MAX {
                    let _ = h.await;
                } else {
                    *catching_up = Some(h);
                }
            }
            _ => {
                let t = Arc::clone(self);
                *catching_up = Some(tokio::task::spawn_blocking(move || {
                    let mut emu = t.emulator.lock().unwrap();
                    t.catch_up(&mut emu, until);
                    drop(emu);
                    t.trim(&mut t.output.lock().unwrap());
                }));
            }
        }
    }

    /// Skips ahead the clients that stopped reading, and says whether the
    /// reader must wait: while every reading client has more than its queue
    /// unsent (or one is far behind), as a real terminal blocks a program
    /// whose output nobody takes.
    fn must_hold(&self, out: &mut Output) -> bool {
        let now = Instant::now();
        let end = out.end();
        let (mut readers, mut all_full, mut far_behind) = (0usize, true, false);
        for c in out.clients.values_mut() {
            let unsent = end.saturating_sub(c.cursor);
            if c.reading(now) {
                readers += 1;
                all_full &= unsent > c.queue;
                far_behind |= unsent > c.queue.saturating_mul(HARD_QUEUE_FACTOR);
            } else if unsent > c.queue {
                // Its task is stuck sending; it learns on waking.
                c.cursor = end;
                c.skipped = true;
            }
        }
        readers > 0 && (all_full || far_behind) && out.exited.is_none()
    }

    /// Drops output that is neither scrollback, nor unsent to a client, nor
    /// unparsed.
    fn trim(&self, out: &mut Output) {
        let mut keep_from = out
            .end()
            .saturating_sub(out.keep)
            .min(self.parsed.load(Ordering::Acquire));
        for c in out.clients.values() {
            keep_from = keep_from.min(c.cursor);
        }
        out.ring.trim(keep_from);
    }

    /// Registers a client that resumes at `offset` if that is still kept;
    /// returns its key, the offset and the totals for its `attached` frame.
    pub fn attach_at(&self, offset: u64, queue: usize) -> Option<(u64, u64, bool)> {
        let mut out = self.output.lock().unwrap();
        if offset < out.start() {
            return None;
        }
        let key = out.add_client(offset, queue);
        Some((key, out.end(), out.echo))
    }

    /// Registers a client that starts from the current screen: returns its
    /// key, the bytes that draw the screen, the offset they stand for and
    /// the echo state.
    pub fn attach_screen(&self, queue: usize) -> (u64, Vec<u8>, u64, bool) {
        let mut emu = self.emulator.lock().unwrap();
        self.catch_up(&mut emu, u64::MAX);
        let mut out = self.output.lock().unwrap();
        self.feed_rest(&mut emu, &out);
        let end = out.end();
        let key = out.add_client(end, queue);
        (key, emu.vt.screen_bytes(), end, out.echo)
    }

    /// Takes the client's next output into `buf` (up to `max` bytes): the
    /// client is taking output now, so it counts as reading.
    pub fn step(&self, key: u64, max: usize, buf: &mut Vec<u8>) -> Step {
        let mut out = self.output.lock().unwrap();
        let end = out.end();
        let Output {
            ring,
            clients,
            exited,
            held,
            ..
        } = &mut *out;
        let Some(c) = clients.get_mut(&key) else {
            return Step {
                lagged: None,
                sent: 0,
                exited: None,
            };
        };
        c.took = Instant::now();
        let lagged = std::mem::take(&mut c.skipped).then(|| {
            c.cursor = end;
            end
        });
        let sent = ring.read(c.cursor, max, buf).unwrap_or(0);
        c.cursor += sent as u64;
        c.idle = sent == 0;
        let exited = (c.cursor == end).then(|| exited.clone()).flatten();
        if *held && sent > 0 {
            self.paced.notify_waiters();
        }
        Step {
            lagged,
            sent,
            exited,
        }
    }

    /// Marks a client as busy again after it waited: whatever it sends next
    /// may block, and then it must age into not reading.
    pub fn wake(&self, key: u64) {
        if let Some(c) = self.output.lock().unwrap().clients.get_mut(&key) {
            c.idle = false;
            c.took = Instant::now();
        }
    }

    /// Forgets a client that left.
    pub fn detach(&self, key: u64) {
        let mut out = self.output.lock().unwrap();
        out.clients.remove(&key);
        if out.held {
            self.paced.notify_waiters();
        }
    }

    /// Sends `mode` to the clients when the terminal entered or left the
    /// password-prompt state. Called after output, after input, and on a
    /// timer while a client is attached: a program may change the mode
    /// without writing anything (`read -s`).
    pub fn check_mode(&self) {
        let Some(fd) = self.pty.fd() else { return };
        // Asked and sent under the lock: two threads checking at once must
        // not record or send an older answer after a newer one.
        let mut out = self.output.lock().unwrap();
        let echo = !crate::sys::password_mode(fd).unwrap_or(false);
        if out.exited.is_none() && out.echo != echo {
            out.echo = echo;
            let _ = self.control.send(Control::Mode { echo });
        }
    }

    pub fn is_exited(&self) -> bool {
        self.output.lock().unwrap().exited.is_some()
    }
}

/// What a client asks for at create.
#[derive(Debug, Default)]
pub struct Spec {
    pub command: Option<Vec<String>>,
    pub cwd: String,
    pub env: BTreeMap<String, String>,
    pub cols: u16,
    pub rows: u16,
    pub title: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the limit of {0} terminals is reached")]
    TooMany(usize),
    #[error(transparent)]
    Path(#[from] crate::confine::PathError),
    #[error("cannot start {command:?}: {cause:#}")]
    Spawn {
        command: Vec<String>,
        cause: anyhow::Error,
    },
    /// The daemon could not draw an id or start the terminal's threads (a
    /// pids limit): no child is left behind.
    #[error("cannot start the terminal: {0:#}")]
    Internal(anyhow::Error),
}

/// Limits and defaults for terminals.
#[derive(Clone, Debug)]
pub struct Settings {
    pub scrollback_bytes: usize,
    pub client_queue_bytes: usize,
    pub linger: Duration,
    pub max_terminals: usize,
}

/// All terminals of this daemon.
pub struct Terminals {
    map: Mutex<BTreeMap<String, Arc<Terminal>>>,
    /// Terminals being started: counted against `max_terminals`, changed
    /// only under the `map` lock so that concurrent creates see each other.
    starting: AtomicUsize,
    pub settings: Settings,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    events: EventBus,
    /// Set when terminal output counts as activity.
    output_activity: std::sync::OnceLock<crate::activity::Activity>,
}

impl std::fmt::Debug for Terminals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminals").finish_non_exhaustive()
    }
}

fn random_id() -> anyhow::Result<String> {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("draw a terminal id: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The user's login shell: `$SHELL`, else bash, else sh.
fn default_shell() -> Vec<String> {
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            ["/bin/bash", "/usr/bin/bash"]
                .iter()
                .find(|p| std::path::Path::new(p).exists())
                .map(|p| p.to_string())
        })
        .unwrap_or_else(|| "/bin/sh".into());
    vec![shell, "-l".into()]
}

impl Terminals {
    pub fn new(
        settings: Settings,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        events: EventBus,
    ) -> Self {
        Terminals {
            map: Mutex::new(BTreeMap::new()),
            starting: AtomicUsize::new(0),
            settings,
            tracker,
            shutdown,
            events,
            output_activity: std::sync::OnceLock::new(),
        }
    }

    /// Makes terminal output count as activity (`terminal_output_is_activity`)
    /// for terminals started from now on.
    pub fn count_output_as_activity(&self, activity: crate::activity::Activity) {
        let _ = self.output_activity.set(activity);
    }

    pub fn list(&self) -> Vec<Arc<Terminal>> {
        self.map.lock().unwrap().values().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Terminal>> {
        self.map.lock().unwrap().get(id).cloned()
    }

    /// Starts a terminal. The PTY has its final size before the first byte.
    pub fn create(self: &Arc<Self>, root: &Root, spec: Spec) -> Result<Arc<Terminal>, CreateError> {
        {
            let map = self.map.lock().unwrap();
            let live = map.values().filter(|t| !t.is_exited()).count();
            if live + self.starting.load(Ordering::Relaxed) >= self.settings.max_terminals {
                return Err(CreateError::TooMany(self.settings.max_terminals));
            }
            self.starting.fetch_add(1, Ordering::Relaxed);
        }
        let started = self.start(root, spec);
        let mut map = self.map.lock().unwrap();
        self.starting.fetch_sub(1, Ordering::Relaxed);
        let (terminal, exited) = started?;
        map.insert(terminal.id.clone(), terminal.clone());
        drop(map);
        tracing::info!(terminal.id = %terminal.id, pid = terminal.pid, "terminal started");
        self.linger(terminal.clone(), exited);
        Ok(terminal)
    }

    /// Starts the process, its waiter thread and reader task within a reserved slot.
    fn start(
        &self,
        root: &Root,
        spec: Spec,
    ) -> Result<(Arc<Terminal>, tokio::sync::oneshot::Receiver<ExitStatus>), CreateError> {
        let dir = root.open_dir(&spec.cwd)?;
        let cwd_path = root.real_path(&dir)?;
        let command = spec.command.clone().unwrap_or_else(default_shell);
        let id = random_id().map_err(CreateError::Internal)?;
        let spawned = process::spawn(&command, &cwd_path, &spec.env, spec.cols, spec.rows)
            .map_err(|cause| CreateError::Spawn {
                command: command.clone(),
                cause,
            })?;
        let title = spec.title.clone().unwrap_or_else(|| {
            std::path::Path::new(&command[0])
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| command[0].clone())
        });
        let (changed, _) = watch::channel(0);
        let (control, _) = broadcast::channel(16);
        let terminal = Arc::new(Terminal {
            id: id.clone(),
            pid: spawned.pid,
            command,
            cwd: spec.cwd.clone(),
            title,
            created_at: crate::time::now_rfc3339(),
            output: Mutex::new(Output::new(
                spec.cols,
                spec.rows,
                self.settings.scrollback_bytes,
            )),
            emulator: Mutex::new(Emulator {
                vt: emulator::Emulator::new(spec.rows, spec.cols),
                parsed: 0,
            }),
            parsed: Default::default(),
            paced: Default::default(),
            changed,
            control,
            input: Default::default(),
            pty: spawned.pty,
            closing: self.shutdown.child_token(),
        });
        let exited =
            process::start_io(&terminal, self.output_activity.get().cloned()).map_err(|e| {
                CreateError::Internal(anyhow::Error::from(e).context("start the terminal's thread"))
            })?;
        Ok((terminal, exited))
    }

    /// Records the exit of a terminal and removes it after `terminal_linger`.
    fn linger(
        self: &Arc<Self>,
        t: Arc<Terminal>,
        exited: tokio::sync::oneshot::Receiver<ExitStatus>,
    ) {
        let this = Arc::clone(self);
        let id = t.id.clone();
        self.tracker.spawn(
            async move {
                let Ok(status) = exited.await else { return };
                {
                    let mut out = t.output.lock().unwrap();
                    out.exited = Some(status.clone());
                }
                t.changed.send_modify(|v| *v += 1);
                tracing::info!(code = ?status.code, signal = ?status.signal, "terminal exited");
                this.events.send(Event::TerminalExited {
                    id: t.id.clone(),
                    code: status.code,
                    signal: status.signal,
                });
                // Only the registry keeps it while it lingers: a DELETE
                // frees its ring and emulator at once.
                let id = t.id.clone();
                drop(t);
                tokio::select! {
                    _ = tokio::time::sleep(this.settings.linger) => {}
                    _ = this.shutdown.cancelled() => {}
                }
                this.map.lock().unwrap().remove(&id);
            }
            .instrument(tracing::info_span!("terminal", id = %id)),
        );
    }

    /// Removes a terminal and ends its processes: SIGHUP, then SIGKILL after 3 s.
    pub fn delete(&self, id: &str) -> bool {
        let Some(t) = self.map.lock().unwrap().remove(id) else {
            return false;
        };
        let pid = t.pid;
        self.tracker.spawn(
            async move { process::end_session(pid, Duration::from_secs(3)).await }
                .instrument(tracing::info_span!("terminal", id = %t.id)),
        );
        true
    }

    /// Ends every terminal's processes (SIGHUP, SIGKILL after `grace`),
    /// returning when none is left.
    pub async fn shutdown_all(&self, grace: Duration) {
        let all = self.list();
        let ends = all.iter().map(|t| {
            t.closing.cancel();
            process::end_session(t.pid, grace)
        });
        futures_util::future::join_all(ends).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_are_integers_from_1_to_1000() {
        for ok in [1, 80, 1000] {
            assert_eq!(size_of(&json!(ok)), Some(ok as u16));
        }
        for bad in [
            json!(-1),
            json!(0),
            json!(1001),
            json!(1.5),
            json!("80"),
            json!(null),
        ] {
            assert_eq!(size_of(&bad), None, "{bad}");
        }
    }
}
