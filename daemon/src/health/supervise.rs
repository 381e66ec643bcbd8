//! The supervisor: runs each configured component with its env and cwd,
//! appends its output to `<logs_dir>/<name>.log`, probes readiness, and
//! restarts it after an exit with the backoff. At shutdown each component's
//! process group gets SIGTERM, then SIGKILL after `KILL_AFTER`.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::backoff::Backoff;
use super::{Components, LastExit, State};
use crate::config::ComponentConfig;

/// Probe pace before a component is ready, and once it is.
const PROBE_STARTING: Duration = Duration::from_millis(500);
const PROBE_READY: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probes of a ready component that may time out in a row before it counts
/// as degraded: a busy machine answers late, a refused port is down now.
const SLOW_PROBES_TOLERATED: u32 = 2;

/// What one probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Pass,
    Fail,
    TimedOut,
}

/// How one run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RunEnd {
    Exited,
    Cancelled,
}

/// Runs `run_once` again and again, pausing with the backoff between runs,
/// until a run ends by cancellation or `cancel` fires during a pause.
pub async fn restart_loop<F, Fut>(mut run_once: F, cancel: &CancellationToken)
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = RunEnd>,
{
    let mut backoff = Backoff::default();
    let mut first = true;
    loop {
        let started = Instant::now();
        if run_once(first).await == RunEnd::Cancelled {
            return;
        }
        first = false;
        let pause = backoff.after_run(started.elapsed());
        tracing::debug!(pause = ?pause, "restarting after a pause");
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// The running supervision of every configured component.
#[derive(Debug)]
pub struct Supervisor {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Supervisor {
    /// Registers and starts every component.
    pub fn start(
        configs: &[ComponentConfig],
        components: &Components,
        logs_dir: &Path,
        workspace: &Path,
    ) -> Supervisor {
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        if !configs.is_empty() {
            if let Err(e) = std::fs::create_dir_all(logs_dir) {
                tracing::warn!(dir = %logs_dir.display(), error = %e, "cannot create the logs dir");
            }
        }
        for cfg in configs {
            components.register(&cfg.name, cfg.required, State::Starting);
            let cwd = match &cfg.cwd {
                Some(c) => workspace.join(c),
                None => workspace.to_owned(),
            };
            let run = Run {
                cfg: cfg.clone(),
                components: components.clone(),
                log: logs_dir.join(format!("{}.log", cfg.name)),
                cwd,
                cancel: cancel.clone(),
            };
            let cancel = cancel.clone();
            tracker.spawn(
                async move { restart_loop(|first| run.once(first), &cancel).await }
                    .instrument(tracing::info_span!("component", name = %cfg.name)),
            );
        }
        tracker.close();
        Supervisor { tracker, cancel }
    }

    /// Stops every component (SIGTERM, SIGKILL after `grace`) and waits.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.tracker.wait().await;
    }
}

struct Run {
    cfg: ComponentConfig,
    components: Components,
    log: PathBuf,
    cwd: PathBuf,
    cancel: CancellationToken,
}

fn signal_group(pid: u32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pid as i32), sig);
}

impl Run {
    fn set(&self, f: impl FnOnce(&mut super::Component)) {
        self.components.update(&self.cfg.name, f);
    }

    fn command(&self) -> std::io::Result<tokio::process::Command> {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(
            log,
            "--- workspaced: starting {} at {} ---",
            self.cfg.name,
            crate::time::now_rfc3339()
        )?;
        let mut cmd = tokio::process::Command::new(&self.cfg.command[0]);
        // The owner token is the daemon's, never a component's.
        cmd.env_remove("WORKSPACED_TOKEN");
        cmd.args(&self.cfg.command[1..])
            .envs(&self.cfg.env)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true);
        crate::sys::kill_with_parent(&mut cmd);
        Ok(cmd)
    }

    async fn once(&self, first: bool) -> RunEnd {
        if !first {
            self.set(|c| c.restarts += 1);
        }
        let spawned = self.command().and_then(|mut c| c.spawn());
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(command = ?self.cfg.command[0], error = %e, "cannot start component");
                self.set(|c| {
                    c.state = State::Crashed;
                    c.pid = None;
                });
                return RunEnd::Exited;
            }
        };
        let pid = child.id().unwrap_or(0);
        tracing::info!(pid, "component started");
        self.set(|c| {
            c.state = State::Starting;
            c.pid = Some(pid);
        });
        let probing = self.probe_loop();
        tokio::pin!(probing);
        let status = tokio::select! {
            s = child.wait() => s,
            _ = &mut probing => unreachable!("probing never ends"),
            _ = self.cancel.cancelled() => {
                signal_group(pid, Signal::SIGTERM);
                let status = match tokio::time::timeout(crate::server::KILL_AFTER, child.wait()).await {
                    Ok(s) => s,
                    Err(_) => {
                        tracing::warn!(pid, "component ignored SIGTERM; killing it");
                        signal_group(pid, Signal::SIGKILL);
                        child.wait().await
                    }
                };
                let last = status.ok().map(|s| last_exit(&s));
                self.set(|c| {
                    c.state = State::Stopped;
                    c.pid = None;
                    c.last_exit = last.or(c.last_exit.take());
                });
                tracing::info!("component stopped");
                return RunEnd::Cancelled;
            }
        };
        // What the component left running would hold its port against the restart.
        signal_group(pid, Signal::SIGKILL);
        let last = status.ok().map(|s| last_exit(&s));
        tracing::warn!(code = ?last.as_ref().and_then(|l| l.code), signal = ?last.as_ref().and_then(|l| l.signal), "component exited");
        self.set(|c| {
            c.state = State::Crashed;
            c.pid = None;
            c.last_exit = last;
        });
        RunEnd::Exited
    }

    /// Marks the component ready when its probe passes, degraded when a
    /// ready one stops passing. Never returns.
    async fn probe_loop(&self) {
        let Some(port) = self.cfg.port else {
            self.set(|c| c.state = State::Ready);
            return std::future::pending().await;
        };
        let mut ready = false;
        let mut slow = 0;
        loop {
            let probe = match &self.cfg.health_path {
                Some(path) => http_probe(port, path).await,
                None => tcp_probe(port).await,
            };
            slow = if probe == Probe::TimedOut {
                slow + 1
            } else {
                0
            };
            let ok = passes(probe, ready, slow);
            if slow > 0 {
                tracing::debug!(port, slow, "component probe timed out");
            }
            if ok != ready || !ok {
                let state = match (ok, ready) {
                    (true, _) => State::Ready,
                    (false, true) => State::Degraded,
                    (false, false) => State::Starting,
                };
                let mut changed = None;
                self.set(|c| {
                    // A degraded component stays degraded until it passes again.
                    if !(state == State::Starting && c.state == State::Degraded) && c.state != state
                    {
                        changed = Some(c.state);
                        c.state = state;
                    }
                });
                match changed {
                    Some(_) if state == State::Ready => tracing::info!(port, "component ready"),
                    Some(from) => {
                        tracing::warn!(port, ?from, to = ?state, "component stopped answering its probe")
                    }
                    None => {}
                }
            }
            if ok {
                ready = true;
            }
            let pace = if ok { PROBE_READY } else { PROBE_STARTING };
            tokio::time::sleep(pace).await;
        }
    }
}

fn last_exit(status: &std::process::ExitStatus) -> LastExit {
    LastExit {
        code: status.code(),
        signal: status
            .signal()
            .and_then(|s| Signal::try_from(s).ok())
            .map(|s| s.as_str()),
        at: crate::time::now_rfc3339(),
    }
}

/// Whether a component counts as answering after `probe`, `slow` being the
/// probes in a row that timed out (this one included).
fn passes(probe: Probe, ready: bool, slow: u32) -> bool {
    probe == Probe::Pass || (ready && (1..=SLOW_PROBES_TOLERATED).contains(&slow))
}

async fn tcp_probe(port: u16) -> Probe {
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    {
        Ok(Ok(_)) => Probe::Pass,
        Ok(Err(_)) => Probe::Fail,
        Err(_) => Probe::TimedOut,
    }
}

async fn http_probe(port: u16, path: &str) -> Probe {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let url = format!("http://127.0.0.1:{port}{path}");
    match crate::http_client::request("GET", &url, None, PROBE_TIMEOUT).await {
        Ok(code) if (200..300).contains(&code) => Probe::Pass,
        Err(crate::http_client::Error::Timeout) => Probe::TimedOut,
        _ => Probe::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_component_survives_two_slow_probes_but_not_a_refusal() {
        assert!(passes(Probe::TimedOut, true, 1));
        assert!(passes(Probe::TimedOut, true, 2));
        assert!(!passes(Probe::TimedOut, true, 3));
        assert!(!passes(Probe::Fail, true, 0));
        // Before it was ever ready, only a pass counts.
        assert!(!passes(Probe::TimedOut, false, 1));
        assert!(passes(Probe::Pass, false, 0));
    }
    use std::sync::{Arc, Mutex};

    #[tokio::test(start_paused = true)]
    async fn restarts_follow_the_backoff_and_reset_after_a_stable_run() {
        let t0 = Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        // Runs 0-3 crash at once; run 4 stays up 61 s; run 5 crashes; then cancelled.
        let s = starts.clone();
        let c = cancel.clone();
        let mut n = 0;
        restart_loop(
            move |_first| {
                let s = s.clone();
                let c = c.clone();
                n += 1;
                let k = n;
                async move {
                    s.lock().unwrap().push((Instant::now() - t0).as_secs());
                    match k {
                        5 => tokio::time::sleep(Duration::from_secs(61)).await,
                        7 => {
                            c.cancel();
                            return RunEnd::Cancelled;
                        }
                        _ => {}
                    }
                    RunEnd::Exited
                }
            },
            &cancel,
        )
        .await;
        // Pauses 1, 2, 4, 8; the stable run (at 15, up 61 s) resets to 1, then 2.
        assert_eq!(*starts.lock().unwrap(), vec![0, 1, 3, 7, 15, 77, 79]);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_during_a_pause_ends_the_loop() {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            c.cancel();
        });
        let t0 = Instant::now();
        restart_loop(|_| async { RunEnd::Exited }, &cancel).await;
        assert_eq!(Instant::now() - t0, Duration::from_millis(500));
    }
}
