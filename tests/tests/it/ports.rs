//! Port detection, devfile endpoints, visibility and the port API.

use std::time::Duration;

use integration_tests::{jwt, upstream, TestDaemon};
use reqwest::Method;
use serde_json::{json, Value};

/// Polls the port list until `pred` holds for it, or fails after 10 s.
pub async fn wait_ports(d: &TestDaemon, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = d.get_json("/api/v1/ports").await;
        let list = list.as_array().unwrap().clone();
        if pred(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; ports: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn entry(list: &[Value], port: u16) -> Option<&Value> {
    list.iter().find(|p| p["port"] == port)
}

/// Waits until `port` is listed as listening, and returns its entry.
pub async fn wait_listening(d: &TestDaemon, port: u16) -> Value {
    let list = wait_ports(d, &format!("port {port} listening"), |l| {
        entry(l, port).is_some_and(|e| !e["address"].is_null())
    })
    .await;
    entry(&list, port).unwrap().clone()
}

pub async fn set_visibility(d: &TestDaemon, port: u16, v: &str) -> reqwest::Response {
    d.req(Method::PUT, &format!("/api/v1/ports/{port}"))
        .json(&json!({ "visibility": v }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn listeners_on_every_address_are_found_with_their_process() {
    let d = TestDaemon::start();
    let me = std::process::id();
    let mut servers = Vec::new();
    // An IPv6 listener may draw the number of the daemon's own port (on
    // 127.0.0.1), which the daemon never lists as an app's: draw again.
    let own: u16 = d.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    for bind in ["0.0.0.0:0", "127.0.0.1:0", "[::]:0", "[::1]:0"] {
        let l = loop {
            let l = tokio::net::TcpListener::bind(bind).await.unwrap();
            if l.local_addr().unwrap().port() != own {
                break l;
            }
        };
        servers.push((bind, l.local_addr().unwrap().port(), l));
    }
    let ports: Vec<u16> = servers.iter().map(|s| s.1).collect();
    let list = wait_ports(&d, "the four listeners", |l| {
        ports.iter().all(|p| entry(l, *p).is_some())
    })
    .await;
    for (bind, port, _) in &servers {
        let e = entry(&list, *port).unwrap();
        let want_addr = bind.rsplit_once(':').unwrap().0.trim_matches(['[', ']']);
        assert_eq!(e["address"], want_addr, "{e}");
        assert_eq!(e["pid"], me, "{e}");
        assert!(
            e["process"].as_str().unwrap().contains("/it-"),
            "the test binary's command line: {e}"
        );
        assert_eq!(e["protocol"], "tcp");
        assert_eq!(e["source"], "detected");
        assert_eq!(e["name"], Value::Null);
        assert_eq!(e["visibility"], "private");
        assert_eq!(e["url"], format!("http://{}/proxy/{port}/", d.addr));
    }
    let own: u16 = d.addr.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        entry(&list, own).is_none(),
        "the daemon's own port is not listed"
    );

    let closed = servers.remove(1).1;
    wait_ports(&d, "the closed listener to go", |l| {
        entry(l, closed).is_none()
    })
    .await;
}

#[tokio::test]
async fn events_tell_of_opened_probed_and_closed_ports() {
    let d = TestDaemon::start();
    let mut events = d.ws("/api/v1/events").await;
    let app = upstream::start("127.0.0.1:0").await;
    let port = app.port();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|e: &Value| {
        e["type"] == "port_changed" && e["port"]["port"] == port && e["port"]["http"] == true
    }) {
        assert!(tokio::time::Instant::now() < deadline, "{seen:#?}");
        seen.push(events.next_json().await);
    }
    let opened = seen
        .iter()
        .find(|e| e["type"] == "port_opened" && e["port"]["port"] == port)
        .expect("port_opened before the probe's port_changed");
    assert_eq!(opened["port"]["http"], Value::Null);
    assert_eq!(opened["port"]["pid"], std::process::id());

    drop(app);
    loop {
        let e = events.next_json().await;
        if e["type"] == "port_closed" && e["port"] == port {
            break;
        }
    }
}

#[tokio::test]
async fn a_non_http_server_is_probed_false() {
    let d = TestDaemon::start();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"-ERR not http\r\n").await;
        }
    });
    wait_ports(&d, "http false", |l| {
        entry(l, port).is_some_and(|e| e["http"] == false)
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn devfile_endpoints_are_listed_listening_or_not() {
    let app = upstream::start("127.0.0.1:0").await;
    let ws = tempfile::tempdir().unwrap();
    let devfile = format!(
        "schemaVersion: 2.2.0\ncomponents:\n  - name: tools\n    container:\n      image: x\n      endpoints:\n        - name: web\n          targetPort: {}\n        - name: api\n          targetPort: 4999\n          exposure: internal\n        - name: debug\n          targetPort: 4998\n          exposure: none\n",
        app.port()
    );
    std::fs::write(ws.path().join(".devfile.yaml"), devfile).unwrap();
    let d = TestDaemon::builder()
        .workspace(ws)
        .arg("max-visibility", "internal")
        .start();
    let web = wait_listening(&d, app.port()).await;
    assert_eq!(web["name"], "web");
    assert_eq!(web["source"], "devfile");
    assert_eq!(
        web["visibility"], "internal",
        "public capped at max_visibility"
    );
    let list = d.get_json("/api/v1/ports").await;
    let list = list.as_array().unwrap();
    let api = entry(list, 4999).unwrap();
    assert_eq!(api["address"], Value::Null);
    assert_eq!(api["http"], Value::Null);
    assert_eq!(api["visibility"], "internal");
    assert_eq!(entry(list, 4998).unwrap()["visibility"], "none");
    // Declared but not listening: visibility can change, the proxy has nothing.
    assert_eq!(set_visibility(&d, 4999, "private").await.status(), 200);
    let r = d.req(Method::GET, "/proxy/4999/").send().await.unwrap();
    assert_eq!(r.status(), 502);
}

#[tokio::test]
async fn visibility_changes_within_the_platform_limit() {
    let d = TestDaemon::builder()
        .arg("max-visibility", "internal")
        .arg("ignore-ports", "1")
        .start();
    let app = upstream::start("127.0.0.1:0").await;
    let port = app.port();
    wait_listening(&d, port).await;
    let mut events = d.ws("/api/v1/events").await;

    let r = set_visibility(&d, port, "public").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "visibility_not_allowed");

    let r = set_visibility(&d, port, "internal").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["visibility"], "internal");
    assert_eq!(body["port"], port);
    loop {
        let e = events.next_json().await;
        if e["type"] == "port_changed" && e["port"]["visibility"] == "internal" {
            break;
        }
    }

    let r = set_visibility(&d, port, "loud").await;
    assert_eq!(r.status(), 400);
    for bad in ["0", "65536", "-1", "http", "99999999999"] {
        let r = d
            .req(Method::PUT, &format!("/api/v1/ports/{bad}"))
            .json(&json!({"visibility": "private"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_port", "{bad}");
        let r = d
            .req(Method::POST, &format!("/api/v1/ports/{bad}/open"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = set_visibility(&d, 1, "private").await;
    assert_eq!(r.status(), 404, "an ignored port is not listed");
    let r = set_visibility(&d, 2, "private").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    // A member may not change visibility (the owner's API).
    let r = d
        .http
        .put(d.url(&format!("/api/v1/ports/{port}")))
        .bearer_auth(jwt("member", "ws-test", 600))
        .json(&json!({"visibility": "private"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
