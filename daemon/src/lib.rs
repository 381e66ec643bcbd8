//! `workspaced`: the daemon that runs in every workspace. It serves
//! terminals, and (see ARCHITECTURE.md) grows file sync, ports, health and
//! idle detection on the same router, auth and config.

pub mod activity;
pub mod auth;
pub mod config;
pub mod confine;
pub mod events;
pub mod files;
pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod heartbeat;
pub mod http;
pub mod http_client;
pub mod idle;
pub mod memory;
pub mod origin;
pub mod ports;
pub mod proxy;
pub mod server;
pub mod session;
pub mod sync;
mod sys;
pub mod terminal;
pub mod time;
pub mod tls;
