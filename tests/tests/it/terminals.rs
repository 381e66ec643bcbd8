//! Terminals: create, attach, replay, resize, lag, exit, limits.

use std::time::Duration;

use integration_tests::{contains, until, Frame, TestDaemon, Ws};
use serde_json::{json, Value};

pub(crate) async fn create(d: &TestDaemon, body: Value) -> Value {
    let (status, t) = d.post_json("/api/v1/terminals", body).await;
    assert_eq!(status, 201, "{t}");
    t
}

pub(crate) async fn attach(d: &TestDaemon, id: &str, offset: Option<u64>) -> (Ws, Value) {
    let path = match offset {
        Some(n) => format!("/api/v1/terminals/{id}/attach?offset={n}"),
        None => format!("/api/v1/terminals/{id}/attach"),
    };
    let mut ws = d.ws(&path).await;
    let first = ws.next_json().await;
    assert_eq!(first["type"], "attached", "{first}");
    (ws, first)
}

pub(crate) fn id(t: &Value) -> String {
    t["id"].as_str().unwrap().to_owned()
}

/// Reads frames until the process ends, returning all output and the exit frame.
async fn read_to_exit(ws: &mut Ws) -> (Vec<u8>, Value) {
    let mut out = Vec::new();
    loop {
        match ws.next().await {
            Frame::Binary(b) => out.extend_from_slice(&b),
            Frame::Text(v) if v["type"] == "exit" => {
                assert_eq!(ws.next().await, Frame::Close(Some(1000)));
                return (out, v);
            }
            Frame::Text(_) => {}
            Frame::Close(c) => panic!("closed ({c:?}) before exit"),
        }
    }
}

#[tokio::test]
async fn create_list_get_and_echo_round_trip() {
    let d = TestDaemon::start();
    std::fs::create_dir(d.root().join("sub")).unwrap();
    let t = create(
        &d,
        json!({"command": ["cat"], "cwd": "sub", "title": "my cat"}),
    )
    .await;
    assert_eq!(t["command"], json!(["cat"]));
    assert_eq!(t["cwd"], "sub");
    assert_eq!(t["title"], "my cat");
    assert_eq!(
        (t["cols"].as_u64(), t["rows"].as_u64()),
        (Some(80), Some(24))
    );
    assert_eq!(t["exited"], false);
    assert_eq!(t["container"], Value::Null);
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'));
    let list = d.get_json("/api/v1/terminals").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        d.get_json(&format!("/api/v1/terminals/{}", id(&t))).await["id"],
        t["id"]
    );

    let (mut ws, first) = attach(&d, &id(&t), None).await;
    assert_eq!(first["replay"], "screen");
    assert_eq!(first["echo"], true);
    assert_eq!(
        d.get_json(&format!("/api/v1/terminals/{}", id(&t))).await["clients"],
        1
    );
    ws.send_bytes("héllo 世界 🎉\r".as_bytes()).await;
    let out = ws
        .read_until(&mut vec![], |o| {
            o.windows(2).filter(|w| *w == b"\r\n").count() >= 2
        })
        .await;
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        text.matches("héllo 世界 🎉").count(),
        2,
        "echo and cat's copy: {text:?}"
    );

    // The default command is the user's login shell, in the workspace root.
    let sh = create(&d, json!({})).await;
    assert_eq!(sh["command"], json!(["/bin/bash", "-l"]));
    assert_eq!(sh["title"], "bash");
    let (mut ws, _) = attach(&d, &id(&sh), None).await;
    ws.send_bytes(b"pwd; echo TERM=$TERM; echo TOKEN=${WORKSPACED_TOKEN:-none}; exit 7\r")
        .await;
    let (out, exit) = read_to_exit(&mut ws).await;
    let text = String::from_utf8_lossy(&out);
    let root = d.root().canonicalize().unwrap();
    assert!(text.contains(&format!("{}\r\n", root.display())), "{text}");
    assert!(text.contains("TERM=xterm-256color"), "{text}");
    assert!(
        text.contains("TOKEN=none"),
        "the token leaked into the shell: {text}"
    );
    assert_eq!(exit, json!({"type": "exit", "code": 7, "signal": null}));
}

#[tokio::test]
async fn input_bytes_arrive_intact() {
    let d = TestDaemon::start();
    let all: Vec<u8> = (0..=255u8).chain("ünïcödé ✓ 🎉".bytes()).collect();
    let script = format!(
        "stty raw -echo -iexten; head -c {} > got; echo done",
        all.len()
    );
    let t = create(&d, json!({"command": ["bash", "-c", script]})).await;
    let (mut ws, _) = attach(&d, &id(&t), Some(0)).await;
    // Wait until the terminal is raw (no output before that point is expected).
    until(Duration::from_secs(10), "head to start", async || {
        let out = std::process::Command::new("ps")
            .args(["-o", "comm=", "--ppid", &t["pid"].to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .contains("head")
            .then_some(())
    })
    .await;
    for chunk in all.chunks(7) {
        ws.send_bytes(chunk).await;
    }
    let (out, exit) = read_to_exit(&mut ws).await;
    assert!(contains(&out, b"done"));
    assert_eq!(exit["code"], 0);
    assert_eq!(std::fs::read(d.root().join("got")).unwrap(), all);
}

#[tokio::test]
async fn output_split_anywhere_reassembles_exactly() {
    let d = TestDaemon::start();
    // 600 KiB of multi-byte text and raw bytes, larger than one frame, written
    // with output post-processing off so the bytes are exactly the file's.
    let mut expected = Vec::new();
    while expected.len() < 600 * 1024 {
        expected.extend_from_slice("日本語テキスト🎉é".as_bytes());
        expected.extend_from_slice(&[0xc3, 0x28, 0xff, 0x00, 0x1b, b'[', b'm']);
    }
    std::fs::write(d.root().join("data"), &expected).unwrap();
    let t = create(
        &d,
        json!({"command": ["bash", "-c", "stty -opost; cat data"]}),
    )
    .await;
    let (mut ws, _) = attach(&d, &id(&t), Some(0)).await;
    let (out, _) = read_to_exit(&mut ws).await;
    assert_eq!(out.len(), expected.len());
    assert!(out == expected, "the output differs from the file");
}

#[tokio::test]
async fn reconnect_with_offset_gets_exactly_the_missed_bytes() {
    let d = TestDaemon::start();
    let t = create(&d, json!({"command": ["cat"]})).await;
    let (mut stayer, _) = attach(&d, &id(&t), Some(0)).await;
    let (mut leaver, _) = attach(&d, &id(&t), Some(0)).await;
    leaver.send_bytes(b"first line\r").await;
    let seen = leaver
        .read_until(&mut vec![], |o| {
            o.windows(10).filter(|w| *w == b"first line").count() == 2
        })
        .await;
    let k = seen.len() as u64;
    drop(leaver);

    for i in 0..50 {
        stayer.send_bytes(format!("missed {i}\r").as_bytes()).await;
    }
    stayer.send_bytes(b"the end\r").await;
    let all = stayer
        .read_until(&mut vec![], |o| {
            o.windows(7).filter(|w| *w == b"the end").count() == 2
        })
        .await;

    let (mut back, first) = attach(&d, &id(&t), Some(k)).await;
    assert_eq!(first["replay"], "bytes");
    assert_eq!(first["offset"], k);
    assert_eq!(first["output_offset"], all.len() as u64);
    let rest = back
        .read_until(&mut vec![], |o| o.len() >= all.len() - k as usize)
        .await;
    assert_eq!([seen, rest].concat(), all);

    // Beyond the output so far: refused before the upgrade.
    let (status, body) = d
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/terminals/{}/attach?offset=999999999", id(&t)),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_offset");
}

#[tokio::test]
async fn an_offset_older_than_the_scrollback_gets_the_screen() {
    let d = TestDaemon::builder()
        .arg("scrollback-bytes", "4096")
        .start();
    let t = create(&d, json!({"command": ["bash", "-c", "for i in $(seq 1 2000); do echo line $i; done; echo READY; exec cat"]})).await;
    // Wait until all is printed (a client would lag behind a 4 KiB scrollback).
    let expected: usize = (1..=2000)
        .map(|i| format!("line {i}\r\n").len())
        .sum::<usize>()
        + "READY\r\n".len();
    let path = format!("/api/v1/terminals/{}", id(&t));
    until(
        Duration::from_secs(10),
        "the script to finish",
        async || (d.get_json(&path).await["output_offset"] == expected).then_some(()),
    )
    .await;
    let (mut ws, first) = attach(&d, &id(&t), Some(0)).await;
    assert_eq!(first["replay"], "screen");
    let total = first["output_offset"].as_u64().unwrap();
    assert!(total > 4096);
    assert_eq!(first["offset"], total);
    let Frame::Binary(screen) = ws.next().await else {
        panic!("no screen frame")
    };
    let mut p = vt100::Parser::new(24, 80, 0);
    p.process(&screen);
    let contents = p.screen().contents();
    assert!(contents.contains("line 2000\nREADY"), "{contents}");
    // Exactly the screen of a terminal that was shown every byte, though
    // the daemon's emulator skipped most of the flood.
    let all: String = (1..=2000).map(|i| format!("line {i}\r\n")).collect();
    let every = screen_of(format!("{all}READY\r\n").as_bytes(), 24, 80);
    assert_eq!(contents, every.screen().contents());
    assert_eq!(
        p.screen().cursor_position(),
        every.screen().cursor_position()
    );
}

/// Feeds everything a client sees into a headless terminal.
fn screen_of(bytes: &[u8], rows: u16, cols: u16) -> vt100::Parser {
    let mut p = vt100::Parser::new(rows, cols, 0);
    p.process(bytes);
    p
}

async fn assert_fresh_attach_reproduces_screen(
    d: &TestDaemon,
    id: &str,
    live: &mut Ws,
    live_bytes: &mut Vec<u8>,
    rows: u16,
    cols: u16,
) {
    let (mut fresh, first) = attach(d, id, None).await;
    assert_eq!(first["replay"], "screen");
    let t = first["offset"].as_u64().unwrap() as usize;
    let Frame::Binary(snapshot) = fresh.next().await else {
        panic!("no screen frame")
    };
    while live_bytes.len() < t {
        match live.next().await {
            Frame::Binary(b) => live_bytes.extend_from_slice(&b),
            Frame::Text(_) => {}
            Frame::Close(c) => panic!("live client closed {c:?}"),
        }
    }
    let want = screen_of(&live_bytes[..t], rows, cols);
    let got = screen_of(&snapshot, rows, cols);
    let (w, g) = (want.screen(), got.screen());
    assert_eq!(g.contents(), w.contents());
    assert_eq!(g.cursor_position(), w.cursor_position());
    assert_eq!(g.alternate_screen(), w.alternate_screen());
    assert_eq!(g.hide_cursor(), w.hide_cursor());
    for row in 0..rows {
        for col in 0..cols {
            let (a, b) = (g.cell(row, col).unwrap(), w.cell(row, col).unwrap());
            assert_eq!(
                (a.fgcolor(), a.bgcolor(), a.bold(), a.inverse()),
                (b.fgcolor(), b.bgcolor(), b.bold(), b.inverse()),
                "cell {row},{col}"
            );
        }
    }
}

#[tokio::test]
async fn full_screen_programs_come_back_on_a_fresh_attach() {
    let d = TestDaemon::start();
    std::fs::write(
        d.root().join("notes.txt"),
        "first line\nsecond line\n\tindented\n",
    )
    .unwrap();
    // A script with the alternate screen, colours and cursor moves.
    let script = r#"printf 'normal screen\r\n'; printf '\033[?1049h\033[2J\033[5;10H\033[1;31mred bold\033[0m\033[10;3H\033[44mblue bg\033[0m\033[20;40Hthere'; printf '\033]0;my title\007'; printf 'SCRIPT_DONE'; exec cat"#;
    let t = create(
        &d,
        json!({"command": ["bash", "-c", script], "cols": 100, "rows": 30}),
    )
    .await;
    let (mut live, _) = attach(&d, &id(&t), Some(0)).await;
    let mut bytes = live
        .read_until(&mut vec![], |o| contains(o, b"SCRIPT_DONE"))
        .await;
    assert_fresh_attach_reproduces_screen(&d, &id(&t), &mut live, &mut bytes, 30, 100).await;

    // vim, really.
    let t = create(&d, json!({"command": ["vim", "-u", "NONE", "-i", "NONE", "-N", "notes.txt"], "cols": 90, "rows": 20})).await;
    let (mut live, _) = attach(&d, &id(&t), Some(0)).await;
    let mut bytes = live
        .read_until(&mut vec![], |o| contains(o, b"notes.txt"))
        .await;
    live.send_bytes(b"jjA appended\x1b").await;
    bytes.extend(
        live.read_until(&mut vec![], |o| contains(o, b"appended"))
            .await,
    );
    assert_fresh_attach_reproduces_screen(&d, &id(&t), &mut live, &mut bytes, 20, 90).await;
    let got = screen_of(&bytes, 20, 90);
    assert!(got.screen().alternate_screen());
    assert!(
        got.screen().contents().contains("\tindented appended")
            || got.screen().contents().contains("indented appended")
    );
}

#[tokio::test]
async fn the_size_applies_before_the_first_byte_and_after_a_resize() {
    let d = TestDaemon::start();
    let t = create(
        &d,
        json!({"command": ["bash", "-c", "stty size; read x; stty size"], "cols": 123, "rows": 45}),
    )
    .await;
    let (mut ws, _) = attach(&d, &id(&t), Some(0)).await;
    let out = ws.read_until(&mut vec![], |o| contains(o, b"\r\n")).await;
    assert!(
        out.starts_with(b"45 123\r\n"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    ws.send_text(json!({"type": "resize", "cols": 0, "rows": 10}))
        .await;
    let err = ws.next_json().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["code"], "invalid_size");
    ws.send_text(json!({"type": "resize", "cols": 5000, "rows": 10}))
        .await;
    assert_eq!(ws.next_json().await["error"]["code"], "invalid_size");
    ws.send_text(json!({"type": "resize", "cols": 101, "rows": 31}))
        .await;
    ws.send_text(json!({"type": "nonsense"})).await;
    assert_eq!(ws.next_json().await["type"], "error");
    ws.send_bytes(b"\r").await;
    let (out, _) = read_to_exit(&mut ws).await;
    assert!(
        contains(&out, b"31 101\r\n"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let info = d.get_json(&format!("/api/v1/terminals/{}", id(&t))).await;
    assert_eq!(
        (info["cols"].as_u64(), info["rows"].as_u64()),
        (Some(101), Some(31))
    );

    for (cols, rows) in [(0, 24), (80, 5000), (1001, 1)] {
        let (status, body) = d
            .post_json("/api/v1/terminals", json!({"cols": cols, "rows": rows}))
            .await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "invalid_size");
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_lags_and_never_stalls_the_others() {
    // Output at about 15 MB/s, a pace a reading client keeps up with, and
    // more than the socket buffers of a client that does not read can hold.
    let _pace = integration_tests::throughput_lock().await;
    let d = TestDaemon::start();
    const CHUNKS: usize = 100;
    const CHUNK: usize = 160_000;
    let script = format!("read x; for i in $(seq {CHUNKS}); do head -c {CHUNK} /dev/zero | tr '\\0' x; sleep 0.01; done; echo; echo FINISHED; exec cat");
    let t = create(&d, json!({"command": ["bash", "-c", script]})).await;
    let (mut stuck, _) = attach(&d, &id(&t), Some(0)).await;
    let (mut fast, _) = attach(&d, &id(&t), Some(0)).await;
    fast.send_bytes(b"go\r").await;
    let mut texts = Vec::new();
    let out = fast
        .read_until(&mut texts, |o| {
            contains(&o[o.len().saturating_sub(20)..], b"FINISHED")
        })
        .await;
    assert!(
        texts.iter().all(|t| t["type"] != "lagged"),
        "the reading client lagged: {texts:?}"
    );
    assert_eq!(out.iter().filter(|b| **b == b'x').count(), CHUNKS * CHUNK);
    // The stuck client is far behind; when it reads again it is told it lagged.
    let mut lagged = None;
    let mut received = 0usize;
    while lagged.is_none() {
        match stuck.next().await {
            Frame::Binary(b) => received += b.len(),
            Frame::Text(v) if v["type"] == "lagged" => lagged = Some(v["offset"].as_u64().unwrap()),
            Frame::Text(_) => {}
            Frame::Close(c) => panic!("closed {c:?}"),
        }
    }
    assert!(received < out.len(), "the stuck client got everything");
    // Everything was produced by then: it skipped to the end, and it still works.
    let total = d.get_json(&format!("/api/v1/terminals/{}", id(&t))).await["output_offset"]
        .as_u64()
        .unwrap();
    assert_eq!(lagged, Some(total));
    stuck.send_bytes(b"still here\r").await;
    let after = stuck
        .read_until(&mut vec![], |o| contains(o, b"still here"))
        .await;
    assert!(after.starts_with(b"still here"));
}

#[tokio::test]
async fn exit_codes_signals_and_linger() {
    let d = TestDaemon::builder().arg("terminal-linger", "1").start();
    let mut events = d.ws("/api/v1/events").await;
    let t = create(&d, json!({"command": ["bash", "-c", "read x; exit 3"]})).await;
    let (mut ws, _) = attach(&d, &id(&t), None).await;
    ws.send_bytes(b"\r").await;
    let (_, exit) = read_to_exit(&mut ws).await;
    assert_eq!(exit, json!({"type": "exit", "code": 3, "signal": null}));
    // Ports opening elsewhere on the machine also make events; skip them.
    let mut event = events.next_json().await;
    while event["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("port_"))
    {
        event = events.next_json().await;
    }
    assert_eq!(
        event,
        json!({"type": "terminal_exited", "id": id(&t), "code": 3, "signal": null})
    );
    let info = d.get_json(&format!("/api/v1/terminals/{}", id(&t))).await;
    assert_eq!(
        (info["exited"].as_bool(), info["exit_code"].as_i64()),
        (Some(true), Some(3))
    );

    // Attaching after the end: the replay, then exit, then the close.
    let (mut late, first) = attach(&d, &id(&t), None).await;
    assert_eq!(first["replay"], "screen");
    let (_, exit) = read_to_exit(&mut late).await;
    assert_eq!(exit["code"], 3);

    let k = create(
        &d,
        json!({"command": ["bash", "-c", "read x; kill -KILL $$"]}),
    )
    .await;
    let (mut ws, _) = attach(&d, &id(&k), None).await;
    ws.send_bytes(b"\r").await;
    let (_, exit) = read_to_exit(&mut ws).await;
    assert_eq!(
        exit,
        json!({"type": "exit", "code": null, "signal": "SIGKILL"})
    );
    assert_eq!(
        d.get_json(&format!("/api/v1/terminals/{}", id(&k))).await["exit_signal"],
        "SIGKILL"
    );

    // Both disappear after the linger.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !d
        .get_json("/api/v1/terminals")
        .await
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "exited terminals did not go away"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn delete_ends_the_process_group() {
    let d = TestDaemon::start();
    let t = create(
        &d,
        json!({"command": ["bash", "-c", "trap '' HUP; echo TRAPPED; sleep 1000"]}),
    )
    .await;
    let (mut ws, _) = attach(&d, &id(&t), Some(0)).await;
    ws.read_until(&mut vec![], |o| contains(o, b"TRAPPED"))
        .await;
    let (status, _) = d
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/terminals/{}", id(&t)),
        )
        .await;
    assert_eq!(status, 204);
    // It ignores SIGHUP, so SIGKILL ends it after 3 s.
    let (_, exit) = read_to_exit(&mut ws).await;
    assert_eq!(exit["signal"], "SIGKILL");
    let (status, _) = d
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/terminals/{}", id(&t)),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = d
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/terminals/{}", id(&t)),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let d = TestDaemon::builder()
        .arg("max-ws-message-bytes", "1024")
        .arg("max-terminals", "2")
        .start();
    std::os::unix::fs::symlink("/etc", d.root().join("etc-link")).unwrap();

    let (status, body) = d.call(reqwest::Method::GET, "/api/v1/terminals/nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = d
        .call(reqwest::Method::GET, "/api/v1/terminals/nope/attach")
        .await;
    assert_eq!(status, 404);

    let r = d
        .req(reqwest::Method::POST, "/api/v1/terminals")
        .header("content-type", "application/json")
        .body("{\"command\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    assert!(body["error"]["message"].as_str().unwrap().len() > 10);

    for (cwd, code) in [
        ("..", "invalid_path"),
        ("a/../..", "invalid_path"),
        ("/tmp", "invalid_path"),
        ("%2e%2e", "invalid_path"),
        ("etc-link", "path_outside_workspace"),
    ] {
        let (status, body) = d.post_json("/api/v1/terminals", json!({"cwd": cwd})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "cwd {cwd}: {body}"
        );
    }
    let (status, body) = d
        .post_json("/api/v1/terminals", json!({"command": []}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_command"))
    );
    let (status, body) = d
        .post_json(
            "/api/v1/terminals",
            json!({"command": ["/no/such/program"]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("spawn_failed")),
        "{body}"
    );
    let (status, body) = d
        .post_json("/api/v1/terminals", json!({"container": "db"}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_container"))
    );

    let t = create(&d, json!({"command": ["cat"]})).await;
    create(&d, json!({"command": ["cat"]})).await;
    let (status, body) = d
        .post_json("/api/v1/terminals", json!({"command": ["cat"]}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_terminals"))
    );

    let (mut ws, _) = attach(&d, &id(&t), None).await;
    ws.send_bytes(&vec![b'a'; 4096]).await;
    loop {
        match ws.next().await {
            Frame::Close(code) => {
                assert_eq!(code, Some(1009));
                break;
            }
            _ => continue,
        }
    }
}
