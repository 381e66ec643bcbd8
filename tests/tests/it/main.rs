//! The one integration test binary: the real `workspaced` on real sockets,
//! real PTYs and real files.

mod auth;
mod bounds;
mod containers;
mod devfile;
mod forward;
mod health;
mod idle;
mod limits;
mod load;
mod origins;
mod ports;
mod process;
mod proxy;
mod sync;
mod terminal_flow;
mod terminals;
