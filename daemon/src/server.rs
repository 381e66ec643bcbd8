//! Start-up and shutdown: credentials, state, the listener's serve loop and
//! the bounded drain on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::activity::Activity;
use crate::auth::{self, Authenticator};
use crate::config::Config;
use crate::confine::Root;
use crate::events::{Event, EventBus};
use crate::health::cgroup::Cgroup;
use crate::health::supervise::Supervisor;
use crate::health::Components;
use crate::http::{self, App};
use crate::idle::Idle;
use crate::ports::{self, Ports};
use crate::proxy::Proxy;
use crate::sync::{self, SyncHub};
use crate::terminal::{self, Terminals};

/// How long processes get after SIGHUP/SIGTERM before SIGKILL at shutdown.
pub const KILL_AFTER: Duration = Duration::from_secs(10);

/// Reads a secret file, ignoring one trailing newline.
fn read_secret(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("read {what} from {}", path.display()))?;
    let s = s.strip_suffix('\n').unwrap_or(&s);
    let s = s.strip_suffix('\r').unwrap_or(s);
    anyhow::ensure!(!s.is_empty(), "{what} file {} is empty", path.display());
    Ok(s.to_owned())
}

/// The owner token, and whether the daemon generated it (then it is printed).
fn owner_token(config: &Config) -> anyhow::Result<(String, bool)> {
    if let Some(t) = &config.token {
        return Ok((t.clone(), false));
    }
    if let Some(f) = &config.token_file {
        return Ok((read_secret(f, "the token")?, false));
    }
    let path = config.state_dir.join("token");
    if let Ok(t) = read_secret(&path, "the token") {
        return Ok((t, true));
    }
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("create state dir {}", config.state_dir.display()))?;
    let token = auth::generate_token();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("write the token to {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    Ok((token, true))
}

/// The address people use to reach a listener (loopback for a wildcard bind).
fn reachable(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        a => a.to_string(),
    }
}

/// Serves on `listener` until `shutdown` resolves, then drains: clients are
/// told, terminals hung up and components stopped (SIGKILL after 10 s), and
/// the call returns. `on_idle = exit` starts the same drain.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (token, generated) = owner_token(&config)?;
    let jwt_secret = match &config.jwt_secret_file {
        Some(f) => Some(read_secret(f, "the JWT secret")?),
        None => None,
    };
    let root = Root::open(&config.workspace)
        .with_context(|| format!("open workspace {}", config.workspace.display()))?;
    let local = listener.local_addr()?;
    if generated {
        // Printed once, on stderr and outside the log format, as the contract says.
        eprintln!(
            "workspaced: console at http://{}/?access_token={token}",
            reachable(local)
        );
    }
    let (idle_timeout, max_active) =
        crate::idle::levels::from_config(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let events = EventBus::default();
    let started_at = SystemTime::now();
    let activity = Activity::default();
    let components = Components::new(events.clone());
    let supervisor = Supervisor::start(
        &config.components,
        &components,
        &config.logs_dir,
        &config.workspace,
    );
    let idle = Arc::new(Idle::new(
        activity.clone(),
        idle_timeout,
        max_active,
        config.warn_before,
        started_at,
    ));
    // `on_idle = exit` cancels this: the same drain as on SIGTERM.
    let idle_exit = CancellationToken::new();
    tracker.spawn(
        crate::idle::drive(
            idle.clone(),
            crate::idle::Actions {
                events: events.clone(),
                pre_stop: config.pre_stop.clone(),
                on_idle: config.on_idle.clone(),
                exit: idle_exit.clone(),
                cwd: config.workspace.clone(),
            },
            cancel.clone(),
        )
        .instrument(tracing::info_span!("idle")),
    );
    let cgroup = Cgroup::own();
    if config.busy_cpu_percent > 0 {
        tracker.spawn(
            crate::health::cpu_activity(
                cgroup.clone(),
                config.busy_cpu_percent,
                activity.clone(),
                cancel.clone(),
            )
            .instrument(tracing::info_span!("cpu_activity")),
        );
    }
    let terminals = Arc::new(Terminals::new(
        terminal::Settings {
            scrollback_bytes: config.scrollback_bytes,
            client_queue_bytes: config.client_queue_bytes,
            linger: config.terminal_linger,
            max_terminals: config.max_terminals,
        },
        tracker.clone(),
        cancel.clone(),
        events.clone(),
    ));
    if config.terminal_output_is_activity {
        terminals.count_output_as_activity(activity.clone());
    }
    // A crash may have left temporary files of interrupted writes behind.
    let removed = crate::files::disk::remove_leftover_temps(root.path());
    if removed > 0 {
        tracing::info!(
            removed,
            "removed temporary files left by an interrupted write"
        );
    }
    let sync = SyncHub::start(
        root.path(),
        sync::Settings {
            watch_limit: config.watch_limit,
        },
        &tracker,
        cancel.clone(),
    )
    .context("start the file watcher")?;
    // A devfile whose endpoints cannot be read costs the declared ports,
    // not the workspace: the daemon warns and serves.
    let declared = match &config.devfile_text {
        Some(text) => match ports::devfile::endpoints(text) {
            Ok((endpoints, warnings)) => {
                for w in warnings {
                    tracing::warn!(problem = %w, "devfile endpoint ignored");
                }
                endpoints
            }
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), "devfile endpoints ignored");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let ports = Arc::new(Ports::new(
        ports::Settings {
            max_visibility: config.max_visibility,
            default_visibility: config.default_visibility,
            ignore: config.ignore_ports.clone(),
            own_port: local.port(),
            url_template: if config.port_url_template
                == format!("http://{}/proxy/${{PORT}}/", config.listen)
            {
                // The default names the listener as bound (port 0, 0.0.0.0): use what is reachable.
                format!("http://{}/proxy/${{PORT}}/", reachable(local))
            } else {
                config.port_url_template.clone()
            },
        },
        declared,
        events.clone(),
    ));
    ports::spawn_detector(ports.clone(), activity.clone(), &tracker, cancel.clone());
    let proxy = Proxy::new(
        config.upstream_timeout,
        config.session_ttl,
        tracker.clone(),
        cancel.clone(),
    );
    let session_ttl = config.session_ttl;
    crate::memory::spawn(&tracker, cancel.clone());
    let relay = http::relay::Relay::new(
        config.containers.clone(),
        &token,
        cancel.clone(),
        config.max_ws_message_bytes,
        config.ws_ping_interval,
    )?;
    let app = Arc::new(App {
        auth: Authenticator::new(
            &token,
            jwt_secret.as_deref().map(str::as_bytes),
            &config.name,
        ),
        config,
        root,
        terminals: terminals.clone(),
        events: events.clone(),
        activity,
        components,
        idle,
        cgroup,
        sync,
        ports,
        proxy,
        sessions: crate::session::Sessions::new(session_ttl),
        own_port: local.port(),
        relay,
        draining: AtomicBool::new(false),
        started_at,
    });
    tracing::info!(listen = %local, workspace = %app.config.workspace.display(), name = %app.config.name, "serving");

    let stop_serving = CancellationToken::new();
    let server = {
        let stop = stop_serving.clone();
        tokio::spawn(http::serve::serve(listener, app.clone(), stop))
    };

    tokio::select! {
        _ = shutdown => {}
        _ = idle_exit.cancelled() => {}
    }
    tracing::info!("shutting down");
    app.draining.store(true, Ordering::SeqCst);
    events.send(Event::Shutdown);
    cancel.cancel();
    tokio::join!(terminals.shutdown_all(KILL_AFTER), supervisor.shutdown());
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    stop_serving.cancel();
    match tokio::time::timeout(Duration::from_secs(3), server).await {
        Ok(joined) => joined.context("serve task")?,
        Err(_) => tracing::warn!("connections still open after the drain; closing them"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
