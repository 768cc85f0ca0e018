//! Shared by the attack suites of this crate and of `peer` (whose test support includes this
//! file by path): what a server process under attack costs, read from /proc.

/// The resident memory of process `pid` in KiB (`VmRSS` in `/proc/PID/status`); 0 when the
/// line is missing.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
