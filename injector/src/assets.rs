//! Files embedded from `editor-assets/`: the start-up script, the editor
//! profiles and the editor's default settings, installed into the tools dir
//! by `install`.

/// The injector's part of `editor-assets/` (the daemon embeds other files
/// from there), embedded even in debug builds so the binary never depends on
/// the source tree.
#[derive(rust_embed::RustEmbed)]
#[folder = "../editor-assets/"]
#[include = "init_tools.sh"]
#[include = "editor-profiles/*.toml"]
#[include = "editor-settings.json"]
pub struct Assets;
