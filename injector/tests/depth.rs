//! Deeply nested documents: every recursion over a devfile (the loader's
//! walk, variable substitution, the rules, schema validation, inject,
//! render, the writer) stays under the loader's depth cap, so hostile
//! nesting is a clear error and never a stack overflow.

use workspace_injector::devfile::{self, Mode};
use workspace_injector::yaml::{self, MAX_DEPTH};
use workspace_injector::{inject, platform, render};

const LEVELS: usize = 100_000;

fn refused(text: &str) -> String {
    let e = yaml::load(text).expect_err("a document nested 100,000 levels deep");
    assert!(e.message.contains("nested deeper than"), "{e}");
    e.to_string()
}

#[test]
fn flow_sequences_100k_deep_are_refused() {
    let text = format!("{}{}", "[".repeat(LEVELS), "]".repeat(LEVELS));
    let e = yaml::load(&text).expect_err("too deep");
    // The parser's own flow limit or ours, but an error either way.
    assert!(!e.message.is_empty());
}

#[test]
fn flow_mappings_100k_deep_are_refused() {
    let text = format!("{}1{}", "{a: ".repeat(LEVELS), "}".repeat(LEVELS));
    assert!(yaml::load(&text).is_err());
}

#[test]
fn block_sequences_100k_deep_are_refused() {
    // `- - - x`: one line, a block sequence per dash.
    let text = format!("{}x\n", "- ".repeat(LEVELS));
    let e = refused(&text);
    assert!(e.contains(&format!("at most {MAX_DEPTH}")), "{e}");
}

#[test]
fn block_mappings_2000_deep_are_refused() {
    // Indentation makes deep block mappings quadratic in size: 2,000
    // levels are 2 MB, under the 3 MB devfile limit.
    let mut text = String::new();
    for i in 0..2_000 {
        text.push_str(&" ".repeat(i));
        text.push_str("a:\n");
    }
    text.push_str(&" ".repeat(2_000));
    text.push_str("x\n");
    refused(&text);
}

#[test]
fn devfile_check_refuses_deep_nesting_with_a_finding() {
    let text = format!(
        "schemaVersion: 2.2.0\nattributes:\n  x:\n    {}1\n",
        "- ".repeat(LEVELS)
    );
    let findings = devfile::parse(&text).expect_err("too deep");
    assert!(
        findings[0].message.contains("nested deeper than"),
        "{findings:?}"
    );
}

/// A devfile whose attributes nest exactly as deep as the loader allows.
fn deepest_devfile() -> String {
    let mut text = String::from(
        "schemaVersion: 2.2.0\nvariables:\n  v: value\ncomponents:\n  - name: tooling\n    attributes:\n      gl/inject-editor: true\n      deep: ",
    );
    // The root mapping, `components`, its item and `attributes` are 4 levels.
    let levels = MAX_DEPTH - 4;
    text.push_str(&"[".repeat(levels.min(200)));
    text.push_str("\"{{v}}\"");
    text.push_str(&"]".repeat(levels.min(200)));
    text.push_str("\n    container:\n      image: alpine\n");
    text
}

#[test]
fn everything_after_the_loader_handles_the_deepest_document() {
    let text = deepest_devfile();
    let value = devfile::parse(&text).expect("at the cap is allowed");
    assert_eq!(devfile::check(&value, Mode::Gitlab), Vec::new());
    assert!(devfile::check(&value, Mode::Relaxed).is_empty());
    let opts = render::Options {
        name: "ws".into(),
        namespace: "ns".into(),
        dns_zone: "example.test".into(),
        proxy_namespace: "proxy".into(),
        inject: inject::Options::default(),
        class: platform::builtin_classes().swap_remove(0),
        min_storage: None,
        variables: platform::Variables::default(),
        timeouts: platform::Timeouts::default(),
        idle_webhook: None,
        max_visibility: platform::Visibility::Public,
    };
    let injected = inject::inject(&value, &opts.inject).expect("inject");
    let written = yaml::to_string(&injected);
    assert_eq!(yaml::load(&written).expect("reads back"), injected);
    render::kubernetes(&value, &opts).expect("render");
    render::devworkspace(&value, &opts).expect("render");
}

#[test]
fn one_level_past_the_cap_is_refused() {
    let at = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(yaml::load(&at).is_ok());
    let past = format!(
        "{}1{}",
        "[".repeat(MAX_DEPTH + 1),
        "]".repeat(MAX_DEPTH + 1)
    );
    let e = yaml::load(&past).expect_err("one level too deep");
    assert_eq!(
        e.message,
        format!(
            "the document is nested deeper than {MAX_DEPTH} levels; allowed: at most {MAX_DEPTH}"
        )
    );
}
