//! Library behind the `workspace-injector` binary: devfile checks and
//! injection, rendering for Kubernetes, tool installation and project clone.

pub mod assets;
pub mod cli;
pub mod clone;
#[doc(hidden)]
pub mod fuzzing;
pub mod inject;
pub mod install;
pub mod platform;
pub mod render;

/// The devfile crate, under the paths the injector has always had.
pub use devfile;
pub use devfile::yaml;
