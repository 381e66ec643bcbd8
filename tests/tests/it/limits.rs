//! Slow, hostile and heavy clients: `header_timeout`, `idle_connection_timeout`
//! and `max_connections` on both HTTP paths (the proxy's fast lane and
//! hyper), thousands of slow heads, a thousand kept-alive proxied
//! connections, WebSocket peers that stop answering pings, and WebSocket
//! clients that stop reading (the send timeout) on every route.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use integration_tests::{until, upstream, TestDaemon, TOKEN};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ports::wait_listening;

/// A request head cut before its end.
const HALF_HEAD: &[u8] = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ";

/// Thousands of sockets need more descriptors than the usual soft limit
/// (1024) gives this process; the daemon raises its own.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        soft >= 8192,
        "this test needs 8192 open files, the hard limit is {soft}"
    );
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
}

/// Reads one answer (head, and a body by `Content-Length` or chunks);
/// `None` when the connection ended first.
async fn answer(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let more = async |s: &mut TcpStream, buf: &mut Vec<u8>, chunk: &mut [u8]| -> Option<()> {
        match s.read(chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    };
    let i = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        more(s, &mut buf, &mut chunk).await?;
    };
    let head = String::from_utf8_lossy(&buf[..i + 4]).to_ascii_lowercase();
    let mut rest = buf.split_off(i + 4);
    let mut body = Vec::new();
    if head.contains("transfer-encoding: chunked") {
        loop {
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                more(s, &mut rest, &mut chunk).await?;
                continue;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16)
                .expect("a chunk size");
            while rest.len() < eol + 2 + size + 2 {
                more(s, &mut rest, &mut chunk).await?;
            }
            body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest.drain(..eol + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while rest.len() < len {
            more(s, &mut rest, &mut chunk).await?;
        }
        body = rest.split_off(0);
    }
    assert!(rest.is_empty(), "nothing after the body of {head}");
    assert!(body.len() < 1 << 20);
    Some((head, body))
}

/// Waits (15 s at most) for the daemon to close `s`, discarding what it
/// sends; how long it took.
async fn closed_within(s: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut chunk = [0u8; 8192];
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the daemon kept the connection open");
    start.elapsed()
}

#[tokio::test]
async fn header_timeout_closes_half_heads_on_both_paths() {
    let d = TestDaemon::builder()
        .arg("header-timeout", "1s")
        .arg("idle-connection-timeout", "1h")
        .start();

    // A fresh connection: the fast lane reads its first head.
    let mut fresh = TcpStream::connect(&d.addr).await.unwrap();
    fresh.write_all(HALF_HEAD).await.unwrap();
    let took = closed_within(&mut fresh).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");

    // A connection that sends nothing at all is closed as well.
    let mut silent = TcpStream::connect(&d.addr).await.unwrap();
    closed_within(&mut silent).await;

    // After a daemon request, hyper reads the connection's next head.
    let mut kept = TcpStream::connect(&d.addr).await.unwrap();
    kept.write_all(get("/api/v1/status").as_bytes())
        .await
        .unwrap();
    let (head, _) = answer(&mut kept).await.expect("an answer");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    kept.write_all(HALF_HEAD).await.unwrap();
    let took = closed_within(&mut kept).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");

    // A body that stops coming: the daemon's own route (hyper reads it) ...
    let mut put = TcpStream::connect(&d.addr).await.unwrap();
    let head = format!(
        "PUT /api/v1/files/a.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nIf-None-Match: *\r\nContent-Length: 100\r\n\r\nonly ten.."
    );
    put.write_all(head.as_bytes()).await.unwrap();
    let took = closed_within(&mut put).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    assert!(!d.root().join("a.txt").exists());
    // ... and a proxied one (the fast lane reads it).
    let app = upstream::start("127.0.0.1:0").await;
    wait_listening(&d, app.port()).await;
    crate::ports::set_visibility(&d, app.port(), "public").await;
    let mut post = TcpStream::connect(&d.addr).await.unwrap();
    let head = format!(
        "POST /proxy/{}/count HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten..",
        app.port()
    );
    post.write_all(head.as_bytes()).await.unwrap();
    let took = closed_within(&mut post).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
    assert!(app.seen_at("/count").is_empty());

    // A head sent whole, however slowly within the limit, is answered.
    let mut slow = TcpStream::connect(&d.addr).await.unwrap();
    let req = get("/api/v1/status");
    let (a, b) = req.as_bytes().split_at(20);
    slow.write_all(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow.write_all(b).await.unwrap();
    assert!(answer(&mut slow).await.is_some());
}

#[tokio::test]
async fn idle_connection_timeout_closes_idle_kept_connections_on_both_paths() {
    let d = TestDaemon::builder()
        .arg("header-timeout", "1h")
        .arg("idle-connection-timeout", "1s")
        .arg("default-visibility", "public")
        .env("WORKSPACED_UPSTREAM_TIMEOUT", "3s")
        .start();
    let app = upstream::start("127.0.0.1:0").await;
    wait_listening(&d, app.port()).await;

    // After an answer from the fast lane.
    let mut lane = TcpStream::connect(&d.addr).await.unwrap();
    lane.write_all(get(&format!("/proxy/{}/x", app.port())).as_bytes())
        .await
        .unwrap();
    let (_, body) = answer(&mut lane).await.expect("an answer");
    assert_eq!(body, b"hello from the app");
    let took = closed_within(&mut lane).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");

    // After an answer from hyper.
    let mut hyper = TcpStream::connect(&d.addr).await.unwrap();
    hyper
        .write_all(get("/api/v1/status").as_bytes())
        .await
        .unwrap();
    assert!(answer(&mut hyper).await.is_some());
    let took = closed_within(&mut hyper).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");

    // A request in flight longer than the limit is no idleness: the
    // general path (a query credential sends it there) waits the 3 s for
    // an app that never answers, and the client gets the 504.
    let (hanging, _task) = upstream::hanging().await;
    wait_listening(&d, hanging).await;
    let mut waiting = TcpStream::connect(&d.addr).await.unwrap();
    let path = format!("/proxy/{hanging}/slow?access_token={TOKEN}");
    waiting
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (head, _) = answer(&mut waiting).await.expect("the 504");
    assert!(head.starts_with("http/1.1 504"), "{head}");
}

#[tokio::test]
async fn past_max_connections_a_connection_waits_for_a_place() {
    let d = TestDaemon::builder().arg("max-connections", "2").start();
    let mut first = TcpStream::connect(&d.addr).await.unwrap();
    let mut second = TcpStream::connect(&d.addr).await.unwrap();
    for s in [&mut first, &mut second] {
        s.write_all(get("/api/v1/status").as_bytes()).await.unwrap();
        assert!(answer(s).await.is_some());
    }

    // The third is in the kernel's backlog: connected, not served.
    let mut third = TcpStream::connect(&d.addr).await.unwrap();
    third
        .write_all(get("/api/v1/status").as_bytes())
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(700), answer(&mut third)).await;
    assert!(early.is_err(), "served past max_connections: {early:?}");

    // A place comes free: the third is served.
    drop(first);
    let (head, _) = tokio::time::timeout(Duration::from_secs(10), answer(&mut third))
        .await
        .expect("served once a place is free")
        .expect("an answer");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    // The kept second one still works.
    second
        .write_all(get("/api/v1/status").as_bytes())
        .await
        .unwrap();
    assert!(answer(&mut second).await.is_some());
}

#[tokio::test]
async fn two_thousand_slow_heads_do_not_stall_the_daemon() {
    const SLOW: usize = 2000;
    raise_fd_limit();
    let d = TestDaemon::builder().arg("header-timeout", "4s").start();
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(&d.addr).await.unwrap();
        s.write_all(HALF_HEAD).await.unwrap();
        slow.push(s);
    }

    // While they hang, a normal request is answered at once.
    let start = Instant::now();
    let (status, _) = d.call(reqwest::Method::GET, "/api/v1/status").await;
    let took = start.elapsed();
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "answered in {took:?}");

    // Then every one of them is closed.
    let all = futures_util::future::join_all(slow.iter_mut().map(closed_within));
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("all slow connections closed");
}

#[tokio::test]
async fn a_thousand_kept_alive_proxied_connections_are_all_answered() {
    const CLIENTS: usize = 1000;
    raise_fd_limit();
    let d = TestDaemon::builder()
        .arg("default-visibility", "public")
        .start();
    let app = upstream::start("127.0.0.1:0").await;
    wait_listening(&d, app.port()).await;
    let path = format!("/proxy/{}/hello", app.port());

    // All connected first, so all are open at once.
    let mut conns = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        conns.push(TcpStream::connect(&d.addr).await.unwrap());
    }
    let clients = conns.into_iter().map(|mut s| {
        let req = get(&path);
        async move {
            for _ in 0..3 {
                s.write_all(req.as_bytes()).await.unwrap();
                let (head, body) = answer(&mut s).await.expect("an answer");
                assert!(head.starts_with("http/1.1 200"), "{head}");
                assert_eq!(body, b"hello from the app");
            }
            s
        }
    });
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(clients),
    )
    .await
    .expect("all answered");
    assert_eq!(done.len(), CLIENTS);
}

/// Opens a WebSocket on `path` by hand and never answers a ping; how long
/// the daemon took to close it, and how many pings it sent.
async fn deaf_websocket(d: &TestDaemon, path: &str) -> (Duration, usize) {
    let mut s = TcpStream::connect(&d.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_string();
            assert!(head.starts_with("HTTP/1.1 101"), "{path}: {head}");
            buf.drain(..i + 4);
            break;
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "{path}: closed before the upgrade");
        buf.extend_from_slice(&chunk[..n]);
    }
    // Frames from the daemon, unmasked; pings counted, nothing answered.
    let mut pings = 0;
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            while buf.len() >= 2 {
                let (len, at) = match buf[1] & 0x7f {
                    126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                    127 if buf.len() >= 10 => (
                        u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => break,
                    n => (n as usize, 2),
                };
                if buf.len() < at + len {
                    break;
                }
                if buf[0] & 0x0f == 0x9 {
                    pings += 1;
                }
                buf.drain(..at + len);
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "{path}: a deaf peer was kept");
    (start.elapsed(), pings)
}

#[tokio::test]
async fn a_websocket_peer_that_stops_answering_pings_is_closed_on_every_route() {
    let d = TestDaemon::builder()
        .env("WORKSPACED_WS_PING_INTERVAL", "300ms")
        .arg("default-visibility", "public")
        .start();
    let (_, t) = d
        .post_json("/api/v1/terminals", serde_json::json!({}))
        .await;
    let id = t["id"].as_str().expect("a terminal id").to_owned();
    let app = upstream::start("127.0.0.1:0").await;
    wait_listening(&d, app.port()).await;

    for path in [
        format!("/api/v1/terminals/{id}/attach"),
        "/api/v1/events".to_owned(),
        "/api/v1/sync".to_owned(),
        format!("/api/v1/ports/{}/tunnel", app.port()),
    ] {
        let (took, pings) = deaf_websocket(&d, &path).await;
        assert!(pings >= 1, "{path}: no ping before the close");
        // Two intervals of silence, give or take the scheduling.
        assert!(
            took >= Duration::from_millis(500),
            "{path}: closed after {took:?}"
        );
    }

    // A peer that answers (tungstenite does, as browsers do) is kept well
    // past the deadline.
    let mut ws = d.ws("/api/v1/events").await;
    let quiet = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match ws.inner.next().await {
                // Events of this machine's other ports may come.
                Some(Ok(m)) if m.is_ping() || m.is_text() => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "an answering peer was closed: {quiet:?}");
}

/// The ping interval of the daemons below: the send timeout is twice this
/// (long enough that a reading client on a loaded machine is never late).
const PING: &str = "1s";

/// Opens a WebSocket on `path` from a socket with a 4 KiB receive buffer,
/// reads the answer's head byte by byte, and from then on reads nothing.
async fn never_reading(d: &TestDaemon, path: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(d.addr.parse().unwrap()).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(s.read_u8().await.expect("an answer to the upgrade"));
        assert!(head.len() < 8192, "{path}: an endless head");
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{path}: {}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Sends `bytes` every 100 ms, never reading, until a write fails: the
/// daemon closed its socket, and the kernel answered what came after with
/// a reset. How long that took; 20 s at most.
async fn dropped_within(s: &mut TcpStream, bytes: &[u8]) -> Duration {
    let start = Instant::now();
    let dropped = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if s.write_all(bytes).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(dropped.is_ok(), "a client that reads nothing was kept");
    start.elapsed()
}

/// An empty pong, masked as a client's frames are: unsolicited pongs keep a
/// client from looking silent, so only the send timeout can end it.
const PONG: [u8; 6] = [0x8a, 0x80, 1, 2, 3, 4];

/// RSS of the daemon now, in MiB.
fn rss_mib(d: &TestDaemon) -> u64 {
    crate::bounds::memory(d.pid()).1 >> 20
}

/// The daemon's memory after a client that read nothing was dropped: not
/// more than a few queues' worth above where it was.
fn assert_rss_bounded(d: &TestDaemon, before: u64, what: &str) {
    let after = rss_mib(d);
    assert!(
        after <= before + 48,
        "{what}: the daemon went from {before} to {after} MiB"
    );
}

/// Reads binary frames from `ws` and adds their sizes to `count`, until
/// the stream ends.
fn count_binary(mut ws: integration_tests::Ws, count: std::sync::Arc<AtomicU64>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        while let Some(Ok(m)) = ws.inner.next().await {
            if let tokio_tungstenite::tungstenite::Message::Binary(b) = m {
                count.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        }
    }))
}

pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads text frames of `ws` (so it answers pings and takes what it is
/// sent) until one satisfies `f`.
fn read_until(
    mut ws: integration_tests::Ws,
    f: impl Fn(&serde_json::Value) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.inner.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                if f(&serde_json::from_str(&t).unwrap()) {
                    return;
                }
            }
        }
        panic!("the stream ended first");
    })
}

/// Waits until `count` has grown by `by` bytes (10 s at most).
async fn grows(count: &AtomicU64, by: u64, what: &str) {
    let from = count.load(Ordering::Relaxed);
    until(Duration::from_secs(10), what, async || {
        (count.load(Ordering::Relaxed) >= from + by).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_client_that_never_reads_is_closed_and_the_others_stream_on() {
    let d = TestDaemon::builder()
        .env("WORKSPACED_WS_PING_INTERVAL", PING)
        .start();
    let (status, t) = d
        .post_json(
            "/api/v1/terminals",
            serde_json::json!({"command": ["sh", "-c", "exec yes output-line"]}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/terminals/{id}/attach");
    let reading = std::sync::Arc::new(AtomicU64::new(0));
    let _reader = count_binary(d.ws(&path).await, reading.clone());
    grows(&reading, 1 << 20, "output for the reading client").await;
    let before = rss_mib(&d);

    let mut deaf = never_reading(&d, &format!("{path}?offset=0")).await;
    let took = dropped_within(&mut deaf, &PONG).await;
    assert!(took < Duration::from_secs(10), "dropped after {took:?}");
    grows(&reading, 8 << 20, "output for the reading client after").await;
    assert_rss_bounded(&d, before, "attach");
    d.call(Method::DELETE, &format!("/api/v1/terminals/{id}"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_client_that_never_reads_is_closed_and_the_others_are_told() {
    let d = TestDaemon::builder()
        .env("WORKSPACED_WS_PING_INTERVAL", PING)
        .start();
    let events = d.ws("/api/v1/events").await;
    let before = rss_mib(&d);
    let mut deaf = never_reading(&d, "/api/v1/events").await;
    // 400 ports of a process with a 16 KiB command line: 6 MiB of events,
    // more than the socket buffers hold.
    let (mut child, ports) = crate::bounds::listeners(400);
    let last = *ports.last().unwrap();
    // The reading client is told every port, the last one included.
    let told = read_until(events, move |v| {
        v["type"] == "port_opened" && v["port"]["port"] == last
    });
    let took = dropped_within(&mut deaf, &PONG).await;
    assert!(took < Duration::from_secs(15), "dropped after {took:?}");
    tokio::time::timeout(Duration::from_secs(60), told)
        .await
        .expect("the last port within 60 s")
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_rss_bounded(&d, before, "events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_client_that_never_reads_is_closed_and_the_others_get_every_change() {
    let d = TestDaemon::builder()
        .env("WORKSPACED_WS_PING_INTERVAL", PING)
        .start();
    let mut sync = d.ws("/api/v1/sync").await;
    assert_eq!(sync.next_json().await["type"], "hello");
    let before = rss_mib(&d);
    let mut deaf = never_reading(&d, "/api/v1/sync").await;
    // 2,000 files 3.7 KiB deep: over 7 MiB of events.
    let deep: std::path::PathBuf = (0..14)
        .map(|i| format!("{i:02}{}", "d".repeat(240)))
        .collect();
    let last = format!("{}/1999{}", deep.display(), "f".repeat(200));
    let told = read_until(sync, move |v| {
        v["type"] == "changed" && v["path"] == last.as_str()
    });
    let root = d.root().join(&deep);
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&root).unwrap();
        for i in 0..2000 {
            std::fs::write(root.join(format!("{i:04}{}", "f".repeat(200))), b"x").unwrap();
        }
    })
    .await
    .unwrap();
    let took = dropped_within(&mut deaf, &PONG).await;
    assert!(took < Duration::from_secs(15), "dropped after {took:?}");
    tokio::time::timeout(Duration::from_secs(60), told)
        .await
        .expect("the last file's event within 60 s")
        .unwrap();
    assert_rss_bounded(&d, before, "sync");
}

/// A TCP server on loopback that sends to each client as fast as it takes.
pub async fn flood_server() -> (u16, AbortOnDrop) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut s, _)) = l.accept().await {
            conns.spawn(async move {
                let chunk = vec![b't'; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    (port, AbortOnDrop(task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_client_that_never_reads_is_closed_and_other_tunnels_flow() {
    let d = TestDaemon::builder()
        .env("WORKSPACED_WS_PING_INTERVAL", PING)
        .start();
    let (port, _server) = flood_server().await;
    let path = format!("/api/v1/ports/{port}/tunnel");
    let reading = std::sync::Arc::new(AtomicU64::new(0));
    let _reader = count_binary(d.ws(&path).await, reading.clone());
    grows(&reading, 1 << 20, "bytes through the reading tunnel").await;
    let before = rss_mib(&d);

    let mut deaf = never_reading(&d, &path).await;
    let took = dropped_within(&mut deaf, &PONG).await;
    assert!(took < Duration::from_secs(10), "dropped after {took:?}");
    grows(&reading, 8 << 20, "bytes through the reading tunnel after").await;
    assert_rss_bounded(&d, before, "tunnel");
}

#[tokio::test]
async fn a_proxied_websocket_client_that_never_reads_is_closed_after_the_send_timeout() {
    let d = TestDaemon::builder()
        .env("WORKSPACED_WS_PING_INTERVAL", PING)
        .start();
    let app = upstream::start("127.0.0.1:0").await;
    wait_listening(&d, app.port()).await;
    let before = rss_mib(&d);

    // The proxy splices bytes, pings nothing: a client that sends frames
    // but reads none is dropped only by the send timeout (2 s here).
    let mut deaf = never_reading(&d, &format!("/proxy/{}/ws-flood", app.port())).await;
    let took = dropped_within(&mut deaf, &PONG).await;
    assert!(took < Duration::from_secs(10), "dropped after {took:?}");
    assert!(
        took >= Duration::from_millis(1500),
        "dropped after {took:?}, before the send timeout"
    );

    // A reading client of the same app is served as before.
    let mut flood = d.ws(&format!("/proxy/{}/ws-flood", app.port())).await;
    let mut got = 0usize;
    while got < 8 << 20 {
        match flood.next().await {
            integration_tests::Frame::Binary(b) => got += b.len(),
            other => panic!("a proxied flood frame, got {other:?}"),
        }
    }
    let mut echo = d.ws(&format!("/proxy/{}/ws", app.port())).await;
    echo.send_text(serde_json::json!({"still": "here"})).await;
    assert_eq!(echo.next_json().await, serde_json::json!({"still": "here"}));
    assert_rss_bounded(&d, before, "proxied websocket");
}

#[tokio::test]
async fn memory_comes_back_after_two_thousand_connections_close() {
    const SLOW: usize = 2000;
    raise_fd_limit();
    let d = TestDaemon::start();
    // Warm: one request of each path's kind.
    let (status, _) = d.call(Method::GET, "/api/v1/status").await;
    assert_eq!(status, 200);
    let fresh = rss_mib(&d);
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(&d.addr).await.unwrap();
        s.write_all(HALF_HEAD).await.unwrap();
        slow.push(s);
    }
    // Each holds a task and a read buffer: the daemon grows.
    let open = until(Duration::from_secs(30), "the heads read", async || {
        let now = rss_mib(&d);
        (now >= fresh + 8).then_some(now)
    })
    .await;
    drop(slow);
    // Closed by their clients, they give their memory back.
    until(
        Duration::from_secs(20),
        &format!("RSS back near {fresh} MiB from {open} MiB"),
        async || (rss_mib(&d) <= fresh + (open - fresh) / 3).then_some(()),
    )
    .await;
    let (status, _) = d.call(Method::GET, "/api/v1/status").await;
    assert_eq!(status, 200);
}
