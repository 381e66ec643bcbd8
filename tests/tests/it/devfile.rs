//! The daemon reads a devfile exactly as `workspace-injector devfile check`
//! does (one crate, `devfile/`): for every sample, and for devfiles whose
//! endpoint names and attributes come from `{{variables}}`, the ports it lists
//! are the endpoints the checker read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use integration_tests::TestDaemon;

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../devfile-samples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

/// (name, port, visibility) as the devfile crate reads them.
fn expected(text: &str) -> BTreeSet<(String, u64, String)> {
    let value = devfile::parse(text).expect("the sample parses");
    let (endpoints, findings) = devfile::model::endpoints(&value);
    assert!(findings.is_empty(), "{findings:?}");
    let mut seen = BTreeSet::new();
    endpoints
        .into_iter()
        .filter(|e| seen.insert(e.port))
        .map(|e| {
            let exposure = e.effective_exposure().as_str().to_owned();
            (e.name, u64::from(e.port), exposure)
        })
        .collect()
}

async fn listed(text: &str) -> BTreeSet<(String, u64, String)> {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join(".devfile.yaml"), text).unwrap();
    let d = TestDaemon::builder().workspace(ws).start();
    let ports = d.get_json("/api/v1/ports").await;
    ports
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["source"] == "devfile")
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["port"].as_u64().unwrap(),
                p["visibility"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_daemon_lists_the_endpoints_the_checker_read() {
    let mut checked = 0;
    for sample in samples() {
        let text = std::fs::read_to_string(&sample).unwrap();
        let want = expected(&text);
        assert_eq!(listed(&text).await, want, "{}", sample.display());
        checked += want.len();
    }
    assert!(checked >= 5, "the samples declare endpoints");

    // Variables in names and attributes: substituted, as `devfile check` does.
    let text = "schemaVersion: 2.2.0\nvariables:\n  svc: web\n  t: 10m\nattributes:\n  workspaced/idle-timeout: '{{t}}'\ncomponents:\n- name: dev\n  container:\n    image: alpine\n    endpoints:\n    - {name: '{{svc}}', targetPort: 3000}\n    - {name: api, targetPort: 8080, exposure: internal}\n";
    let want = expected(text);
    assert!(want.contains(&("web".to_owned(), 3000, "public".to_owned())));
    assert_eq!(listed(text).await, want);
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join(".devfile.yaml"), text).unwrap();
    let d = TestDaemon::builder().workspace(ws).start();
    let idle = d.get_json("/api/v1/idle").await;
    assert_eq!(
        idle["timeout_seconds"], 600,
        "the attribute's {{{{t}}}} was substituted"
    );

    // One malformed endpoint costs only itself.
    let text = "schemaVersion: 2.2.0\ncomponents:\n- name: dev\n  container:\n    image: alpine\n    endpoints:\n    - {name: bad, targetPort: 3001, exposure: world}\n    - {name: good, targetPort: 3002}\n";
    let got = listed(text).await;
    assert_eq!(
        got,
        BTreeSet::from([("good".to_owned(), 3002, "public".to_owned())])
    );
}
