//! Files embedded from `editor-assets/`: the start-up script and the editor
//! profiles, installed into the tools dir by `install`.

/// `editor-assets/`, embedded even in debug builds so the binary never
/// depends on the source tree.
#[derive(rust_embed::RustEmbed)]
#[folder = "../editor-assets/"]
pub struct Assets;
