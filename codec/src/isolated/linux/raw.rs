//! The only `unsafe` of the crate: mapping the shared picture memory (in the parent and in the
//! worker), and in the worker closing the descriptors it inherited and restoring the default
//! action of crash signals.

#![allow(unsafe_code)] // two `mmap`s of our own sealed memfd, `close_range`, `signal`; see below

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;

use memmap2::{Mmap, MmapMut};
use rustix::fs::{MemfdFlags, SealFlags};

/// Seals of the picture memory: its size can never change again.
const SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// The parent's read-only view of the picture memory, and the memfd to hand to the worker.
pub(super) fn create_picture_memory(len: usize) -> io::Result<(OwnedFd, Mmap)> {
    let fd = rustix::fs::memfd_create(
        "quicdesk-decoder",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let file = File::from(fd);
    file.set_len(len as u64)?;
    rustix::fs::fcntl_add_seals(&file, SEALS)?;
    // SAFETY: the memfd is unnamed and ours; besides us only the worker will hold it. Its size is
    // sealed (no shrinking, no growing, no unsealing), so no access within the mapping can fault
    // with SIGBUS, whatever the worker does. The worker may write the pages at any moment, also
    // while we read them, which Rust's model does not promise anything about for a `&[u8]`; the
    // mapping is therefore only read as pixel values, where every byte is a valid `u8`, by the
    // RGBA conversion, and no length, offset or branch of ours is taken from its contents (the
    // planes' places come from `protocol::Layout`, bounded by `len`). A worker writing
    // concurrently can thus change pixels, which it decides anyway, not which memory we touch.
    let map = unsafe { Mmap::map(&file) }?;
    Ok((file.into(), map))
}

/// The worker's writable mapping of the picture memory received from the parent. Checks that it
/// is sealed at `len` bytes; the descriptor is closed on return (the mapping stays).
pub(super) fn map_picture_memory(fd: OwnedFd, len: usize) -> io::Result<MmapMut> {
    let file = File::from(fd);
    let size = file.metadata()?.len();
    let seals = rustix::fs::fcntl_get_seals(&file)?;
    if size != len as u64 || !seals.contains(SEALS) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("picture memory of {size} bytes with seals {seals:?}, expected {len} sealed"),
        ));
    }
    // SAFETY: the size is sealed (checked above), so the mapping never faults. The parent maps it
    // read-only, so only this process writes it, and it hands out no reference into it besides the
    // `&mut` of the decode loop.
    unsafe { MmapMut::map_mut(&file) }
}

/// Closes every descriptor but stdin, stdout and stderr. Called by the worker before it enters
/// its sandbox.
pub(super) fn close_inherited_fds() -> io::Result<()> {
    // SAFETY: `close_range` takes plain integers. The worker calls this before anything in it
    // opened a descriptor it still uses: the picture memory's was closed after mapping it, and
    // neither std, OpenH264 nor this crate keeps other descriptors open. The descriptors closed
    // here are ones the process inherited by accident (not marked close-on-exec by whoever
    // started it), which no object of this process owns.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if ret == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    // Kernels before 5.9: list them first, then close them (the listing's own descriptor is
    // among them, closed by then, and fails harmlessly).
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: as above; `close` of a descriptor already closed only fails with EBADF.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Gives SIGSEGV and SIGBUS their default action (end the process) in the worker. Rust's runtime
/// installs handlers for them that, for a fault outside a stack guard page, restore the default
/// with `sigaction` and return to fault again; in the sandbox that `sigaction` is refused, so a
/// crash would fault forever instead of ending. (Stack overflows then end without Rust's
/// message, still by SIGSEGV.)
pub(super) fn default_crash_signals() -> io::Result<()> {
    for signal in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: installing the default disposition runs no code of ours in a signal context
        // and invalidates nothing: Rust's handler is simply no longer called.
        if unsafe { libc::signal(signal, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
