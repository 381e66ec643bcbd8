//! `devfile check` on the shared real-world devfiles and on hand-written
//! devfiles that each break one restriction.

mod common;

use common::{devfiles_dir, run, stderr, write};

fn shared_devfiles() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(devfiles_dir())
        .expect("shared/devfiles beside the project")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "expected the shared devfiles, found {}",
        files.len()
    );
    files
}

#[test]
fn relaxed_accepts_every_schema_valid_shared_devfile() {
    for f in shared_devfiles() {
        let o = run(&["devfile", "check", "--relaxed", f.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
    }
}

/// What the README's derived expectation calls each violation, and the text
/// our error line carries for it.
fn expected_fragment(label: &str) -> String {
    match label {
        "composite command" => "`composite` commands are not supported".into(),
        "container-overrides" => "container-overrides: the `container-overrides` attribute".into(),
        "root pod-overrides" => "\nattributes.pod-overrides: the `pod-overrides` attribute".into(),
        "exec.env" => ".exec.env: the exec field `env` is not supported".into(),
        "exec.group" => ".exec.group: the exec field `group` is not supported".into(),
        "hotReloadCapable true" => ".exec.hotReloadCapable: must be false".into(),
        "no gl/inject-editor component" => {
            "components: no component has the attribute `gl/inject-editor: true`".into()
        }
        "parent" => "\nparent: parent devfiles are not supported".into(),
        "projects" => "\nprojects: `projects` is not supported".into(),
        "starterProjects" => "\nstarterProjects: `starterProjects` is not supported".into(),
        "preStop event" => "events.preStop: `preStop` events are not supported".into(),
        "postStop event" => "events.postStop: `postStop` events are not supported".into(),
        l if l.starts_with("container.") => format!(".{l}: the container field"),
        l if l.ends_with(" component") => {
            let kind = l.trim_end_matches(" component");
            format!(".{kind}: `{kind}` components are not supported")
        }
        l if l.starts_with("schemaVersion ") => {
            format!(
                "schemaVersion: version {} is not supported; allowed: 2.2.x",
                &l[14..]
            )
        }
        other => panic!("no mapping for README label {other:?}"),
    }
}

#[test]
fn gitlab_mode_matches_the_readme_expectations() {
    let readme = std::fs::read_to_string(devfiles_dir().join("README.md")).unwrap();
    let mut seen = 0;
    for line in readme.lines() {
        let Some(name) = line.strip_prefix("| `").and_then(|l| l.split('`').next()) else {
            continue;
        };
        if !name.ends_with(".yaml") {
            continue;
        }
        let expectation = line
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .unwrap()
            .trim();
        let path = devfiles_dir().join(name);
        let o = run(&["devfile", "check", path.to_str().unwrap()]);
        // Prefix every line with a newline so a fragment can anchor at a line start.
        let err: String = stderr(&o)
            .lines()
            .map(|l| format!("\n{}", l.split_once(".yaml: ").map_or(l, |x| x.1)))
            .collect();
        seen += 1;
        if expectation == "ACCEPT" {
            assert!(o.status.success(), "{name}: {err}");
            continue;
        }
        assert_eq!(o.status.code(), Some(1), "{name} should be rejected");
        let labels = expectation
            .strip_prefix("reject: ")
            .expect("reject: or ACCEPT");
        for label in labels.split(", ") {
            let frag = expected_fragment(label);
            assert!(
                err.contains(&frag),
                "{name}: expected {frag:?} for {label:?} in:{err}"
            );
        }
    }
    assert!(seen >= 30, "README table rows parsed: {seen}");
}

const GOOD: &str = "\
schemaVersion: 2.2.0
components:
  - name: tooling
    attributes:
      gl/inject-editor: true
    container:
      image: alpine
      endpoints:
        - name: http
          targetPort: 3000
  - name: data
    volume: {}
commands:
  - id: build
    exec:
      component: tooling
      commandLine: make
events:
  postStart:
    - build
";

fn check_text(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "devfile.yaml", text);
    let o = run(&["devfile", "check", p.to_str().unwrap()]);
    let prefix = format!("{}: ", p.display());
    let err = stderr(&o)
        .lines()
        .map(|l| l.replace(&prefix, "") + "\n")
        .collect();
    (o.status.code(), err)
}

#[test]
fn the_good_sample_passes() {
    assert_eq!(check_text(GOOD), (Some(0), String::new()));
}

/// Each restriction of INJECTION.md, broken alone, gives its own error line.
#[test]
fn each_restriction_has_its_own_error() {
    let cases: &[(&str, &str, &str)] = &[
        ("schemaVersion: 2.2.0", "schemaVersion: 2.3.0", "schemaVersion: version 2.3.0 is not supported; allowed: 2.2.x"),
        ("  - name: data\n    volume: {}", "  - name: k\n    kubernetes:\n      inlined: x", "components[1].kubernetes: `kubernetes` components are not supported; allowed: container, volume"),
        ("  - name: data\n    volume: {}", "  - name: k\n    openshift:\n      uri: x.yaml", "components[1].openshift: `openshift` components are not supported; allowed: container, volume"),
        ("  - name: data\n    volume: {}", "  - name: k\n    image:\n      imageName: x\n      dockerfile:\n        uri: Dockerfile", "components[1].image: `image` components are not supported; allowed: container, volume"),
        ("commands:\n", "commands:\n  - id: both\n    composite:\n      commands: [build]\n", "commands[0].composite: `composite` commands are not supported; allowed: exec, apply"),
        ("schemaVersion: 2.2.0", "schemaVersion: 2.2.0\nparent:\n  uri: p.yaml", "parent: parent devfiles are not supported; allowed: a self-contained devfile"),
        ("schemaVersion: 2.2.0", "schemaVersion: 2.2.0\nprojects:\n  - name: p\n    git:\n      remotes:\n        origin: https://x/y.git", "projects: `projects` is not supported; the platform clones the workspace's project"),
        ("schemaVersion: 2.2.0", "schemaVersion: 2.2.0\nstarterProjects:\n  - name: p\n    zip:\n      location: https://x/y.zip", "starterProjects: `starterProjects` is not supported; the platform clones the workspace's project"),
        ("events:\n  postStart:\n    - build\n", "events:\n  preStop:\n    - build\n", "events.preStop: `preStop` events are not supported; allowed: preStart, postStart"),
        ("events:\n  postStart:\n    - build\n", "events:\n  postStop:\n    - build\n", "events.postStop: `postStop` events are not supported; allowed: preStart, postStart"),
        ("      image: alpine", "      image: alpine\n      dedicatedPod: true", "components[0].container.dedicatedPod: the container field `dedicatedPod` is not supported"),
        ("      image: alpine", "      image: alpine\n      sourceMapping: /src", "components[0].container.sourceMapping: the container field `sourceMapping` is not supported"),
        ("      image: alpine", "      image: alpine\n      mountSources: true", "components[0].container.mountSources: the container field `mountSources` is not supported"),
        ("      gl/inject-editor: true", "      gl/inject-editor: true\n      pod-overrides:\n        spec: {}", "components[0].attributes.pod-overrides: the `pod-overrides` attribute is not supported"),
        ("      gl/inject-editor: true", "      gl/inject-editor: true\n      container-overrides:\n        resources: {}", "components[0].attributes.container-overrides: the `container-overrides` attribute is not supported"),
        ("schemaVersion: 2.2.0", "schemaVersion: 2.2.0\nattributes:\n  pod-overrides:\n    spec: {}", "attributes.pod-overrides: the `pod-overrides` attribute is not supported"),
        ("      commandLine: make", "      commandLine: make\n      env:\n        - name: A\n          value: b", "commands[0].exec.env: the exec field `env` is not supported; allowed: commandLine, component, label, workingDir, hotReloadCapable: false"),
        ("      commandLine: make", "      commandLine: make\n      group:\n        kind: build", "commands[0].exec.group: the exec field `group` is not supported; allowed: commandLine, component, label, workingDir, hotReloadCapable: false"),
        ("      commandLine: make", "      commandLine: make\n      hotReloadCapable: true", "commands[0].exec.hotReloadCapable: must be false, found true; allowed: hotReloadCapable: false"),
        ("  - name: tooling\n", "  - name: gl-tooling\n", "components[0].name: component name `gl-tooling` starts with `gl-`, which is reserved for the platform"),
        ("  - id: build", "  - id: gl-build", "commands[0].id: command id `gl-build` starts with `gl-`, which is reserved for the platform"),
        ("        - name: http", "        - name: gl-http", "components[0].container.endpoints[0].name: endpoint name `gl-http` starts with `gl-`, which is reserved for the platform"),
        ("    - build\n", "    - build\n    - gl-start\n", "events.postStart[1]: event entries starting with `gl-` are reserved"),
        ("schemaVersion: 2.2.0", "schemaVersion: 2.2.0\nvariables:\n  GL_TOKEN: x", "variables.GL_TOKEN: variable names starting with `gl-` or `gl_` (any case) are reserved"),
        ("schemaVersion: 2.2.0", "schemaVersion: 2.2.0\nvariables:\n  Gl-Thing: x", "variables.Gl-Thing: variable names starting with `gl-` or `gl_` (any case) are reserved"),
        ("  - name: data\n", "  - name: abcdefghijklmnopqrstuvwxyz01\n", "components[1].name: volume name `abcdefghijklmnopqrstuvwxyz01` has 28 characters; allowed: at most 27"),
        ("      gl/inject-editor: true\n", "      other: true\n", "components: no component has the attribute `gl/inject-editor: true`; allowed: exactly one container component with it"),
        ("  - name: data\n    volume: {}", "  - name: second\n    attributes:\n      gl/inject-editor: true\n    container:\n      image: alpine", "components[1].attributes.gl/inject-editor: is set on 2 components; allowed: exactly one (first at components[0])"),
        ("targetPort: 3000", "targetPort: 60001", "components[0].container.endpoints[0].targetPort: port 60001 is reserved for the editor server (GL_VSCODE_PORT); allowed: any port outside 60001, 60022 and 60080-60099"),
    ];
    let mut errors = std::collections::BTreeSet::new();
    for (from, to, expected) in cases {
        assert!(
            GOOD.contains(from),
            "case pattern {from:?} not in the sample"
        );
        let text = GOOD.replacen(from, to, 1);
        let (code, err) = check_text(&text);
        assert_eq!(code, Some(1), "{expected}");
        assert_eq!(err, format!("{expected}\n"), "for {to:?}");
        assert!(errors.insert(*expected), "duplicate case {expected}");
    }
}

#[test]
fn a_27_character_volume_name_is_fine() {
    let text = GOOD.replacen(
        "  - name: data\n",
        "  - name: abcdefghijklmnopqrstuvwxyz0\n",
        1,
    );
    assert_eq!(check_text(&text).0, Some(0));
}

#[test]
fn yaml_tricks_are_rejected() {
    let cases = [
        (
            format!("{GOOD}!binary parent:\n  uri: https://evil.example/devfile.yaml\n"),
            "YAML tag `!binary` on key `parent`",
        ),
        (
            GOOD.replacen("schemaVersion: 2.2.0", "!!str schemaVersion: 2.2.0", 1),
            "YAML tag `!!str` on key `schemaVersion`",
        ),
        (
            GOOD.replacen("image: alpine", "image: !custom alpine", 1),
            "YAML tag `!custom` on a value",
        ),
        (
            GOOD.replacen(
                "  - name: data\n    volume: {}",
                "  - &v\n    name: data\n    volume: {}\n  - *v",
                1,
            ),
            "YAML anchor",
        ),
        (
            format!("{GOOD}x-base: &b\n  a: 1\nx-more:\n  <<: *b\n"),
            "anchors, aliases and merge keys are not allowed",
        ),
        (
            format!("{GOOD}x-more:\n  <<: {{a: 1}}\n"),
            "YAML merge key `<<` in x-more",
        ),
        (
            format!("{GOOD}schemaVersion: 2.3.0\n"),
            "duplicate key `schemaVersion` in the document root; every key may appear once",
        ),
        (
            GOOD.replacen("    volume: {}", "    volume: {}\n    name: again", 1),
            "duplicate key `name` in components[1]",
        ),
    ];
    for (text, fragment) in cases {
        let (code, err) = check_text(&text);
        assert_eq!(code, Some(1), "{fragment}");
        assert!(err.contains(fragment), "expected {fragment:?} in {err:?}");
        assert!(err.starts_with("line "), "{err}");
        // Relaxed mode parses with the same parser, so it refuses them too.
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.yaml", &text);
        assert_eq!(
            run(&["devfile", "check", "--relaxed", p.to_str().unwrap()])
                .status
                .code(),
            Some(1)
        );
    }
}

#[test]
fn devfiles_over_3_mb_are_rejected() {
    let text = format!("{GOOD}# {}\n", "x".repeat(3 * 1024 * 1024));
    let (code, err) = check_text(&text);
    assert_eq!(code, Some(1));
    assert!(err.contains("allowed: at most 3 MB"), "{err}");
}

#[test]
fn relaxed_rejects_what_the_schema_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "d.yaml",
        &GOOD.replacen("targetPort: 3000", "targetPort: high", 1),
    );
    let o = run(&["devfile", "check", "--relaxed", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("components[0].container.endpoints[0].targetPort: "),
        "{}",
        stderr(&o)
    );
    let p = write(dir.path(), "e.yaml", &GOOD.replacen("2.2.0", "9.9.9", 1));
    let o = run(&["devfile", "check", "--relaxed", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("schemaVersion: version 9.9.9 has no known schema"));
}

#[test]
fn relaxed_accepts_pre_release_versions_of_a_known_minor_version() {
    let dir = tempfile::tempdir().unwrap();
    for v in [
        "2.2.0-latest",
        "2.3.0-alpha",
        "2.2.1-rc.1+build-7",
        "2.1.0-next",
    ] {
        let p = write(dir.path(), "ok.yaml", &GOOD.replacen("2.2.0", v, 1));
        let o = run(&["devfile", "check", "--relaxed", p.to_str().unwrap()]);
        assert!(o.status.success(), "{v}: {}", stderr(&o));
    }
    // A pre-release still gets its release's schema: its errors are found.
    let p = write(
        dir.path(),
        "bad.yaml",
        &GOOD.replacen("2.2.0", "2.2.0-latest", 1).replacen(
            "targetPort: 3000",
            "targetPort: high",
            1,
        ),
    );
    let o = run(&["devfile", "check", "--relaxed", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("components[0].container.endpoints[0].targetPort: "),
        "{}",
        stderr(&o)
    );
    // An unknown minor version, or a suffix the schema's pattern refuses.
    for v in ["2.4.0-alpha", "2.2.0-Latest", "2.2.0-", "2.2.0-a..b"] {
        let p = write(dir.path(), "no.yaml", &GOOD.replacen("2.2.0", v, 1));
        let o = run(&["devfile", "check", "--relaxed", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{v}");
        assert!(
            stderr(&o).contains(&format!("schemaVersion: version {v} has no known schema")),
            "{v}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn variables_are_substituted_as_devfile_api_does() {
    let dir = devfiles_dir().join("variables-substitution");
    let input = std::fs::read_to_string(dir.join("api-variables__devfile-good.yaml")).unwrap();
    let expected =
        std::fs::read_to_string(dir.join("api-variables__devfile-good-output.yaml")).unwrap();
    let got = workspace_injector::devfile::parse(&input).unwrap();
    assert_eq!(got, workspace_injector::yaml::load(&expected).unwrap());
}

#[test]
fn variables_are_substituted_before_the_rules() {
    let text = GOOD
        .replacen(
            "schemaVersion: 2.2.0",
            "schemaVersion: 2.2.0\nvariables:\n  prefix: gl",
            1,
        )
        .replacen("  - id: build", "  - id: \"{{prefix}}-build\"", 1);
    let (code, err) = check_text(&text);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("commands[0].id: command id `gl-build` starts with `gl-`"),
        "{err}"
    );
}

#[test]
fn bad_usage_exits_64_with_one_line() {
    let o = run(&["devfile", "check"]);
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("<FILE>"),
        "says what is missing: {}",
        stderr(&o)
    );
    let o = run(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(64));
}

#[test]
fn a_missing_file_is_an_error() {
    let o = run(&["devfile", "check", "/nonexistent/devfile.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("read /nonexistent/devfile.yaml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn every_sample_devfile_passes_the_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../devfile-samples");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let o = run(&["devfile", "check", p.to_str().unwrap()]);
            assert!(o.status.success(), "{}: {}", p.display(), stderr(&o));
            n += 1;
        }
    }
    assert!(n >= 5, "only {n} samples");
}
