//! The raw TCP tunnel and `workspaced forward`, end to end with a real
//! HTTP server (python3 -m http.server) and curl, in the clear and over TLS.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::{daemon_binary, TestDaemon, TOKEN};
use reqwest::Method;
use serde_json::Value;

use crate::ports::wait_listening;

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines of `from` until `f` extracts something (20 s at most).
fn first_line<T: Send + 'static>(
    from: impl std::io::Read + Send + 'static,
    f: impl Fn(&str) -> Option<T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { return };
            if let Some(v) = f(&line) {
                let _ = tx.send(v);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the expected line within 20 s")
}

/// `python3 -m http.server` serving the workspace, and its port once the
/// daemon lists it.
async fn http_server(d: &TestDaemon) -> (Killed, u16) {
    let mut server = Command::new("python3")
        .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
        .current_dir(d.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is installed by scripts/test.sh");
    let out = server.stdout.take().unwrap();
    let server = Killed(server);
    let port: u16 = first_line(out, |l| {
        l.split(" port ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    wait_listening(d, port).await;
    (server, port)
}

/// `workspaced forward --url URL --token-file F [extra] 0:REMOTE`, running.
struct Forwarding {
    _child: Killed,
    /// Where it listens, `127.0.0.1:N`.
    local: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Forwarding {
    fn start(d: &TestDaemon, url: &str, remote: u16, extra: &[&std::ffi::OsStr]) -> Forwarding {
        Forwarding::start_env(d, url, remote, extra, &[])
    }

    fn start_env(
        d: &TestDaemon,
        url: &str,
        remote: u16,
        extra: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
    ) -> Forwarding {
        let token_file = d.state.path().join("forward-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let mut child = Command::new(daemon_binary())
            .args(["forward", "--url", url, "--token-file"])
            .arg(&token_file)
            .args(extra)
            .arg(format!("0:{remote}"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut f = Forwarding {
            _child: Killed(child),
            local: String::new(),
            lines,
        };
        let line = f.line(|l| l.starts_with("workspaced: forwarding "));
        f.local = line["workspaced: forwarding ".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        f
    }

    /// The next line of its stderr that satisfies `f` (20 s at most).
    fn line(&self, f: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if f(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!("no such line of workspaced forward within 20 s: {e}"),
            }
        }
    }

    fn curl(&self, path: &str) -> std::process::Output {
        Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                &format!("http://{}{path}", self.local),
            ])
            .output()
            .expect("curl is installed by scripts/test.sh")
    }
}

/// A file of 4 MB that is no repetition of a short pattern.
fn big_file(d: &TestDaemon) -> Vec<u8> {
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.root().join("big.bin"), &big).unwrap();
    big
}

#[tokio::test]
async fn forward_carries_http_from_curl_to_a_server_in_the_workspace() {
    let d = TestDaemon::start();
    std::fs::write(d.root().join("greeting.txt"), "hello through the tunnel\n").unwrap();
    let big = big_file(&d);
    let (_server, port) = http_server(&d).await;
    let fwd = Forwarding::start(&d, &format!("http://{}", d.addr), port, &[]);

    let got = fwd.curl("/greeting.txt");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, b"hello through the tunnel\n");
    let got = fwd.curl("/big.bin");
    assert_eq!(got.stdout.len(), big.len());
    assert!(got.stdout == big, "4 MB arrive intact");
}

// Multi-threaded: the TLS relay runs in this process while curl blocks a thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_reaches_the_daemon_over_https_and_refuses_an_untrusted_certificate() {
    let d = TestDaemon::start();
    std::fs::write(d.root().join("greeting.txt"), "hello over TLS\n").unwrap();
    let big = big_file(&d);
    let (_server, port) = http_server(&d).await;
    let relay = integration_tests::tls::relay(&d.addr).await;
    let url = format!("https://{}", relay.addr);

    // The relay's certificate given with --ca-file: the tunnel runs over TLS.
    let fwd = Forwarding::start(&d, &url, port, &["--ca-file".as_ref(), relay.cert.as_ref()]);
    let got = fwd.curl("/greeting.txt");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, b"hello over TLS\n");
    let got = fwd.curl("/big.bin");
    assert!(got.stdout == big, "4 MB arrive intact over TLS");
    drop(fwd);

    // Without it the certificate is not trusted: the connection is closed
    // and forward says why and what to do, without the token.
    let fwd = Forwarding::start(&d, &url, port, &[]);
    let got = fwd.curl("/greeting.txt");
    assert!(
        !got.status.success(),
        "nothing through an untrusted TLS connection"
    );
    let why = fwd.line(|l| l.contains("TLS"));
    assert!(why.contains("certificate"), "{why}");
    assert!(why.contains("--ca-file"), "{why}");
    assert!(!why.contains(TOKEN), "{why}");
}

#[tokio::test]
async fn tunnel_is_raw_tcp_for_the_owner_and_502_when_nothing_listens() {
    let d = TestDaemon::start();
    let l = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let echo = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    wait_listening(&d, port).await;
    let mut ws = d.ws(&format!("/api/v1/ports/{port}/tunnel")).await;
    ws.send_bytes(b"PING\r\n").await;
    let mut texts = Vec::new();
    let got = ws.read_until(&mut texts, |b| b.len() >= 6).await;
    assert_eq!(got, b"PING\r\n");
    // The app closing closes the tunnel.
    echo.abort();
    drop(ws);

    let r = d
        .req(Method::GET, "/api/v1/ports/9/tunnel")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "port_not_available"
    );
    assert!(d
        .ws_with(&format!("/api/v1/ports/{port}/tunnel"), None)
        .await
        .is_err());
}

#[test]
fn forward_bad_usage_exits_64_with_one_line() {
    for args in [
        vec!["forward", "--url", "http://127.0.0.1:1", "70000"],
        vec!["forward", "--url", "ftp://x", "5432"],
        vec!["forward", "5432"],
    ] {
        let out = Command::new(daemon_binary())
            .args(&args)
            .env("WORKSPACED_TOKEN", "t")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{args:?}"
        );
    }
    let out = Command::new(daemon_binary())
        .args(["forward", "--url", "http://127.0.0.1:1", "5432"])
        .env_remove("WORKSPACED_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));
}

#[tokio::test]
async fn forward_sends_small_messages_that_a_strict_daemon_accepts() {
    // A daemon that closes the tunnel (1009) on any message over 64 KiB:
    // 8 MB uploaded through forward arrive whole, so forward cut them small.
    let d = TestDaemon::builder()
        .arg(
            "max-ws-message-bytes",
            &workspaced::forward::CHUNK.to_string(),
        )
        .start();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let echo = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    wait_listening(&d, port).await;
    let fwd = Forwarding::start(&d, &format!("http://{}", d.addr), port, &[]);
    let data: Vec<u8> = (0..8_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let conn = tokio::net::TcpStream::connect(&fwd.local).await.unwrap();
    let (mut r, mut w) = conn.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        // Kept open: a close on either side closes the tunnel.
        w.write_all(&sent).await.unwrap();
        w
    });
    let mut back = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(60), async {
        use tokio::io::AsyncReadExt;
        r.read_exact(&mut back)
            .await
            .expect("every byte comes back");
    })
    .await
    .expect("the echo within 60 s");
    drop(writer.await.unwrap());
    echo.abort();
    assert!(back == data, "8 MB arrive intact");
}

/// Open descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_drops_a_local_client_that_never_reads() {
    use tokio::io::AsyncReadExt;
    // Send timeouts of 2 s, the daemon's and forward's.
    let ping = [("WORKSPACED_WS_PING_INTERVAL", "1s")];
    let d = TestDaemon::builder().env(ping[0].0, ping[0].1).start();
    let (port, _server) = crate::limits::flood_server().await;
    let fwd = Forwarding::start_env(&d, &format!("http://{}", d.addr), port, &[], &ping);
    let pid = fwd._child.0.id();
    let idle = fds(pid);

    // A local client with a 4 KiB receive buffer that reads nothing.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut deaf = sock.connect(fwd.local.parse().unwrap()).await.unwrap();
    integration_tests::until(Duration::from_secs(20), "the tunnel open", async || {
        (fds(pid) >= idle + 2).then_some(())
    })
    .await;
    // forward lets go of it, and of its tunnel, by itself.
    integration_tests::until(
        Duration::from_secs(20),
        "forward to close the connection of a client that reads nothing",
        async || (fds(pid) <= idle).then_some(()),
    )
    .await;
    // What was in flight, then the end: a bounded amount.
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), deaf.read_to_end(&mut got))
        .await
        .expect("the end of the stream")
        .ok();
    assert!(got.len() < 32 << 20, "{} bytes", got.len());

    // Another client is carried as before.
    let mut other = tokio::net::TcpStream::connect(&fwd.local).await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    tokio::time::timeout(Duration::from_secs(20), other.read_exact(&mut buf))
        .await
        .expect("a MiB through forward")
        .unwrap();
    assert!(buf.iter().all(|&b| b == b't'));
}
