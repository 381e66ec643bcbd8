//! Slow, hostile and heavy clients: `header_timeout`, `idle_connection_timeout`
//! and `max_connections` on both HTTP paths (the proxy's fast lane and
//! hyper), thousands of slow heads, a thousand kept-alive proxied
//! connections, and WebSocket peers that stop answering pings.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use integration_tests::{upstream, TestDaemon, TOKEN};
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
