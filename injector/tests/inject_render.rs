//! `devfile inject` and `render`: the output is a valid devfile, parses back
//! into typed Kubernetes objects with nothing lost, the DevWorkspace
//! validates against its schema, and snapshots pin the exact output.

mod common;

use std::path::{Path, PathBuf};

use common::{devfiles_dir, run, schema_dir, stderr, stdout, write};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;
use workspace_injector::yaml;

const IMAGE: &str = "registry.example.com/workspace-injector:test";

fn sample() -> PathBuf {
    devfiles_dir().join("gitlab-docs__example-config.yaml")
}

fn accepted_devfiles() -> Vec<PathBuf> {
    let mut v = vec![
        sample(),
        devfiles_dir().join("gitlab-docs__default-devfile.yaml"),
    ];
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../devfile-samples");
    if let Ok(rd) = std::fs::read_dir(samples) {
        v.extend(
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml")),
        );
    }
    v
}

/// Compares with a file in tests/snapshots; `UPDATE_SNAPSHOTS=1` rewrites it.
fn snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
    assert!(
        expected == actual,
        "{name} differs from the snapshot; got:\n{actual}"
    );
}

#[test]
fn injected_devfiles_pass_relaxed_check() {
    let dir = tempfile::tempdir().unwrap();
    for f in accepted_devfiles() {
        for extra in [
            &[][..],
            &[
                "--project-url",
                "https://gitlab.example.com/g/app.git",
                "--project-ref",
                "main",
            ][..],
        ] {
            let mut args = vec!["devfile", "inject", f.to_str().unwrap()];
            args.extend_from_slice(extra);
            let o = run(&args);
            assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
            let out = write(dir.path(), "out.yaml", &stdout(&o));
            let c = run(&["devfile", "check", "--relaxed", out.to_str().unwrap()]);
            assert!(c.status.success(), "{}: {}", f.display(), stderr(&c));
            // And the GitLab mode refuses to take its own output as input.
            let c = run(&["devfile", "check", out.to_str().unwrap()]);
            assert!(stderr(&c).contains("starts with `gl-`"), "{}", stderr(&c));
        }
    }
}

#[test]
fn inject_wires_editor_daemon_and_tools() {
    let o = run(&[
        "devfile",
        "inject",
        sample().to_str().unwrap(),
        "--injector-image",
        IMAGE,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = yaml::load(&stdout(&o)).unwrap();
    let comps = d["components"].as_array().unwrap();
    for c in comps.iter().filter(|c| c.get("container").is_some()) {
        let mounts = c["container"]["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == "gl-workspace-data" && m["path"] == "/projects"),
            "{c}"
        );
    }
    let main = &comps[0]["container"];
    assert_eq!(main["args"][0], "exec \"${GL_TOOLS_DIR}/init_tools.sh\"");
    let ports: Vec<_> = main["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].clone(), e["targetPort"].clone()))
        .collect();
    assert!(ports.contains(&("editor-server".into(), 60001.into())));
    assert!(ports.contains(&("workspaced".into(), 60080.into())));
    assert!(comps
        .iter()
        .any(|c| c["name"] == "gl-tools-injector" && c["container"]["image"] == IMAGE));
    assert_eq!(d["events"]["preStart"][0], "gl-tools-injector-command");
    assert!(d["commands"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "gl-tools-injector-command"
            && c["apply"]["component"] == "gl-tools-injector"));
    let db_start = d["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "gl-workspaced-database-container")
        .unwrap();
    assert!(db_start["exec"]["commandLine"]
        .as_str()
        .unwrap()
        .contains("serve --listen 127.0.0.1:60081"));
    snapshot("inject.yaml", &stdout(&o));
}

#[test]
fn inject_refuses_a_devfile_that_fails_the_check() {
    let o = run(&[
        "devfile",
        "inject",
        devfiles_dir().join("registry__go.yaml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("`image` components are not supported"));
    assert!(stdout(&o).is_empty());
}

/// Every document parses into its typed struct and serializes back to the
/// very same value: no unknown field, nothing dropped.
fn typed_round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        doc,
        "round trip changed the object"
    );
    typed
}

fn render(format: &str) -> String {
    // A fixed token: without one `render` generates it, and the snapshot moves.
    let dir = tempfile::tempdir().unwrap();
    let vars = write(
        dir.path(),
        "vars.json",
        r#"[{"key":"workspaced_token","value":"snapshot-token","type":"file","source":"project"}]"#,
    );
    let o = run(&[
        "render",
        sample().to_str().unwrap(),
        "--name",
        "ws-1",
        "--namespace",
        "team-a",
        "--format",
        format,
        "--injector-image",
        IMAGE,
        "--project-url",
        "https://gitlab.example.com/g/app.git",
        "--variables",
        vars.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// The DevWorkspace among `render --format devworkspace`'s documents.
fn the_devworkspace(text: &str) -> Value {
    text.split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| yaml::load(d).unwrap())
        .find(|d| d["kind"] == "DevWorkspace")
        .expect("a DevWorkspace in the output")
}

#[test]
fn kubernetes_objects_parse_back_typed() {
    let text = render("kubernetes");
    let docs: Vec<Value> = text
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| yaml::load(d).unwrap())
        .collect();
    let kinds: Vec<_> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Secret",
            "Secret",
            "PersistentVolumeClaim",
            "NetworkPolicy",
            "Service",
            "Deployment"
        ]
    );
    for d in &docs {
        assert_eq!(d["metadata"]["namespace"], "team-a");
        match d["kind"].as_str().unwrap() {
            "ServiceAccount" => {
                let sa: ServiceAccount = typed_round_trip(d);
                assert_eq!(sa.automount_service_account_token, Some(false));
            }
            "PersistentVolumeClaim" => {
                let _: PersistentVolumeClaim = typed_round_trip(d);
            }
            "Secret" => {
                let _: Secret = typed_round_trip(d);
            }
            "NetworkPolicy" => {
                let np: NetworkPolicy = typed_round_trip(d);
                let spec = np.spec.unwrap();
                assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
                let from = &spec.ingress.unwrap()[0].from.clone().unwrap()[0];
                let ns = from
                    .namespace_selector
                    .clone()
                    .unwrap()
                    .match_labels
                    .unwrap();
                assert_eq!(ns["kubernetes.io/metadata.name"], "gitlab-workspaces");
            }
            "Service" => {
                let svc: Service = typed_round_trip(d);
                let ann = svc.metadata.annotations.unwrap();
                assert_eq!(
                    ann["workspaces.gitlab.com/host-template"],
                    "{{.port}}-ws-1.workspaces.localdev.me"
                );
            }
            "Deployment" => {
                let dep: Deployment = typed_round_trip(d);
                let pod = dep.spec.unwrap().template.spec.unwrap();
                let sc = pod.security_context.unwrap();
                assert_eq!(
                    (sc.run_as_non_root, sc.run_as_group, sc.fs_group),
                    (Some(true), Some(0), Some(0))
                );
                let inits: Vec<_> = pod
                    .init_containers
                    .unwrap()
                    .iter()
                    .map(|c| c.name.clone())
                    .collect();
                assert_eq!(inits, ["gl-tools-injector", "gl-project-cloner"]);
                let main = pod
                    .containers
                    .iter()
                    .find(|c| c.name == "tooling-container")
                    .unwrap();
                let live = main.liveness_probe.clone().unwrap().http_get.unwrap();
                let ready = main.readiness_probe.clone().unwrap().http_get.unwrap();
                assert_eq!(live.path.as_deref(), Some("/healthz"));
                assert_eq!(ready.path.as_deref(), Some("/readyz"));
                assert!(main.resources.clone().unwrap().requests.is_some());
                let env = main.env.clone().unwrap();
                let tmpl = env
                    .iter()
                    .find(|e| e.name == "GL_WORKSPACE_DOMAIN_TEMPLATE")
                    .unwrap();
                assert_eq!(
                    tmpl.value.as_deref(),
                    Some("${PORT}-ws-1.workspaces.localdev.me")
                );
                assert_eq!(pod.containers.len(), 2);
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    snapshot("kubernetes.yaml", &text);
}

#[test]
fn devworkspace_validates_against_its_schema() {
    let text = render("devworkspace");
    let dw = the_devworkspace(&text);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(schema_dir().join("dev-workspace-latest.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&dw)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(dw["apiVersion"], "workspace.devfile.io/v1alpha2");
    assert_eq!(dw["kind"], "DevWorkspace");
    // And the schema is not a rubber stamp: a wrong type is refused.
    let mut bad = dw.clone();
    bad["spec"]["started"] = Value::String("yes".into());
    assert!(!validator.is_valid(&bad));
    snapshot("devworkspace.yaml", &text);

    // Every accepted devfile (the samples included) renders a valid one.
    for f in accepted_devfiles() {
        let o = run(&[
            "render",
            f.to_str().unwrap(),
            "--name",
            "w",
            "--namespace",
            "n",
            "--format",
            "devworkspace",
        ]);
        assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
        let dw = the_devworkspace(&stdout(&o));
        let errors: Vec<String> = validator
            .iter_errors(&dw)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", f.display());
        let o = run(&[
            "render",
            f.to_str().unwrap(),
            "--name",
            "w",
            "--namespace",
            "n",
        ]);
        assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
    }
}

#[test]
fn render_rejects_a_bad_name_with_usage_error() {
    let o = run(&[
        "render",
        sample().to_str().unwrap(),
        "--name",
        "Bad_Name",
        "--namespace",
        "ns",
    ]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(stderr(&o).trim_end().lines().count(), 1);
}
