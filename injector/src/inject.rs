//! `devfile inject`: adds the tools volume, the injector init component, the
//! editor and daemon wiring to a user's devfile (INJECTION.md).

use anyhow::{bail, Context as _};
use serde_json::{json, Map, Value};

use crate::devfile::rules::INJECT_EDITOR;

/// The persistent volume mounted at `PROJECTS_ROOT` in every container.
pub const DATA_VOLUME: &str = "gl-workspace-data";
/// The component that runs `workspace-injector install` before the workspace.
pub const INJECTOR_COMPONENT: &str = "gl-tools-injector";
/// The component that clones the project, when a project URL is given.
pub const CLONER_COMPONENT: &str = "gl-project-cloner";
pub const PROJECTS_ROOT: &str = "/projects";
pub const GL_TOOLS_DIR: &str = "/projects/.gl-tools";
pub const GL_WORKSPACE_LOGS_DIR: &str = "/projects/workspace-logs";
pub const GL_VSCODE_PORT: u16 = 60001;
pub const GL_SSH_PORT: u16 = 60022;
pub const WORKSPACED_PORT: u16 = 60080;
/// The first port of the daemons in the other containers.
pub const FIRST_CONTAINER_DAEMON_PORT: u16 = 60081;
/// Where the workspace's file variables (a mounted Secret) appear.
pub const FILE_VARIABLES_DIR: &str = "/.workspace-data/variables/file";
/// Where the injector binary sits in its image.
pub const INJECTOR_BINARY: &str = "/usr/local/bin/workspace-injector";
/// The default image of the init component.
pub const DEFAULT_INJECTOR_IMAGE: &str = concat!(
    "registry.gitlab.com/gitlab-org/workspaces/workspace-injector:",
    env!("CARGO_PKG_VERSION")
);

/// What `inject` needs besides the devfile.
#[derive(Debug, Clone)]
pub struct Options {
    pub injector_image: String,
    /// Editor profile name (`editor-profiles/<name>.toml`).
    pub editor_profile: String,
    /// Clone this project in `preStart` when set.
    pub project_url: Option<String>,
    pub project_ref: Option<String>,
    /// `GL_WORKSPACE_DOMAIN_TEMPLATE` for the main component, when known.
    pub domain_template: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            injector_image: DEFAULT_INJECTOR_IMAGE.into(),
            editor_profile: "code-server".into(),
            project_url: None,
            project_ref: None,
            domain_template: None,
        }
    }
}

/// The project directory name for a clone URL: its last segment without `.git`.
pub fn project_name(url: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("project");
    let name = last.strip_suffix(".git").unwrap_or(last);
    if name.is_empty() {
        "project".into()
    } else {
        name.into()
    }
}

fn env(name: &str, value: impl ToString) -> Value {
    json!({"name": name, "value": value.to_string()})
}

fn data_mount() -> Value {
    json!({"name": DATA_VOLUME, "path": PROJECTS_ROOT})
}

fn add_env(container: &mut Map<String, Value>, vars: &[Value]) {
    let list = container
        .entry("env")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = list {
        for v in vars {
            list.retain(|e| e.get("name") != v.get("name"));
            list.push(v.clone());
        }
    }
}

fn add_mount(container: &mut Map<String, Value>) {
    let mounts = container
        .entry("volumeMounts")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(mounts) = mounts {
        mounts.retain(|m| m.get("path").and_then(Value::as_str) != Some(PROJECTS_ROOT));
        mounts.push(data_mount());
    }
}

fn command_id(prefix: &str, name: &str) -> String {
    let mut id = format!("{prefix}{name}");
    id.truncate(63);
    id.trim_end_matches('-').to_string()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Returns the devfile with the tools injected. The devfile must already
/// pass `devfile check`; the result passes `devfile check --relaxed`.
pub fn inject(devfile: &Value, opts: &Options) -> anyhow::Result<Value> {
    let mut out = devfile.clone();
    let root = out
        .as_object_mut()
        .context("the devfile must be a mapping")?;
    let components = match root
        .entry("components")
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(c) => c,
        _ => bail!("components must be a list"),
    };

    let editor_index = components
        .iter()
        .position(|c| c.pointer("/attributes/gl~1inject-editor") == Some(&Value::Bool(true)))
        .with_context(|| format!("no component has the attribute `{INJECT_EDITOR}: true`"))?;

    let common_env = vec![
        env("PROJECTS_ROOT", PROJECTS_ROOT),
        env("GL_TOOLS_DIR", GL_TOOLS_DIR),
        env("GL_WORKSPACE_LOGS_DIR", GL_WORKSPACE_LOGS_DIR),
    ];

    // The other containers each get their own daemon on 60081, 60082, ...
    let mut others = Vec::new();
    let mut post_start = Vec::new();
    let mut new_commands = Vec::new();
    for (i, c) in components.iter_mut().enumerate() {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(Value::Object(container)) = c.get_mut("container") else {
            continue;
        };
        add_mount(container);
        add_env(container, &common_env);
        // Each daemon knows its container's name (its terminals' `container`).
        add_env(container, &[env("GL_WORKSPACE_CONTAINER", &name)]);
        if i == editor_index {
            continue;
        }
        let port = FIRST_CONTAINER_DAEMON_PORT + others.len() as u16;
        add_env(container, &[env("WORKSPACED_PORT", port)]);
        let id = command_id("gl-workspaced-", &name);
        let log = format!("${{GL_WORKSPACE_LOGS_DIR}}/workspaced-{name}.log");
        let token = format!("{FILE_VARIABLES_DIR}/workspaced_token");
        let line = format!(
            "mkdir -p \"${{GL_WORKSPACE_LOGS_DIR}}\" && tf={token}; if [ -f \"$tf\" ]; then set -- --token-file \"$tf\"; fi; \
             nohup \"${{GL_TOOLS_DIR}}/workspaced\" serve --listen 127.0.0.1:{port} --workspace \"${{PROJECTS_ROOT}}\" --name {} \"$@\" >>\"{log}\" 2>&1 &",
            shell_quote(&name)
        );
        new_commands.push(json!({"id": id, "exec": {"component": name, "commandLine": line}}));
        post_start.push(Value::String(id));
        others.push((name, port));
    }

    let containers_list = others
        .iter()
        .map(|(n, p)| format!("{n}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let editor = &mut components[editor_index];
    let editor_name = editor
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let override_command =
        editor.pointer("/attributes/overrideCommand") != Some(&Value::Bool(false));
    let container = editor
        .get_mut("container")
        .and_then(Value::as_object_mut)
        .with_context(|| format!("the `{INJECT_EDITOR}` component must be a container"))?;
    let mut vars = vec![
        env("GL_VSCODE_PORT", GL_VSCODE_PORT),
        env("GL_SSH_PORT", GL_SSH_PORT),
        env("WORKSPACED_PORT", WORKSPACED_PORT),
        env("GL_EDITOR_PROFILE", &opts.editor_profile),
        env("GL_WORKSPACED_CONTAINERS", &containers_list),
    ];
    if let Some(url) = &opts.project_url {
        vars.push(env("GL_PROJECT_NAME", project_name(url)));
    }
    if let Some(t) = &opts.domain_template {
        vars.push(env("GL_WORKSPACE_DOMAIN_TEMPLATE", t));
    }
    add_env(container, &vars);
    let endpoints = container
        .entry("endpoints")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(endpoints) = endpoints {
        for (name, port) in [
            ("editor-server", GL_VSCODE_PORT),
            ("workspaced", WORKSPACED_PORT),
        ] {
            endpoints.retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
            endpoints.push(json!({
                "name": name, "targetPort": port, "exposure": "public",
                "protocol": "https", "secure": true
            }));
        }
    }
    if override_command {
        container.insert("command".into(), json!(["/bin/sh", "-c"]));
        container.insert(
            "args".into(),
            json!(["exec \"${GL_TOOLS_DIR}/init_tools.sh\""]),
        );
    } else {
        // Keep the image's entrypoint; start the tools beside it.
        new_commands.push(json!({"id": "gl-init-tools-command", "exec": {
            "component": editor_name,
            "commandLine": "\"${GL_TOOLS_DIR}/init_tools.sh\" --background"
        }}));
        post_start.insert(0, json!("gl-init-tools-command"));
    }

    let resources = |c: &mut Map<String, Value>| {
        for (k, v) in [
            ("memoryLimit", "256Mi"),
            ("memoryRequest", "64Mi"),
            ("cpuLimit", "500m"),
            ("cpuRequest", "100m"),
        ] {
            c.insert(k.into(), json!(v));
        }
    };
    let mut injector = Map::new();
    injector.insert("image".into(), json!(opts.injector_image));
    injector.insert("command".into(), json!([INJECTOR_BINARY]));
    injector.insert("args".into(), json!(["install", "--to", GL_TOOLS_DIR]));
    injector.insert("env".into(), Value::Array(common_env.clone()));
    injector.insert("volumeMounts".into(), json!([data_mount()]));
    resources(&mut injector);
    components.push(json!({"name": INJECTOR_COMPONENT, "container": injector}));
    components.push(json!({"name": DATA_VOLUME, "volume": {}}));
    let mut pre_start = vec![json!("gl-tools-injector-command")];
    new_commands.push(
        json!({"id": "gl-tools-injector-command", "apply": {"component": INJECTOR_COMPONENT}}),
    );

    if let Some(url) = &opts.project_url {
        let dest = format!("{PROJECTS_ROOT}/{}", project_name(url));
        let mut args = vec!["clone".to_string(), "--url".into(), url.clone()];
        if let Some(r) = &opts.project_ref {
            args.extend(["--ref".into(), r.clone()]);
        }
        args.extend([
            "--dest".into(),
            dest,
            "--token-file".into(),
            format!("{FILE_VARIABLES_DIR}/gl_token"),
        ]);
        let mut cloner = Map::new();
        cloner.insert("image".into(), json!(opts.injector_image));
        cloner.insert("command".into(), json!([INJECTOR_BINARY]));
        cloner.insert("args".into(), json!(args));
        cloner.insert("env".into(), Value::Array(common_env.clone()));
        cloner.insert("volumeMounts".into(), json!([data_mount()]));
        resources(&mut cloner);
        components.push(json!({"name": CLONER_COMPONENT, "container": cloner}));
        new_commands.push(
            json!({"id": "gl-project-cloner-command", "apply": {"component": CLONER_COMPONENT}}),
        );
        pre_start.push(json!("gl-project-cloner-command"));
    }

    match root
        .entry("commands")
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        Value::Array(cmds) => cmds.extend(new_commands),
        _ => bail!("commands must be a list"),
    }
    let events = root
        .entry("events")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .context("events must be a mapping")?;
    for (kind, ours, first) in [
        ("preStart", pre_start, true),
        ("postStart", post_start, false),
    ] {
        if ours.is_empty() {
            continue;
        }
        let list = events
            .entry(kind)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            if first {
                // The tools and the project come before the user's own steps.
                let mut all = ours;
                all.append(list);
                *list = all;
            } else {
                list.extend(ours);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        assert_eq!(project_name("https://gitlab.com/a/b/my-app.git"), "my-app");
        assert_eq!(project_name("git@gitlab.com:a/app"), "app");
        assert_eq!(project_name("file:///tmp/x/repo/"), "repo");
    }

    #[test]
    fn keeps_entrypoint_when_asked() {
        let d = json!({"schemaVersion": "2.2.0", "components": [
            {"name": "main", "attributes": {"gl/inject-editor": true, "overrideCommand": false},
             "container": {"image": "x", "command": ["run"]}}]});
        let out = inject(&d, &Options::default()).unwrap();
        assert_eq!(out["components"][0]["container"]["command"], json!(["run"]));
        assert_eq!(
            out["events"]["postStart"][0],
            json!("gl-init-tools-command")
        );
    }

    #[test]
    fn other_containers_get_numbered_daemons() {
        let d = json!({"schemaVersion": "2.2.0", "components": [
            {"name": "db", "container": {"image": "pg"}},
            {"name": "main", "attributes": {"gl/inject-editor": true}, "container": {"image": "x"}},
            {"name": "cache", "container": {"image": "redis"}}]});
        let out = inject(&d, &Options::default()).unwrap();
        let env = &out["components"][1]["container"]["env"];
        let list = env
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "GL_WORKSPACED_CONTAINERS")
            .unwrap();
        assert_eq!(
            list["value"],
            "db=http://127.0.0.1:60081,cache=http://127.0.0.1:60082"
        );
        assert_eq!(
            out["events"]["postStart"],
            json!(["gl-workspaced-db", "gl-workspaced-cache"])
        );
        for (i, name) in [(0, "db"), (1, "main"), (2, "cache")] {
            let env = out["components"][i]["container"]["env"].as_array().unwrap();
            assert!(
                env.contains(&json!({"name": "GL_WORKSPACE_CONTAINER", "value": name})),
                "{name}: {env:?}"
            );
        }
        assert_eq!(
            out["events"]["preStart"],
            json!(["gl-tools-injector-command"])
        );
    }
}
