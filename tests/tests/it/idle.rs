//! The idle machine end to end: warning, then the action (`exit`, `exec`,
//! `webhook`, with `pre_stop`), `max_active`, and the timeout levels.

use std::process::Command;
use std::time::{Duration, Instant};

use integration_tests::{daemon_binary, Frame, TestDaemon, Ws, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The next event of the given types (others skipped).
async fn next_event(events: &mut Ws, types: &[&str]) -> Value {
    loop {
        match events.next().await {
            Frame::Text(v) if types.contains(&v["type"].as_str().unwrap_or("")) => return v,
            Frame::Text(_) => {}
            other => panic!("event stream ended: {other:?}"),
        }
    }
}

fn alive(pid: u32) -> bool {
    // A zombie has ended too.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

#[tokio::test]
async fn exit_warns_then_shuts_down_gracefully_and_ends_terminals() {
    let mut d = TestDaemon::builder()
        .arg("idle-timeout", "3s")
        .arg("warn-before", "1s")
        .arg("on-idle", "exit")
        .start();
    let mut events = d.ws("/api/v1/events").await;
    let (code, t) = d
        .post_json("/api/v1/terminals", json!({"command": ["sleep", "600"]}))
        .await;
    assert_eq!(code, 201, "{t}");
    let pid = t["pid"].as_u64().unwrap() as u32;
    let created = Instant::now();

    let warning = next_event(&mut events, &["idle_warning", "idle"]).await;
    assert_eq!(
        warning["type"], "idle_warning",
        "the warning comes first: {warning}"
    );
    assert!(warning["stop_at"].is_string());
    let idle = next_event(&mut events, &["idle"]).await;
    assert!(
        created.elapsed() >= Duration::from_secs(2),
        "not before the timeout"
    );
    assert_eq!(idle["idle"]["state"], "idle", "{idle}");
    assert_eq!(idle["idle"]["timeout_seconds"], 3);
    assert_eq!(idle["idle"]["stop_at"], warning["stop_at"]);
    next_event(&mut events, &["shutdown"]).await;
    let status = d.wait(WAIT);
    assert_eq!(status.code(), Some(0), "graceful exit");
    assert!(!alive(pid), "the terminal's process ended");
    assert!(d.log.text().contains("shutting down"));
}

#[tokio::test]
async fn exec_runs_after_pre_stop() {
    let d = TestDaemon::builder()
        .config(
            r#"
idle_timeout = 2
warn_before = "1s"
pre_stop = ["sh", "-c", "echo pre > pre-stop-ran"]
on_idle = { exec = ["sh", "-c", "test -f pre-stop-ran && echo exec > exec-ran"] }
"#,
        )
        .start();
    let marker = d.root().join("exec-ran");
    let deadline = Instant::now() + WAIT;
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "exec did not run; log:\n{}",
            d.log.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read_to_string(marker).unwrap(), "exec\n");
    // `report`-like afterwards: the daemon still serves and says idle.
    let idle = d.get_json("/api/v1/idle").await;
    assert_eq!(idle["state"], "idle");
    // Activity makes it active again.
    let r = d
        .req(reqwest::Method::POST, "/api/v1/activity")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(d.get_json("/api/v1/idle").await["state"], "active");
}

/// One request read whole (by its `Content-Length`): its bytes and its body,
/// or `None` when the peer ends or fails first.
async fn read_request(s: &mut (impl AsyncReadExt + Unpin)) -> Option<(Vec<u8>, String)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.ok().filter(|&n| n > 0)?;
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                let body = text[end + 4..].to_owned();
                return Some((got, body));
            }
        }
    }
}

/// An HTTP server that answers 503 to the first `refuse` requests, then 200,
/// and hands over each request body with the time it came.
async fn webhook_server(refuse: usize) -> (String, tokio::sync::mpsc::Receiver<(Instant, String)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/idle-hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        // The daemon's port detector probes new listeners with a GET: only
        // the webhook's POSTs count.
        let mut i = 0;
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let (got, body) = read_request(&mut s).await.expect("request cut short");
            if !got.starts_with(b"POST /idle-hook ") {
                let _ = s
                    .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    .await;
                continue;
            }
            let answer: &[u8] = if i < refuse {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            };
            s.write_all(answer).await.unwrap();
            i += 1;
            if tx.send((Instant::now(), body)).await.is_err() {
                return;
            }
        }
    });
    (url, rx)
}

#[tokio::test]
async fn the_webhook_is_delivered_after_two_refusals() {
    let (url, mut rx) = webhook_server(2).await;
    let d = TestDaemon::builder()
        .config(&format!(
            "idle_timeout = 2\nwarn_before = \"1s\"\non_idle = {{ webhook = \"{url}\" }}\n"
        ))
        .start();
    let mut tries = Vec::new();
    for _ in 0..3 {
        let got = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a webhook try")
            .unwrap();
        tries.push(got);
    }
    for (_, body) in &tries {
        let idle: Value = serde_json::from_str(body).unwrap();
        assert_eq!(idle["state"], "idle", "{idle}");
        assert_eq!(idle["timeout_seconds"], 2);
    }
    // Pauses of about 1 s, then 2 s.
    let gap1 = tries[1].0 - tries[0].0;
    let gap2 = tries[2].0 - tries[1].0;
    assert!(
        gap1 >= Duration::from_millis(900) && gap2 >= Duration::from_millis(1900),
        "{gap1:?} {gap2:?}"
    );
    assert!(d
        .log
        .wait_for(WAIT, |l| l.contains("idle webhook delivered").then_some(()))
        .is_some());
    // Delivered: no fourth try.
    assert!(tokio::time::timeout(Duration::from_millis(1500), rx.recv())
        .await
        .is_err());
}

/// An HTTPS server with a certificate of a private CA: each POST's body
/// is handed over and answered 200.
async fn https_webhook_server(
    ca: &integration_tests::tls::TestCa,
) -> (String, tokio::sync::mpsc::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/idle-hook", listener.local_addr().unwrap());
    let acceptor = ca.acceptor();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            // Each connection on its own: the port detector's probe may
            // connect and never finish a handshake.
            conns.spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let Some((got, body)) = read_request(&mut s).await else {
                    return;
                };
                if !got.starts_with(b"POST /idle-hook ") {
                    return;
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
                let _ = tx.send(body).await;
            });
        }
    });
    (url, rx)
}

// Multi-threaded: the TLS server answers while the test waits on the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_is_delivered_with_the_ca_of_ssl_cert_file() {
    let ca = integration_tests::tls::TestCa::new();
    let (url, mut rx) = https_webhook_server(&ca).await;
    let config =
        format!("idle_timeout = 1\nwarn_before = \"1s\"\non_idle = {{ webhook = \"{url}\" }}\n");
    let d = TestDaemon::builder()
        .config(&config)
        .env("SSL_CERT_FILE", ca.ca_cert.to_str().unwrap())
        .start();
    let body = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the webhook over https")
        .unwrap();
    let idle: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(idle["state"], "idle", "{idle}");
    assert!(d
        .log
        .wait_for(WAIT, |l| l.contains("idle webhook delivered").then_some(()))
        .is_some());

    // Without the CA the server's certificate is not trusted: nothing is
    // delivered, and the log says why.
    let untrusting = TestDaemon::builder()
        .config(&config)
        .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
        .start();
    let why = untrusting
        .log
        .wait_for(WAIT, |l| {
            l.contains("idle webhook failed").then(|| l.to_owned())
        })
        .expect("a failed try");
    assert!(
        why.contains("certificate") || why.contains("UnknownIssuer"),
        "{why}"
    );
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn max_active_fires_despite_constant_activity() {
    let d = TestDaemon::builder()
        .arg("idle-timeout", "30m")
        .arg("max-active", "3s")
        .arg("warn-before", "1s")
        .start();
    let mut events = d.ws("/api/v1/events").await;
    let started = Instant::now();
    let idle = loop {
        let r = d
            .req(reqwest::Method::POST, "/api/v1/activity")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        if let Ok(Frame::Text(v)) =
            tokio::time::timeout(Duration::from_millis(200), events.next()).await
        {
            if v["type"] == "idle" {
                break v;
            }
        }
        assert!(started.elapsed() < WAIT, "max_active never fired");
    };
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(idle["idle"]["state"], "idle");
    // It stays idle whatever happens.
    let r = d
        .req(reqwest::Method::POST, "/api/v1/activity")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(d.get_json("/api/v1/idle").await["state"], "idle");
}

#[tokio::test]
async fn the_user_level_may_only_shorten() {
    let d = TestDaemon::builder().arg("idle-timeout", "10m").start();
    let put = |body: Value| {
        d.req(reqwest::Method::PUT, "/api/v1/idle")
            .json(&body)
            .send()
    };
    let r = put(json!({"timeout": "1h"})).await.unwrap();
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "timeout_not_allowed", "{e}");
    let r = put(json!({"timeout": "0"})).await.unwrap();
    assert_eq!(r.status(), 403, "turning detection off is lengthening");
    let r = put(json!({"timeout": "soon"})).await.unwrap();
    assert_eq!(r.status(), 400);
    let r = put(json!({"timeout": "5m"})).await.unwrap();
    assert_eq!(r.status(), 200);
    let idle: Value = r.json().await.unwrap();
    assert_eq!(idle["timeout_seconds"], 300);
    assert!(idle["stop_at"].is_string());
    // Back up to the allowed level is fine.
    let r = put(json!({"timeout": 600})).await.unwrap();
    assert_eq!(r.status(), 200);
}

fn serve_in(workspace: &std::path::Path, args: &[&str]) -> (i32, String) {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(daemon_binary())
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state.path())
        .arg("--workspace")
        .arg(workspace)
        .args(args)
        .env_remove("WORKSPACED_TOKEN")
        .env_remove("WORKSPACED_IDLE_TIMEOUT")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_devfile_that_lengthens_a_timeout_is_refused_at_start() {
    let ws = tempfile::tempdir().unwrap();
    let devfile = ws.path().join(".devfile.yaml");
    std::fs::write(
        &devfile,
        "schemaVersion: 2.2.0\nattributes:\n  workspaced/idle-timeout: 2h\n",
    )
    .unwrap();
    let (code, stderr) = serve_in(ws.path(), &["--idle-timeout", "30m"]);
    assert_eq!(code, 64, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("workspaced/idle-timeout"), "{stderr}");

    std::fs::write(
        &devfile,
        "schemaVersion: 2.2.0\nattributes:\n  workspaced/max-active: 12h\n",
    )
    .unwrap();
    let (code, stderr) = serve_in(ws.path(), &["--max-active", "8h"]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("workspaced/max-active"), "{stderr}");

    // A devfile that shortens is taken.
    std::fs::write(
        &devfile,
        "schemaVersion: 2.2.0\nattributes:\n  workspaced/idle-timeout: 10m\n",
    )
    .unwrap();
    let d = TestDaemon::builder()
        .workspace(ws)
        .arg("idle-timeout", "30m")
        .start();
    assert_eq!(d.get_json("/api/v1/idle").await["timeout_seconds"], 600);
}
