//! Terminals under load and at the edges: flow control (a reading client
//! gets every byte of a flood, a stalled one is skipped ahead and can fetch
//! what it skipped), the title and `mode` a program sets, sizes out of
//! range, and the limit on terminals under concurrent creates.

use std::time::Duration;

use integration_tests::{contains, until, Frame, TestDaemon, Ws};
use serde_json::{json, Value};

use super::terminals::{attach, create, id};

/// Lines of `seq 1 N` as a terminal shows them (`\n` becomes `\r\n`),
/// generated ahead and compared slice by slice (a 200 MB check stays cheap
/// in a debug build).
struct SeqCheck {
    /// The next number, in ASCII.
    digits: Vec<u8>,
    /// Lines generated so far.
    lines: u64,
    expected: Vec<u8>,
    at: usize,
    bytes: u64,
}

impl SeqCheck {
    fn new() -> Self {
        SeqCheck {
            digits: b"1".to_vec(),
            lines: 0,
            expected: Vec::new(),
            at: 0,
            bytes: 0,
        }
    }

    fn generate(&mut self) {
        self.expected.clear();
        self.at = 0;
        while self.expected.len() < 64 * 1024 {
            self.expected.extend_from_slice(&self.digits);
            self.expected.extend_from_slice(b"\r\n");
            self.lines += 1;
            let mut i = self.digits.len();
            loop {
                if i == 0 {
                    self.digits.insert(0, b'1');
                    break;
                }
                i -= 1;
                if self.digits[i] == b'9' {
                    self.digits[i] = b'0';
                } else {
                    self.digits[i] += 1;
                    break;
                }
            }
        }
    }

    /// Checks the bytes continue the sequence exactly.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.at == self.expected.len() {
                self.generate();
            }
            let n = bytes.len().min(self.expected.len() - self.at);
            assert!(
                bytes[..n] == self.expected[self.at..self.at + n],
                "the output differs from seq after {} bytes: {:?}",
                self.bytes,
                String::from_utf8_lossy(&bytes[..n.min(80)])
            );
            self.at += n;
            self.bytes += n as u64;
            bytes = &bytes[n..];
        }
    }

    /// Lines fully received.
    fn complete_lines(&self) -> u64 {
        let pending = &self.expected[self.at..];
        self.lines - pending.iter().filter(|&&b| b == b'\n').count() as u64
    }
}

/// Reads output until `exit`, handing every byte to `f`; returns the text
/// frames seen.
async fn stream_to_exit(ws: &mut Ws, mut f: impl FnMut(&[u8])) -> Vec<Value> {
    let mut texts = Vec::new();
    loop {
        match ws.next().await {
            Frame::Binary(b) => f(&b),
            Frame::Text(v) if v["type"] == "exit" => {
                texts.push(v);
                return texts;
            }
            Frame::Text(v) => texts.push(v),
            Frame::Close(c) => panic!("closed ({c:?}) before exit"),
        }
    }
}

/// `seq 1 N` with N such that the output is about 200 MB.
const FLOOD_LINES: u64 = 22_000_000;

#[tokio::test]
async fn a_reading_client_gets_every_byte_of_a_200_mb_flood() {
    let _pace = integration_tests::throughput_lock().await;
    let d = TestDaemon::start();
    let t = create(
        &d,
        json!({"command": ["bash", "-c", format!("read x; seq 1 {FLOOD_LINES}")]}),
    )
    .await;
    let (mut ws, _) = attach(&d, &id(&t), Some(0)).await;
    ws.send_bytes(b"go\r").await;
    // The typed line comes back first (the tty echoes it).
    let mut echo = Vec::new();
    let mut check = SeqCheck::new();
    let texts = stream_to_exit(&mut ws, |b| {
        if echo.len() < 4 {
            let take = (4 - echo.len()).min(b.len());
            echo.extend_from_slice(&b[..take]);
            check.feed(&b[take..]);
        } else {
            check.feed(b);
        }
    })
    .await;
    assert_eq!(echo, b"go\r\n");
    assert!(
        texts.iter().all(|v| v["type"] != "lagged"),
        "the only client lagged: {texts:?}"
    );
    assert_eq!(
        check.complete_lines(),
        FLOOD_LINES,
        "lines missing at the end"
    );
    assert!(check.bytes > 200_000_000, "{} bytes", check.bytes);
    assert_eq!(texts.last().unwrap()["code"], 0);
}

#[tokio::test]
async fn a_stalled_client_is_skipped_ahead_and_can_fetch_what_it_skipped() {
    let _pace = integration_tests::throughput_lock().await;
    // Scrollback large enough to keep all of the flood for the re-attach.
    let d = TestDaemon::builder()
        .arg("scrollback-bytes", "134217728")
        .start();
    const LINES: u64 = 8_000_000; // about 70 MB
    let t = create(
        &d,
        json!({"command": ["bash", "-c", format!("read x; seq 1 {LINES}; echo; exec cat")]}),
    )
    .await;
    let (mut stalled, _) = attach(&d, &id(&t), Some(0)).await;
    let (mut reader, _) = attach(&d, &id(&t), Some(0)).await;
    reader.send_bytes(b"go\r").await;
    let mut all = Vec::new();
    let mut texts = Vec::new();
    let end_marker = format!("\r\n{LINES}\r\n\r\n");
    while !all.ends_with(end_marker.as_bytes()) {
        match reader.next().await {
            Frame::Binary(b) => all.extend_from_slice(&b),
            Frame::Text(v) => texts.push(v),
            Frame::Close(c) => panic!("closed {c:?}"),
        }
    }
    assert!(
        texts.iter().all(|v| v["type"] != "lagged"),
        "the reading client lagged: {texts:?}"
    );
    let mut check = SeqCheck::new();
    check.feed(&all[4..all.len() - 2]);
    assert_eq!((&all[..4], check.complete_lines()), (&b"go\r\n"[..], LINES));

    // The stalled client reads again: what its socket held, then `lagged`.
    let mut got = Vec::new();
    let k = loop {
        match stalled.next().await {
            Frame::Binary(b) => got.extend_from_slice(&b),
            Frame::Text(v) if v["type"] == "lagged" => break v["offset"].as_u64().unwrap(),
            Frame::Text(_) => {}
            Frame::Close(c) => panic!("closed {c:?}"),
        }
    };
    let r = got.len();
    assert!(r < all.len(), "the stalled client got everything");
    assert_eq!(got, all[..r], "what it got before lagging is a prefix");
    assert!(
        k as usize > r && k as usize <= all.len(),
        "lagged at {k}, had {r}"
    );

    // Re-attaching where it stopped fetches exactly what it skipped (tens of
    // MB, far more than client_queue_bytes) without being lagged for it.
    let (mut back, first) = attach(&d, &id(&t), Some(r as u64)).await;
    assert_eq!(first["replay"], "bytes");
    let mut rest = Vec::new();
    let mut texts = Vec::new();
    while rest.len() < all.len() - r {
        match back.next().await {
            Frame::Binary(b) => rest.extend_from_slice(&b),
            Frame::Text(v) => texts.push(v),
            Frame::Close(c) => panic!("closed {c:?}"),
        }
    }
    assert!(
        texts.iter().all(|v| v["type"] != "lagged"),
        "the re-attached client lagged: {texts:?}"
    );
    assert!(rest == all[r..], "the fetched bytes differ");
}

#[tokio::test]
async fn the_title_comes_back_in_the_screen_replay() {
    let d = TestDaemon::start();
    let script = r#"printf '\033]0;first title\007'; printf '\033]2;the; real title\007'; printf '\033]1;icon\007'; printf 'PRINTED'; exec cat"#;
    let t = create(&d, json!({"command": ["bash", "-c", script]})).await;
    let path = format!("/api/v1/terminals/{}", id(&t));
    let (mut live, _) = attach(&d, &id(&t), Some(0)).await;
    live.read_until(&mut vec![], |o| contains(o, b"PRINTED"))
        .await;
    let _ = path;
    let (mut fresh, first) = attach(&d, &id(&t), None).await;
    assert_eq!(first["replay"], "screen");
    let Frame::Binary(screen) = fresh.next().await else {
        panic!("no screen frame")
    };
    assert!(
        contains(&screen, b"\x1b]2;the; real title\x07"),
        "{:?}",
        String::from_utf8_lossy(&screen)
    );
    assert!(contains(&screen, b"\x1b]1;icon\x07"));
    assert!(contains(&screen, b"PRINTED"));

    // OSC 0 sets both: one OSC 0 comes back.
    let t = create(
        &d,
        json!({"command": ["bash", "-c", r#"printf '\033]0;TITLE\007DONE'; exec cat"#]}),
    )
    .await;
    let (mut live, _) = attach(&d, &id(&t), Some(0)).await;
    live.read_until(&mut vec![], |o| contains(o, b"DONE")).await;
    let (mut fresh, _) = attach(&d, &id(&t), None).await;
    let Frame::Binary(screen) = fresh.next().await else {
        panic!("no screen frame")
    };
    assert!(
        contains(&screen, b"\x1b]0;TITLE\x07"),
        "{:?}",
        String::from_utf8_lossy(&screen)
    );
}

/// The next `mode` frame; output before it goes to `out`.
async fn next_mode(ws: &mut Ws, out: &mut Vec<u8>) -> Value {
    loop {
        match ws.next().await {
            Frame::Text(v) if v["type"] == "mode" => return v,
            Frame::Binary(b) => out.extend_from_slice(&b),
            Frame::Close(c) => panic!("closed {c:?}"),
            Frame::Text(_) => {}
        }
    }
}

#[tokio::test]
async fn mode_follows_read_s_at_an_interactive_shell() {
    let d = TestDaemon::start();
    let t = create(
        &d,
        json!({"command": ["bash", "--norc", "--noprofile", "-i"], "env": {"PS1": "PROMPT> "}}),
    )
    .await;
    let (mut ws, first) = attach(&d, &id(&t), Some(0)).await;
    assert_eq!(first["echo"], true);
    ws.read_until(&mut vec![], |o| contains(o, b"PROMPT> "))
        .await;
    // `read -s` turns echo off and prints nothing after the typed line.
    ws.send_bytes(b"read -s secret; echo GOT=${#secret}\r")
        .await;
    assert_eq!(
        next_mode(&mut ws, &mut vec![]).await,
        json!({"type": "mode", "echo": false})
    );
    let info = d.get_json(&format!("/api/v1/terminals/{}", id(&t))).await;
    assert_eq!(info["exited"], false);
    ws.send_bytes(b"hunter2\r").await;
    // The program's output may come before or after the mode change.
    let mut out = Vec::new();
    assert_eq!(
        next_mode(&mut ws, &mut out).await,
        json!({"type": "mode", "echo": true})
    );
    if !contains(&out, b"GOT=7") {
        ws.read_until(&mut vec![], |o| contains(o, b"GOT=7")).await;
    }
    assert!(!contains(&out, b"hunter2"), "the secret was echoed");
    // A client attaching now is told the state in its first frame.
    let (_, first) = attach(&d, &id(&t), None).await;
    assert_eq!(first["echo"], true);
}

#[tokio::test]
async fn sizes_out_of_range_get_invalid_size_on_create_and_resize() {
    let d = TestDaemon::start();
    for bad in [json!(-1), json!(0), json!(1001), json!(1.5), json!("80")] {
        for body in [
            json!({"command": ["cat"], "cols": bad}),
            json!({"command": ["cat"], "rows": bad}),
        ] {
            let (status, answer) = d.post_json("/api/v1/terminals", body.clone()).await;
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (400, Some("invalid_size")),
                "{body}: {answer}"
            );
        }
    }
    assert_eq!(d.get_json("/api/v1/terminals").await, json!([]));

    let t = create(&d, json!({"command": ["cat"], "cols": 1000, "rows": 1})).await;
    assert_eq!(
        (t["cols"].as_u64(), t["rows"].as_u64()),
        (Some(1000), Some(1))
    );
    let (mut ws, _) = attach(&d, &id(&t), Some(0)).await;
    for bad in [json!(-1), json!(0), json!(1001), json!(1.5), json!("80")] {
        for (cols, rows) in [(bad.clone(), json!(24)), (json!(80), bad.clone())] {
            ws.send_text(json!({"type": "resize", "cols": cols, "rows": rows}))
                .await;
            let err = ws.next_json().await;
            assert_eq!(
                (err["type"].as_str(), err["error"]["code"].as_str()),
                (Some("error"), Some("invalid_size")),
                "{cols} x {rows}: {err}"
            );
        }
    }
    // The connection stays, and the size did not change.
    let path = format!("/api/v1/terminals/{}", id(&t));
    let info = d.get_json(&path).await;
    assert_eq!(
        (info["cols"].as_u64(), info["rows"].as_u64()),
        (Some(1000), Some(1))
    );
    ws.send_text(json!({"type": "resize", "cols": 90, "rows": 30}))
        .await;
    ws.send_bytes(b"still here\r").await;
    ws.read_until(&mut vec![], |o| contains(o, b"still here"))
        .await;
    let info = d.get_json(&path).await;
    assert_eq!(
        (info["cols"].as_u64(), info["rows"].as_u64()),
        (Some(90), Some(30))
    );
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s[s.rfind(')').unwrap() + 2..].starts_with('Z'))
        .unwrap_or(false)
}

/// Deletes terminal `t` (204) and waits until its process has ended.
async fn delete_and_await_end(d: &TestDaemon, t: &Value, what: &str) {
    let (status, _) = d
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/terminals/{}", id(t)),
        )
        .await;
    assert_eq!(status, 204);
    let pid = t["pid"].as_u64().unwrap();
    until(Duration::from_secs(10), what, async || {
        (!alive(pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn concurrent_creates_never_exceed_max_terminals() {
    let d = TestDaemon::builder().arg("max-terminals", "4").start();
    let posts = (0..20).map(|_| d.post_json("/api/v1/terminals", json!({"command": ["cat"]})));
    let answers = futures_util::future::join_all(posts).await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, t)| t)
        .collect();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == 429 && b["error"]["code"] == "too_many_terminals")
        .count();
    assert_eq!((created.len(), refused), (4, 16), "{answers:?}");
    for t in &created {
        assert!(alive(t["pid"].as_u64().unwrap()), "{t}");
    }
    assert_eq!(
        d.get_json("/api/v1/terminals")
            .await
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // An exited terminal frees its slot.
    let (status, _) = d
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/terminals/{}", id(created[0])),
        )
        .await;
    assert_eq!(status, 204);
    until(Duration::from_secs(10), "a slot to free", async || {
        let (s, _) = d
            .post_json("/api/v1/terminals", json!({"command": ["cat"]}))
            .await;
        (s == 201).then_some(())
    })
    .await;
}

/// A pids cgroup of its own (v1 controller, else v2), removed on drop.
struct PidsCgroup {
    dir: std::path::PathBuf,
    parent: std::path::PathBuf,
}

impl PidsCgroup {
    fn new() -> Self {
        let v1 = std::path::Path::new("/sys/fs/cgroup/pids");
        let parent = if v1.is_dir() {
            v1.to_owned()
        } else {
            let root = std::path::PathBuf::from("/sys/fs/cgroup");
            // v2: the pids controller must be enabled for children.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+pids");
            root
        };
        let dir = parent.join(format!("workspaced-test-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("create a pids cgroup (the tests run as root)");
        PidsCgroup { dir, parent }
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }

    fn current(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("pids.current"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn set_max(&self, max: &str) {
        std::fs::write(self.dir.join("pids.max"), max).unwrap();
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(self.parent.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[tokio::test]
async fn a_pids_limit_makes_create_fail_cleanly() {
    let cgroup = PidsCgroup::new();
    let d = TestDaemon::start();
    cgroup.add(d.pid());
    // One terminal first, so that everything the daemon starts lazily for a
    // create exists; then it is gone again.
    let t = create(&d, json!({"command": ["cat"]})).await;
    delete_and_await_end(&d, &t, "the first terminal to end").await;

    // Room for the child, none for the terminal's thread. The daemon's own
    // thread count moves under the test: another thread may start in between
    // and take the room (then the fork is refused: 400 spawn_failed), or an
    // idle blocking-pool thread may end and leave room for the terminal's
    // thread too (then the create succeeds, and that terminal is closed).
    // So this is tried a few times.
    let mut internal = 0;
    for _ in 0..10 {
        let base = cgroup.current();
        cgroup.set_max(&(base + 1).to_string());
        let (status, body) = d
            .post_json("/api/v1/terminals", json!({"command": ["cat"]}))
            .await;
        match (status, body["error"]["code"].as_str()) {
            (500, Some("internal")) => internal += 1,
            (400, Some("spawn_failed")) => {}
            (201, None) => {
                cgroup.set_max("max");
                delete_and_await_end(&d, &body, "the extra terminal to end").await;
                continue;
            }
            other => panic!("{other:?}: {body}"),
        }
        assert!(body["error"]["message"].as_str().unwrap().len() > 10);
        // The child, if any, was killed and reaped.
        until(
            Duration::from_secs(10),
            "the child to be reaped",
            async || (cgroup.current() <= base).then_some(()),
        )
        .await;
        if internal > 0 {
            break;
        }
    }
    assert_eq!(internal, 1, "no create reached the thread spawns");
    assert_eq!(d.get_json("/api/v1/terminals").await, json!([]));

    // With room again, terminals start as before.
    cgroup.set_max("max");
    let t = create(&d, json!({"command": ["cat"]})).await;
    let (mut ws, _) = attach(&d, &id(&t), Some(0)).await;
    ws.send_bytes(b"works\r").await;
    ws.read_until(&mut vec![], |o| contains(o, b"works\r\nworks"))
        .await;
}
