//! `install`: checksummed copy into a sibling, atomic switch, no-op rerun,
//! modes for arbitrary UIDs, and interruption by kill -9 at many points.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use common::{bin, run, stderr, stdout};
use workspace_injector::install::{read_manifest, verify_tree};

/// A tools source like the image's: `workspaced`, `editor/` with `files`
/// files in nested dirs, an exec file and a symlink; `tag` varies content.
fn make_source(root: &Path, files: usize, tag: &str) {
    std::fs::create_dir_all(root.join("editor/bin")).unwrap();
    std::fs::write(
        root.join("workspaced"),
        format!("#!/bin/sh\necho workspaced {tag}\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("workspaced"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("editor/bin/code-server"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        root.join("editor/bin/code-server"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::symlink("bin/code-server", root.join("editor/code-server")).unwrap();
    std::fs::write(
        root.join("editor/package.json"),
        format!("{{\"version\": \"{tag}\"}}"),
    )
    .unwrap();
    for i in 0..files {
        let dir = root.join(format!("editor/lib/m{:03}", i % 60));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}.js")),
            format!("// {tag} {i}\n{}", "x".repeat(i % 700)),
        )
        .unwrap();
    }
}

fn install(from: &Path, to: &Path) -> std::process::Output {
    run(&[
        "install",
        "--from",
        from.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ])
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn installs_verifies_and_reruns_as_a_no_op() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_source(&src, 50, "1.0");
    let to = t.path().join("projects/.gl-tools");
    let o = install(&src, &to);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("installed "), "{}", stdout(&o));
    assert!(to.symlink_metadata().unwrap().file_type().is_symlink());

    // Exec bits and symlinks kept; group 0 can read and list everything.
    assert_eq!(mode(&to.join("workspaced")), 0o755);
    assert_eq!(mode(&to.join("editor/bin/code-server")), 0o750);
    assert_eq!(
        std::fs::read_link(to.join("editor/code-server")).unwrap(),
        PathBuf::from("bin/code-server")
    );
    assert_eq!(mode(&to.join("editor/lib/m001")) & 0o050, 0o050);
    assert_eq!(mode(&to.join("init_tools.sh")), 0o755);
    assert!(to.join("editor-profiles/code-server.toml").is_file());
    let m = read_manifest(&to).unwrap();
    assert_eq!(m.versions["editor"], "1.0");
    assert_eq!(m.versions["workspace-injector"], env!("CARGO_PKG_VERSION"));
    assert!(m.files.len() > 50);

    let o = install(&src, &to);
    assert!(o.status.success());
    assert!(
        stdout(&o).starts_with("up to date, nothing copied"),
        "{}",
        stdout(&o)
    );

    // A new source version switches over and the old version is removed.
    let src2 = t.path().join("src2");
    make_source(&src2, 50, "2.0");
    let o = install(&src2, &to);
    assert!(stdout(&o).starts_with("installed "), "{}", stdout(&o));
    assert_eq!(read_manifest(&to).unwrap().versions["editor"], "2.0");
    let siblings: Vec<_> = std::fs::read_dir(t.path().join("projects"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings.len(), 2, "{siblings:?}");
}

#[test]
fn a_corrupted_file_is_detected_by_checksum() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    make_source(&src, 20, "1.0");
    let to = t.path().join(".gl-tools");
    assert!(install(&src, &to).status.success());
    let victim = to.join("editor/lib/m005/f5.js");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 0x20; // same size, different content
    std::fs::write(&victim, bytes).unwrap();

    let o = run(&["verify", to.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("checksum mismatch for editor/lib/m005/f5.js"),
        "{}",
        stderr(&o)
    );

    let o = run(&[
        "install",
        "--verify",
        "--from",
        src.to_str().unwrap(),
        "--to",
        to.to_str().unwrap(),
    ]);
    assert!(
        stdout(&o).starts_with("installed "),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(run(&["verify", to.to_str().unwrap()]).status.success());
}

#[test]
fn a_missing_source_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let o = install(&t.path().join("nope"), &t.path().join(".gl-tools"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the daemon") && stderr(&o).contains("nope/workspaced is missing"),
        "{}",
        stderr(&o)
    );
}

/// The tools dir as a workspace would see it right now: a complete,
/// verified set whose fingerprint is one of `allowed`.
fn assert_complete(to: &Path, allowed: &[&str]) -> String {
    let m = read_manifest(to).expect("the tools dir always has a manifest");
    assert!(
        allowed.contains(&m.fingerprint.as_str()),
        "unexpected fingerprint {}",
        m.fingerprint
    );
    verify_tree(to, &m).expect("the tools dir is always complete");
    m.fingerprint
}

#[test]
fn kill_9_at_any_point_leaves_old_or_new_complete() {
    let t = tempfile::tempdir().unwrap();
    let (old, new) = (t.path().join("old"), t.path().join("new"));
    make_source(&old, 300, "1.0");
    make_source(&new, 3000, "2.0");
    // Reference installs give the two fingerprints and the full duration.
    let scratch = t.path().join("scratch/.gl-tools");
    assert!(install(&old, &scratch).status.success());
    let fp_old = read_manifest(&scratch).unwrap().fingerprint;
    let started = Instant::now();
    assert!(install(&new, &scratch).status.success());
    let full = started.elapsed();
    let fp_new = read_manifest(&scratch).unwrap().fingerprint;

    let to = t.path().join("projects/.gl-tools");
    assert!(install(&old, &to).status.success());
    let mut interrupted = 0;
    for i in 0..14u32 {
        // Kill points spread over the whole run (and a little before it).
        let delay = full.mul_f64(f64::from(i) / 12.0);
        let mut child = bin()
            .args([
                "install",
                "--from",
                new.to_str().unwrap(),
                "--to",
                to.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        if !finished {
            interrupted += 1;
        }
        let fp = assert_complete(&to, &[&fp_old, &fp_new]);
        if fp == fp_new {
            // Go back to the old set so the next kill interrupts a real switch.
            assert!(install(&old, &to).status.success());
            assert_complete(&to, &[&fp_old]);
        }
    }
    assert!(interrupted >= 5, "only {interrupted} runs were interrupted");

    // A rerun completes, and no partial sibling is left behind.
    let o = install(&new, &to);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_complete(&to, &[&fp_new]);
    let names: Vec<String> = std::fs::read_dir(t.path().join("projects"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "leftovers: {names:?}");
}
