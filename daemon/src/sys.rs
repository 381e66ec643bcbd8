//! The few system calls the `nix` crate does not wrap for a raw descriptor
//! owned by another crate (portable-pty's master). Each is one small function.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

/// Whether the terminal is in "canonical mode with echo off" (a password
/// prompt). `None` when the descriptor cannot be queried.
pub fn password_mode(fd: RawFd) -> Option<bool> {
    // SAFETY: `termios` is plain data; tcgetattr only writes into it and
    // reports EBADF for a closed descriptor.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return None;
    }
    Some(t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO == 0)
}
