//! Terminals in another container of the workspace: a second daemon (the
//! static binary) in its own mount namespace, with its own os-release and
//! home, relayed by the first through `[containers]`; what a client sees
//! when that daemon goes away and comes back; the static binary alone in a
//! chroot.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::{
    contains, static_daemon_binary, until, Frame, TestDaemon, Ws, TOKEN, WAIT,
};
use serde_json::{json, Value};

const OTHER_OS: &str = "Alpine Linux v3.21 (second container)";

/// A second daemon as another container runs it: the static binary, named
/// `db`, in a mount namespace where /etc/os-release and $HOME are its own.
fn second_container(
    home_src: &std::path::Path,
    home: &std::path::Path,
    os_release: &std::path::Path,
) -> TestDaemon {
    TestDaemon::builder()
        .binary(static_daemon_binary())
        .launcher(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount --bind \"$OS_RELEASE\" /etc/os-release && mount --bind \"$HOME_SRC\" \"$HOME\" && exec \"$@\"",
            "sh",
        ])
        .env("GL_WORKSPACE_CONTAINER", "db")
        .env("OS_RELEASE", os_release.to_str().unwrap())
        .env("HOME_SRC", home_src.to_str().unwrap())
        .env("HOME", home.to_str().unwrap())
        .start()
}

fn first_container(second: &TestDaemon) -> TestDaemon {
    TestDaemon::builder()
        .config(&format!("[containers]\ndb = \"http://{}\"\n", second.addr))
        .start()
}

fn own_os() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap();
    line.trim_matches('"').to_owned()
}

async fn attach(d: &TestDaemon, id: &str, offset: Option<u64>) -> (Ws, Value) {
    let path = match offset {
        Some(n) => format!("/api/v1/terminals/{id}/attach?offset={n}"),
        None => format!("/api/v1/terminals/{id}/attach"),
    };
    let mut ws = d.ws(&path).await;
    let first = ws.next_json().await;
    assert_eq!(first["type"], "attached", "{first}");
    (ws, first)
}

fn id(t: &Value) -> String {
    t["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_terminal_in_another_container_runs_there_and_the_first_daemon_relays_it() {
    let setup = tempfile::tempdir().unwrap();
    let os_release = setup.path().join("os-release");
    std::fs::write(
        &os_release,
        format!("NAME=\"Alpine Linux\"\nID=alpine\nPRETTY_NAME=\"{OTHER_OS}\"\n"),
    )
    .unwrap();
    let home_src = setup.path().join("home");
    std::fs::create_dir(&home_src).unwrap();
    std::fs::write(home_src.join("only-in-the-second-home"), "").unwrap();
    let home = setup.path().join("home-mount-point");
    std::fs::create_dir(&home).unwrap();
    let second = second_container(&home_src, &home, &os_release);
    let first = first_container(&second);

    // Both containers, this one first, each with its own OS.
    let containers = first.get_json("/api/v1/containers").await;
    assert_eq!(
        containers,
        json!([
            {"name": "main", "self": true, "state": "ready", "os": own_os()},
            {"name": "db", "self": false, "state": "ready", "os": OTHER_OS},
        ])
    );

    let (status, local) = first
        .post_json("/api/v1/terminals", json!({"command": ["cat"]}))
        .await;
    assert_eq!(status, 201, "{local}");
    let (status, t) = first
        .post_json(
            "/api/v1/terminals",
            json!({"container": "db", "command": ["bash", "--norc", "--noprofile"], "cols": 100, "rows": 30, "env": {"PS1": "$ "}}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["container"], "db");
    assert_eq!(
        (t["cols"].as_u64(), t["rows"].as_u64()),
        (Some(100), Some(30))
    );
    let tid = id(&t);
    let (db, remote_id) = tid.split_once('.').unwrap();
    assert_eq!(db, "db");
    // The second daemon runs it, under its own id.
    let theirs = second
        .get_json(&format!("/api/v1/terminals/{remote_id}"))
        .await;
    assert_eq!(theirs["pid"], t["pid"]);

    // The terminal sees the second container's files, not the first's.
    let (mut ws, first_frame) = attach(&first, &tid, Some(0)).await;
    assert_eq!(first_frame["replay"], "bytes");
    assert_eq!(first_frame["offset"], 0);
    ws.send_bytes(b"cat /etc/os-release; ls \"$HOME\"\r").await;
    let out = ws
        .read_until(&mut vec![], |o| {
            contains(o, OTHER_OS.as_bytes()) && contains(o, b"only-in-the-second-home")
        })
        .await;
    assert!(!contains(&out, own_os().as_bytes()) || own_os() == OTHER_OS);

    // Resized through the relay: the PTY and the listing agree.
    ws.send_text(json!({"type": "resize", "cols": 120, "rows": 40}))
        .await;
    ws.send_text(json!({"type": "resize", "cols": 0, "rows": 40}))
        .await;
    ws.send_bytes(b"stty size\r").await;
    let mut texts = Vec::new();
    ws.read_until(&mut texts, |o| contains(o, b"40 120")).await;
    assert!(
        texts
            .iter()
            .any(|v| v["type"] == "error" && v["error"]["code"] == "invalid_size"),
        "{texts:?}"
    );
    let got = until(WAIT, "the resize", async || {
        let t = first.get_json(&format!("/api/v1/terminals/{tid}")).await;
        (t["cols"] == 120 && t["rows"] == 40).then_some(t)
    })
    .await;
    assert_eq!(got["container"], "db");
    drop(ws);

    // A reload resumes at an exact offset, byte for byte.
    let (mut all_ws, f0) = attach(&first, &tid, Some(0)).await;
    let total = f0["output_offset"].as_u64().unwrap();
    assert!(total > 10);
    let all = all_ws
        .read_until(&mut vec![], |o| o.len() as u64 >= total)
        .await;
    drop(all_ws);
    let (mut ws, f) = attach(&first, &tid, Some(10)).await;
    assert_eq!(
        (f["replay"].as_str(), f["offset"].as_u64()),
        (Some("bytes"), Some(10))
    );
    let resumed = ws
        .read_until(&mut vec![], |o| o.len() as u64 >= total - 10)
        .await;
    assert_eq!(resumed[..(total - 10) as usize], all[10..total as usize]);

    // Bad input is answered as for a terminal of this container.
    let beyond = first
        .ws_with(
            &format!(
                "/api/v1/terminals/{tid}/attach?offset={}",
                total + 1_000_000
            ),
            Some(TOKEN),
        )
        .await;
    match beyond.map(|_| ()) {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 400);
            let body: Value = serde_json::from_slice(r.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "invalid_offset", "{body}");
        }
        other => panic!("expected 400, got {other:?}"),
    }
    let (status, body) = first
        .post_json("/api/v1/terminals", json!({"container": "nope"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_container"))
    );
    for unknown in ["db.0123456789abcdef", "db.a.b", "nope.0123"] {
        let (status, body) = first
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/terminals/{unknown}"),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{unknown}"
        );
    }
    let (status, body) = first
        .post_json("/api/v1/terminals", json!({"container": "db", "cols": 0}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_size"))
    );

    // The list holds both containers' terminals.
    let list = first.get_json("/api/v1/terminals").await;
    let mut seen: Vec<(String, Value)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (id(t), t["container"].clone()))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![(tid.clone(), json!("db")), (id(&local), Value::Null)];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(seen, expected);

    // The exit comes through, then the close.
    ws.send_bytes(b"exit 7\r").await;
    loop {
        match ws.next().await {
            Frame::Text(v) if v["type"] == "exit" => {
                assert_eq!(v["code"], 7, "{v}");
                break;
            }
            Frame::Close(c) => panic!("closed ({c:?}) before the exit"),
            _ => {}
        }
    }
    assert_eq!(ws.next().await, Frame::Close(Some(1000)));
    let t = first.get_json(&format!("/api/v1/terminals/{tid}")).await;
    assert_eq!(
        (t["exited"].as_bool(), t["exit_code"].as_i64()),
        (Some(true), Some(7))
    );

    // Deleted through the relay.
    let (status, _) = first
        .call(reqwest::Method::DELETE, &format!("/api/v1/terminals/{tid}"))
        .await;
    assert_eq!(status, 204);
    let (status, _) = second
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/terminals/{remote_id}"),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_container_that_stops_answering_is_unreachable_until_it_returns() {
    let static_bin = static_daemon_binary();
    let second = TestDaemon::builder()
        .binary(static_bin.clone())
        .env("GL_WORKSPACE_CONTAINER", "db")
        .start();
    let addr = second.addr.clone();
    let first = first_container(&second);
    let (status, t) = first
        .post_json(
            "/api/v1/terminals",
            json!({"container": "db", "command": ["cat"]}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let (status, local) = first
        .post_json("/api/v1/terminals", json!({"command": ["cat"]}))
        .await;
    assert_eq!(status, 201, "{local}");
    drop(second);

    let tid = id(&t);
    let (status, body) = first
        .call(reqwest::Method::GET, &format!("/api/v1/terminals/{tid}"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("container_unreachable")),
        "{body}"
    );
    let (status, body) = first
        .post_json("/api/v1/terminals", json!({"container": "db"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("container_unreachable")),
        "{body}"
    );
    match first
        .ws_with(&format!("/api/v1/terminals/{tid}/attach"), Some(TOKEN))
        .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 502),
        other => panic!("expected 502, got {:?}", other.map(|_| ())),
    }
    let containers = first.get_json("/api/v1/containers").await;
    assert_eq!(
        containers[1],
        json!({"name": "db", "self": false, "state": "unreachable", "os": null})
    );
    // This container's terminals are still listed.
    let list = first.get_json("/api/v1/terminals").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], local["id"]);

    // The container's daemon comes back on its port: its new terminals are reachable.
    let _second = TestDaemon::builder()
        .binary(static_bin)
        .listen(&addr)
        .env("GL_WORKSPACE_CONTAINER", "db")
        .start();
    until(WAIT, "the container to be ready again", async || {
        let containers = first.get_json("/api/v1/containers").await;
        (containers[1]["state"] == "ready").then_some(())
    })
    .await;
    let (status, t) = first
        .post_json(
            "/api/v1/terminals",
            json!({"container": "db", "command": ["cat"]}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let (mut ws, _) = attach(&first, &id(&t), None).await;
    ws.send_bytes(b"back again\r").await;
    ws.read_until(&mut vec![], |o| contains(o, b"back again"))
        .await;
    let list = first.get_json("/api/v1/terminals").await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn the_static_binary_runs_alone_in_a_chroot() {
    let bin = static_daemon_binary();
    let ldd = Command::new("ldd").arg(&bin).output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    // glibc's ldd says "not a dynamic executable" of a static binary and
    // "statically linked" of a static PIE (musl's default, kept for ASLR):
    // either way no library is loaded.
    assert!(
        (said.contains("not a dynamic executable") || said.contains("statically linked"))
            && !said.contains("=>"),
        "ldd: {said}"
    );

    // The root holds the daemon, busybox (static) and the mount points only.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in ["bin", "proc", "dev", "ws"] {
        std::fs::create_dir(r.join(d)).unwrap();
    }
    std::fs::copy(&bin, r.join("workspaced")).unwrap();
    std::fs::copy("/bin/busybox", r.join("bin/busybox")).unwrap();
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t proc proc \"$R/proc\" && mount --rbind /dev \"$R/dev\" && exec chroot \"$R\" /workspaced serve --listen 127.0.0.1:0 --workspace /ws --state-dir /state")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("R", r)
        .env("WORKSPACED_TOKEN", TOKEN)
        .env("SHELL", "/bin/busybox")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().unwrap();
    let _kill = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the log to its end: a daemon whose stderr is closed dies on its next line.
    std::thread::spawn(move || {
        let mut log = String::new();
        let mut serving = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            log.push_str(&line);
            log.push('\n');
            if let Some(i) = line.find("serving listen=").filter(|_| !serving) {
                serving = true;
                let addr = line[i + "serving listen=".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = tx.send(Ok(addr));
            }
        }
        if !serving {
            let _ = tx.send(Err(log));
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)).unwrap() {
        Ok(a) => a,
        Err(log) => panic!("the static daemon did not start in the chroot:\n{log}"),
    };
    let http = reqwest::Client::new();
    let health: Value = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({"status": "ok"}));

    // A terminal inside the chroot: busybox asks the daemon from within.
    let t: Value = http
        .post(format!("http://{addr}/api/v1/terminals"))
        .bearer_auth(TOKEN)
        .json(&json!({"command": ["/bin/busybox", "sh", "-c", format!("/bin/busybox ls /; /bin/busybox wget -q -O - http://{addr}/healthz")]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tid = t["id"].as_str().unwrap_or_else(|| panic!("{t}"));
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{addr}/api/v1/terminals/{tid}/attach?offset=0"),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (inner, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut ws = Ws { inner };
    let mut texts = Vec::new();
    let out = ws
        .read_until(&mut texts, |o| contains(o, b"{\"status\":\"ok\"}"))
        .await;
    let listing = String::from_utf8_lossy(&out);
    for entry in ["workspaced", "bin", "proc", "dev", "ws"] {
        assert!(listing.contains(entry), "{listing}");
    }
    assert!(!listing.contains("usr"), "{listing}");
}
