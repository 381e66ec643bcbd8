//! Entry points of the fuzz targets (`fuzz/`), shared with the stable test
//! that replays the committed corpus (`injector/tests/fuzz_corpus.rs`), so
//! CI runs every corpus file through exactly the code the fuzzer ran.

use crate::devfile::{self, Mode};
use crate::{inject, platform, render, yaml};

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
    let levels = platform::Timeouts::default();
    let _ = platform::check_timeout_attributes(&value, levels);
    let _ = platform::check_exposure(&value, platform::Visibility::Internal);
    if !devfile::check(&value, Mode::Gitlab).is_empty() {
        return;
    }
    let class = platform::builtin_classes().swap_remove(0);
    let mut variables = platform::Variables::default();
    variables
        .file
        .insert(platform::TOKEN_FILE_KEY.into(), "t".into());
    let opts = render::Options {
        name: "ws".into(),
        namespace: "ns".into(),
        dns_zone: "example.test".into(),
        proxy_namespace: "proxy".into(),
        inject: inject::Options::default(),
        class,
        min_storage: None,
        variables,
        timeouts: levels,
        idle_webhook: None,
        max_visibility: platform::Visibility::Internal,
    };
    if let Ok(injected) = inject::inject(&value, &opts.inject) {
        let _ = yaml::to_string(&injected);
    }
    let _ = render::kubernetes(&value, &opts);
    let _ = render::devworkspace(&value, &opts);
}
