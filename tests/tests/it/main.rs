//! The one integration test binary: the real `workspaced` on real sockets,
//! real PTYs and real files.

mod auth;
mod health;
mod idle;
mod process;
mod sync;
mod terminals;
