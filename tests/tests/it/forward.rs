//! The raw TCP tunnel and `workspaced forward`, end to end with a real
//! HTTP server (python3 -m http.server) and curl.

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

#[tokio::test]
async fn forward_carries_http_from_curl_to_a_server_in_the_workspace() {
    let d = TestDaemon::start();
    std::fs::write(d.root().join("greeting.txt"), "hello through the tunnel\n").unwrap();
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(d.root().join("big.bin"), &big).unwrap();
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
    wait_listening(&d, port).await;

    let token_file = d.state.path().join("forward-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut fwd = Command::new(daemon_binary())
        .args([
            "forward",
            "--url",
            &format!("http://{}", d.addr),
            "--token-file",
        ])
        .arg(&token_file)
        .arg(format!("0:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = fwd.stderr.take().unwrap();
    let fwd = Killed(fwd);
    let local: String = first_line(err, |l| {
        Some(
            l.strip_prefix("workspaced: forwarding ")?
                .split_whitespace()
                .next()?
                .to_owned(),
        )
    });

    let curl = |path: &str| {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", &format!("http://{local}{path}")])
            .output()
            .expect("curl is installed by scripts/test.sh")
    };
    let got = curl("/greeting.txt");
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, b"hello through the tunnel\n");
    let got = curl("/big.bin");
    assert_eq!(got.stdout.len(), big.len());
    assert!(got.stdout == big, "4 MB arrive intact");
    drop(fwd);
    drop(server);
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
