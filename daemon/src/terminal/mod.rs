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

/// Everything mutable about a terminal's output, under one lock so the
/// offset, the ring and the screen always agree.
pub struct Output {
    pub ring: Ring,
    parser: vt100::Parser,
    /// Output offset up to which `parser` has been fed.
    parsed: u64,
    pub cols: u16,
    pub rows: u16,
    pub exited: Option<ExitStatus>,
    pub echo: bool,
    pub clients: usize,
}

impl Output {
    fn new(cols: u16, rows: u16, scrollback: usize) -> Self {
        Output {
            ring: Ring::new(scrollback),
            parser: vt100::Parser::new(rows, cols, 0),
            parsed: 0,
            cols,
            rows,
            exited: None,
            echo: true,
            clients: 0,
        }
    }

    /// Feeds the emulator up to offset `to` (which the ring still holds).
    /// The emulator is fed lazily, in big batches: right before bytes leave
    /// the ring and whenever the screen is needed.
    fn parse_to(&mut self, to: u64) {
        let mut buf = Vec::new();
        while self.parsed < to {
            buf.clear();
            let n = self
                .ring
                .read(self.parsed, (to - self.parsed) as usize, &mut buf)
                .expect("unparsed output stays in the ring");
            self.parser.process(&buf);
            self.parsed += n as u64;
        }
    }

    /// Appends output, keeping the emulator complete.
    pub fn push(&mut self, data: &[u8]) {
        let evicts = self.ring.evicts(data.len());
        if evicts > 0 {
            let kept = self.ring.end() - self.ring.start();
            self.parse_to(self.ring.start() + (evicts as u64).min(kept));
            let beyond = evicts.saturating_sub(kept as usize);
            if beyond > 0 {
                // Part of this very chunk will not be kept: parse it now.
                self.parse_to(self.ring.end());
                self.parser.process(&data[..beyond]);
                self.parsed += beyond as u64;
            }
        }
        self.ring.push(data);
    }

    /// Bytes that reproduce the current screen on a fresh terminal: the
    /// alternate screen, colours, cursor, modes and title included.
    pub fn screen(&mut self) -> Vec<u8> {
        self.parse_to(self.ring.end());
        let screen = self.parser.screen();
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(b"\x1b[0m\x1b[?1049l\x1b[H\x1b[2J");
        if screen.alternate_screen() {
            out.extend_from_slice(b"\x1b[?1049h\x1b[H\x1b[2J");
        }
        out.extend_from_slice(&screen.state_formatted());
        out.extend_from_slice(&screen.cursor_state_formatted());
        out
    }

    fn resize(&mut self, cols: u16, rows: u16) {
        self.parse_to(self.ring.end());
        self.parser.screen_mut().set_size(rows, cols);
        self.cols = cols;
        self.rows = rows;
    }
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
            output_offset: out.ring.end(),
            container: None,
        }
    }

    /// Sends input bytes to the terminal (waits only while the PTY is full).
    pub async fn write(&self, bytes: Vec<u8>) {
        let _ = self.input.send(bytes).await;
    }

    /// Resizes the PTY and the emulator together, under the output lock so
    /// that bytes before the resize are interpreted at the old size.
    pub fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        let mut out = self.output.lock().unwrap();
        if out.exited.is_some() {
            return Ok(());
        }
        out.resize(cols, rows);
        self.pty.resize(cols, rows)
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
                tokio::select! {
                    _ = tokio::time::sleep(this.settings.linger) => {}
                    _ = this.shutdown.cancelled() => {}
                }
                this.map.lock().unwrap().remove(&t.id);
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
