//! `render`'s other inputs (INJECTION.md, "What the platform decides"):
//! classes and vertical scaling, variables and their Secrets, timeouts, the
//! exposure cap, the operator's config, and every output validated strictly
//! against the Kubernetes API's OpenAPI schemas (`kubernetes-validate`) and
//! the DevWorkspace CRDs' schemas.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::{run, stderr, stdout, write};
use serde_json::{json, Value};
use workspace_injector::yaml;

/// The Kubernetes versions the project targets (k8s-openapi's `v1_33` and
/// the two before it).
const KUBERNETES_VERSIONS: &[&str] = &["1.31.0", "1.32.0", "1.33.0"];
const CLASSES: &[&str] = &["small", "medium", "large", "xlarge"];

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../devfile-samples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 5, "the samples are there");
    v
}

fn docs(text: &str) -> Vec<Value> {
    text.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| yaml::load(d).unwrap())
        .collect()
}

fn render_ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

fn render_args<'a>(file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["render", file, "--name", "ws", "--namespace", "team"];
    v.extend_from_slice(extra);
    v
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn pod(docs: &[Value]) -> &Value {
    &kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
}

fn container<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    let pod = pod(docs);
    pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["initContainers"].as_array().unwrap())
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

#[test]
fn each_class_lands_its_limits_on_the_containers_without_their_own() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../devfile-samples/multi-container-postgres.devfile.yaml");
    let f = file.to_str().unwrap();
    for (class, cpu, storage) in [
        ("small", "2", "10Gi"),
        ("medium", "4", "20Gi"),
        ("large", "8", "50Gi"),
        ("xlarge", "16", "100Gi"),
    ] {
        let out = docs(&render_ok(&render_args(f, &["--class", class])));
        // tooling sets memoryLimit 2Gi itself, postgres 1Gi: those stay; the
        // CPU limits (which neither sets) are the class's.
        let tooling = &container(&out, "tooling")["resources"];
        assert_eq!(tooling["limits"]["memory"], "2Gi", "{class}");
        assert_eq!(tooling["limits"]["cpu"], cpu, "{class}");
        let pg = &container(&out, "postgres")["resources"];
        assert_eq!(pg["limits"]["memory"], "1Gi", "{class}");
        assert_eq!(pg["limits"]["cpu"], cpu, "{class}");
        assert!(tooling["requests"]["cpu"].is_string());
        let data = kind(&out, "PersistentVolumeClaim")
            .into_iter()
            .find(|p| p["metadata"]["name"] == "ws-data")
            .unwrap();
        assert_eq!(data["spec"]["resources"]["requests"]["storage"], storage);
    }
    // A container without any limit gets the class's memory too.
    let dir = tempfile::tempdir().unwrap();
    let bare = write(
        dir.path(),
        "bare.yaml",
        "schemaVersion: 2.2.0\ncomponents:\n- name: dev\n  attributes:\n    gl/inject-editor: true\n  container:\n    image: alpine\n",
    );
    for (class, cpu, memory) in [("small", "2", "1Gi"), ("large", "8", "4Gi")] {
        let out = docs(&render_ok(&render_args(
            bare.to_str().unwrap(),
            &["--class", class],
        )));
        let lim = &container(&out, "dev")["resources"]["limits"];
        assert_eq!(
            (lim["cpu"].as_str(), lim["memory"].as_str()),
            (Some(cpu), Some(memory))
        );
    }
}

#[test]
fn a_pod_over_the_class_maximum_is_refused_with_the_figures() {
    let dir = tempfile::tempdir().unwrap();
    let big = write(
        dir.path(),
        "big.yaml",
        "schemaVersion: 2.2.0\ncomponents:\n- name: dev\n  attributes:\n    gl/inject-editor: true\n  container:\n    image: alpine\n    memoryLimit: 3Gi\n- name: db\n  container:\n    image: postgres\n    memoryLimit: 2Gi\n    cpuLimit: '3'\n",
    );
    let o = run(&render_args(big.to_str().unwrap(), &["--class", "small"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for needed in [
        "dev: 2 CPU and 3Gi",
        "db: 3 CPU and 2Gi",
        "5 CPU and 5Gi",
        "small",
        "4 CPU and 4Gi",
    ] {
        assert!(err.contains(needed), "{needed:?} missing from: {err}");
    }
    assert!(stdout(&o).is_empty(), "nothing printed on a refusal");
    // The same devfile fits a larger class.
    render_ok(&render_args(big.to_str().unwrap(), &["--class", "medium"]));
    // An unknown class is bad usage naming the allowed ones.
    let o = run(&render_args(big.to_str().unwrap(), &["--class", "huge"]));
    assert_eq!(o.status.code(), Some(64));
    assert!(
        stderr(&o).contains("small, medium, large, xlarge"),
        "{}",
        stderr(&o)
    );
}

/// Every JSON pointer at which two values differ.
fn diff(a: &Value, b: &Value, at: String, out: &mut BTreeSet<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                diff(va, vb, format!("{at}/{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(va, vb, format!("{at}/{i}"), out);
            }
        }
        _ if a != b => {
            out.insert(at);
        }
        _ => {}
    }
}

#[test]
fn a_bigger_class_keeps_the_volume_grows_it_and_changes_only_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let vars = write(
        dir.path(),
        "vars.json",
        r#"[{"key":"workspaced_token","value":"fixed-token","type":"file","source":"project"}]"#,
    );
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../devfile-samples/nodejs.devfile.yaml");
    let f = file.to_str().unwrap();
    let v = vars.to_str().unwrap();
    let small = docs(&render_ok(&render_args(
        f,
        &["--class", "small", "--variables", v],
    )));
    let large = docs(&render_ok(&render_args(
        f,
        &["--class", "large", "--variables", v],
    )));
    assert_eq!(small.len(), large.len());
    let mut changed = BTreeSet::new();
    for (i, (a, b)) in small.iter().zip(&large).enumerate() {
        assert_eq!(
            a["metadata"]["name"], b["metadata"]["name"],
            "the same objects, the same names"
        );
        diff(
            a,
            b,
            format!("{i}:{}", a["kind"].as_str().unwrap()),
            &mut changed,
        );
    }
    assert!(!changed.is_empty());
    for path in &changed {
        let allowed = path.contains(":PersistentVolumeClaim/spec/resources/requests/storage")
            || (path.contains(":Deployment/spec/template/spec/") && path.contains("/resources/"));
        assert!(allowed, "re-rendering with a bigger class changed {path}");
    }
    let size = |d: &[Value]| {
        kind(d, "PersistentVolumeClaim")
            .into_iter()
            .find(|p| p["metadata"]["name"] == "ws-data")
            .unwrap()["spec"]["resources"]["requests"]["storage"]
            .clone()
    };
    assert_eq!((size(&small), size(&large)), (json!("10Gi"), json!("50Gi")));
    // Back to a smaller class with the volume's current size: it never shrinks.
    let back = docs(&render_ok(&render_args(
        f,
        &[
            "--class",
            "small",
            "--variables",
            v,
            "--min-storage",
            "50Gi",
        ],
    )));
    assert_eq!(size(&back), json!("50Gi"));
    assert_eq!(
        container(&back, "tooling")["resources"]["limits"]["cpu"],
        "2"
    );
}

fn secret_data(docs: &[Value], name: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let s = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Secret {name}"));
    s["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            (k.clone(), bytes)
        })
        .collect()
}

#[test]
fn variables_follow_precedence_and_live_only_in_the_secrets() {
    let dir = tempfile::tempdir().unwrap();
    // Distinct values, one with newlines and control and non-ASCII bytes.
    let multi = "line one\nline two\r\n\u{0}\u{1}\u{7f}\u{ff}é€😀 end";
    let list = json!([
        {"key": "API_KEY", "value": "user-VALUE-aaaa", "type": "env", "source": "user"},
        {"key": "API_KEY", "value": "project-VALUE-bbbb", "type": "env", "source": "project"},
        {"key": "API_KEY", "value": "group-VALUE-cccc", "type": "env", "source": "group"},
        {"key": "API_KEY", "value": "file-VALUE-dddd", "type": "file", "source": "user"},
        {"key": "ONLY_GROUP", "value": "group-VALUE-eeee", "type": "env", "source": "group"},
        {"key": "cert.pem", "value": multi, "type": "file", "source": "group"},
        {"key": "workspaced_token", "value": "token-VALUE-ffff", "type": "file", "source": "project"},
    ]);
    let vars = write(dir.path(), "vars.json", &list.to_string());
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../devfile-samples/python.devfile.yaml");
    let values: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    for format in ["kubernetes", "devworkspace"] {
        let text = render_ok(&render_args(
            sample.to_str().unwrap(),
            &["--variables", vars.to_str().unwrap(), "--format", format],
        ));
        let out = docs(&text);
        let env = secret_data(&out, "ws-env");
        assert_eq!(
            env["API_KEY"], b"project-VALUE-bbbb",
            "project beats group beats user"
        );
        assert_eq!(env["ONLY_GROUP"], b"group-VALUE-eeee");
        assert_eq!(env.len(), 2);
        let file = secret_data(&out, "ws-file");
        assert_eq!(
            file["API_KEY"], b"file-VALUE-dddd",
            "env and file of a key are independent"
        );
        assert_eq!(
            file["cert.pem"],
            multi.as_bytes(),
            "newlines and binary bytes kept exactly"
        );
        assert_eq!(file["workspaced_token"], b"token-VALUE-ffff");
        // No value in the clear anywhere, and each encoded value only in a Secret's data.
        for v in &values {
            assert!(!text.contains(v), "{format}: a value appears in the clear");
            let first_line = v.lines().next().unwrap();
            assert!(
                !text.contains(first_line),
                "{format}: part of a value appears"
            );
        }
        let mut without_secrets = out.clone();
        without_secrets.retain(|d| d["kind"] != "Secret");
        let rest = serde_json::to_string(&without_secrets).unwrap();
        for v in &values {
            let b64 = base64::engine::general_purpose::STANDARD.encode(v);
            assert!(
                !rest.contains(&b64),
                "{format}: an encoded value outside the Secrets"
            );
        }
        if format == "kubernetes" {
            // Loaded and mounted in every container.
            let pod = pod(&out);
            for c in pod["containers"]
                .as_array()
                .unwrap()
                .iter()
                .chain(pod["initContainers"].as_array().unwrap())
            {
                assert_eq!(
                    c["envFrom"][0]["secretRef"]["name"], "ws-env",
                    "{}",
                    c["name"]
                );
            }
            for c in pod["containers"].as_array().unwrap() {
                let mounts = c["volumeMounts"].as_array().unwrap();
                assert!(
                    mounts
                        .iter()
                        .any(|m| m["mountPath"] == "/.workspace-data/variables/file"
                            && m["readOnly"] == true),
                    "{}",
                    c["name"]
                );
            }
            let vol = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["secret"]["secretName"] == "ws-file")
                .unwrap();
            assert_eq!(vol["secret"]["defaultMode"], 0o440);
        } else {
            let s = out
                .iter()
                .find(|d| d["metadata"]["name"] == "ws-file")
                .unwrap();
            assert_eq!(
                s["metadata"]["annotations"]["controller.devfile.io/mount-path"],
                "/.workspace-data/variables/file"
            );
            let s = out
                .iter()
                .find(|d| d["metadata"]["name"] == "ws-env")
                .unwrap();
            assert_eq!(
                s["metadata"]["annotations"]["controller.devfile.io/mount-as"],
                "env"
            );
        }
    }

    // Bad keys: exit 1 naming the key; no value in the message.
    for (key, kind) in [
        ("GL_TOKEN", "env"),
        ("1X", "env"),
        ("a/b", "file"),
        ("..", "file"),
        ("WORKSPACED_TOKEN", "env"),
        ("PROJECTS_ROOT", "env"),
    ] {
        let mut bad = list.clone();
        bad.as_array_mut()
            .unwrap()
            .push(json!({"key": key, "value": "bad-VALUE-gggg", "type": kind, "source": "user"}));
        let f = write(dir.path(), "bad.json", &bad.to_string());
        let o = run(&render_args(
            sample.to_str().unwrap(),
            &["--variables", f.to_str().unwrap()],
        ));
        assert_eq!(o.status.code(), Some(1), "{key}");
        let err = stderr(&o);
        assert!(err.contains(key), "{key}: {err}");
        assert!(stdout(&o).is_empty());
        for v in values.iter().chain(std::iter::once(&"bad-VALUE-gggg")) {
            assert!(
                !err.contains(v.lines().next().unwrap()),
                "{key}: a value in the error: {err}"
            );
        }
    }
    // A value of the wrong type is named by its key, never shown.
    let f = write(
        dir.path(),
        "bad.json",
        r#"[{"key":"N","value":123456789,"type":"env","source":"user"}]"#,
    );
    let o = run(&render_args(
        sample.to_str().unwrap(),
        &["--variables", f.to_str().unwrap()],
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(!stderr(&o).contains("123456789"), "{}", stderr(&o));

    // Without --variables the daemon's token is generated, and differs each time.
    let a = secret_data(
        &docs(&render_ok(&render_args(sample.to_str().unwrap(), &[]))),
        "ws-file",
    );
    let b = secret_data(
        &docs(&render_ok(&render_args(sample.to_str().unwrap(), &[]))),
        "ws-file",
    );
    assert!(a["workspaced_token"].len() >= 32);
    assert_ne!(a["workspaced_token"], b["workspaced_token"]);
}

#[test]
fn an_endpoint_above_the_visibility_cap_is_refused_by_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "exposed.yaml",
        "schemaVersion: 2.2.0\ncomponents:\n- name: dev\n  attributes:\n    gl/inject-editor: true\n  container:\n    image: alpine\n    endpoints:\n    - {name: web, targetPort: 3000}\n    - {name: api, targetPort: 8080, exposure: public}\n",
    );
    let fs = f.to_str().unwrap();
    for args in [
        vec!["devfile", "check", fs, "--max-visibility", "internal"],
        render_args(fs, &["--max-visibility", "internal"]),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains("components[0].container.endpoints[1]"),
            "{err}"
        );
        assert!(err.contains("\"api\""), "{err}");
        assert!(
            !err.contains("endpoints[0]"),
            "the default exposure is lowered, not refused: {err}"
        );
    }
    // Under `public` it passes; under `internal` a devfile without explicit
    // exposure renders with its endpoint lowered and the daemon capped.
    let ok = write(
        dir.path(),
        "ok.yaml",
        "schemaVersion: 2.2.0\ncomponents:\n- name: dev\n  attributes:\n    gl/inject-editor: true\n  container:\n    image: alpine\n    endpoints:\n    - {name: web, targetPort: 3000}\n",
    );
    let out = docs(&render_ok(&render_args(
        ok.to_str().unwrap(),
        &["--max-visibility", "internal", "--format", "devworkspace"],
    )));
    let dw = kind(&out, "DevWorkspace")[0];
    let dev = &dw["spec"]["template"]["components"][0]["container"];
    let web = dev["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "web")
        .unwrap();
    assert_eq!(web["exposure"], "internal");
    let env = dev["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "WORKSPACED_MAX_VISIBILITY" && e["value"] == "internal"));
    let o = run(&["devfile", "check", fs]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn timeouts_reach_the_daemon_and_a_devfile_may_only_shorten_them() {
    let dir = tempfile::tempdir().unwrap();
    let devfile = |attrs: &str| {
        format!("schemaVersion: 2.2.0\nattributes:\n{attrs}components:\n- name: dev\n  attributes:\n    gl/inject-editor: true\n  container:\n    image: alpine\n")
    };
    let short = write(
        dir.path(),
        "short.yaml",
        &devfile("  workspaced/idle-timeout: 10m\n"),
    );
    let out = docs(&render_ok(&render_args(
        short.to_str().unwrap(),
        &[
            "--idle-timeout",
            "1h",
            "--max-active",
            "12h",
            "--idle-webhook",
            "https://control.example.com/ws/idle",
        ],
    )));
    let env = container(&out, "dev")["env"].as_array().unwrap().clone();
    let get = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .map(|e| e["value"].clone())
    };
    assert_eq!(get("WORKSPACED_IDLE_TIMEOUT"), Some(json!("1h")));
    assert_eq!(get("WORKSPACED_MAX_ACTIVE"), Some(json!("12h")));
    assert_eq!(
        get("GL_WORKSPACE_IDLE_WEBHOOK"),
        Some(json!("https://control.example.com/ws/idle"))
    );

    for (attrs, name) in [
        (
            "  workspaced/idle-timeout: 2h\n",
            "attributes.workspaced/idle-timeout",
        ),
        (
            "  workspaced/max-active: 48h\n",
            "attributes.workspaced/max-active",
        ),
        (
            "  workspaced/idle-timeout: soon\n",
            "attributes.workspaced/idle-timeout",
        ),
        (
            "  workspaced/max-active: [1]\n",
            "attributes.workspaced/max-active",
        ),
    ] {
        let f = write(dir.path(), "long.yaml", &devfile(attrs));
        for args in [
            vec!["devfile", "check", f.to_str().unwrap()],
            render_args(f.to_str().unwrap(), &[]),
        ] {
            let o = run(&args);
            assert_eq!(o.status.code(), Some(1), "{attrs} {args:?}");
            assert!(stderr(&o).contains(name), "{attrs}: {}", stderr(&o));
        }
    }
    // A platform level of 1h allows 45m but not 2h; check takes the same flags.
    let f = write(
        dir.path(),
        "mid.yaml",
        &devfile("  workspaced/idle-timeout: 45m\n"),
    );
    assert!(run(&[
        "devfile",
        "check",
        f.to_str().unwrap(),
        "--idle-timeout",
        "1h"
    ])
    .status
    .success());
    assert_eq!(
        run(&[
            "devfile",
            "check",
            f.to_str().unwrap(),
            "--idle-timeout",
            "30m"
        ])
        .status
        .code(),
        Some(1)
    );
    // Bad flags are bad usage.
    for bad in [
        ["--idle-timeout", "soon"],
        ["--max-active", "0"],
        ["--idle-webhook", "ftp://x"],
        ["--max-visibility", "world"],
    ] {
        let o = run(&render_args(short.to_str().unwrap(), &bad));
        assert_eq!(o.status.code(), Some(64), "{bad:?}");
    }
}

/// A CRD's openAPIV3Schema made strict as the API server's strict field
/// validation is: an object that lists its properties takes no others.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            let preserve =
                o.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if o.contains_key("properties") && !o.contains_key("additionalProperties") && !preserve
            {
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
            for v in o.values_mut() {
                strict(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strict),
        _ => {}
    }
}

fn crd_validator(file: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas/crds")
        .join(file);
    let mut schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    strict(&mut schema);
    jsonschema::draft7::new(&schema).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

fn kubernetes_validate(files: &[PathBuf]) -> String {
    let mut report = String::new();
    for version in KUBERNETES_VERSIONS {
        let o = Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", version])
            .args(files)
            .output()
            .expect("kubernetes-validate (pip install kubernetes-validate; scripts/test.sh does)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "kubernetes {version}: {text}");
        assert!(
            !text.contains("ERROR") && !text.contains("failed"),
            "kubernetes {version}: {text}"
        );
        report += &text;
    }
    report
}

#[test]
fn every_output_is_valid_against_the_api_schemas_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let dw = crd_validator("devworkspace-v1alpha2.json");
    let dwoc = crd_validator("devworkspaceoperatorconfig-v1alpha1.json");
    let vars = write(
        dir.path(),
        "vars.json",
        r#"[{"key":"NPM_TOKEN","value":"x","type":"env","source":"group"},{"key":"id_rsa","value":"k\n","type":"file","source":"user"}]"#,
    );
    let mut k8s_files = Vec::new();
    for sample in samples() {
        let stem = sample.file_stem().unwrap().to_string_lossy().into_owned();
        for class in CLASSES {
            let args = |format: &'static str| {
                vec![
                    "render".to_owned(),
                    sample.to_str().unwrap().to_owned(),
                    "--name".into(),
                    "ws".into(),
                    "--namespace".into(),
                    "team".into(),
                    "--class".into(),
                    (*class).into(),
                    "--variables".into(),
                    vars.to_str().unwrap().to_owned(),
                    "--idle-webhook".into(),
                    "https://c.example.com/idle".into(),
                    "--project-url".into(),
                    "https://gitlab.example.com/g/p.git".into(),
                    "--format".into(),
                    format.into(),
                ]
            };
            let a = args("kubernetes");
            let text = render_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
            let path = dir.path().join(format!("{stem}-{class}.yaml"));
            std::fs::write(&path, &text).unwrap();
            k8s_files.push(path);

            let a = args("devworkspace");
            let out = docs(&render_ok(
                &a.iter().map(String::as_str).collect::<Vec<_>>(),
            ));
            let objects = kind(&out, "DevWorkspace");
            assert_eq!(objects.len(), 1);
            assert_valid(&dw, objects[0], &format!("{stem} {class} DevWorkspace"));
            assert_eq!(
                objects[0]["spec"]["template"]["attributes"]["controller.devfile.io/storage-type"],
                "per-workspace"
            );
            // The Secrets beside it are Kubernetes objects: validated below.
            let secrets: Vec<Value> = out
                .iter()
                .filter(|d| d["kind"] == "Secret")
                .cloned()
                .collect();
            assert_eq!(secrets.len(), 2);
            let path = dir.path().join(format!("{stem}-{class}-dw-secrets.yaml"));
            std::fs::write(&path, yaml::to_multi_doc(&secrets)).unwrap();
            k8s_files.push(path);
        }
    }
    for class in CLASSES {
        let o = render_ok(&[
            "render",
            "--format",
            "operator-config",
            "--namespace",
            "devworkspace-controller",
            "--class",
            class,
            "--idle-timeout",
            "45m",
        ]);
        let cfg = yaml::load(&o).unwrap();
        assert_valid(&dwoc, &cfg, &format!("operator-config {class}"));
        assert_eq!(cfg["config"]["workspace"]["idleTimeout"], "45m");
    }
    let cfg = yaml::load(&render_ok(&[
        "render",
        "--format",
        "operator-config",
        "--namespace",
        "n",
    ]))
    .unwrap();
    assert_eq!(
        cfg["config"]["workspace"]["defaultStorageSize"]["perWorkspace"],
        "10Gi"
    );
    assert_eq!(cfg["config"]["workspace"]["idleTimeout"], "30m");

    // The schemas are no rubber stamp: an unknown field is refused by each.
    let mut bad = yaml::load(&render_ok(&[
        "render",
        "--format",
        "operator-config",
        "--namespace",
        "n",
    ]))
    .unwrap();
    bad["config"]["workspace"]["idleTimeOut"] = json!("1m");
    assert!(!dwoc.is_valid(&bad));
    let bad_k8s = dir.path().join("bad.yaml");
    let mut text = std::fs::read_to_string(&k8s_files[0]).unwrap();
    text = text.replacen(
        "automountServiceAccountToken: false",
        "automountServiceAccountToken: false\nautomountToken: true",
        1,
    );
    std::fs::write(&bad_k8s, text).unwrap();
    let o = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .arg(&bad_k8s)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "kubernetes-validate --strict refuses an unknown field"
    );

    let report = kubernetes_validate(&k8s_files);
    for kind in [
        "deployment",
        "service",
        "persistentvolumeclaim",
        "networkpolicy",
        "serviceaccount",
        "secret",
    ] {
        assert!(
            report.contains(&format!("resource {kind}/")),
            "{kind} validated: {report}"
        );
    }
    if let Ok(path) = std::env::var("RENDER_VALIDATION_REPORT") {
        std::fs::write(path, report).unwrap();
    }
}
