//! Heavy clients cannot bloat the daemon: big files stream both ways, the
//! sync event log has a maximum, WebSocket messages of the tunnel are
//! bounded, a slow events client is told it lagged, and memory comes back
//! after load. Memory is read from the daemon's /proc/<pid>/status.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use integration_tests::{until, Frame, TestDaemon, TOKEN, WAIT};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

const MIB: u64 = 1 << 20;

/// `VmHWM` (peak) and `VmRSS` (now) of a process, in bytes.
pub fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Writes `size` bytes that repeat no short pattern: a random MiB, stamped
/// with its index each time.
fn write_big(path: &std::path::Path, size: u64) {
    let mut block = vec![0u8; MIB as usize];
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ size;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..size / MIB {
        block[..8].copy_from_slice(&i.to_le_bytes());
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn sha1sum(path: &std::path::Path) -> String {
    sh(&format!("sha1sum < '{}'", path.display()))
}

fn temps_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".workspaced-tmp-"))
        .collect()
}

#[tokio::test]
async fn a_512_mib_get_and_put_stream_through_a_small_daemon() {
    let _pace = integration_tests::throughput_lock().await;
    let d = TestDaemon::builder()
        .arg("max-body-bytes", &(1u64 << 30).to_string())
        .start();
    let size = 512 * MIB;
    let target = d.root().join("big.bin");
    write_big(&target, size);
    let want = sha1sum(&target);
    let oid = sh(&format!("git hash-object '{}'", target.display()));

    // GET: the ETag is the blob id, and the body is exactly the file.
    let url = d.url("/api/v1/files/big.bin");
    let headers = d.state.path().join("get-headers");
    let got = sh(&format!(
        "curl -sSf -D '{}' -H 'Authorization: Bearer {TOKEN}' '{url}' | sha1sum",
        headers.display()
    ));
    assert_eq!(got, want, "the body is the file");
    let head = std::fs::read_to_string(&headers).unwrap().to_lowercase();
    assert!(head.contains(&format!("etag: \"{oid}\"")), "{head}");
    assert!(head.contains(&format!("content-length: {size}")), "{head}");

    // PUT of other bytes over it, If-Match that version.
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("new.bin");
    write_big(&src, size + MIB);
    let new_oid = sh(&format!("git hash-object '{}'", src.display()));
    let answer = sh(&format!(
        "curl -sSf -X PUT -T '{}' -H 'Authorization: Bearer {TOKEN}' -H 'If-Match: \"{oid}\"' '{url}'",
        src.display()
    ));
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["oid"], new_oid.as_str());
    assert_eq!(sha1sum(&target), sha1sum(&src), "the file is the body");
    assert!(temps_in(d.root()).is_empty());

    let (peak, _) = memory(d.pid());
    assert!(
        peak < 100 * MIB,
        "the daemon peaked at {} MiB for a {} MiB file",
        peak / MIB,
        size / MIB
    );
}

#[tokio::test]
async fn a_put_over_max_body_bytes_is_413_and_leaves_the_old_file() {
    let d = TestDaemon::builder()
        .arg("max-body-bytes", "1048576")
        .start();
    std::fs::write(d.root().join("a.txt"), "old\n").unwrap();
    let oid = sh(&format!(
        "git hash-object '{}'",
        d.root().join("a.txt").display()
    ));
    let big = d.state.path().join("big");
    write_big(&big, 3 * MIB);
    let url = d.url("/api/v1/files/a.txt");
    // With a Content-Length (refused before a byte is read), and chunked
    // (refused while streaming, the temporary file removed).
    for (how, upload) in [
        ("length", format!("-T '{}'", big.display())),
        ("chunked", format!("-T - < '{}'", big.display())),
    ] {
        let out = sh(&format!(
            "curl -sS -o - -w '\\n%{{http_code}}' -X PUT {upload} -H 'Authorization: Bearer {TOKEN}' -H 'If-Match: \"{oid}\"' '{url}' || true"
        ));
        let (body, status) = out.rsplit_once('\n').unwrap();
        assert_eq!(status, "413", "{how}: {out}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_large", "{how}");
        assert_eq!(
            std::fs::read_to_string(d.root().join("a.txt")).unwrap(),
            "old\n"
        );
        assert!(
            temps_in(d.root()).is_empty(),
            "{how}: {:?}",
            temps_in(d.root())
        );
    }
    // A chunked body under the limit is written, with its version.
    let small = d.state.path().join("small");
    std::fs::write(&small, "new\n").unwrap();
    let out = sh(&format!(
        "curl -sSf -X PUT -T - -H 'Authorization: Bearer {TOKEN}' -H 'If-Match: \"{oid}\"' '{url}' < '{}'",
        small.display()
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["oid"].as_str().unwrap(),
        sh(&format!("git hash-object '{}'", small.display()))
    );
    assert_eq!(
        std::fs::read_to_string(d.root().join("a.txt")).unwrap(),
        "new\n"
    );
    // The old version no longer matches: 412 with the current one.
    let r = d
        .req(Method::PUT, "/api/v1/files/a.txt")
        .header("if-match", format!("\"{oid}\""))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "version_conflict");
    assert!(v["current"].is_string(), "{v}");
    assert_eq!(
        std::fs::read_to_string(d.root().join("a.txt")).unwrap(),
        "new\n"
    );
}

#[tokio::test]
async fn a_burst_past_the_event_log_maximum_sends_a_resync() {
    // On tmpfs, where fsync costs nothing: 14,000 writes of paths of about
    // 3 KB pass the log's 32 MiB within seconds, far inside its 5 minutes.
    let ws = tempfile::tempdir_in("/dev/shm").unwrap();
    let d = TestDaemon::builder().workspace(ws).start();
    let dir: Vec<String> = (0..11).map(|i| format!("{i}{}", "d".repeat(249))).collect();
    let dir = dir.join("/");
    for batch in 0..2 {
        let changes: Vec<Value> = (0..7000)
            .map(|i| {
                json!({"op": "write", "path": format!("{dir}/{batch}-{i:0>190}"),
                       "base": null, "content": ""})
            })
            .collect();
        let (status, body) = d
            .post_json("/api/v1/sync/apply", json!({ "changes": changes }))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut ws = d.ws("/api/v1/sync").await;
    let hello = ws.next_json().await;
    let (epoch, seq) = (
        hello["epoch"].as_str().unwrap().to_owned(),
        hello["seq"].as_u64().unwrap(),
    );
    assert!(seq >= 14_000, "{hello}");
    // The first events are gone, though younger than 5 minutes.
    let mut old = d.ws(&format!("/api/v1/sync?since=1&epoch={epoch}")).await;
    assert_eq!(old.next_json().await["type"], "hello");
    assert_eq!(old.next_json().await, json!({"type": "resync"}));
    // The recent ones are kept and replayed.
    let mut recent = d
        .ws(&format!("/api/v1/sync?since={}&epoch={epoch}", seq - 100))
        .await;
    assert_eq!(recent.next_json().await["type"], "hello");
    let first = recent.next_json().await;
    assert_eq!(first["type"], "changed", "{first}");
    assert_eq!(first["seq"], seq - 99);
}

#[tokio::test]
async fn a_tunnel_message_over_max_ws_message_bytes_closes_1009() {
    let d = TestDaemon::builder()
        .arg("max-ws-message-bytes", "65536")
        .start();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let app = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        got
    });
    let mut ws = d.ws(&format!("/api/v1/ports/{port}/tunnel")).await;
    ws.send_bytes(&[b'a'; 65536]).await;
    ws.send_bytes(&vec![b'b'; 65537]).await;
    match ws.next().await {
        Frame::Close(c) => assert_eq!(c, Some(1009)),
        other => panic!("expected the close, got {other:?}"),
    }
    // The app got the message within the limit, and its connection closed.
    let got = tokio::time::timeout(WAIT, app).await.unwrap().unwrap();
    assert_eq!(got, vec![b'a'; 65536]);
}

/// A python3 process listening on `n` ports of loopback, with a command
/// line of 16 KiB (so that each event that names it is 16 KiB): it closes
/// them when its stdin has a line.
pub fn listeners(n: usize) -> (std::process::Child, Vec<u16>) {
    let script = format!(
        "import socket,sys\n\
         s=[socket.socket() for _ in range({n})]\n\
         [x.bind(('127.0.0.1',0)) or x.listen(1) for x in s]\n\
         print(' '.join(str(x.getsockname()[1]) for x in s), flush=True)\n\
         sys.stdin.readline()\n\
         [x.close() for x in s]\n\
         print('closed', flush=True)\n\
         sys.stdin.readline()\n"
    );
    let mut child = Command::new("python3")
        .args(["-c", &script, &"p".repeat(16 * 1024)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let ports = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    (child, ports)
}

#[tokio::test]
async fn an_events_client_that_stops_reading_is_told_lagged_then_resumes() {
    let d = TestDaemon::start();
    // A client with a small receive buffer that reads nothing for a while.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(d.addr.parse().unwrap()).await.unwrap();
    let mut req = format!("ws://{}/api/v1/events", d.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut events, _) = tokio_tungstenite::client_async_with_config(
        req,
        stream,
        Some(tungstenite::protocol::WebSocketConfig::default().max_message_size(None)),
    )
    .await
    .unwrap();

    // 800 ports opened then closed (and probed): far more events, of 16 KiB
    // each, than the bus's queue and the socket buffers hold.
    let (mut child, ports) = listeners(800);
    let last = *ports.last().unwrap();
    until(Duration::from_secs(60), "the ports listed", async || {
        let (_, list) = d.call(Method::GET, "/api/v1/ports").await;
        list.as_array()?
            .iter()
            .any(|p| p["port"] == last)
            .then_some(())
    })
    .await;
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(b"close\n").unwrap();
    stdin.flush().unwrap();
    until(Duration::from_secs(60), "the ports gone", async || {
        let (_, list) = d.call(Method::GET, "/api/v1/ports").await;
        (!list.as_array()?.iter().any(|p| p["port"] == last)).then_some(())
    })
    .await;
    let _ = child.stdin.take();
    let _ = child.wait();

    // Reading again: some events, then `lagged`, then the events after.
    let mut seen_lagged = false;
    let mut after_lagged = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while after_lagged == 0 || !seen_lagged {
        let msg = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("lagged and the events after it within 60 s")
            .expect("the stream stays open")
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v == json!({"type": "lagged"}) {
            seen_lagged = true;
        } else if seen_lagged {
            after_lagged += 1;
        }
    }
    // And it goes on: a new port is told.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    loop {
        let msg = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("the new port within 60 s")
            .unwrap()
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "port_opened" && v["port"]["port"] == port {
            break;
        }
    }
}

#[tokio::test]
async fn memory_comes_back_after_terminal_floods() {
    let _pace = integration_tests::throughput_lock().await;
    let d = TestDaemon::start();
    // Fresh: after a first terminal came and went, so the figure includes
    // what any use of terminals sets up once.
    let warm = create_and_wait(&d, "echo ready", 6).await;
    delete(&d, &warm).await;
    let (_, fresh) = memory(d.pid());

    for round in 0..3 {
        let id = create_and_wait(
            &d,
            "head -c 90000000 /dev/urandom | base64 -w 200 | head -c 90000000",
            90_000_000,
        )
        .await;
        let (_, during) = memory(d.pid());
        delete(&d, &id).await;
        eprintln!("round {round}: {} MiB with the terminal", during / MIB);
    }
    let (peak, _) = memory(d.pid());
    let rss = until(WAIT, "memory given back", async || {
        let (_, rss) = memory(d.pid());
        (rss <= 2 * fresh).then_some(rss)
    })
    .await;
    eprintln!(
        "fresh {} KiB, peak {} KiB, after {} KiB",
        fresh / 1024,
        peak / 1024,
        rss / 1024
    );
}

/// Creates a terminal running `script` and waits until it has printed
/// `bytes` bytes.
async fn create_and_wait(d: &TestDaemon, script: &str, bytes: u64) -> String {
    let (status, t) = d
        .post_json(
            "/api/v1/terminals",
            json!({"command": ["bash", "-c", format!("{script}; exec sleep 600")]}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/terminals/{id}");
    until(
        Duration::from_secs(120),
        "the script's output",
        async || {
            let v = d.get_json(&path).await;
            (v["output_offset"].as_u64()? >= bytes).then_some(())
        },
    )
    .await;
    id
}

async fn delete(d: &TestDaemon, id: &str) {
    let (status, _) = d
        .call(Method::DELETE, &format!("/api/v1/terminals/{id}"))
        .await;
    assert_eq!(status, 204);
}

/// Threads and open file descriptors of a process.
fn threads_and_fds(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).unwrap().count();
    (
        count(format!("/proc/{pid}/task")),
        count(format!("/proc/{pid}/fd")),
    )
}

/// The soak found it: every terminal deleted left its writer thread (which
/// held the terminal, which held the sender the thread waited on) and the
/// PTY's descriptors behind.
#[tokio::test]
async fn deleted_terminals_leave_no_thread_or_descriptor_behind() {
    let d = TestDaemon::start();
    // A first terminal sets up what any use of terminals sets up once.
    let warm = create_and_wait(&d, "echo ready", 6).await;
    delete(&d, &warm).await;
    let settled = until(WAIT, "the first terminal to be gone", async || {
        let list = d.get_json("/api/v1/terminals").await;
        list.as_array()?.is_empty().then_some(())
    });
    settled.await;
    let (threads, fds) = threads_and_fds(d.pid());

    for _ in 0..12 {
        let id = create_and_wait(&d, "echo ready", 6).await;
        // Input reaches the writer thread, as a user's typing does.
        let mut ws = d.ws(&format!("/api/v1/terminals/{id}/attach")).await;
        ws.send_bytes(b"x").await;
        drop(ws);
        delete(&d, &id).await;
    }
    let (t, f) = until(WAIT, "threads and descriptors back", async || {
        let (t, f) = threads_and_fds(d.pid());
        (t <= threads + 1 && f <= fds + 1).then_some((t, f))
    })
    .await;
    eprintln!("threads {threads} -> {t}, descriptors {fds} -> {f}");
}

/// POSTs an apply; its status and body.
async fn apply(d: &TestDaemon, changes: Value) -> (u16, Value) {
    d.post_json("/api/v1/sync/apply", json!({ "changes": changes }))
        .await
}

#[tokio::test]
async fn a_patch_or_edit_of_a_600_mib_file_is_413_and_the_daemon_reads_none_of_it_whole() {
    let _pace = integration_tests::throughput_lock().await;
    let d = TestDaemon::start();
    // Sparse: 600 MiB of zeros that take no disk, outside any repository.
    let big = d.root().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(600 * MIB)
        .unwrap();
    let oid = sh(&format!("git hash-object '{}'", big.display()));
    std::fs::write(d.root().join("small.txt"), "one\n").unwrap();
    let small = sh(&format!(
        "git hash-object '{}'",
        d.root().join("small.txt").display()
    ));

    // The listing hashes it in pieces.
    let (status, tree) = d.call(Method::GET, "/api/v1/tree").await;
    assert_eq!(status, 200, "{tree}");
    let entry = tree["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "big.bin")
        .unwrap()
        .clone();
    assert_eq!(entry["oid"], oid.as_str());
    assert_eq!(entry["size"], 600 * MIB);

    // A patch and an edit would read it whole: refused, before any change
    // of the batch is made, whatever `atomic` says.
    let diff = "@@ -1 +1 @@\n-one\n+two\n";
    let edit = json!({"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "x"});
    for (atomic, big_change) in [
        (
            true,
            json!({"op": "patch", "path": "big.bin", "base": oid, "diff": "@@ -1 +1 @@\n-a\n+b\n"}),
        ),
        (
            false,
            json!({"op": "edit", "path": "big.bin", "base": oid, "edits": [edit]}),
        ),
    ] {
        let (status, body) = d
            .post_json(
                "/api/v1/sync/apply",
                json!({"atomic": atomic, "changes": [
                    {"op": "patch", "path": "small.txt", "base": small, "diff": diff},
                    big_change,
                ]}),
            )
            .await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(body["error"]["code"], "too_large", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("big.bin") && message.contains("max_body_bytes"),
            "{message}"
        );
        assert_eq!(
            std::fs::read_to_string(d.root().join("small.txt")).unwrap(),
            "one\n"
        );
        assert_eq!(std::fs::metadata(&big).unwrap().len(), 600 * MIB);
    }

    // A delete and a rename check its version without reading it whole.
    let (status, body) = apply(
        &d,
        json!([{"op": "rename", "path": "big.bin", "to": "moved.bin", "base": oid}]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["oid"], oid.as_str());
    let (status, body) = apply(
        &d,
        json!([{"op": "delete", "path": "moved.bin", "base": oid}]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!d.root().join("moved.bin").exists());

    let (peak, _) = memory(d.pid());
    assert!(
        peak < 100 * MIB,
        "the daemon peaked at {} MiB over a 600 MiB file",
        peak / MIB
    );
}

#[tokio::test]
async fn an_apply_holds_at_most_max_body_bytes_of_patched_and_edited_content() {
    let d = TestDaemon::builder()
        .arg("max-body-bytes", "1048576")
        .start();
    // 600 KiB of lines: one edit of it fits, two in one apply do not.
    let text = "0123456789abcdef\n".repeat(600 * 1024 / 17);
    std::fs::write(d.root().join("a.txt"), &text).unwrap();
    let oid = sh(&format!(
        "git hash-object '{}'",
        d.root().join("a.txt").display()
    ));
    std::fs::write(d.root().join("b.txt"), &text).unwrap();
    let edit = |n: u32| json!({"range": {"start": {"line": n, "character": 0}, "end": {"line": n, "character": 1}}, "text": "X"});
    let (status, body) = apply(
        &d,
        json!([
            {"op": "edit", "path": "a.txt", "base": oid, "edits": [edit(0)]},
            {"op": "edit", "path": "b.txt", "base": oid, "edits": [edit(1)]},
        ]),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");
    assert_eq!(
        std::fs::read_to_string(d.root().join("a.txt")).unwrap(),
        text
    );
    assert_eq!(
        std::fs::read_to_string(d.root().join("b.txt")).unwrap(),
        text
    );

    // One edit per batch fits, and a delete holds nothing.
    let (status, body) = apply(
        &d,
        json!([{"op": "edit", "path": "a.txt", "base": oid, "edits": [edit(0)]}]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let new = body["results"][0]["oid"].as_str().unwrap().to_owned();
    let (status, body) = apply(
        &d,
        json!([
            {"op": "edit", "path": "a.txt", "base": new, "edits": [edit(1)]},
            {"op": "delete", "path": "b.txt", "base": oid},
        ]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(std::fs::read_to_string(d.root().join("a.txt"))
        .unwrap()
        .starts_with("X123456789abcdef\nX123456789abcdef\n0123"));

    // A file over the limit is refused; a write of it whole would be too.
    let big = "z".repeat(1100 * 1024);
    std::fs::write(d.root().join("c.txt"), &big).unwrap();
    let c = sh(&format!(
        "git hash-object '{}'",
        d.root().join("c.txt").display()
    ));
    let (status, body) = apply(
        &d,
        json!([{"op": "patch", "path": "c.txt", "base": c, "diff": "@@ -1 +1 @@\n-z\n+y\n"}]),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{} bytes", 1100 * 1024)),
        "{body}"
    );
}
