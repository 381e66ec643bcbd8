//! `clone` over file:// and over HTTP (git http-backend behind a test
//! server checking basic auth), interrupted and rerun, with a wrong token.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::git_http::GitHttpServer;
use common::{bin, stderr, stdout};

const TOKEN: &str = "glpat-s3cr3t-t0ken";

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git is installed");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A bare repository `<root>/app.git` with two commits on main, a branch
/// `feature`, a tag `v1`, and `big_bytes` of incompressible data.
fn make_repo(root: &Path, big_bytes: usize) -> PathBuf {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "one\n").unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..big_bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(work.join("blob.bin"), data).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "v1"]);
    std::fs::write(work.join("README.md"), "two\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    git(&work, &["branch", "feature"]);
    let bare = root.join("app.git");
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    bare
}

fn clone_cmd(url: &str, dest: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args([
        "clone",
        "--url",
        url,
        "--dest",
        dest.to_str().unwrap(),
        "--retry-backoff",
        "10ms,20ms,40ms",
    ]);
    c.args(extra);
    c.env_remove("PROJECTS_ROOT");
    c
}

#[test]
fn clones_over_file_url_with_marker_and_is_idempotent() {
    let t = tempfile::tempdir().unwrap();
    let bare = make_repo(t.path(), 1000);
    let projects = t.path().join("projects");
    let dest = projects.join("app");
    let url = format!("file://{}", bare.display());
    let o = clone_cmd(&url, &dest, &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dest.join("README.md")).unwrap(),
        "two\n"
    );
    assert!(projects.join(".gl_project_cloning_successful").is_file());
    assert_eq!(git(&dest, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");

    // The marker lost (or never written after the rename): the complete
    // working copy is kept, with its local work, and the marker comes back.
    std::fs::write(dest.join("work.txt"), "uncommitted").unwrap();
    std::fs::remove_file(projects.join(".gl_project_cloning_successful")).unwrap();
    let o = clone_cmd(&url, &dest, &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("writing the missing marker"),
        "{}",
        stderr(&o)
    );
    assert!(dest.join("work.txt").exists());
    assert!(projects.join(".gl_project_cloning_successful").is_file());

    // Rerun: left alone, even with local changes.
    std::fs::write(dest.join("local.txt"), "mine").unwrap();
    let o = clone_cmd(&url, &dest, &[]).output().unwrap();
    assert!(stdout(&o).contains("already cloned"), "{}", stdout(&o));
    assert!(dest.join("local.txt").exists());
}

#[test]
fn ref_and_depth() {
    let t = tempfile::tempdir().unwrap();
    let bare = make_repo(t.path(), 100);
    let url = format!("file://{}", bare.display());
    for (r, readme) in [("feature", "two\n"), ("v1", "one\n")] {
        let dest = t.path().join(format!("p-{r}/app"));
        let o = clone_cmd(&url, &dest, &["--ref", r]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            std::fs::read_to_string(dest.join("README.md")).unwrap(),
            readme,
            "{r}"
        );
    }
    assert_eq!(
        git(
            &t.path().join("p-feature/app"),
            &["rev-parse", "--abbrev-ref", "HEAD"]
        ),
        "feature"
    );

    // A shallow clone over a real transport (libgit2 does not shallow-clone local paths).
    let server = GitHttpServer::start(t.path(), TOKEN, false);
    let tf = t.path().join("token");
    std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
    let dest = t.path().join("shallow/app");
    let o = clone_cmd(
        &server.url("app.git"),
        &dest,
        &["--depth", "1", "--token-file", tf.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(git(&dest, &["rev-list", "--count", "HEAD"]), "1");

    let dest = t.path().join("p-nope/app");
    let o = clone_cmd(&url, &dest, &["--ref", "nope", "--strict"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("ref `nope` is neither a branch, a tag nor a commit"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn clones_over_http_with_a_token() {
    let t = tempfile::tempdir().unwrap();
    make_repo(t.path(), 1000);
    let server = GitHttpServer::start(t.path(), TOKEN, false);
    let tf = t.path().join("token");
    std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
    let dest = t.path().join("projects/app");
    let o = clone_cmd(
        &server.url("app.git"),
        &dest,
        &["--token-file", tf.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dest.join("README.md")).unwrap(),
        "two\n"
    );
    assert!(!stderr(&o).contains(TOKEN) && !stdout(&o).contains(TOKEN));
}

#[test]
fn a_wrong_token_fails_clearly_without_showing_it() {
    let t = tempfile::tempdir().unwrap();
    make_repo(t.path(), 100);
    let server = GitHttpServer::start(t.path(), TOKEN, false);
    let wrong = "glpat-wr0ng-t0ken-value";
    let tf = t.path().join("token");
    std::fs::write(&tf, wrong).unwrap();
    let projects = t.path().join("projects");
    let dest = projects.join("app");
    let o = clone_cmd(
        &server.url("app.git"),
        &dest,
        &["--token-file", tf.to_str().unwrap()],
    )
    .output()
    .unwrap();
    // Not strict: the workspace starts anyway, and the error is logged.
    assert_eq!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("authentication failed: the server refused the token"),
        "{err}"
    );
    assert!(err.contains("(try 4/4)"), "{err}");
    let log = std::fs::read_to_string(projects.join("project-clone-errors.log")).unwrap();
    assert!(log.contains("authentication failed"), "{log}");
    for text in [&err, &stdout(&o), &log] {
        assert!(!text.contains(wrong), "the token leaked: {text}");
    }
    assert!(!dest.exists());
    assert!(!projects.join(".gl_project_cloning_successful").exists());

    let o = clone_cmd(
        &server.url("app.git"),
        &dest,
        &["--token-file", tf.to_str().unwrap(), "--strict"],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn killed_mid_clone_then_rerun_clones_again() {
    let t = tempfile::tempdir().unwrap();
    make_repo(t.path(), 2 * 1024 * 1024);
    let slow = GitHttpServer::start(t.path(), TOKEN, true);
    let tf = t.path().join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    let projects = t.path().join("projects");
    std::fs::create_dir_all(&projects).unwrap();
    let dest = projects.join("app");
    let mut child = clone_cmd(
        &slow.url("app.git"),
        &dest,
        &["--token-file", tf.to_str().unwrap()],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Wait until the pack is being received into the temporary sibling.
    let deadline = Instant::now() + Duration::from_secs(30);
    let receiving = || {
        std::fs::read_dir(&projects).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".app.tmp-clone-")
                && std::fs::read_dir(e.path().join(".git/objects/pack"))
                    .is_ok_and(|mut d| d.next().is_some())
        })
    };
    while !receiving() {
        assert!(
            Instant::now() < deadline,
            "the clone never started receiving"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the clone ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dest.exists(),
        "a half clone must never be at the destination"
    );
    assert!(!projects.join(".gl_project_cloning_successful").exists());

    // Simulate a crash after the rename but before the marker, too.
    std::fs::create_dir_all(dest.join("half")).unwrap();
    drop(slow);
    let fast = GitHttpServer::start(t.path(), TOKEN, false);
    let o = clone_cmd(
        &fast.url("app.git"),
        &dest,
        &["--token-file", tf.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted clone"), "{}", stderr(&o));
    assert!(!dest.join("half").exists());
    assert_eq!(
        std::fs::read_to_string(dest.join("README.md")).unwrap(),
        "two\n"
    );
    assert!(projects.join(".gl_project_cloning_successful").is_file());
    let left: Vec<_> = std::fs::read_dir(&projects)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}
