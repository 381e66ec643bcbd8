//! Library behind the `workspace-injector` binary: devfile checks and
//! injection, rendering for Kubernetes, tool installation and project clone.

pub mod assets;
pub mod cli;
pub mod clone;
pub mod devfile;
#[doc(hidden)]
pub mod fuzzing;
pub mod inject;
pub mod install;
pub mod render;
pub mod yaml;
