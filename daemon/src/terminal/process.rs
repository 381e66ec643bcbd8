//! OS glue for terminals: the PTY, the child's session, the thread that
//! reaps the child, and the task that reads the PTY. The PTY's master is
//! non-blocking and driven by the async runtime: a keystroke and its echo
//! cross no thread of the daemon's (PROTOCOL.md's echo latency).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use portable_pty::{native_pty_system, CommandBuilder, MasterPty, PtySize};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::{ExitStatus, Terminal};

/// The master side of a terminal's PTY, kept until the child is reaped.
pub struct Pty {
    master: std::sync::Mutex<Box<dyn MasterPty + Send>>,
    fd: Option<i32>,
    /// A second descriptor of the master, non-blocking (which the master's
    /// own descriptor then is too: they share the open file), registered
    /// with the runtime: output is read and input written through it.
    io: AsyncFd<OwnedFd>,
}

impl Pty {
    /// The master's descriptor, for termios queries.
    pub fn fd(&self) -> Option<i32> {
        self.fd
    }

    pub fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        self.master
            .lock()
            .unwrap()
            .resize(size(cols, rows))
            .map_err(std::io::Error::other)
    }

    /// Writes all of `bytes` to the PTY, waiting while its input is full.
    /// An error means the terminal is gone (its slave side closed).
    pub async fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let mut ready = self.io.writable().await?;
            match ready.try_io(|fd| Ok(nix::unistd::write(fd.get_ref(), bytes)?)) {
                Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => bytes = bytes.get(n..).unwrap_or_default(),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Reads what the PTY has into `buf`, waiting until it has some. `Ok(0)`
    /// or an error (EIO once the slave side is closed) is the end.
    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut ready = self.io.readable().await?;
            match ready.try_io(|fd| Ok(nix::unistd::read(fd.get_ref(), buf)?)) {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(r) => return r,
                Err(_would_block) => {}
            }
        }
    }
}

pub struct Spawned {
    pub pid: u32,
    pub pty: Pty,
}

fn size(cols: u16, rows: u16) -> PtySize {
    PtySize {
        rows,
        cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// Names that never reach a terminal's environment: the daemon's secrets.
const HIDDEN_ENV: &[&str] = &["WORKSPACED_TOKEN"];

/// Starts `command` on a new PTY of the given size, in its own session.
pub fn spawn(
    command: &[String],
    cwd: &Path,
    env: &BTreeMap<String, String>,
    cols: u16,
    rows: u16,
) -> anyhow::Result<Spawned> {
    let pair = native_pty_system()
        .openpty(size(cols, rows))
        .context("open a pty")?;
    let mut cmd = CommandBuilder::new(&command[0]);
    cmd.args(&command[1..]);
    cmd.cwd(cwd);
    for name in HIDDEN_ENV {
        cmd.env_remove(name);
    }
    cmd.env("TERM", "xterm-256color");
    cmd.env("PWD", cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = pair.slave.spawn_command(cmd).context("spawn")?;
    // The slave stays open only in the child, so EOF follows its exit.
    drop(pair.slave);
    let pid = child.process_id().context("the child has a pid")?;
    // The child is reaped by pid (waitpid) so that its signal can be named.
    drop(child);
    // Not portable-pty's reader and writer: they block, and its writer
    // sends the shell an end of file when dropped.
    let io = pair
        .master
        .as_raw_fd()
        .ok_or_else(|| std::io::Error::other("the pty master has no descriptor"))
        .and_then(crate::sys::nonblocking_twin);
    let io = match io {
        Ok(io) => io,
        Err(e) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            reap(Pid::from_raw(pid as i32));
            return Err(anyhow::Error::from(e).context("make the pty non-blocking"));
        }
    };
    let fd = pair.master.as_raw_fd();
    Ok(Spawned {
        pid,
        pty: Pty {
            master: std::sync::Mutex::new(pair.master),
            fd,
            io,
        },
    })
}

fn exit_status(ws: WaitStatus) -> Option<ExitStatus> {
    match ws {
        WaitStatus::Exited(_, code) => Some(ExitStatus {
            code: Some(code),
            signal: None,
        }),
        WaitStatus::Signaled(_, sig, _) => Some(ExitStatus {
            code: None,
            signal: Some(sig.as_str()),
        }),
        _ => None,
    }
}

/// How often the reader looks at the echo state and the foreground
/// process while output streams.
const CHECK_EVERY: Duration = Duration::from_millis(5);

/// Starts the waiter thread and the reader task of a terminal. The returned
/// channel yields the exit status once the child is reaped and its output
/// has been read to the end. When the thread cannot be started (a pids
/// limit), the child is killed and reaped and the error returned.
pub fn start_io(
    t: &Arc<Terminal>,
    output_activity: Option<crate::activity::Activity>,
) -> std::io::Result<oneshot::Receiver<ExitStatus>> {
    let (eof_tx, eof_rx) = std::sync::mpsc::channel::<()>();
    let (exit_tx, exit_rx) = oneshot::channel();
    let pid = Pid::from_raw(t.pid as i32);
    let waiter = std::thread::Builder::new()
        .name(format!("pty-wait-{}", t.id))
        .spawn(move || {
            let status = reap(pid);
            // Output written just before the exit is still in the PTY: wait
            // for the reader to drain it (a background job holding the PTY
            // open must not delay the exit for long).
            let _ = eof_rx.recv_timeout(Duration::from_millis(500));
            let _ = exit_tx.send(status);
        });
    if let Err(e) = waiter {
        let _ = kill(pid, Signal::SIGKILL);
        reap(pid);
        return Err(e);
    }

    let term = Arc::clone(t);
    let fd = t.pty.fd;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        // The termios and foreground checks are two system calls: during a
        // flood (a 4 KiB read every few microseconds) they are made once
        // per `CHECK_EVERY`, which the clients' mode timer backs up.
        let mut checked: Option<std::time::Instant> = None;
        // The emulator's catch-up, run beside this task (`Terminal::append`).
        let mut catching_up = None;
        loop {
            let n = match term.pty.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            term.append(&buf[..n], &mut catching_up).await;
            let now = std::time::Instant::now();
            if checked.is_some_and(|at| now.saturating_duration_since(at) < CHECK_EVERY) {
                continue;
            }
            checked = Some(now);
            if let Some(activity) = &output_activity {
                // Output counts only while a program other than the
                // shell (a build, a test run) has the foreground.
                let foreground = fd.and_then(crate::sys::foreground_pgrp);
                if foreground.is_some_and(|g| g != term.pid as i32) {
                    activity.touch(crate::activity::Source::TerminalOutput);
                }
            }
            term.check_mode();
        }
        let _ = eof_tx.send(());
    });
    Ok(exit_rx)
}

/// Waits for the child to end and says how.
fn reap(pid: Pid) -> ExitStatus {
    loop {
        match waitpid(pid, None) {
            Ok(ws) => {
                if let Some(s) = exit_status(ws) {
                    return s;
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => {
                return ExitStatus {
                    code: None,
                    signal: None,
                }
            }
        }
    }
}

/// The processes of the session led by `sid` (a terminal's shell and
/// everything it started that stayed in its session).
pub fn session_members(sid: u32) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // Fields after the parenthesised command: state ppid pgrp session.
                    let rest = &stat[stat.rfind(')')? + 2..];
                    let mut f = rest.split(' ');
                    let state = f.next()?;
                    let session = f.nth(2)?.parse::<u32>().ok()?;
                    Some(session == sid && state != "Z")
                })
                .unwrap_or(false)
        })
        .map(Pid::from_raw)
        .collect()
}

/// Hangs up a terminal's session: SIGHUP to every process group in it, then
/// SIGKILL to what is left after `grace`. Returns when none is left.
pub async fn end_session(sid: u32, grace: Duration) {
    let members = session_members(sid);
    let mut groups: Vec<Pid> = members
        .iter()
        .filter_map(|p| nix::unistd::getpgid(Some(*p)).ok())
        .collect();
    groups.sort();
    groups.dedup();
    for g in &groups {
        let _ = nix::sys::signal::killpg(*g, Signal::SIGHUP);
        let _ = nix::sys::signal::killpg(*g, Signal::SIGCONT);
    }
    let deadline = tokio::time::Instant::now() + grace;
    let give_up = deadline + Duration::from_secs(2);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        let left = session_members(sid);
        if left.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= give_up {
            tracing::warn!(
                session = sid,
                left = left.len(),
                "processes survived SIGKILL"
            );
            return;
        }
        if now >= deadline {
            for p in left {
                let _ = kill(p, Signal::SIGKILL);
            }
        }
    }
}
