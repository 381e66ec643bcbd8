//! Entry points of the fuzz targets (`fuzz/`), shared with the stable test
//! that replays the committed corpus (`injector/tests/fuzz_corpus.rs`), so
//! CI runs every corpus file through exactly the code the fuzzer ran.

use crate::devfile::{self, Mode};
use crate::{inject, render, yaml};

/// YAML text through the strict loader; what loads is written back and
/// must load again to the same value.
pub fn yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = yaml::load(text) {
        let written = yaml::to_string(&value);
        assert_eq!(
            yaml::load(&written).as_ref(),
            Ok(&value),
            "written as {written:?}"
        );
    }
}

/// A devfile's text through everything check, inject and render do with it.
pub fn devfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = devfile::parse(text) else {
        return;
    };
    let _ = devfile::check(&value, Mode::Relaxed);
    if !devfile::check(&value, Mode::Gitlab).is_empty() {
        return;
    }
    let opts = render::Options {
        name: "ws".into(),
        namespace: "ns".into(),
        dns_zone: "example.test".into(),
        proxy_namespace: "proxy".into(),
        inject: inject::Options::default(),
    };
    if let Ok(injected) = inject::inject(&value, &opts.inject) {
        let _ = yaml::to_string(&injected);
    }
    let _ = render::kubernetes(&value, &opts);
    let _ = render::devworkspace(&value, &opts);
}
