//! Idle detection: the pure machine (`machine.rs`), the timeout levels
//! (`levels.rs`), and here the driver that sleeps until the machine's next
//! instant, sends the warning and idle events and runs `pre_stop` and the
//! `on_idle` action.

pub mod levels;
pub mod machine;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::activity::Activity;
use crate::config::OnIdle;
use crate::events::{Event, EventBus};
use levels::Limit;
use machine::{Limits, Machine, Step};

/// The contract's `Idle` object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IdleInfo {
    pub state: &'static str,
    pub last_activity: String,
    pub idle_seconds: u64,
    pub timeout_seconds: u64,
    pub stop_at: Option<String>,
    pub sources: BTreeMap<&'static str, String>,
}

/// A user's timeout that the levels above do not allow.
#[derive(Debug, thiserror::Error)]
#[error(
    "a timeout of {asked} is longer than the {allowed} that the platform and the devfile allow"
)]
pub struct NotAllowed {
    pub asked: String,
    pub allowed: String,
}

fn show(l: Limit) -> String {
    match l {
        Some(d) => humantime::format_duration(d).to_string(),
        None => "no limit".into(),
    }
}

/// The shared idle state: the machine, behind a lock, and what reads need.
#[derive(Debug)]
pub struct Idle {
    machine: Mutex<Machine>,
    activity: Activity,
    /// The timeout the platform and the devfile allow (the user's ceiling).
    ceiling: Limit,
    started_at: SystemTime,
    /// Woken when the limits change.
    changed: Notify,
}

impl Idle {
    /// `timeout` and `max_active` are the platform and devfile levels combined.
    pub fn new(
        activity: Activity,
        timeout: Limit,
        max_active: Limit,
        warn_before: Duration,
        started_at: SystemTime,
    ) -> Self {
        Idle {
            machine: Mutex::new(Machine::new(
                Instant::now(),
                Limits {
                    timeout,
                    max_active,
                    warn_before,
                },
            )),
            activity,
            ceiling: timeout,
            started_at,
            changed: Notify::new(),
        }
    }

    /// Sets the user's level; it may only shorten what is allowed.
    pub fn set_user_timeout(&self, asked: Duration) -> Result<(), NotAllowed> {
        let asked = levels::timeout_limit(asked);
        if levels::longer(asked, self.ceiling) {
            return Err(NotAllowed {
                asked: show(asked),
                allowed: show(self.ceiling),
            });
        }
        let mut m = self.machine.lock().unwrap();
        let mut limits = m.limits();
        limits.timeout = asked;
        m.set_limits(limits);
        drop(m);
        self.changed.notify_one();
        Ok(())
    }

    /// The `Idle` object as of now.
    pub fn info(&self) -> IdleInfo {
        let now = SystemTime::now();
        let m = self.machine.lock().unwrap();
        let limits = m.limits();
        let idle = m.is_idle(Instant::now(), self.activity.last_instant());
        drop(m);
        let sources = self.activity.sources();
        let last = sources.values().max().copied().unwrap_or(self.started_at);
        let by_idle = limits.timeout.map(|t| last + t);
        let by_max = limits.max_active.map(|m| self.started_at + m);
        let stop_at = match (by_idle, by_max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        IdleInfo {
            state: if idle { "idle" } else { "active" },
            last_activity: crate::time::rfc3339(last),
            idle_seconds: now.duration_since(last).unwrap_or_default().as_secs(),
            timeout_seconds: limits.timeout.map_or(0, |t| t.as_secs()),
            stop_at: stop_at.map(crate::time::rfc3339),
            sources: sources
                .into_iter()
                .map(|(s, t)| (s.name(), crate::time::rfc3339(t)))
                .collect(),
        }
    }
}

/// What happens on idle, and how the driver reaches the rest of the daemon.
#[derive(Debug)]
pub struct Actions {
    pub events: EventBus,
    pub pre_stop: Option<Vec<String>>,
    pub on_idle: OnIdle,
    /// Cancelled by `on_idle = exit`: the daemon shuts down as on SIGTERM.
    pub exit: CancellationToken,
    /// Where `pre_stop` and `exec` run.
    pub cwd: std::path::PathBuf,
}

/// Runs the machine until `cancel`.
pub async fn drive(idle: Arc<Idle>, actions: Actions, cancel: CancellationToken) {
    let mut activity = idle.activity.watch();
    loop {
        let now = Instant::now();
        let (step, wait_activity) = {
            let mut m = idle.machine.lock().unwrap();
            let step = m.step(now, idle.activity.last_instant());
            (step, m.waits_for_activity(now))
        };
        match step {
            Step::Warn(stop) => {
                // The same wall-clock stop_at that `GET /api/v1/idle` shows.
                let stop_at = idle.info().stop_at.unwrap_or_else(|| {
                    crate::time::rfc3339(SystemTime::now() + stop.saturating_duration_since(now))
                });
                tracing::info!(stop_at = %stop_at, "idle warning");
                actions.events.send(Event::IdleWarning { stop_at });
            }
            Step::Idle => {
                let info = idle.info();
                tracing::info!(last_activity = %info.last_activity, "workspace idle");
                actions.events.send(Event::Idle { idle: info.clone() });
                tokio::select! {
                    _ = on_idle(&actions, &info) => {}
                    _ = cancel.cancelled() => return,
                }
            }
            Step::Wait(until) => {
                activity.borrow_and_update();
                let sleep = async {
                    match until {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                };
                let woke_by_activity = async {
                    if wait_activity {
                        let _ = activity.changed().await;
                    } else {
                        std::future::pending::<()>().await
                    }
                };
                tokio::select! {
                    _ = sleep => {}
                    _ = woke_by_activity => {}
                    _ = idle.changed.notified() => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }
}

async fn on_idle(actions: &Actions, info: &IdleInfo) {
    if let Some(cmd) = &actions.pre_stop {
        run_command("pre_stop", cmd, &actions.cwd).await;
    }
    match &actions.on_idle {
        OnIdle::Report => {}
        OnIdle::Exit => {
            tracing::info!("on_idle = exit: shutting down");
            actions.exit.cancel();
        }
        OnIdle::Exec(cmd) => run_command("on_idle exec", cmd, &actions.cwd).await,
        OnIdle::Webhook(url) => {
            let body = serde_json::to_vec(info).expect("Idle serializes");
            deliver_webhook(url, &body).await;
        }
    }
}

async fn run_command(what: &str, cmd: &[String], cwd: &std::path::Path) {
    let status = tokio::process::Command::new(&cmd[0])
        .env_remove("WORKSPACED_TOKEN")
        .args(&cmd[1..])
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .instrument(tracing::info_span!("idle_command", what))
        .await;
    match status {
        Ok(s) if s.success() => tracing::info!(command = ?cmd[0], "{what} ran"),
        Ok(s) => tracing::warn!(command = ?cmd[0], status = %s, "{what} failed"),
        Err(e) => tracing::warn!(command = ?cmd[0], error = %e, "{what} could not start"),
    }
}

/// Tries of the webhook, and the first pause between them (doubling).
pub const WEBHOOK_TRIES: u32 = 5;
pub const WEBHOOK_FIRST_PAUSE: Duration = Duration::from_secs(1);

/// POSTs the `Idle` JSON, retried with backoff; true once a try got a 2xx.
pub async fn deliver_webhook(url: &str, body: &[u8]) -> bool {
    let mut pause = WEBHOOK_FIRST_PAUSE;
    for attempt in 1..=WEBHOOK_TRIES {
        let result = crate::http_client::request(
            "POST",
            url,
            Some(("application/json", body)),
            Duration::from_secs(10),
        )
        .await;
        match result {
            Ok(code) if (200..300).contains(&code) => {
                tracing::info!(attempt, code, "idle webhook delivered");
                return true;
            }
            Ok(code) => tracing::warn!(attempt, code, "idle webhook refused"),
            Err(e) => tracing::warn!(attempt, error = %e, "idle webhook failed"),
        }
        if attempt < WEBHOOK_TRIES {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    tracing::error!(tries = WEBHOOK_TRIES, "idle webhook not delivered");
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::Source;

    const S: Duration = Duration::from_secs(1);

    fn setup(timeout: u64, max_active: Option<u64>, on_idle: OnIdle) -> (Arc<Idle>, Actions) {
        let activity = Activity::default();
        let idle = Arc::new(Idle::new(
            activity,
            Some(S * timeout as u32),
            max_active.map(|m| S * m as u32),
            S * 2,
            SystemTime::now(),
        ));
        let actions = Actions {
            events: EventBus::default(),
            pre_stop: None,
            on_idle,
            exit: CancellationToken::new(),
            cwd: std::env::temp_dir(),
        };
        (idle, actions)
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_warns_then_reports_idle_then_returns_to_active() {
        let (idle, actions) = setup(10, None, OnIdle::Report);
        let mut rx = actions.events.subscribe();
        let cancel = CancellationToken::new();
        let t0 = Instant::now();
        let task = tokio::spawn(drive(idle.clone(), actions, cancel.clone()));
        let ev = rx.recv().await.unwrap();
        assert!(matches!(ev, Event::IdleWarning { .. }), "{ev:?}");
        assert_eq!(Instant::now() - t0, S * 8);
        let ev = rx.recv().await.unwrap();
        let Event::Idle { idle: info } = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(Instant::now() - t0, S * 10);
        assert_eq!(info.state, "idle");
        assert_eq!(info.timeout_seconds, 10);
        assert_eq!(idle.info().state, "idle");
        tokio::time::advance(S).await;
        assert_eq!(idle.info().state, "idle", "still idle without activity");
        idle.activity.touch(Source::Heartbeat);
        assert_eq!(idle.info().state, "active");
        assert!(idle.info().sources.contains_key("heartbeat"));
        let t1 = Instant::now();
        assert!(matches!(
            rx.recv().await.unwrap(),
            Event::IdleWarning { .. }
        ));
        assert!(matches!(rx.recv().await.unwrap(), Event::Idle { .. }));
        assert_eq!(Instant::now() - t1, S * 10, "a second entry into idle");
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn exit_cancels_the_daemon_and_a_user_level_shortens() {
        let (idle, actions) = setup(600, None, OnIdle::Exit);
        let exit = actions.exit.clone();
        let cancel = CancellationToken::new();
        let t0 = Instant::now();
        let task = tokio::spawn(drive(idle.clone(), actions, cancel.clone()));
        let e = idle.set_user_timeout(S * 601).unwrap_err();
        assert!(e.to_string().contains("10m"), "{e}");
        assert!(
            idle.set_user_timeout(Duration::ZERO).is_err(),
            "off is longer"
        );
        idle.set_user_timeout(S * 5).unwrap();
        exit.cancelled().await;
        assert_eq!(Instant::now() - t0, S * 5);
        assert_eq!(idle.info().timeout_seconds, 5);
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn max_active_fires_with_constant_activity() {
        let (idle, actions) = setup(10, Some(30), OnIdle::Report);
        let mut rx = actions.events.subscribe();
        let cancel = CancellationToken::new();
        let t0 = Instant::now();
        let task = tokio::spawn(drive(idle.clone(), actions, cancel.clone()));
        let a = idle.activity.clone();
        let busy = tokio::spawn(async move {
            loop {
                a.touch(Source::Api);
                tokio::time::sleep(S).await;
            }
        });
        loop {
            if let Event::Idle { idle: info } = rx.recv().await.unwrap() {
                assert_eq!(info.state, "idle");
                break;
            }
        }
        assert_eq!(Instant::now() - t0, S * 30);
        tokio::time::sleep(S * 5).await;
        assert_eq!(idle.info().state, "idle", "stays idle after max_active");
        busy.abort();
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_webhook_is_retried_with_doubling_pauses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/idle", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut times = Vec::new();
            for i in 0..3 {
                let (mut s, _) = listener.accept().await.unwrap();
                times.push(Instant::now());
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !String::from_utf8_lossy(&got).contains("\"state\"") {
                    let n = s.read(&mut buf).await.unwrap();
                    got.extend_from_slice(&buf[..n]);
                }
                let answer: &[u8] = if i < 2 {
                    b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                };
                s.write_all(answer).await.unwrap();
            }
            times
        });
        let (idle, _) = setup(10, None, OnIdle::Report);
        let body = serde_json::to_vec(&idle.info()).unwrap();
        assert!(deliver_webhook(&url, &body).await);
        let times = server.await.unwrap();
        assert_eq!(times[1] - times[0], S);
        assert_eq!(times[2] - times[1], S * 2);
    }
}
