//! Load: 64 terminals writing at once, each read by two clients, and every
//! client receives every byte of its terminal's output, exactly once and in
//! order, with no `lagged` frame.

use std::time::Duration;

use integration_tests::{throughput_lock, Frame, TestDaemon, Ws};
use serde_json::{json, Value};

const TERMINALS: usize = 64;
const LINES: u32 = 20_000;

/// What `seq 1 LINES` shows through a PTY (`\n` becomes `\r\n`), after
/// the echo of the line that starts it.
fn expected() -> Vec<u8> {
    let mut out = b"go\r\n".to_vec();
    for i in 1..=LINES {
        out.extend_from_slice(format!("{i}\r\n").as_bytes());
    }
    out
}

/// Reads a client's frames to the terminal's exit: its output bytes, and
/// any text frame other than `exit` (a `lagged` would be one).
async fn read_to_exit(mut ws: Ws) -> (Vec<u8>, Vec<Value>) {
    let mut out = Vec::new();
    let mut other = Vec::new();
    loop {
        match ws.next().await {
            Frame::Binary(b) => out.extend_from_slice(&b),
            Frame::Text(v) if v["type"] == "exit" => return (out, other),
            Frame::Text(v) => other.push(v),
            Frame::Close(c) => panic!("closed ({c:?}) before exit after {} bytes", out.len()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_terminals_two_clients_each_receive_every_byte() {
    let _lock = throughput_lock().await;
    let setup = std::time::Instant::now();
    let d = TestDaemon::start();
    let mut readers = Vec::new();
    let mut starters = Vec::new();
    for _ in 0..TERMINALS {
        // The output waits for a line, so both clients attach from offset 0
        // before the first byte of it.
        let (status, t) = d
            .post_json(
                "/api/v1/terminals",
                json!({"command": ["sh", "-c", format!("read x; exec seq 1 {LINES}")]}),
            )
            .await;
        assert_eq!(status, 201, "{t}");
        let id = t["id"].as_str().unwrap().to_owned();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let mut ws = d
                .ws(&format!("/api/v1/terminals/{id}/attach?offset=0"))
                .await;
            let first = ws.next_json().await;
            assert_eq!(first["type"], "attached", "{first}");
            assert_eq!(first["offset"], 0, "{first}");
            clients.push(ws);
        }
        let mut starter = clients.pop().unwrap();
        starters.push(async move {
            starter.send_bytes(b"go\n").await;
            read_to_exit(starter).await
        });
        readers.push(read_to_exit(clients.pop().unwrap()));
    }
    let started = std::time::Instant::now();
    let all = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join(
            futures_util::future::join_all(readers),
            futures_util::future::join_all(starters),
        ),
    )
    .await
    .expect("all terminals end within 2 minutes");
    let want = expected();
    for (i, (out, other)) in all.0.into_iter().chain(all.1).enumerate() {
        assert!(other.is_empty(), "client {i} got {other:?}");
        assert!(
            out == want,
            "client {i} got {} bytes, want {}; first difference at {:?}",
            out.len(),
            want.len(),
            out.iter().zip(&want).position(|(a, b)| a != b)
        );
    }
    eprintln!(
        "{TERMINALS} terminals x 2 clients attached in {:?}; {} bytes each, all read in {:?}",
        started - setup,
        want.len(),
        started.elapsed()
    );
}
