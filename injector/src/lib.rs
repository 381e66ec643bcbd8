//! Library behind the `workspace-injector` binary: devfile checks and
//! injection, rendering for Kubernetes, tool installation and project clone.

pub mod assets;
pub mod cli;
pub mod clone;
pub mod devfile;
pub mod inject;
pub mod install;
pub mod platform;
pub mod render;
pub mod yaml;
