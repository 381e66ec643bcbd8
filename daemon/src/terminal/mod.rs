//! Terminals: PTYs whose output is kept (a byte ring and a headless terminal
//! emulator) whether or not anyone watches, so a reload gets exact bytes or
//! the current screen. Blocking PTY I/O runs on dedicated threads; clients
//! pull from the ring at their own pace, so no client can stall the terminal.

pub mod attach;
mod process;
pub mod ring;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::confine::Root;
use crate::events::{Event, EventBus};
use ring::Ring;

pub const MIN_SIZE: u16 = 1;
pub const MAX_SIZE: u16 = 1000;

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

/// Unparsed output beyond which the PTY reader waits for the emulator.
const MAX_BACKLOG: u64 = 8 << 20;
/// Bytes fed to the emulator at once.
const PARSE_BATCH: usize = 256 * 1024;

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
    pub clients: usize,
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
            clients: 0,
        }
    }

    /// The oldest offset still available for replay.
    pub fn start(&self) -> u64 {
        self.ring.start().max(self.end().saturating_sub(self.keep))
    }

    /// The total output so far.
    pub fn end(&self) -> u64 {
        self.ring.end()
    }

    /// Copies up to `max` bytes from `from`; `None` when `from` is no longer kept.
    pub fn read(&self, from: u64, max: usize, out: &mut Vec<u8>) -> Option<usize> {
        if from < self.start() {
            return None;
        }
        self.ring.read(from, max, out)
    }
}

/// The headless terminal, fed in order by its own thread (and brought up
/// to date by whoever needs the screen). Lock order: emulator, then output.
struct Emulator {
    parser: vt100::Parser,
    /// Output offset up to which `parser` has been fed.
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
    /// The emulator's progress, for the reader's trimming and back-pressure.
    parsed: std::sync::atomic::AtomicU64,
    /// Signalled (with `output`) whenever the emulator progresses.
    progressed: std::sync::Condvar,
    /// Bumped whenever output arrives or the terminal exits.
    pub changed: watch::Sender<u64>,
    pub control: broadcast::Sender<Control>,
    input: mpsc::Sender<Vec<u8>>,
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
            clients: out.clients,
            output_offset: out.end(),
            container: None,
        }
    }

    /// Sends input bytes to the terminal (waits only while the PTY is full).
    pub async fn write(&self, bytes: Vec<u8>) {
        let _ = self.input.send(bytes).await;
    }

    /// Resizes the PTY and the emulator together, at one output offset, so
    /// that bytes before the resize are interpreted at the old size.
    pub fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        let mut emu = self.emulator.lock().unwrap();
        self.catch_up(&mut emu);
        let mut out = self.output.lock().unwrap();
        if out.exited.is_some() {
            return Ok(());
        }
        self.feed_rest(&mut emu, &out);
        emu.parser.screen_mut().set_size(rows, cols);
        out.cols = cols;
        out.rows = rows;
        self.pty.resize(cols, rows)
    }

    /// Feeds the emulator what the reader has appended, in batches, without
    /// holding the output lock while parsing.
    fn catch_up(&self, emu: &mut Emulator) {
        let mut buf = Vec::with_capacity(PARSE_BATCH);
        loop {
            buf.clear();
            let n = {
                let out = self.output.lock().unwrap();
                if emu.parsed >= out.end() {
                    return;
                }
                out.ring
                    .read(emu.parsed, PARSE_BATCH, &mut buf)
                    .expect("unparsed output is kept")
            };
            emu.parser.process(&buf);
            self.advance(emu, n);
        }
    }

    /// Feeds the emulator the last bytes while the caller holds the output
    /// lock, so the screen matches `out.end()` exactly.
    fn feed_rest(&self, emu: &mut Emulator, out: &Output) {
        let mut buf = Vec::new();
        if let Some(n) = out.ring.read(emu.parsed, usize::MAX, &mut buf) {
            emu.parser.process(&buf);
            emu.parsed += n as u64;
            self.parsed
                .store(emu.parsed, std::sync::atomic::Ordering::Release);
        }
    }

    fn advance(&self, emu: &mut Emulator, n: usize) {
        emu.parsed += n as u64;
        self.parsed
            .store(emu.parsed, std::sync::atomic::Ordering::Release);
        // Taking the lock orders this after a waiting reader's check.
        drop(self.output.lock().unwrap());
        self.progressed.notify_all();
    }

    /// Appends output (called by the PTY reader). Waits while the emulator
    /// is more than `MAX_BACKLOG` behind; returns the locked output.
    fn append(&self, data: &[u8]) -> std::sync::MutexGuard<'_, Output> {
        use std::sync::atomic::Ordering;
        let mut out = self.output.lock().unwrap();
        while out.end() - self.parsed.load(Ordering::Acquire) > MAX_BACKLOG {
            out = self.progressed.wait(out).unwrap();
        }
        out.ring.push(data);
        let keep_from = self
            .parsed
            .load(Ordering::Acquire)
            .min(out.end().saturating_sub(out.keep));
        out.ring.trim(keep_from);
        out
    }

    /// Registers a client that starts from the current screen: returns the
    /// bytes that draw it and the offset they stand for.
    pub fn attach_screen(&self) -> (Vec<u8>, u64, bool) {
        let mut emu = self.emulator.lock().unwrap();
        self.catch_up(&mut emu);
        let mut out = self.output.lock().unwrap();
        self.feed_rest(&mut emu, &out);
        out.clients += 1;
        (screen_bytes(emu.parser.screen()), out.end(), out.echo)
    }

    /// Runs the emulator thread's loop: parse whenever woken, until the
    /// reader is gone, then once more.
    fn run_emulator(&self, wake: std::sync::mpsc::Receiver<()>) {
        while wake.recv().is_ok() {
            let mut emu = self.emulator.lock().unwrap();
            self.catch_up(&mut emu);
        }
        let mut emu = self.emulator.lock().unwrap();
        self.catch_up(&mut emu);
    }

    pub fn is_exited(&self) -> bool {
        self.output.lock().unwrap().exited.is_some()
    }
}

/// Bytes that reproduce a screen on a fresh terminal: the alternate
/// screen, colours, cursor, modes and title included.
fn screen_bytes(screen: &vt100::Screen) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"\x1b[0m\x1b[?1049l\x1b[H\x1b[2J");
    if screen.alternate_screen() {
        out.extend_from_slice(b"\x1b[?1049h\x1b[H\x1b[2J");
    }
    out.extend_from_slice(&screen.state_formatted());
    out.extend_from_slice(&screen.cursor_state_formatted());
    out
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

fn random_id() -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("the OS random source works");
    b.iter().map(|x| format!("{x:02x}")).collect()
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
        let live = self.list().iter().filter(|t| !t.is_exited()).count();
        if live >= self.settings.max_terminals {
            return Err(CreateError::TooMany(self.settings.max_terminals));
        }
        let dir = root.open_dir(&spec.cwd)?;
        let cwd_path = root.real_path(&dir)?;
        let command = spec.command.clone().unwrap_or_else(default_shell);
        let spawned = process::spawn(&command, &cwd_path, &spec.env, spec.cols, spec.rows)
            .map_err(|cause| CreateError::Spawn {
                command: command.clone(),
                cause,
            })?;
        let id = random_id();
        let title = spec.title.clone().unwrap_or_else(|| {
            std::path::Path::new(&command[0])
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| command[0].clone())
        });
        let (changed, _) = watch::channel(0);
        let (control, _) = broadcast::channel(16);
        let (input_tx, input_rx) = mpsc::channel(256);
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
                parser: vt100::Parser::new(spec.rows, spec.cols, 0),
                parsed: 0,
            }),
            parsed: Default::default(),
            progressed: Default::default(),
            changed,
            control,
            input: input_tx,
            pty: spawned.pty,
            closing: self.shutdown.child_token(),
        });
        let exited = process::start_io(
            &terminal,
            spawned.reader,
            spawned.writer,
            input_rx,
            self.output_activity.get().cloned(),
        );
        self.map
            .lock()
            .unwrap()
            .insert(id.clone(), terminal.clone());
        tracing::info!(terminal.id = %id, pid = terminal.pid, "terminal started");

        let this = Arc::clone(self);
        let t = terminal.clone();
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
        Ok(terminal)
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
