//! Files and sync: every op on real files checked against `git hash-object`,
//! atomic batches, hostile paths, crash safety, and change events from disk
//! (terminal writes, git checkouts, moves, bursts) over the sync WebSocket.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use integration_tests::{TestDaemon, Ws, TOKEN, WAIT};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn hash_object(dir: &Path, rel: &str) -> String {
    git(dir, &["hash-object", rel])
}

/// A workspace that is a git repository with one commit.
fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    git(ws.path(), &["init", "-q"]);
    for (p, c) in files {
        let f = ws.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, c).unwrap();
    }
    git(ws.path(), &["add", "-A"]);
    git(ws.path(), &["commit", "-q", "-m", "init", "--allow-empty"]);
    ws
}

async fn apply(d: &TestDaemon, changes: Value) -> (u16, Value) {
    d.post_json("/api/v1/sync/apply", json!({ "changes": changes }))
        .await
}

async fn oid_of(d: &TestDaemon, path: &str) -> Option<String> {
    let r = d
        .req(Method::GET, &format!("/api/v1/files/{path}"))
        .send()
        .await
        .unwrap();
    if r.status() == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    Some(
        r.headers()["etag"]
            .to_str()
            .unwrap()
            .trim_matches('"')
            .to_owned(),
    )
}

/// Sends a request with a raw path that no URL library would normalise.
fn raw_request(d: &TestDaemon, method: &str, path: &str, body: &str) -> u16 {
    let mut s = std::net::TcpStream::connect(&d.addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nIf-None-Match: *\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Reads frames until one satisfies `pred`; panics after the wait.
async fn wait_for(ws: &mut Ws, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no frame for: {what}");
        let v = ws.next_json().await;
        if pred(&v) {
            return v;
        }
    }
}

async fn hello(ws: &mut Ws) -> Value {
    let h = ws.next_json().await;
    assert_eq!(h["type"], "hello", "{h}");
    h
}

fn is_changed(v: &Value, path: &str) -> bool {
    v["type"] == "changed" && v["path"] == path
}

#[tokio::test]
async fn each_op_gives_git_blob_ids() {
    let ws = repo(&[
        ("a.txt", "one\ntwo\nthree\n"),
        ("b.txt", "bee\n"),
        ("c.txt", "sea\n"),
    ]);
    let d = TestDaemon::builder().workspace(ws).start();
    let root = d.root().to_owned();

    // write (create, with parents) and its oid
    let (s, v) = apply(
        &d,
        json!([{"op":"write","path":"new/dir/n.txt","base":null,"content":"new\n"}]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][0]["oid"], hash_object(&root, "new/dir/n.txt"));
    assert_eq!(
        std::fs::read_to_string(root.join("new/dir/n.txt")).unwrap(),
        "new\n"
    );

    // patch
    let a = oid_of(&d, "a.txt").await.unwrap();
    assert_eq!(a, hash_object(&root, "a.txt"));
    let diff = "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n";
    let (s, v) = apply(
        &d,
        json!([{"op":"patch","path":"a.txt","base":a,"diff":diff}]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        std::fs::read_to_string(root.join("a.txt")).unwrap(),
        "one\nTWO\nthree\n"
    );
    assert_eq!(v["results"][0]["oid"], hash_object(&root, "a.txt"));

    // a patch whose context does not match at its line
    let a2 = v["results"][0]["oid"].as_str().unwrap().to_owned();
    let bad = "@@ -2,1 +2,1 @@\n-three\n+3\n";
    let (s, v) = apply(
        &d,
        json!([{"op":"patch","path":"a.txt","base":a2,"diff":bad}]),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["conflicts"][0]["code"], "patch_does_not_apply");
    assert_eq!(v["conflicts"][0]["actual"], a2);

    // edit
    let b = oid_of(&d, "b.txt").await.unwrap();
    let (s, v) = apply(&d, json!([{"op":"edit","path":"b.txt","base":b,"edits":[{"range":{"start":{"line":0,"character":0},"end":{"line":0,"character":3}},"text":"BEE"}]}])).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        std::fs::read_to_string(root.join("b.txt")).unwrap(),
        "BEE\n"
    );
    assert_eq!(v["results"][0]["oid"], hash_object(&root, "b.txt"));

    // rename, mkdir, delete; mode kept across a write
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("c.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let c = oid_of(&d, "c.txt").await.unwrap();
    let (s, v) = apply(
        &d,
        json!([
            {"op":"mkdir","path":"m/n"},
            {"op":"write","path":"m/n/w.txt","base":null,"content_base64":"AAEC"},
            {"op":"rename","path":"c.txt","to":"m/c.txt","base":c},
            {"op":"write","path":"m/c.txt","base":c,"content":"sea!\n"},
            {"op":"delete","path":"new/dir/n.txt","base":hash_object(&root, "new/dir/n.txt")},
        ]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let r = &v["results"];
    assert_eq!(r[0], json!({"path":"m/n","oid":null}));
    assert_eq!(r[1]["oid"], hash_object(&root, "m/n/w.txt"));
    assert_eq!(
        std::fs::read(root.join("m/n/w.txt")).unwrap(),
        vec![0u8, 1, 2]
    );
    assert_eq!(r[2]["path"], "m/c.txt");
    assert_eq!(r[2]["oid"], c);
    assert_eq!(r[3]["oid"], hash_object(&root, "m/c.txt"));
    assert_eq!(r[4], json!({"path":"new/dir/n.txt","oid":null}));
    assert!(!root.join("c.txt").exists());
    assert!(!root.join("new/dir/n.txt").exists());
    let mode = std::fs::metadata(root.join("m/c.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let resp = d
        .req(Method::GET, "/api/v1/files/m/c.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-file-mode"], "100755");

    // rename onto an existing file needs to_base
    let b = oid_of(&d, "b.txt").await.unwrap();
    let mc = oid_of(&d, "m/c.txt").await.unwrap();
    let (s, v) = apply(
        &d,
        json!([{"op":"rename","path":"b.txt","to":"m/c.txt","base":b}]),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        v["conflicts"][0],
        json!({"path":"m/c.txt","code":"target_exists","expected":null,"actual":mc})
    );

    // a symlink's oid is its target's blob id, and it is read, not followed
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    let resp = d
        .req(Method::GET, "/api/v1/files/link")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-file-mode"], "120000");
    let etag = resp.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"a.txt");
    let out = Command::new("git")
        .args(["hash-object", "--stdin"])
        .current_dir(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    out.stdin.as_ref().unwrap().write_all(b"a.txt").unwrap();
    let out = out.wait_with_output().unwrap();
    assert_eq!(etag, String::from_utf8(out.stdout).unwrap().trim());
}

#[tokio::test]
async fn put_needs_a_precondition_and_checks_it() {
    let d = TestDaemon::start();
    let root = d.root().to_owned();
    let put = |path: &str, h: Option<(&str, String)>, body: &'static str| {
        let mut r = d
            .req(Method::PUT, &format!("/api/v1/files/{path}"))
            .body(body);
        if let Some((k, v)) = h {
            r = r.header(k, v);
        }
        r.send()
    };
    let r = put("p/f.txt", None, "x").await.unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_REQUIRED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "precondition_required");
    assert!(!root.join("p/f.txt").exists());

    let r = put("p/f.txt", Some(("if-none-match", "*".into())), "v1\n")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let e1 = r.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_eq!(e1, hash_object(&root, "p/f.txt"));

    let r = put("p/f.txt", Some(("if-none-match", "*".into())), "again\n")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "version_conflict");
    assert_eq!(v["current"], e1);

    let r = put("p/f.txt", Some(("if-match", format!("\"{e1}\""))), "v2\n")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        std::fs::read_to_string(root.join("p/f.txt")).unwrap(),
        "v2\n"
    );

    let r = put("p/f.txt", Some(("if-match", format!("\"{e1}\""))), "v3\n")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["current"], hash_object(&root, "p/f.txt"));
    assert_eq!(
        std::fs::read_to_string(root.join("p/f.txt")).unwrap(),
        "v2\n"
    );

    let r = put("gone.txt", Some(("if-match", format!("\"{e1}\""))), "x")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["current"], Value::Null);

    let r = d.req(Method::GET, "/api/v1/files/p").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "is_a_directory");
    let r = d
        .req(Method::GET, "/api/v1/files/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn one_bad_base_in_a_batch_of_100_applies_nothing() {
    let d = TestDaemon::start();
    let root = d.root().to_owned();
    let mut changes = Vec::new();
    for i in 0..100 {
        std::fs::write(root.join(format!("f{i}.txt")), format!("old {i}\n")).unwrap();
        let base = if i == 57 {
            "0".repeat(40)
        } else {
            workspaced::files::oid::blob_oid(format!("old {i}\n").as_bytes())
        };
        changes.push(json!({"op":"write","path":format!("f{i}.txt"),"base":base,"content":format!("new {i}\n")}));
    }
    let (s, v) = apply(&d, Value::Array(changes.clone())).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "version_conflict");
    let conflicts = v["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{v}");
    assert_eq!(conflicts[0]["path"], "f57.txt");
    assert_eq!(conflicts[0]["code"], "version_conflict");
    assert_eq!(conflicts[0]["expected"], "0".repeat(40));
    assert_eq!(conflicts[0]["actual"], hash_object(&root, "f57.txt"));
    for i in 0..100 {
        assert_eq!(
            std::fs::read_to_string(root.join(format!("f{i}.txt"))).unwrap(),
            format!("old {i}\n")
        );
    }
    // Without atomic, the 99 good ones apply and the bad one reports its error.
    let (s, v) = d
        .post_json(
            "/api/v1/sync/apply",
            json!({"changes": changes, "atomic": false}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["results"][57]["error"]["code"], "version_conflict");
    assert_eq!(v["results"][56]["oid"], hash_object(&root, "f56.txt"));
    assert_eq!(
        std::fs::read_to_string(root.join("f57.txt")).unwrap(),
        "old 57\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("f58.txt")).unwrap(),
        "new 58\n"
    );
    // Too many changes.
    let d2 = TestDaemon::builder().arg("max-apply-changes", "10").start();
    let (s, v) = apply(&d2, Value::Array(changes)).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"]["code"], "too_large");
}

#[tokio::test]
async fn edits_count_utf16_units_and_refuse_bad_positions() {
    let d = TestDaemon::start();
    let root = d.root().to_owned();
    let text = "let s = \"😀漢字\"; // ok\nsecond 🎉 line\n";
    std::fs::write(root.join("u.rs"), text).unwrap();
    let base = hash_object(&root, "u.rs");
    let range = |l1: u32, c1: u32, l2: u32, c2: u32| json!({"start":{"line":l1,"character":c1},"end":{"line":l2,"character":c2}});
    // VS Code: the emoji is 2 UTF-16 units, so "漢字" is at 11..13 on line 0;
    // on line 1, "line" starts at 10 (🎉 counts 2).
    let (s, v) = apply(
        &d,
        json!([{"op":"edit","path":"u.rs","base":base,"edits":[
            {"range":range(0,11,0,13),"text":"かな"},
            {"range":range(1,10,1,14),"text":"row"},
        ]}]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        std::fs::read_to_string(root.join("u.rs")).unwrap(),
        "let s = \"😀かな\"; // ok\nsecond 🎉 row\n"
    );
    let base = hash_object(&root, "u.rs");
    assert_eq!(v["results"][0]["oid"], base);

    // UTF-8 offsets on request: "かな" starts at byte 13.
    let (s, v) = apply(
        &d,
        json!([{"op":"edit","path":"u.rs","base":base,"encoding":"utf-8","edits":[
        {"range":range(0,13,0,19),"text":"x"}]}]),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        std::fs::read_to_string(root.join("u.rs")).unwrap(),
        "let s = \"😀x\"; // ok\nsecond 🎉 row\n"
    );
    let base = hash_object(&root, "u.rs");

    for (edit, what) in [
        (
            json!({"range":range(0,10,0,10),"text":"!"}),
            "inside the surrogate pair",
        ),
        (
            json!({"range":range(0,99,0,99),"text":"!"}),
            "beyond the line",
        ),
        (
            json!({"range":range(7,0,7,0),"text":"!"}),
            "beyond the text",
        ),
    ] {
        let (s, v) = apply(
            &d,
            json!([{"op":"edit","path":"u.rs","base":base,"edits":[edit]}]),
        )
        .await;
        assert_eq!(s, 400, "{what}: {v}");
        assert_eq!(v["error"]["code"], "invalid_edit", "{what}");
    }
    let (s, v) = apply(
        &d,
        json!([{"op":"edit","path":"u.rs","base":base,"encoding":"utf-8","edits":[
        {"range":range(0,10,0,10),"text":"!"}]}]),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (400, json!("invalid_edit")),
        "inside a UTF-8 sequence"
    );
    assert_eq!(hash_object(&root, "u.rs"), base, "nothing written");
}

#[tokio::test]
async fn hostile_paths_are_refused_with_nothing_read_or_written() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "secret").unwrap();
    let d = TestDaemon::start();
    let root = d.root().to_owned();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
    std::fs::create_dir(root.join("real")).unwrap();

    for (path, code) in [
        ("../x", "invalid_path"),
        ("/etc/passwd", "invalid_path"),
        ("a/../../x", "invalid_path"),
        ("%2e%2e/x", "invalid_path"),
        ("a/%2E%2E/%2e%2e/x", "invalid_path"),
        ("x%00y", "invalid_path"),
        ("etc/passwd", "path_outside_workspace"),
        ("out/secret", "path_outside_workspace"),
        ("out/new", "path_outside_workspace"),
    ] {
        let url = format!("/api/v1/files/{path}");
        assert_eq!(raw_request(&d, "GET", &url, ""), 400, "GET {path}");
        assert_eq!(raw_request(&d, "PUT", &url, "pwned"), 400, "PUT {path}");
        let decoded = percent_decode(path);
        let (s, v) = apply(
            &d,
            json!([
            {"op":"write","path":"fine.txt","base":null,"content":"x"},
            {"op":"write","path":decoded,"base":null,"content":"pwned"}]),
        )
        .await;
        assert_eq!(s, 400, "apply {path}: {v}");
        assert_eq!(v["error"]["code"], code, "apply {path}");
    }
    // Over the raw HTTP path, the text checks come first.
    let r = d
        .req(Method::GET, "/api/v1/files/out/secret")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "path_outside_workspace");
    assert!(
        !root.join("fine.txt").exists(),
        "a refused path refuses the whole apply"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "secret"
    );

    // A symlink swapped in and out during requests: never outside.
    let swap_root = root.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let target = outside.path().to_owned();
    let swapper = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = std::fs::remove_dir(swap_root.join("swap"));
            let _ = std::fs::create_dir(swap_root.join("swap"));
            let _ = std::fs::remove_dir(swap_root.join("swap"));
            let _ = std::os::unix::fs::symlink(&target, swap_root.join("swap"));
            let _ = std::fs::remove_file(swap_root.join("swap"));
        }
    });
    for i in 0..150 {
        let r = d
            .req(Method::PUT, &format!("/api/v1/files/swap/f{i}"))
            .header("if-none-match", "*")
            .body("pwned")
            .send()
            .await
            .unwrap();
        assert!(
            matches!(r.status().as_u16(), 201 | 400 | 404 | 412 | 500),
            "{}",
            r.status()
        );
        let r = d
            .req(Method::GET, "/api/v1/files/swap/secret")
            .send()
            .await
            .unwrap();
        assert_ne!(r.status(), StatusCode::OK, "read through a swapped symlink");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        1,
        "nothing written outside"
    );
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "secret"
    );
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The voluntary context switches of the daemon's thread called `name`:
/// each is a time it blocked, so a thread that was not woken keeps its count.
fn wakeups(pid: u32, name: &str) -> u64 {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            return status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
        }
    }
    panic!("the daemon has no thread called {name}");
}

#[tokio::test]
async fn reading_the_workspace_wakes_no_watcher() {
    // A recursive listing opens every directory and (without a git index)
    // reads every file: none of that is a change, so the watcher must not
    // be woken by it (with IN_OPEN watched, every open woke it).
    let ws = tempfile::tempdir().unwrap();
    for d in 0..20 {
        std::fs::create_dir(ws.path().join(format!("d{d}"))).unwrap();
        for f in 0..20 {
            std::fs::write(
                ws.path().join(format!("d{d}/f{f}.txt")),
                format!("{d} {f}\n"),
            )
            .unwrap();
        }
    }
    let d = TestDaemon::builder().workspace(ws).start();
    let v = d.get_json("/api/v1/tree?recursive=true").await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 420);
    let before = wakeups(d.pid(), "watcher");
    for _ in 0..3 {
        let v = d.get_json("/api/v1/tree?recursive=true").await;
        assert_eq!(v["entries"].as_array().unwrap().len(), 420);
    }
    assert_eq!(
        wakeups(d.pid(), "watcher"),
        before,
        "the watcher was woken by reads"
    );
}

#[tokio::test]
async fn tree_lists_blob_ids_and_leaves_out_ignored_files() {
    let ws = repo(&[
        (".gitignore", "*.log\nbuild/\n"),
        ("src/main.rs", "fn main() {}\n"),
        ("README", "hi\n"),
    ]);
    let root = ws.path().to_owned();
    std::fs::write(root.join("debug.log"), "noise").unwrap();
    std::fs::create_dir(root.join("build")).unwrap();
    std::fs::write(root.join("build/out"), "bin").unwrap();
    std::fs::write(root.join("src/new.rs"), "// new\n").unwrap();
    std::fs::write(root.join("README"), "changed after the index\n").unwrap();
    let head = git(&root, &["rev-parse", "HEAD"]);
    let d = TestDaemon::builder().workspace(ws).start();
    let v = d.get_json("/api/v1/tree?recursive=true").await;
    assert_eq!(v["head"], head);
    let paths: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![".gitignore", "README", "src", "src/main.rs", "src/new.rs"]
    );
    for e in v["entries"].as_array().unwrap() {
        let p = e["path"].as_str().unwrap();
        if e["kind"] == "dir" {
            assert_eq!(e["mode"], "040000");
            assert!(e.get("oid").is_none());
        } else {
            assert_eq!(e["oid"], hash_object(&root, p), "{p}");
            assert_eq!(e["mode"], "100644");
        }
    }
    let v = d.get_json("/api/v1/tree?path=src").await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    assert_eq!(v["entries"][0]["path"], "src/main.rs");
    let v = d.get_json("/api/v1/tree?ignored=true").await;
    let paths: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"debug.log") && paths.contains(&"build") && paths.contains(&".git"),
        "{paths:?}"
    );
    let r = d
        .req(Method::GET, "/api/v1/tree?path=..")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn own_apply_comes_back_with_origin_and_others_get_a_conflict() {
    let d = TestDaemon::start();
    let root = d.root().to_owned();
    std::fs::write(root.join("shared.txt"), "v0\n").unwrap();
    let base = hash_object(&root, "shared.txt");
    let mut a = d.ws("/api/v1/sync").await;
    let mut b = d.ws("/api/v1/sync").await;
    let ha = hello(&mut a).await;
    let hb = hello(&mut b).await;
    assert_ne!(ha["client"], hb["client"]);
    assert_eq!(ha["epoch"], hb["epoch"]);

    let edit = |id: u32, text: &str| json!({"type":"apply","id":id,"changes":[{"op":"write","path":"shared.txt","base":base,"content":text}]});
    a.send_text(edit(1, "from a\n")).await;
    let mut seen_by_a = Vec::new();
    let reply = wait_for(&mut a, "applied", |v| {
        seen_by_a.push(v.clone());
        v["type"] == "applied"
    })
    .await;
    assert_eq!(reply["id"], 1);
    let oid_a = reply["results"][0]["oid"].clone();
    let mut seen_by_b = Vec::new();
    b.send_text(edit(2, "from b\n")).await;
    let reply = wait_for(&mut b, "conflict", |v| {
        seen_by_b.push(v.clone());
        v["type"] == "conflict"
    })
    .await;
    assert_eq!(reply["id"], 2);
    assert_eq!(reply["conflicts"][0]["code"], "version_conflict");
    assert_eq!(reply["conflicts"][0]["actual"], oid_a);
    assert_eq!(
        std::fs::read_to_string(root.join("shared.txt")).unwrap(),
        "from a\n"
    );

    // Both see a's change, with a's client id as origin. The test's own
    // write of v0 may come first (made while the watch was being set up,
    // it is reported by the watch's first scan, with no origin): a's change
    // is the one with a's version.
    let is_as = |v: &Value| is_changed(v, "shared.txt") && v["oid"] == oid_a;
    for (ws, seen) in [(&mut a, seen_by_a), (&mut b, seen_by_b)] {
        let ev = match seen.into_iter().find(|v| is_as(v)) {
            Some(ev) => ev,
            None => wait_for(ws, "changed", |v| is_as(v)).await,
        };
        assert_eq!(ev["origin"], ha["client"]);
        assert_eq!(ev["oid"], oid_a);
    }
    // A malformed message gets an error frame.
    a.send_text(json!({"type":"apply","id":"x","changes":[{"op":"write","path":"../x","base":null,"content":""}]})).await;
    let e = wait_for(&mut a, "error", |v| v["type"] == "error").await;
    assert_eq!(e["id"], "x");
    assert_eq!(e["error"]["code"], "invalid_path");
    // The next event a sees is from disk, not a duplicate of its apply.
    std::fs::write(root.join("marker"), "m").unwrap();
    let ev = wait_for(&mut a, "marker", |v| {
        v["type"] == "changed" || v["type"] == "deleted"
    })
    .await;
    assert_eq!(ev["path"], "marker", "{ev}");
    assert!(ev.get("origin").is_none());
}

#[tokio::test]
async fn disk_changes_reach_clients() {
    let ws = repo(&[
        (".gitignore", "*.log\n"),
        ("a.txt", "main\n"),
        ("d/x", "x\n"),
        ("d/y", "y\n"),
    ]);
    let root = ws.path().to_owned();
    git(&root, &["checkout", "-q", "-b", "other"]);
    std::fs::write(root.join("a.txt"), "other\n").unwrap();
    std::fs::write(root.join("b.txt"), "only on other\n").unwrap();
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "other"]);
    git(&root, &["checkout", "-q", "main"]);
    let d = TestDaemon::builder().workspace(ws).start();
    let mut c = d.ws("/api/v1/sync").await;
    let h = hello(&mut c).await;
    assert_eq!(h["seq"], 0);

    // `echo >>` in a terminal.
    let (s, t) = d
        .post_json(
            "/api/v1/terminals",
            json!({"command":["bash","-c","echo more >> a.txt"]}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    let ev = wait_for(&mut c, "a.txt from the terminal", |v| {
        is_changed(v, "a.txt")
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(root.join("a.txt")).unwrap(),
        "main\nmore\n"
    );
    assert_eq!(ev["oid"], hash_object(&root, "a.txt"));
    assert!(ev["seq"].as_u64().unwrap() >= 1);
    git(&root, &["checkout", "-q", "--", "a.txt"]);
    wait_for(&mut c, "a.txt restored", |v| {
        is_changed(v, "a.txt") && v["oid"] == hash_object(&root, "a.txt")
    })
    .await;

    // Ignored files produce nothing; a marker written after them does.
    std::fs::write(root.join("noise.log"), "x").unwrap();
    std::fs::write(root.join("marker1"), "x").unwrap();
    let ev = wait_for(&mut c, "marker1", |v| v["type"] != "git").await;
    assert_eq!(ev["path"], "marker1", "ignored file produced {ev}");
    std::fs::remove_file(root.join("marker1")).unwrap();
    wait_for(&mut c, "marker1 deleted", |v| {
        v["type"] == "deleted" && v["path"] == "marker1"
    })
    .await;

    // A checkout of another branch: a git event and the files' events.
    git(&root, &["checkout", "-q", "other"]);
    let other = git(&root, &["rev-parse", "HEAD"]);
    let mut got_git = false;
    let mut a_oid = Value::Null;
    let mut b_seen = false;
    let want_a = hash_object(&root, "a.txt");
    let deadline = Instant::now() + WAIT;
    while !(got_git && a_oid == want_a && b_seen) {
        assert!(Instant::now() < deadline, "checkout events incomplete");
        let v = c.next_json().await;
        if v["type"] == "git" && v["head"] == other {
            assert_eq!(v["branch"], "other");
            got_git = true;
        }
        if is_changed(&v, "a.txt") {
            a_oid = v["oid"].clone();
        }
        if is_changed(&v, "b.txt") {
            b_seen = true;
        }
    }

    // `mv` of a directory: one deleted event for it, and the new tree.
    std::fs::rename(root.join("d"), root.join("e")).unwrap();
    let mut deleted_d = false;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while !(deleted_d && seen.len() == 3) {
        assert!(Instant::now() < deadline, "mv events incomplete: {seen:?}");
        let v = c.next_json().await;
        if v["type"] == "deleted" {
            assert_eq!(v["path"], "d", "{v}");
            assert_eq!(v["kind"], "dir");
            deleted_d = true;
        }
        if v["type"] == "changed" {
            let p = v["path"].as_str().unwrap().to_owned();
            assert!(p.starts_with('e'), "{v}");
            seen.insert(p);
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec!["e", "e/x", "e/y"]
    );

    // A burst of 1,000 writes over 100 files ends in their final state.
    std::fs::create_dir(root.join("burst")).unwrap();
    for round in 0..10 {
        for i in 0..100 {
            std::fs::write(
                root.join(format!("burst/f{i}")),
                format!("round {round} file {i}\n"),
            )
            .unwrap();
        }
    }
    let mut last = std::collections::HashMap::new();
    let want: std::collections::HashMap<String, String> = (0..100)
        .map(|i| {
            (
                format!("burst/f{i}"),
                workspaced::files::oid::blob_oid(format!("round 9 file {i}\n").as_bytes()),
            )
        })
        .collect();
    let deadline = Instant::now() + WAIT;
    while want.iter().any(|(p, o)| last.get(p) != Some(o)) {
        assert!(Instant::now() < deadline, "burst events incomplete");
        let v = c.next_json().await;
        if v["type"] == "changed" && v["kind"] == "file" {
            last.insert(
                v["path"].as_str().unwrap().to_owned(),
                v["oid"].as_str().unwrap().to_owned(),
            );
        }
    }
}

#[tokio::test]
async fn reconnect_replays_since_seq_or_says_resync() {
    let d = TestDaemon::start();
    let root = d.root().to_owned();
    let mut c = d.ws("/api/v1/sync").await;
    let h = hello(&mut c).await;
    let epoch = h["epoch"].as_str().unwrap().to_owned();
    std::fs::write(root.join("one"), "1").unwrap();
    let first = wait_for(&mut c, "one", |v| is_changed(v, "one")).await;
    std::fs::write(root.join("two"), "2").unwrap();
    let mut after_first = Vec::new();
    let two = workspaced::files::oid::blob_oid(b"2");
    wait_for(&mut c, "two", |v| {
        after_first.push(v.clone());
        is_changed(v, "two") && v["oid"] == two
    })
    .await;
    drop(c);

    let seq1 = first["seq"].as_u64().unwrap();
    let mut c = d
        .ws(&format!("/api/v1/sync?since={seq1}&epoch={epoch}"))
        .await;
    let h = hello(&mut c).await;
    assert_eq!(h["seq"], after_first.last().unwrap()["seq"]);
    for want in &after_first {
        assert_eq!(&c.next_json().await, want);
    }

    let mut c = d.ws("/api/v1/sync?since=1&epoch=another-run").await;
    hello(&mut c).await;
    assert_eq!(c.next_json().await, json!({"type":"resync"}));
    let mut c = d.ws(&format!("/api/v1/sync?since=999&epoch={epoch}")).await;
    hello(&mut c).await;
    assert_eq!(c.next_json().await, json!({"type":"resync"}));
}

#[tokio::test]
async fn past_the_watch_limit_rescans_keep_events_coming() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("a/b/c")).unwrap();
    let d = TestDaemon::builder()
        .workspace(ws)
        .arg("watch-limit", "1")
        .start();
    let root = d.root().to_owned();
    d.log
        .wait_for(WAIT, |l| l.contains("watch limit is reached").then_some(()))
        .expect("the watcher says it is degraded");
    let mut c = d.ws("/api/v1/sync").await;
    hello(&mut c).await;
    std::fs::write(root.join("a/b/c/deep.txt"), "deep\n").unwrap();
    let ev = wait_for(&mut c, "deep.txt by rescan", |v| {
        is_changed(v, "a/b/c/deep.txt")
    })
    .await;
    assert_eq!(ev["oid"], workspaced::files::oid::blob_oid(b"deep\n"));
    std::fs::create_dir(root.join("a/b/c/new")).unwrap();
    std::fs::write(root.join("a/b/c/new/f"), "f").unwrap();
    wait_for(&mut c, "new/f by rescan", |v| is_changed(v, "a/b/c/new/f")).await;
    std::fs::remove_file(root.join("a/b/c/deep.txt")).unwrap();
    wait_for(&mut c, "deletion by rescan", |v| {
        v["type"] == "deleted" && v["path"] == "a/b/c/deep.txt"
    })
    .await;
    // The top, which has the one watch, still reports at once.
    std::fs::write(root.join("top"), "t").unwrap();
    wait_for(&mut c, "top", |v| is_changed(v, "top")).await;
}

#[tokio::test]
async fn a_crash_during_a_big_apply_leaves_files_whole() {
    let ws = tempfile::tempdir().unwrap();
    let old = |i: usize| format!("old {i}\n").repeat(500);
    let new = |i: usize| format!("new {i}\n").repeat(500);
    let mut changes = Vec::new();
    for i in 0..1000 {
        std::fs::write(ws.path().join(format!("f{i:04}")), old(i)).unwrap();
        changes.push(json!({"op":"write","path":format!("f{i:04}"),"base":workspaced::files::oid::blob_oid(old(i).as_bytes()),"content":new(i)}));
    }
    let d = TestDaemon::builder().workspace(ws).start();
    let root = d.root().to_owned();
    let mut c = d.ws("/api/v1/sync").await;
    let epoch = hello(&mut c).await["epoch"].as_str().unwrap().to_owned();
    let body = json!({"changes": changes});
    let req = d.req(Method::POST, "/api/v1/sync/apply").json(&body);
    let pending = tokio::spawn(async move { req.send().await });
    // Kill it once the writes have begun.
    wait_for(&mut c, "the first write", |v| v["type"] == "changed").await;
    d.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = pending.await;
    let mut d = d;
    d.wait(WAIT);
    let (mut n_old, mut n_new) = (0, 0);
    for i in 0..1000 {
        let got = std::fs::read_to_string(root.join(format!("f{i:04}"))).unwrap();
        if got == old(i) {
            n_old += 1;
        } else {
            assert_eq!(got, new(i), "f{i:04} is neither wholly old nor wholly new");
            n_new += 1;
        }
    }
    assert!(
        n_new >= 1 && n_old >= 1,
        "the kill landed mid-batch ({n_new} new, {n_old} old)"
    );

    // Plant a leftover like the crash may have, then restart on the same dirs.
    std::fs::write(root.join(".workspaced-tmp-0123456789ab-f0001"), "partial").unwrap();
    let ws = std::mem::replace(&mut d.workspace, tempfile::tempdir().unwrap());
    let state = std::mem::replace(&mut d.state, tempfile::tempdir().unwrap());
    let d2 = TestDaemon::builder().workspace(ws).state(state).start();
    let leftovers: Vec<_> = walk(d2.root())
        .into_iter()
        .filter(|p| p.contains(".workspaced-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let mut c = d2.ws(&format!("/api/v1/sync?since=3&epoch={epoch}")).await;
    let h = hello(&mut c).await;
    assert_ne!(h["epoch"], epoch);
    assert_eq!(c.next_json().await, json!({"type":"resync"}));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.path().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[tokio::test]
async fn a_gitignore_change_brings_unignored_files_in() {
    let ws = repo(&[(".gitignore", "build/\n")]);
    std::fs::create_dir_all(ws.path().join("build/sub")).unwrap();
    std::fs::write(ws.path().join("build/sub/x"), "x\n").unwrap();
    let d = TestDaemon::builder().workspace(ws).start();
    let root = d.root().to_owned();
    let mut c = d.ws("/api/v1/sync").await;
    hello(&mut c).await;
    std::fs::write(root.join("build/early"), "ignored\n").unwrap();
    std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while !seen.contains("build/sub/x") {
        assert!(
            Instant::now() < deadline,
            "un-ignored files not reported: {seen:?}"
        );
        let v = c.next_json().await;
        if v["type"] == "changed" {
            seen.insert(v["path"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        seen.contains("build") && seen.contains("build/sub"),
        "{seen:?}"
    );
    // The directory is watched from now on.
    std::fs::write(root.join("build/sub/y"), "y\n").unwrap();
    wait_for(&mut c, "build/sub/y", |v| is_changed(v, "build/sub/y")).await;
}

/// Files of a new tree three levels deep (`new/dK/eJ/fI`), with contents
/// that differ, written under `dir`; returns each path with its blob id.
fn make_tree(dir: &Path, top: &str, n: usize) -> std::collections::BTreeMap<String, String> {
    let mut want = std::collections::BTreeMap::new();
    for i in 0..n {
        let rel = format!("{top}/d{}/e{}/f{i}", i % 7, i % 5);
        let content = format!("{rel}\n");
        let p = dir.join(&rel);
        if !p.parent().unwrap().exists() {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        }
        std::fs::write(&p, &content).unwrap();
        want.insert(rel, workspaced::files::oid::blob_oid(content.as_bytes()));
    }
    want.insert(top.to_owned(), String::new());
    for k in 0..7.min(n) {
        want.insert(format!("{top}/d{k}"), String::new());
        for j in 0..5.min(n) {
            if (0..n).any(|i| i % 7 == k && i % 5 == j) {
                want.insert(format!("{top}/d{k}/e{j}"), String::new());
            }
        }
    }
    want
}

/// Reads events until every path of `want` was last reported as it is
/// (files with their blob id, directories as `dir`); panics on a deletion
/// of one of them, or when `limit` passes without one more path complete.
async fn until_all_reported(
    c: &mut Ws,
    want: &std::collections::BTreeMap<String, String>,
    limit: std::time::Duration,
    what: &str,
) {
    let mut last: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    // Progress is awaited, not a fixed time: a missed path stalls the count.
    let mut deadline = Instant::now() + limit;
    let mut done = 0;
    while done < want.len() {
        if Instant::now() >= deadline {
            let missing: Vec<_> = want
                .iter()
                .filter(|(p, o)| last.get(*p) != Some(*o))
                .map(|(p, _)| p.as_str())
                .take(10)
                .collect();
            panic!(
                "{what}: {} of {} paths not reported, e.g. {missing:?}",
                want.len() - done,
                want.len()
            );
        }
        let v = c.next_json().await;
        let Some(p) = v["path"].as_str() else {
            continue;
        };
        match v["type"].as_str() {
            Some("changed") => {
                let oid = if v["kind"] == "dir" {
                    String::new()
                } else {
                    v["oid"].as_str().unwrap().to_owned()
                };
                let Some(w) = want.get(p) else { continue };
                let was = last.get(p) == Some(w);
                let is = *w == oid;
                last.insert(p.to_owned(), oid);
                if is && !was {
                    done += 1;
                    deadline = Instant::now() + limit;
                } else if was && !is {
                    done -= 1;
                }
            }
            Some("deleted") => {
                assert!(
                    !want
                        .keys()
                        .any(|w| w == p || w.starts_with(&format!("{p}/"))),
                    "{what}: {v}"
                );
            }
            _ => {}
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Maker {
    Tar,
    Cp,
    Checkout,
}

/// 300, 3,000 and 20,000 files appear at once in a new directory tree (as
/// `npm install`, `tar x` or a checkout do): every path reaches a live
/// client and a client that comes back with `since`.
async fn new_trees_are_reported_whole(maker: Maker) {
    // One maker at a time: each moves 23,300 files through the watcher.
    let _one = integration_tests::throughput_lock().await;
    let ws = repo(&[("README", "r\n")]);
    let root = ws.path().to_owned();
    let src = tempfile::tempdir().unwrap();
    let sizes = [300, 3_000, 20_000];
    let mut wants = Vec::new();
    for n in sizes {
        let top = format!("new{n}");
        let want = match maker {
            Maker::Checkout => {
                git(&root, &["checkout", "-q", "-b", &top, "main"]);
                let want = make_tree(&root, &top, n);
                git(&root, &["add", "-A"]);
                git(&root, &["commit", "-q", "-m", &top]);
                git(&root, &["checkout", "-q", "main"]);
                want
            }
            Maker::Tar | Maker::Cp => make_tree(src.path(), &top, n),
        };
        wants.push((top, want));
    }
    if let Maker::Tar = maker {
        for (top, _) in &wants {
            let out = Command::new("tar")
                .args(["cf", &format!("{top}.tar"), top])
                .current_dir(src.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    }
    let d = TestDaemon::builder().workspace(ws).start();
    let mut live = d.ws("/api/v1/sync").await;
    let epoch = hello(&mut live).await["epoch"].as_str().unwrap().to_owned();
    for (top, want) in &wants {
        let seq = {
            let mut probe = d.ws("/api/v1/sync").await;
            hello(&mut probe).await["seq"].as_u64().unwrap()
        };
        let out = match maker {
            Maker::Tar => Command::new("tar")
                .arg("xf")
                .arg(src.path().join(format!("{top}.tar")))
                .current_dir(&root)
                .output(),
            Maker::Cp => Command::new("cp")
                .arg("-r")
                .arg(src.path().join(top))
                .arg(root.join(top))
                .output(),
            Maker::Checkout => Command::new("git")
                .args(["checkout", "-q", top])
                .current_dir(&root)
                .output(),
        }
        .unwrap();
        assert!(out.status.success(), "{maker:?} {top}: {out:?}");
        let limit = WAIT * 2;
        until_all_reported(&mut live, want, limit, &format!("live, {maker:?} {top}")).await;
        let mut again = d
            .ws(&format!("/api/v1/sync?since={seq}&epoch={epoch}"))
            .await;
        hello(&mut again).await;
        until_all_reported(&mut again, want, limit, &format!("replay, {maker:?} {top}")).await;
        if let Maker::Checkout = maker {
            // Back to main for the next size: the tree goes away.
            git(&root, &["checkout", "-q", "main"]);
        }
    }
}

#[tokio::test]
async fn new_trees_by_tar_are_reported_whole() {
    new_trees_are_reported_whole(Maker::Tar).await;
}

#[tokio::test]
async fn new_trees_by_cp_are_reported_whole() {
    new_trees_are_reported_whole(Maker::Cp).await;
}

#[tokio::test]
async fn new_trees_by_git_checkout_are_reported_whole() {
    new_trees_are_reported_whole(Maker::Checkout).await;
}

#[tokio::test]
async fn rm_r_of_a_tree_is_one_event() {
    let ws = tempfile::tempdir().unwrap();
    for p in [
        "a/top.txt",
        "a/b/mid.txt",
        "a/b/c/deep1",
        "a/b/c/deep2",
        "a/b2/x",
    ] {
        let f = ws.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, p).unwrap();
    }
    let d = TestDaemon::builder().workspace(ws).start();
    let root = d.root().to_owned();
    let mut c = d.ws("/api/v1/sync").await;
    hello(&mut c).await;
    for round in 0..3 {
        let out = Command::new("rm")
            .args(["-r", "a"])
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        // Deletions wait a moment (children go first); a marker written
        // once `a` is reported shows that nothing else came with it.
        let mut events = Vec::new();
        wait_for(&mut c, "deleted a", |v| {
            events.push(v.clone());
            v["type"] == "deleted" && v["path"] == "a"
        })
        .await;
        let marker = format!("marker{round}");
        std::fs::write(root.join(&marker), "m").unwrap();
        wait_for(&mut c, &marker, |v| {
            events.push(v.clone());
            is_changed(v, &marker)
        })
        .await;
        events.pop();
        assert_eq!(events.len(), 1, "round {round}: {events:?}");
        assert_eq!(events[0]["type"], "deleted");
        assert_eq!(events[0]["path"], "a");
        assert_eq!(events[0]["kind"], "dir");
        // Made again: every entry comes back, and the next removal is one event again.
        for p in [
            "a/top.txt",
            "a/b/mid.txt",
            "a/b/c/deep1",
            "a/b/c/deep2",
            "a/b2/x",
        ] {
            let f = root.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, p).unwrap();
        }
        let want: std::collections::BTreeMap<String, String> =
            [("a", ""), ("a/b", ""), ("a/b/c", ""), ("a/b2", "")]
                .into_iter()
                .map(|(p, o)| (p.to_owned(), o.to_owned()))
                .chain(
                    [
                        "a/top.txt",
                        "a/b/mid.txt",
                        "a/b/c/deep1",
                        "a/b/c/deep2",
                        "a/b2/x",
                    ]
                    .into_iter()
                    .map(|p| (p.to_owned(), workspaced::files::oid::blob_oid(p.as_bytes()))),
                )
                .collect();
        until_all_reported(&mut c, &want, WAIT, "the tree made again").await;
    }
}

#[tokio::test]
async fn a_corrupt_git_index_is_ignored_and_the_tree_answers() {
    let ws = repo(&[("a.txt", "one\n"), ("d/b.txt", "two\n")]);
    let root = ws.path().to_owned();
    let good = std::fs::read(root.join(".git/index")).unwrap();
    let d = TestDaemon::builder().workspace(ws).start();
    // 12 bytes that announce 4 billion entries; the index cut short; garbage.
    let mut huge = b"DIRC".to_vec();
    huge.extend(2u32.to_be_bytes());
    huge.extend(4_000_000_000u32.to_be_bytes());
    let cases: [(&str, Vec<u8>); 3] = [
        ("4 billion entries", huge),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("garbage", b"not an index at all, just text\n".repeat(40)),
    ];
    for (what, bytes) in cases {
        std::fs::write(root.join(".git/index"), &bytes).unwrap();
        let v = d.get_json("/api/v1/tree?recursive=true").await;
        let files: Vec<(&str, &str)> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "file")
            .map(|e| (e["path"].as_str().unwrap(), e["oid"].as_str().unwrap()))
            .collect();
        let a = hash_object(&root, "a.txt");
        let b = hash_object(&root, "d/b.txt");
        assert_eq!(
            files,
            vec![("a.txt", a.as_str()), ("d/b.txt", b.as_str())],
            "{what}"
        );
        let (s, _) = d.call(Method::GET, "/api/v1/status").await;
        assert_eq!(s, 200, "{what}: the daemon lives");
    }
    d.log
        .wait_for(WAIT, |l| {
            l.contains("the git index is corrupt").then_some(())
        })
        .expect("a warning names the corrupt index");
}
