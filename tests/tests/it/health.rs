//! Components, readiness, status, resources and activity sources.

use std::time::{Duration, Instant};

use integration_tests::{until, TestDaemon, WAIT};
use serde_json::{json, Value};

/// A port that nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn component(d: &TestDaemon, name: &str) -> Value {
    let status = d.get_json("/api/v1/status").await;
    status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no component {name} in {status}"))
}

async fn readyz(d: &TestDaemon) -> (u16, Value) {
    let r = d.http.get(d.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_crashing_component_is_restarted_with_backoff_and_logs_to_its_file() {
    let logs = tempfile::tempdir().unwrap();
    let d = TestDaemon::builder()
        .env("GL_WORKSPACE_LOGS_DIR", logs.path().to_str().unwrap())
        .config(
            r#"
[[components]]
name = "editor"
command = ["sh", "-c", "echo editor says hello; echo token=${WORKSPACED_TOKEN:-none} $GREETING; echo to stderr >&2; exit 3"]
env = { GREETING = "from-env" }
"#,
        )
        .start();
    let started = Instant::now();
    // Component states go out on the event stream.
    let mut events = d.ws("/api/v1/events").await;
    let crashed = loop {
        match events.next().await {
            integration_tests::Frame::Text(v)
                if v["type"] == "component_state" && v["component"]["state"] == "crashed" =>
            {
                break v
            }
            integration_tests::Frame::Text(_) => {}
            other => panic!("event stream ended: {other:?}"),
        }
    };
    assert_eq!(crashed["component"]["name"], "editor");
    assert_eq!(crashed["component"]["pid"], Value::Null);
    let c = until(WAIT, "two restarts", async || {
        let c = component(&d, "editor").await;
        (c["restarts"].as_u64().unwrap() >= 2).then_some(c)
    })
    .await;
    // Pauses of 1 s then 2 s (not 1 s and 1 s) come before the second
    // restart; the first start was a moment before `started`.
    assert!(started.elapsed() >= Duration::from_millis(2500), "{c}");
    assert_eq!(c["last_exit"]["code"], 3, "{c}");
    assert!(c["last_exit"]["at"].is_string(), "{c}");
    // The restart is counted as it begins: the third run's output follows.
    let log = until(WAIT, "three runs in the log", async || {
        let log = std::fs::read_to_string(logs.path().join("editor.log")).unwrap();
        (log.matches("editor says hello").count() >= 3).then_some(log)
    })
    .await;
    assert!(log.contains("to stderr"), "{log}");
    assert!(
        log.contains("token=none from-env"),
        "env given, the owner token withheld: {log}"
    );
    // A crashed required component keeps the daemon not ready. A component
    // without a port is `ready` while it runs (PROTOCOL.md), so this one is
    // for the few milliseconds of each run: not ready is what the daemon
    // says in the backoff between them, which is most of the time.
    let body = until(WAIT, "not ready while the component is down", async || {
        let (code, body) = readyz(&d).await;
        (code == 503).then_some(body)
    })
    .await;
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["components"][0]["name"], "editor", "{body}");
}

#[tokio::test]
async fn readiness_follows_the_port_and_the_health_path() {
    let silent = free_port();
    let web = free_port();
    let probed = free_port();
    let d = TestDaemon::builder()
        .config(&format!(
            r#"
[[components]]
name = "silent"
command = ["sleep", "600"]
port = {silent}

[[components]]
name = "web"
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{web}"]
port = {web}

[[components]]
name = "wrongpath"
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{probed}"]
port = {probed}
health_path = "/no-such-page"
required = false
"#
        ))
        .start();
    until(WAIT, "web ready", async || {
        (component(&d, "web").await["state"] == "ready").then_some(())
    })
    .await;
    let (code, body) = readyz(&d).await;
    assert_eq!(code, 503);
    assert_eq!(body["status"], "not_ready");
    let names: Vec<&str> = body["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["silent"], "{body}");
    assert_eq!(body["components"][0]["state"], "starting");
    assert!(body["components"][0]["pid"].is_u64());
    // A health path that answers 404 never makes the component ready; it is
    // not required, so it does not count for /readyz.
    let c = component(&d, "wrongpath").await;
    assert_eq!(c["state"], "starting", "{c}");
    // /healthz is 200 all along.
    let r = d.http.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn readyz_is_200_once_every_required_component_is_ready_and_components_stop_at_shutdown() {
    let port = free_port();
    let mut d = TestDaemon::builder()
        .config(&format!(
            r#"
[[components]]
name = "editor"
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
port = {port}
health_path = "/"

[[components]]
name = "helper"
command = ["sleep", "600"]
"#
        ))
        .start();
    until(WAIT, "ready", async || {
        let (code, body) = readyz(&d).await;
        (code == 200 && body["status"] == "ready").then_some(())
    })
    .await;
    let helper = component(&d, "helper").await;
    assert_eq!(helper["state"], "ready", "no port: ready once running");
    let pid = helper["pid"].as_u64().unwrap() as i32;
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait(WAIT).success());
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "the component's process ended"
    );
}

#[tokio::test]
async fn a_daemon_killed_with_sigkill_leaves_no_component_behind() {
    let port = free_port();
    let mut d = TestDaemon::builder()
        .config(&format!(
            r#"
[[components]]
name = "editor"
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
port = {port}
"#
        ))
        .start();
    let editor = until(WAIT, "ready", async || {
        let c = component(&d, "editor").await;
        (c["state"] == "ready").then_some(c)
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(editor["pid"].as_u64().unwrap() as i32);
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait(WAIT);
    // Its port is free again for the next daemon's editor.
    until(WAIT, "the component to end", async || {
        nix::sys::signal::kill(pid, None).is_err().then_some(())
    })
    .await;
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the component's port is free");
}

#[tokio::test]
async fn memory_bytes_agrees_with_the_cgroup_file() {
    let d = TestDaemon::start();
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", d.pid())).unwrap();
    // The file a reader of this machine's cgroup would look at.
    let file = cgroup
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctl, path) = (p.next()?, p.next()?, p.next()?);
            ctl.split(',')
                .any(|c| c == "memory")
                .then(|| format!("/sys/fs/cgroup/memory{path}/memory.usage_in_bytes"))
        })
        .filter(|f| std::path::Path::new(f).exists())
        .unwrap_or_else(|| {
            let path = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
            format!("/sys/fs/cgroup{path}/memory.current")
        });
    let read = || -> u64 {
        std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // Other processes share the cgroup and move it between the reads: a
    // sample counts when the daemon's figure lies between the test's own
    // reads just before and after it (5% slack); a few samples are allowed.
    let mut samples = Vec::new();
    let status = loop {
        let before = read();
        let status = d.get_json("/api/v1/status").await;
        let after = read();
        let got = status["resources"]["memory_bytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{status}"));
        let (lo, hi) = (before.min(after), before.max(after));
        if got >= lo - lo / 20 && got <= hi + hi / 20 {
            break status;
        }
        samples.push((before, got, after));
        assert!(
            samples.len() < 5,
            "memory_bytes disagrees with {file}: {samples:?}"
        );
    };
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["workspace"]["name"], "ws-test");
    assert!(status["started_at"].is_string());
    assert!(status["idle"]["state"] == "active");
    for k in ["memory_limit_bytes", "cpu_usage_seconds", "cpu_limit_cores"] {
        assert!(
            status["resources"].get(k).is_some(),
            "{k} present, null or a number"
        );
    }
}

async fn sources(d: &TestDaemon) -> Value {
    d.get_json("/api/v1/idle").await["sources"].clone()
}

/// Waits until `source`'s timestamp differs from `before`.
async fn moved(d: &TestDaemon, source: &str, before: &Value) -> Value {
    until(WAIT, source, async || {
        let now = sources(d).await;
        (now[source].is_string() && now[source] != before[source]).then_some(now)
    })
    .await
}

/// Timestamps have millisecond precision: make sure the next touch is later.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::test]
async fn each_activity_source_moves_with_a_real_action_and_probes_do_not() {
    let d = TestDaemon::builder()
        .arg("terminal-output-is-activity", "true")
        .start();
    assert_eq!(sources(&d).await, json!({}), "no activity yet");

    // Probes and reads of status, idle and events do not count.
    let _ = d.http.get(d.url("/healthz")).send().await.unwrap();
    let _ = d.http.get(d.url("/readyz")).send().await.unwrap();
    d.get_json("/api/v1/status").await;
    let mut events = d.ws("/api/v1/events").await;
    let idle = d.get_json("/api/v1/idle").await;
    assert_eq!(idle["sources"], json!({}), "{idle}");
    assert_eq!(idle["state"], "active");

    // An API call.
    let (code, t) = d
        .post_json(
            "/api/v1/terminals",
            json!({"command": ["bash", "--norc", "--noprofile"]}),
        )
        .await;
    assert_eq!(code, 201, "{t}");
    let s = sources(&d).await;
    assert!(
        s["api"].is_string() && s.get("terminal_input").is_none(),
        "{s}"
    );

    // Attaching and typing in a terminal.
    let id = t["id"].as_str().unwrap();
    let mut ws = d.ws(&format!("/api/v1/terminals/{id}/attach")).await;
    let s = moved(&d, "terminal_input", &s).await;
    tick().await;
    ws.send_bytes(b"echo typed\r").await;
    let s = moved(&d, "terminal_input", &s).await;

    // Output of a program other than the shell (opted in above).
    assert!(
        s.get("terminal_output").is_none(),
        "the shell's own echo does not count: {s}"
    );
    ws.send_bytes(b"sh -c 'for i in 1 2 3 4 5; do echo tick; sleep 0.2; done'\r")
        .await;
    let s = moved(&d, "terminal_output", &s).await;

    // Heartbeats.
    tick().await;
    let r = d
        .req(reqwest::Method::POST, "/api/v1/activity")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let s2 = sources(&d).await;
    assert_ne!(s2["heartbeat"], s["heartbeat"]);
    assert_ne!(s2["api"], s["api"]);
    tick().await;
    // From loopback, without a credential, and with a bad one.
    for bad in [None, Some("wrong-token")] {
        let mut req = d.http.post(d.url("/activity/tick"));
        if let Some(b) = bad {
            req = req.bearer_auth(b);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 204);
    }
    let s3 = sources(&d).await;
    assert_ne!(s3["heartbeat"], s2["heartbeat"]);
    assert_eq!(s3["api"], s2["api"], "the tick is not an API call");

    // None of the passive reads moved anything.
    tick().await;
    let _ = d.http.get(d.url("/healthz")).send().await.unwrap();
    d.get_json("/api/v1/status").await;
    let idle = d.get_json("/api/v1/idle").await;
    assert_eq!(idle["sources"], s3);
    assert_eq!(idle["state"], "active");
    assert!(idle["last_activity"].as_str().unwrap() >= s3["heartbeat"].as_str().unwrap());
    drop(events.inner.close(None).await);
}

#[tokio::test]
async fn a_ready_component_whose_port_closes_is_degraded() {
    let port = free_port();
    let script = format!(
        "import socket, time\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', {port}))\ns.listen()\nopen('listening', 'w').close()\nwhile not __import__('os').path.exists('close-now'): time.sleep(0.05)\ns.close()\ntime.sleep(600)\n"
    );
    let d = TestDaemon::builder()
        .config(&format!(
            "[[components]]\nname = \"app\"\ncommand = [\"python3\", \"-c\", {script:?}]\nport = {port}\n"
        ))
        .start();
    until(WAIT, "ready", async || {
        (component(&d, "app").await["state"] == "ready").then_some(())
    })
    .await;
    std::fs::write(d.root().join("close-now"), "").unwrap();
    let c = until(WAIT, "degraded", async || {
        let c = component(&d, "app").await;
        (c["state"] == "degraded").then_some(c)
    })
    .await;
    assert_eq!(c["restarts"], 0, "still running: {c}");
    let (code, body) = readyz(&d).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["components"][0]["state"], "degraded");
}

#[tokio::test]
async fn terminal_output_counts_only_when_configured() {
    let d = TestDaemon::start();
    let (code, t) = d
        .post_json(
            "/api/v1/terminals",
            json!({"command": ["bash", "--norc", "--noprofile"]}),
        )
        .await;
    assert_eq!(code, 201, "{t}");
    let id = t["id"].as_str().unwrap();
    let mut ws = d.ws(&format!("/api/v1/terminals/{id}/attach")).await;
    // The same program whose output counts in the test above when configured.
    ws.send_bytes(b"sh -c 'for i in 1 2 3 4 5; do echo tick; sleep 0.2; done; echo DO\"\"NE'\r")
        .await;
    ws.read_until(&mut vec![], |o| integration_tests::contains(o, b"DONE"))
        .await;
    let s = sources(&d).await;
    assert!(s["terminal_input"].is_string(), "{s}");
    assert!(s.get("terminal_output").is_none(), "not configured: {s}");
}

#[tokio::test]
async fn the_built_in_watcher_and_ports_are_listed_and_never_required() {
    let d = TestDaemon::start();
    let status = d.get_json("/api/v1/status").await;
    let components = status["components"].as_array().unwrap();
    for name in ["watcher", "ports"] {
        let c = components
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from {status}"));
        assert_eq!(c["state"], "ready", "{c}");
    }
    let r = d.http.get(d.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
