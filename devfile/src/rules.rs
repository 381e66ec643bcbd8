//! The platform's devfile restrictions (INJECTION.md, "Devfile
//! restrictions"), as pure functions over the parsed devfile.

use serde_json::{Map, Value};

use super::Finding;

/// The attribute that marks the component the editor is injected into.
pub const INJECT_EDITOR: &str = "gl/inject-editor";
/// Ports the injection itself takes; a devfile endpoint may not use them.
pub const RESERVED_PORTS: &[(u64, &str)] = &[
    (60001, "the editor server (GL_VSCODE_PORT)"),
    (60022, "sshd (GL_SSH_PORT)"),
    (60080, "workspaced (WORKSPACED_PORT)"),
];
/// Ports 60081.. are taken by the daemons of the other containers.
pub const CONTAINER_DAEMON_PORTS: std::ops::RangeInclusive<u64> = 60081..=60099;

const MAX_VOLUME_NAME: usize = 27;
const EXEC_ALLOWED: &[&str] = &[
    "commandLine",
    "component",
    "label",
    "workingDir",
    "hotReloadCapable",
];
const CONTAINER_FORBIDDEN: &[&str] = &["dedicatedPod", "sourceMapping", "mountSources"];
const OVERRIDE_ATTRIBUTES: &[&str] = &["pod-overrides", "container-overrides"];

/// True when the schema version is one this platform runs (2.2.x).
pub fn is_supported_version(v: &str) -> bool {
    let mut parts = v.split('.');
    parts.next() == Some("2")
        && parts.next() == Some("2")
        && parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_none()
}

/// Every restriction the devfile breaks, in document order.
pub fn check(devfile: &Value) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut f = |path: String, message: String| out.push(Finding { path, message });
    let Value::Object(root) = devfile else {
        f(String::new(), "the devfile must be a YAML mapping".into());
        return out;
    };

    match root.get("schemaVersion") {
        Some(Value::String(v)) if is_supported_version(v) => {}
        Some(Value::String(v)) => f(
            "schemaVersion".into(),
            format!("version {v} is not supported; allowed: 2.2.x"),
        ),
        Some(other) => f(
            "schemaVersion".into(),
            format!("must be a string such as \"2.2.0\", found {other}; allowed: 2.2.x"),
        ),
        None => f("schemaVersion".into(), "is missing; allowed: 2.2.x".into()),
    }
    if root.contains_key("parent") {
        f(
            "parent".into(),
            "parent devfiles are not supported; allowed: a self-contained devfile".into(),
        );
    }
    for key in ["projects", "starterProjects"] {
        if root.contains_key(key) {
            f(
                key.into(),
                format!("`{key}` is not supported; the platform clones the workspace's project"),
            );
        }
    }
    check_override_attributes(root.get("attributes"), "attributes", &mut f);

    if let Some(Value::Object(vars)) = root.get("variables") {
        for name in vars.keys() {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("gl-") || lower.starts_with("gl_") {
                f(
                    format!("variables.{name}"),
                    "variable names starting with `gl-` or `gl_` (any case) are reserved".into(),
                );
            }
        }
    }

    let mut editors = Vec::new();
    if let Some(Value::Array(components)) = root.get("components") {
        for (i, c) in components.iter().enumerate() {
            let path = format!("components[{i}]");
            check_component(c, &path, &mut f);
            if c.pointer("/attributes/gl~1inject-editor") == Some(&Value::Bool(true)) {
                editors.push((path, c.get("container").is_some()));
            }
        }
    }
    match editors.as_slice() {
        [] => f(
            "components".into(),
            format!(
                "no component has the attribute `{INJECT_EDITOR}: true`; allowed: exactly one container component with it"
            ),
        ),
        [(path, is_container)] => {
            if !is_container {
                f(
                    format!("{path}.attributes.{INJECT_EDITOR}"),
                    "is set on a component that is not a container; allowed: a container component".into(),
                );
            }
        }
        many => {
            for (path, _) in &many[1..] {
                f(
                    format!("{path}.attributes.{INJECT_EDITOR}"),
                    format!(
                        "is set on {} components; allowed: exactly one (first at {})",
                        many.len(),
                        many[0].0
                    ),
                );
            }
        }
    }

    if let Some(Value::Array(commands)) = root.get("commands") {
        for (i, c) in commands.iter().enumerate() {
            check_command(c, &format!("commands[{i}]"), &mut f);
        }
    }

    if let Some(Value::Object(events)) = root.get("events") {
        for (kind, entries) in events {
            let path = format!("events.{kind}");
            match kind.as_str() {
                "preStart" | "postStart" => {
                    if let Value::Array(entries) = entries {
                        for (i, e) in entries.iter().enumerate() {
                            if e.as_str().is_some_and(|s| s.starts_with("gl-")) {
                                f(
                                    format!("{path}[{i}]"),
                                    "event entries starting with `gl-` are reserved".into(),
                                );
                            }
                        }
                    }
                }
                "preStop" | "postStop" if entries.as_array().is_some_and(|a| !a.is_empty()) => {
                    f(
                        path,
                        format!("`{kind}` events are not supported; allowed: preStart, postStart"),
                    );
                }
                _ => {}
            }
        }
    }
    out
}

fn check_override_attributes(
    attrs: Option<&Value>,
    path: &str,
    f: &mut impl FnMut(String, String),
) {
    if let Some(Value::Object(attrs)) = attrs {
        for key in OVERRIDE_ATTRIBUTES {
            if attrs.contains_key(*key) {
                f(
                    format!("{path}.{key}"),
                    format!("the `{key}` attribute is not supported"),
                );
            }
        }
    }
}

fn check_name(
    c: &Map<String, Value>,
    key: &str,
    path: &str,
    what: &str,
    f: &mut impl FnMut(String, String),
) {
    if let Some(Value::String(name)) = c.get(key) {
        if name.starts_with("gl-") {
            f(
                format!("{path}.{key}"),
                format!("{what} `{name}` starts with `gl-`, which is reserved for the platform"),
            );
        }
    }
}

fn check_component(c: &Value, path: &str, f: &mut impl FnMut(String, String)) {
    let Value::Object(c) = c else {
        f(path.into(), "a component must be a mapping".into());
        return;
    };
    check_name(c, "name", path, "component name", f);
    check_override_attributes(c.get("attributes"), &format!("{path}.attributes"), f);
    for kind in ["kubernetes", "openshift", "image", "plugin", "custom"] {
        if c.contains_key(kind) {
            f(
                format!("{path}.{kind}"),
                format!("`{kind}` components are not supported; allowed: container, volume"),
            );
        }
    }
    if let Some(Value::Object(container)) = c.get("container") {
        let cpath = format!("{path}.container");
        for key in CONTAINER_FORBIDDEN {
            if container.contains_key(*key) {
                f(
                    format!("{cpath}.{key}"),
                    format!("the container field `{key}` is not supported"),
                );
            }
        }
        check_override_attributes(
            container.get("attributes"),
            &format!("{cpath}.attributes"),
            f,
        );
        if let Some(Value::Array(endpoints)) = container.get("endpoints") {
            for (j, e) in endpoints.iter().enumerate() {
                let epath = format!("{cpath}.endpoints[{j}]");
                let Value::Object(e) = e else { continue };
                check_name(e, "name", &epath, "endpoint name", f);
                check_port(e.get("targetPort"), &format!("{epath}.targetPort"), f);
            }
        }
    }
    if c.contains_key("volume") {
        if let Some(Value::String(name)) = c.get("name") {
            if name.chars().count() > MAX_VOLUME_NAME {
                f(
                    format!("{path}.name"),
                    format!(
                        "volume name `{name}` has {} characters; allowed: at most {MAX_VOLUME_NAME}",
                        name.chars().count()
                    ),
                );
            }
        }
    }
}

fn check_port(port: Option<&Value>, path: &str, f: &mut impl FnMut(String, String)) {
    let Some(port) = port.and_then(Value::as_u64) else {
        return;
    };
    if let Some((_, owner)) = RESERVED_PORTS.iter().find(|(p, _)| *p == port) {
        f(
            path.into(),
            format!("port {port} is reserved for {owner}; allowed: any port outside 60001, 60022 and 60080-60099"),
        );
    } else if CONTAINER_DAEMON_PORTS.contains(&port) {
        f(
            path.into(),
            format!("port {port} is reserved for the daemons of other containers; allowed: any port outside 60001, 60022 and 60080-60099"),
        );
    }
}

fn check_command(c: &Value, path: &str, f: &mut impl FnMut(String, String)) {
    let Value::Object(c) = c else {
        f(path.into(), "a command must be a mapping".into());
        return;
    };
    check_name(c, "id", path, "command id", f);
    for kind in ["composite", "custom", "vscodeTask", "vscodeLaunch"] {
        if c.contains_key(kind) {
            f(
                format!("{path}.{kind}"),
                format!("`{kind}` commands are not supported; allowed: exec, apply"),
            );
        }
    }
    if let Some(Value::Object(exec)) = c.get("exec") {
        for (key, value) in exec {
            let fpath = format!("{path}.exec.{key}");
            if !EXEC_ALLOWED.contains(&key.as_str()) {
                f(
                    fpath,
                    format!("the exec field `{key}` is not supported; allowed: commandLine, component, label, workingDir, hotReloadCapable: false"),
                );
            } else if key == "hotReloadCapable" && value != &Value::Bool(false) {
                f(
                    fpath,
                    format!("must be false, found {value}; allowed: hotReloadCapable: false"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "schemaVersion": "2.2.0",
            "components": [
                {"name": "tooling", "attributes": {"gl/inject-editor": true},
                 "container": {"image": "alpine", "endpoints": [{"name": "http", "targetPort": 3000}]}},
                {"name": "data", "volume": {}}
            ],
            "commands": [{"id": "build", "exec": {"component": "tooling", "commandLine": "make"}}],
            "events": {"postStart": ["build"]}
        })
    }

    fn messages(d: &Value) -> Vec<String> {
        check(d).into_iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn accepts_a_good_devfile() {
        assert_eq!(messages(&base()), Vec::<String>::new());
    }

    #[test]
    fn versions() {
        assert!(is_supported_version("2.2.0"));
        assert!(is_supported_version("2.2.12"));
        assert!(!is_supported_version("2.3.0"));
        assert!(!is_supported_version("2.2"));
        assert!(!is_supported_version("2.2.x"));
    }

    #[test]
    fn reserved_port_names_the_field() {
        let mut d = base();
        d["components"][0]["container"]["endpoints"][0]["targetPort"] = json!(60080);
        assert_eq!(
            messages(&d),
            vec!["components[0].container.endpoints[0].targetPort: port 60080 is reserved for workspaced (WORKSPACED_PORT); allowed: any port outside 60001, 60022 and 60080-60099"]
        );
    }

    #[test]
    fn variable_prefix_any_case() {
        let mut d = base();
        d["variables"] = json!({"GL_x": "1", "Gl-y": "2", "glz": "3"});
        assert_eq!(check(&d).len(), 2);
    }

    #[test]
    fn two_editors() {
        let mut d = base();
        d["components"][1] = json!({"name": "b", "attributes": {"gl/inject-editor": true}, "container": {"image": "x"}});
        assert_eq!(
            messages(&d),
            vec!["components[1].attributes.gl/inject-editor: is set on 2 components; allowed: exactly one (first at components[0])"]
        );
    }
}
