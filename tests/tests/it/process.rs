//! The daemon as a process: bad settings, graceful shutdown, no orphans.

use std::process::Command;
use std::time::Duration;

use integration_tests::{daemon_binary, until, Frame, TestDaemon};
use nix::sys::signal::Signal;
use serde_json::json;

fn run_serve(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(daemon_binary());
    cmd.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .args(args)
        .env_remove("WORKSPACED_TOKEN")
        .current_dir(dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_invalid_setting_exits_64_with_one_line_naming_it() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--max-terminals", "0"], &[], "max_terminals"),
        (&["--scrollback-bytes", "lots"], &[], "scrollback_bytes"),
        (&[], &[("WORKSPACED_IDLE_TIMEOUT", "soon")], "idle_timeout"),
        (&["--log-format", "xml"], &[], "log_format"),
        (&["--workspace", "/no/such/dir"], &[], "workspace"),
        (
            &["--token-file", "/x"],
            &[("WORKSPACED_TOKEN", "t")],
            "token",
        ),
        (&["--no-such-flag", "1"], &[], "--no-such-flag"),
    ];
    for (args, env, name) in cases {
        let (code, stderr) = run_serve(args, env);
        assert_eq!(code, 64, "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(name), "{stderr} should name {name}");
    }
}

fn session_members(sid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .is_some_and(|s| {
                    let rest = &s[s.rfind(')').unwrap() + 2..];
                    let f: Vec<&str> = rest.split(' ').collect();
                    f[0] != "Z" && f[3].parse::<u32>().ok() == Some(sid)
                })
        })
        .collect()
}

#[tokio::test]
async fn sigterm_tells_clients_and_ends_every_terminal_process() {
    let mut d = TestDaemon::start();
    // A shell with a background job in its own process group, and a plain command.
    let (_, shell) = d
        .post_json(
            "/api/v1/terminals",
            json!({"command": ["bash", "--norc", "--noprofile", "-i"]}),
        )
        .await;
    let (_, plain) = d
        .post_json(
            "/api/v1/terminals",
            json!({"command": ["bash", "-c", "sleep 1001 & exec sleep 1002"]}),
        )
        .await;
    let mut ws = d
        .ws(&format!(
            "/api/v1/terminals/{}/attach",
            shell["id"].as_str().unwrap()
        ))
        .await;
    ws.next_json().await;
    ws.send_bytes(b"sleep 1003 &\r").await;
    let sids = [
        shell["pid"].as_u64().unwrap() as u32,
        plain["pid"].as_u64().unwrap() as u32,
    ];
    until(
        Duration::from_secs(10),
        "the terminals' jobs to start",
        async || {
            (session_members(sids[0]).len() >= 2 && session_members(sids[1]).len() >= 2)
                .then_some(())
        },
    )
    .await;
    let all: Vec<u32> = sids.iter().flat_map(|s| session_members(*s)).collect();

    d.signal(Signal::SIGTERM);
    let mut texts = Vec::new();
    loop {
        match ws.next().await {
            Frame::Text(v) => texts.push(v),
            Frame::Binary(_) => {}
            Frame::Close(_) => break,
        }
    }
    assert!(texts.contains(&json!({"type": "shutdown"})), "{texts:?}");
    let status = d.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    for pid in all {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z"),
            "process {pid} outlived the daemon"
        );
    }
}
