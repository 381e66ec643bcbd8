//! The few system calls the `nix` crate does not wrap for a raw descriptor
//! owned by another crate (portable-pty's master), and the one step run in a
//! child between fork and exec, the allocator's tuning and trim, and the
//! PTY master's non-blocking twin for the runtime. Each is one small
//! function.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

/// A second descriptor of `fd` (close-on-exec), non-blocking, registered
/// with the runtime's reactor. `fd` shares the open file, so it becomes
/// non-blocking too. Needs a runtime.
pub fn nonblocking_twin(fd: RawFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: fcntl with F_DUPFD_CLOEXEC only reads `fd` (EBADF when closed)
    // and returns a new descriptor or -1.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` was just created and nothing else owns it.
    let dup = unsafe { OwnedFd::from_raw_fd(dup) };
    nix::fcntl::fcntl(
        &dup,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_retain(nix::fcntl::fcntl(
                &dup,
                nix::fcntl::FcntlArg::F_GETFL,
            )?) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )?;
    // SAFETY: the descriptor is owned by the `AsyncFd`, which deregisters it
    // before closing it on drop; nothing else can close it meanwhile.
    unsafe { AsyncFd::register(dup) }.map_err(|e| e.into_parts().1)
}

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

/// Makes the child of `cmd` get SIGKILL when the daemon dies, so a daemon
/// killed with -9 (or crashed) leaves no component holding its port against
/// the next daemon's. The signal follows the thread that spawned the child:
/// components are spawned from the runtime's worker threads, which live as
/// long as the daemon.
pub fn kill_with_parent(cmd: &mut tokio::process::Command) {
    let daemon = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls prctl and getppid, both async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The daemon died before prctl (the daemon may be PID 1 itself,
            // in a container): do not outlive it.
            if nix::unistd::getppid() != daemon {
                return Err(std::io::Error::other("the daemon exited"));
            }
            Ok(())
        });
    }
}

/// Fixes glibc's mmap and trim thresholds, in bytes (`memory.rs` says why).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn malloc_thresholds(mmap: usize, trim: usize) {
    let as_int = |n: usize| libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets the allocator's parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, as_int(mmap));
        libc::mallopt(libc::M_TRIM_THRESHOLD, as_int(trim));
    }
}

/// Returns glibc's free pages to the OS; whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn malloc_trim() -> bool {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe { libc::malloc_trim(0) != 0 }
}
