//! The H.264 decoder in a sandboxed child process: OpenH264 (C) parses the bytes a possibly
//! hostile host sends, so the viewer runs it where a successful exploit finds nothing to take.
//!
//! ```text
//!   viewer process                                    worker process (sandboxed)
//!   IsolatedDecoder::decode_into(annexb, out)
//!     ── request: seq, length, Annex-B ── stdin ──►   OpenH264 decode
//!                                                     copy I420 planes ──► shared memory
//!     ◄── answer: seq, status, size (256 B) ─ stdout ─┘                        │
//!   i420_to_rgba(shared memory) ──► out  ◄─── read-only, sealed memfd ◄────────┘
//! ```
//!
//! * The parent creates the picture memory (a memfd sized for [`MAX_DECODED_PIXELS`](crate::MAX_DECODED_PIXELS) in I420
//!   whatever the shape, sealed so its size never changes, mapped read-only) and hands it to the
//!   worker with the set-up message. A 1080p picture thus crosses as 3 MB of plane copies in the
//!   worker, not as 8 MB of RGBA through a pipe; the RGBA conversion is the same as in-process.
//! * The worker maps the memory, creates the decoder, then enters its sandbox (Linux: no new
//!   privileges, killed with its parent, every descriptor but stdin/stdout/stderr closed,
//!   `RLIMIT_NOFILE` 3, no core dumps, 1 GiB of address space, and a seccomp-BPF filter that
//!   leaves only reads, writes, memory management (never executable) and aborting itself, and
//!   kills on files, sockets, processes and programs; see `linux/sandbox.rs`), says it is ready,
//!   and only then sees stream bytes.
//! * Everything the worker says is checked as hostile: magic, sequence number, status, sizes,
//!   message length and bytes; the planes' places derive from the claimed size with checked
//!   arithmetic within the mapping. A worker that crashes, hangs (2 s per frame), closes its
//!   pipes or lies gets an error, never a panic or a stall; it is then killed and reaped, and the
//!   decoder stays failed: the caller spawns a new one and asks for a key frame.
//!
//! # Running the worker
//!
//! The worker is any program whose `main` calls [`worker_main`] (it never returns). An
//! application re-executes itself: first thing in `main`, before threads or a runtime start,
//! call [`run_worker_if_requested`]; then spawn decoders with
//! `IsolatedDecoder::spawn(worker_command()?)`. This crate's `quicdesk-decoder` binary is such a
//! program for tests and benches.
//!
//! Only Linux has the worker today: elsewhere [`IsolatedDecoder::spawn`] returns
//! [`CodecError::Unsupported`](crate::CodecError::Unsupported) and the caller decodes in-process
//! with [`Decoder`](crate::Decoder). A Windows worker (restricted token, job object, shared
//! section) would implement the same protocol in a `windows` module.

// Platform-neutral, for every worker; only Linux has one yet.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
mod protocol;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as platform;

#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
use unsupported as platform;

use std::ffi::OsStr;
use std::process::Command;
use std::time::Duration;

pub use platform::IsolatedDecoder;

/// How long a worker may take to answer one frame before it is killed. A 4K key frame decodes
/// in well under 100 ms.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a worker may take to start and say it is ready.
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The argument that makes an application that calls [`run_worker_if_requested`] run as the
/// decoder worker.
pub const WORKER_ARG: &str = "--quicdesk-decoder-worker";

/// Runs the decoder worker and exits the process: reads requests from stdin until it closes,
/// answers on stdout. Never returns. The worker trusts nothing from the stream but trusts its
/// parent; it is meant to be started by [`IsolatedDecoder::spawn`] only.
pub fn worker_main() -> ! {
    platform::worker_main()
}

/// [`worker_main`] with test hooks taken from the environment, for this crate's
/// `quicdesk-decoder` binary only (an application calls [`worker_main`]):
///
/// * `QUICDESK_DECODER_TEST_PROBE=open:PATH` or `cwd`: instead of serving, set up, enter the
///   sandbox, try to open `PATH` (which the sandbox kills) or read the working directory (which
///   it refuses with EPERM), and print `open: ok`, `cwd: ok` or the error on stdout;
///   `QUICDESK_DECODER_TEST_NO_SANDBOX=1` runs that probe without the sandbox. Probes decode
///   nothing: stream bytes are never decoded outside the sandbox.
/// * `QUICDESK_DECODER_TEST_LIE=garbage|huge|seq|status|truncated|stall|crash`: serve, but
///   answer every request falsely.
#[doc(hidden)]
pub fn worker_main_with_test_hooks() -> ! {
    platform::worker_main_with_test_hooks()
}

/// If this process was started with [`WORKER_ARG`] as its first argument, runs [`worker_main`]
/// (never returning); otherwise returns. Call it first thing in `main`.
pub fn run_worker_if_requested() {
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(WORKER_ARG)) {
        worker_main();
    }
}

/// The command that re-executes the current program as the worker ([`WORKER_ARG`]), with an
/// empty environment (the worker needs none). On Linux it runs `/proc/self/exe`, which still
/// works when the program file was replaced or deleted since it started.
///
/// # Errors
///
/// Outside Linux, when the path of the current program cannot be found.
pub fn worker_command() -> std::io::Result<Command> {
    let program = if cfg!(target_os = "linux") {
        "/proc/self/exe".into()
    } else {
        std::env::current_exe()?
    };
    let mut cmd = Command::new(program);
    cmd.arg(WORKER_ARG).env_clear();
    Ok(cmd)
}
