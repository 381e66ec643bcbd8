//! `init_tools.sh` as installed by `install`: the daemon config it writes,
//! and a real `workspaced` brought up until `/healthz` answers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{build_workspaced, run, stderr};

struct Workspace {
    _tmp: tempfile::TempDir,
    projects: PathBuf,
    tools: PathBuf,
    vars: PathBuf,
}

/// Installs a tools source (`daemon` as workspaced, a fake editor) into
/// `<tmp>/projects/.gl-tools` with the real `install`.
fn workspace(daemon: &Path) -> Workspace {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("editor/bin")).unwrap();
    std::fs::copy(daemon, src.join("workspaced")).unwrap();
    let editor = src.join("editor/bin/code-server");
    std::fs::write(&editor, "#!/bin/sh\nexec sleep 300\n").unwrap();
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let projects = tmp.path().join("projects");
    std::fs::create_dir_all(projects.join("app")).unwrap();
    let tools = projects.join(".gl-tools");
    let o = run(&[
        "install",
        "--from",
        src.to_str().unwrap(),
        "--to",
        tools.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let vars = tmp.path().join("vars");
    std::fs::create_dir_all(&vars).unwrap();
    Workspace {
        _tmp: tmp,
        projects,
        tools,
        vars,
    }
}

impl Workspace {
    fn init_tools(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(self.tools.join("init_tools.sh"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("PROJECTS_ROOT", &self.projects)
            .env("GL_TOOLS_DIR", &self.tools)
            .env("GL_FILE_VARIABLES_DIR", &self.vars);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn config(&self, env: &[(&str, &str)]) -> toml::Table {
        let o = self.init_tools(&["--print-config"], env);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap().parse().unwrap()
    }
}

fn gallery(cfg: &toml::Table) -> serde_json::Value {
    let env = cfg["components"][0]["env"].as_table().unwrap();
    serde_json::from_str(env["EXTENSIONS_GALLERY"].as_str().unwrap()).unwrap()
}

#[test]
fn config_has_the_editor_first_and_no_editor_auth() {
    let w = workspace(Path::new("/bin/true"));
    let cfg = w.config(&[(
        "GL_WORKSPACED_CONTAINERS",
        "db=http://127.0.0.1:60081,cache=http://127.0.0.1:60082",
    )]);
    let project = w.projects.join("app");
    assert_eq!(cfg["listen"].as_str(), Some("0.0.0.0:60080"));
    assert_eq!(cfg["workspace"].as_str(), project.to_str());
    assert_eq!(
        cfg["logs_dir"].as_str(),
        w.projects.join("workspace-logs").to_str()
    );
    assert!(
        cfg.get("token_file").is_none(),
        "no token file, no token_file"
    );
    let editor = &cfg["components"][0];
    assert_eq!(editor["name"].as_str(), Some("editor"));
    assert_eq!(editor["port"].as_integer(), Some(60001));
    assert_eq!(editor["health_path"].as_str(), Some("/healthz"));
    let cmd: Vec<&str> = editor["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        cmd[0],
        w.tools.join("editor/bin/code-server").to_str().unwrap()
    );
    for flag in [
        "--auth",
        "none",
        "0.0.0.0:60001",
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
    ] {
        assert!(cmd.contains(&flag), "{flag} missing from {cmd:?}");
    }
    assert_eq!(
        gallery(&cfg)["serviceUrl"],
        "https://open-vsx.org/vscode/gallery"
    );
    let containers = cfg["containers"].as_table().unwrap();
    assert_eq!(containers["cache"].as_str(), Some("http://127.0.0.1:60082"));

    // The token file, the marketplace variables and the REH-web profile.
    std::fs::write(w.vars.join("workspaced_token"), "t0k3n\n").unwrap();
    let cfg = w.config(&[
        ("GL_EDITOR_PROFILE", "openvscode-server"),
        ("GL_VSCODE_PORT", "61001"),
        (
            "GL_VSCODE_EXTENSION_MARKETPLACE_SERVICE_URL",
            "https://vsx.example.com/gallery \"q\"",
        ),
        (
            "GL_VSCODE_EXTENSION_MARKETPLACE_ITEM_URL",
            "https://vsx.example.com/item",
        ),
    ]);
    assert_eq!(
        cfg["token_file"].as_str(),
        w.vars.join("workspaced_token").to_str()
    );
    let g = gallery(&cfg);
    assert_eq!(g["serviceUrl"], "https://vsx.example.com/gallery \"q\"");
    assert_eq!(g["itemUrl"], "https://vsx.example.com/item");
    let cmd: Vec<&str> = cfg["components"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        cmd.contains(&"--without-connection-token") && cmd.contains(&"61001"),
        "{cmd:?}"
    );
    assert_eq!(cfg["components"][0]["port"].as_integer(), Some(61001));

    let o = w.init_tools(&["--print-config"], &[("GL_EDITOR_PROFILE", "nope")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("code-server openvscode-server"),
        "{}",
        stderr(&o)
    );
    let o = w.init_tools(&["--bogus"], &[]);
    assert_eq!(o.status.code(), Some(64));

    // `render --idle-webhook` reaches the daemon as its on_idle webhook.
    assert!(cfg.get("on_idle").is_none(), "no webhook, no on_idle");
    let cfg = w.config(&[(
        "GL_WORKSPACE_IDLE_WEBHOOK",
        "https://control.example.com/ws/1/idle?x=\"y\"",
    )]);
    assert_eq!(
        cfg["on_idle"]["webhook"].as_str(),
        Some("https://control.example.com/ws/1/idle?x=\"y\"")
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Stops the daemon started in the background when the test ends.
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[test]
fn background_start_returns_once_healthz_answers() {
    let daemon = build_workspaced();
    let w = workspace(&daemon);
    std::fs::write(w.vars.join("workspaced_token"), "t0k3n-for-the-daemon\n").unwrap();
    let port = free_port();
    let (port_s, editor_port) = (port.to_string(), free_port().to_string());
    let env = [
        ("WORKSPACED_PORT", port_s.as_str()),
        ("GL_VSCODE_PORT", editor_port.as_str()),
    ];
    let _guard = KillOnDrop(w.projects.join("workspace-logs/workspaced.pid"));
    let o = w.init_tools(&["--background"], &env);
    let log = std::fs::read_to_string(w.projects.join("workspace-logs/workspaced.log"))
        .unwrap_or_default();
    assert!(o.status.success(), "{}\n{log}", stderr(&o));
    let resp = get(port, "/healthz");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""status":"ok""#), "{resp}");
    assert!(w.tools.join("workspaced.toml").is_file());
    assert!(w.projects.join("workspace-logs/start-up.log").is_file());
    // A second postStart run finds it up and leaves it alone.
    let o = w.init_tools(&["--background"], &env);
    assert!(o.status.success());
    assert!(stderr(&o).contains("already answers"), "{}", stderr(&o));
    // The token never reaches a log.
    for f in std::fs::read_dir(w.projects.join("workspace-logs")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap_or_default();
        assert!(!text.contains("t0k3n-for-the-daemon"));
    }
}
