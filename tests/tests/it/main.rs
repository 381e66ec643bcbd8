//! The one integration test binary: the real `workspaced` on real sockets,
//! real PTYs and real files.

mod auth;
mod forward;
mod health;
mod idle;
mod load;
mod ports;
mod process;
mod proxy;
mod sync;
mod terminals;
