//! The init container's file tree, laid out by `init-container/assemble.sh`
//! without Docker, runs the injected devfile's init command as the image would.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{build_workspaced, devfiles_dir, run, stderr, stdout};
use workspace_injector::yaml;

fn assemble(out: &Path, editor: &Path) -> std::process::Output {
    let daemon = build_workspaced();
    let bin_dir = daemon.parent().unwrap();
    assert!(bin_dir.join("workspace-injector").is_file());
    Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../init-container/assemble.sh"
        ))
        .args([
            "--bin-dir",
            bin_dir.to_str().unwrap(),
            "--editor",
            editor.to_str().unwrap(),
        ])
        .arg(out)
        .output()
        .unwrap()
}

fn fake_editor(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(
        dir.join("package.json"),
        "{\n  \"name\": \"code-server\",\n  \"version\": \"4.96.4\"\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("bin/code-server"), "#!/bin/sh\nexec sleep 300\n").unwrap();
    std::fs::set_permissions(
        dir.join("bin/code-server"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
}

#[test]
fn the_init_command_of_the_injected_devfile_runs_from_the_assembled_tree() {
    let t = tempfile::tempdir().unwrap();
    let editor = t.path().join("code-server");
    fake_editor(&editor);
    let rootfs = t.path().join("rootfs");
    let o = assemble(&rootfs, &editor);
    assert!(o.status.success(), "{}", stderr(&o));

    // Everything in the image is readable by group 0, nothing group-writable.
    for p in [
        "usr/local/bin/workspace-injector",
        "opt/gl-tools/workspaced",
        "opt/gl-tools/editor/bin/code-server",
    ] {
        let mode = std::fs::metadata(rootfs.join(p))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o070, 0o050, "{p}: {mode:o}");
    }

    // The init component's command, as `devfile inject` writes it.
    let o = run(&[
        "devfile",
        "inject",
        devfiles_dir()
            .join("gitlab-docs__example-config.yaml")
            .to_str()
            .unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let devfile = yaml::load(&stdout(&o)).unwrap();
    let init = devfile["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gl-tools-injector")
        .unwrap()["container"]
        .clone();
    let projects = t.path().join("projects");
    std::fs::create_dir_all(&projects).unwrap();
    // Paths of the pod, mapped onto the test's directories.
    let map = |s: &str| -> String {
        if let Some(rest) = s.strip_prefix("/projects") {
            format!("{}{rest}", projects.display())
        } else {
            s.to_string()
        }
    };
    let program: PathBuf =
        rootfs.join(init["command"][0].as_str().unwrap().trim_start_matches('/'));
    let args: Vec<String> = init["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| map(a.as_str().unwrap()))
        .collect();
    let envs: Vec<(String, String)> = init["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                map(e["value"].as_str().unwrap()),
            )
        })
        .collect();
    let runit = || {
        Command::new(&program)
            .args(&args)
            .envs(envs.clone())
            .output()
            .unwrap()
    };

    let o = runit();
    assert!(o.status.success(), "{}", stderr(&o));
    let tools = projects.join(".gl-tools");
    let manifest = workspace_injector::install::read_manifest(&tools).unwrap();
    assert_eq!(manifest.versions["editor"], "4.96.4");
    assert_eq!(manifest.versions["workspaced"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        std::fs::read(tools.join("workspaced")).unwrap(),
        std::fs::read(rootfs.join("opt/gl-tools/workspaced")).unwrap()
    );
    assert!(
        tools.join("init_tools.sh").is_file() && tools.join("editor/bin/code-server").is_file()
    );

    // A pod restart runs it again: nothing to copy.
    let o = runit();
    assert!(
        stdout(&o).starts_with("up to date, nothing copied"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn assemble_needs_its_inputs() {
    let t = tempfile::tempdir().unwrap();
    let o = Command::new("sh")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../init-container/assemble.sh"
        ))
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
}
