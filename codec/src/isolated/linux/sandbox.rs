//! The worker's sandbox: no new privileges, death with the parent, no descriptors but stdio, low
//! resource limits, and a seccomp-BPF filter that leaves the decode loop only the system calls it
//! needs.
//!
//! # The filter
//!
//! Two filters are stacked (the kernel applies the strictest answer of all):
//!
//! * [`KILLED`]: system calls only an attacker would make from the decode loop (opening files,
//!   making sockets, starting programs or processes, touching other processes, and the big
//!   kernel attack surfaces: bpf, io_uring, userfaultfd, perf events, keyrings, namespaces) kill
//!   the worker at once with SIGSYS. An exploit gets no second try, and the parent reports
//!   "signal: 31 (SIGSYS)", so a broken sandbox is loud rather than subtle.
//! * [`ALLOWED`]: the calls the decode loop makes; every other call fails with `EPERM`, so a
//!   harmless call nobody foresaw (from a newer glibc, say) fails softly instead of killing.
//!   `mmap` is allowed only without `PROT_EXEC` and `mprotect` not at all: the worker can never
//!   make new machine code.
//!
//! The allowed list comes from `strace -f -p` attached to a sandboxed worker while it decoded
//! 1080p, 4K, 320x180 and 640x360 streams, bit-flipped and truncated frames and random slices:
//! the loop made `read`, `write`, `brk`, `mmap` (anonymous, read-write), `munmap`, `mremap` and
//! `futex` (std's one-time initialisation), nothing else. Added by reading what the exit and
//! crash paths do (traced with the test hooks): `exit_group`, `sigaltstack` and `munmap` (std's
//! clean-up), `rt_sigprocmask`, `getpid`, `gettid` and `tgkill` (glibc's `abort`); and what the
//! allocator may call: `madvise` (glibc trims freed memory), `clock_gettime` (the vDSO's
//! fallback), `exit`, `rt_sigreturn`.

use std::collections::BTreeMap;

use rustix::process::{Resource, Rlimit, Signal};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::raw;

/// Largest address space the worker may map: the decoder's reference pictures for the largest
/// picture we accept (4096x2304, up to 16 references of 14 MiB), the 19 MiB picture memory, an
/// 8 MiB request and the program itself fit with room to spare; a stream that wants more fails
/// its allocation and kills the worker, not the machine.
const ADDRESS_SPACE_LIMIT: u64 = 1 << 30;

/// Allowed system calls. `mmap` and `tgkill` are absent: they get rules ([`no_exec_rule`],
/// [`abort_rule`]).
const ALLOWED: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_clock_gettime,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    // `abort()`: unblock SIGABRT, then `tgkill(getpid(), gettid(), SIGABRT)`, so that a failed
    // allocation (past RLIMIT_AS) or an assertion ends the worker with SIGABRT.
    libc::SYS_rt_sigprocmask,
    libc::SYS_getpid,
    libc::SYS_gettid,
];

/// System calls that kill the worker.
const KILLED: &[libc::c_long] = &[
    // Files
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_open_by_handle_at,
    libc::SYS_memfd_create,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_open,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_creat,
    // Programs, processes, threads
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_clone,
    libc::SYS_clone3,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_fork,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_vfork,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_getfd,
    // Network
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    // Kernel attack surface
    libc::SYS_bpf,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_userfaultfd,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
];

/// Enters the sandbox; from here on the worker can only compute, read stdin, write stdout and
/// stderr, and manage its memory. `parent` is the process id the worker must still be the child
/// of (`None` to skip that check).
pub(super) fn enter(parent: Option<u32>) -> Result<(), String> {
    // Killed with its parent. The signal is sent when the thread that spawned the worker ends,
    // which is why `IsolatedDecoder::spawn` asks to be called from the thread that owns it.
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    if let Some(parent) = parent {
        // The parent may have died before the request above: then nobody would kill us.
        if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(parent as i32) {
            return Err("parent process is gone".into());
        }
    }
    rustix::thread::set_no_new_privs(true).map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))?;
    raw::close_inherited_fds().map_err(|e| format!("closing inherited descriptors: {e}"))?;
    raw::default_crash_signals().map_err(|e| format!("crash signals: {e}"))?;
    for (resource, limit, name) in [
        // stdin, stdout and stderr are open; no descriptor can be added.
        (Resource::Nofile, 3, "RLIMIT_NOFILE"),
        // A crash dumps no core (it would hold decoded screen contents).
        (Resource::Core, 0, "RLIMIT_CORE"),
        (Resource::As, ADDRESS_SPACE_LIMIT, "RLIMIT_AS"),
    ] {
        let limit = Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        };
        rustix::process::setrlimit(resource, limit).map_err(|e| format!("{name}: {e}"))?;
    }
    for filter in filters()? {
        seccompiler::apply_filter_all_threads(&filter).map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(())
}

/// The two filters, the killing one first (installing the second needs the `seccomp` call,
/// which only the second would refuse).
#[allow(
    clippy::useless_conversion,
    reason = "`c_long` is `i64` only on 64-bit targets"
)]
fn filters() -> Result<[BpfProgram; 2], String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| format!("no seccomp filter for {}", std::env::consts::ARCH))?;
    let rules = |calls: &[libc::c_long]| -> BTreeMap<i64, Vec<SeccompRule>> {
        calls
            .iter()
            .map(|&nr| (i64::from(nr), Vec::new()))
            .collect()
    };
    let killed = SeccompFilter::new(
        rules(KILLED),
        SeccompAction::Allow,
        SeccompAction::KillProcess,
        arch,
    );
    let mut allowed = rules(ALLOWED);
    allowed.insert(i64::from(libc::SYS_mmap), vec![no_exec_rule()?]);
    allowed.insert(i64::from(libc::SYS_tgkill), vec![abort_rule()?]);
    let allowed = SeccompFilter::new(
        allowed,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    );
    let compile = |filter: Result<SeccompFilter, seccompiler::BackendError>| {
        filter
            .and_then(BpfProgram::try_from)
            .map_err(|e| format!("building the seccomp filter: {e}"))
    };
    Ok([compile(killed)?, compile(allowed)?])
}

/// Matches `mmap` calls whose protection (third argument) lacks `PROT_EXEC`.
fn no_exec_rule() -> Result<SeccompRule, String> {
    let exec = libc::PROT_EXEC as u64;
    SeccompCondition::new(2, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(exec), 0)
        .and_then(|condition| SeccompRule::new(vec![condition]))
        .map_err(|e| format!("building the seccomp filter: {e}"))
}

/// Matches `tgkill` calls that send SIGABRT to this process.
fn abort_rule() -> Result<SeccompRule, String> {
    let condition =
        |arg, value| SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value);
    condition(0, u64::from(std::process::id()))
        .and_then(|own| SeccompRule::new(vec![own, condition(2, libc::SIGABRT as u64)?]))
        .map_err(|e| format!("building the seccomp filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_build_and_lists_are_disjoint() {
        let [killed, allowed] = filters().unwrap();
        assert!(!killed.is_empty() && !allowed.is_empty());
        for nr in KILLED {
            assert!(!ALLOWED.contains(nr), "{nr} both allowed and killed");
        }
        assert!(!KILLED.contains(&libc::SYS_mmap) && !ALLOWED.contains(&libc::SYS_mprotect));
    }
}
