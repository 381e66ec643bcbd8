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

/// The foreground process group of the terminal whose master is `fd`.
/// `None` when the descriptor cannot be queried.
pub fn foreground_pgrp(fd: RawFd) -> Option<i32> {
    // SAFETY: tcgetpgrp takes a descriptor by value and only reads it; a
    // closed one gives -1 (EBADF).
    let pgrp = unsafe { libc::tcgetpgrp(fd) };
    (pgrp > 0).then_some(pgrp)
}
