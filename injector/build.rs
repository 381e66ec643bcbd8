//! Rebuilds the crate when the embedded `editor-assets/` change.

fn main() {
    println!("cargo:rerun-if-changed=../editor-assets");
    println!("cargo:rerun-if-changed=schemas");
}
