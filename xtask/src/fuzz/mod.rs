//! `cargo xtask fuzz`: coverage-guided fuzzing of every target in `fuzz/` on the stable
//! toolchain, and the short run `cargo xtask test` gives each target.
//!
//! ```text
//!  cargo install cargo-fuzz ──► ~/.cache/quicdesk/tools/bin (once, reused)
//!  RUSTC_BOOTSTRAP=1 cargo fuzz build -s none ──► ~/.cache/quicdesk/fuzz-target (incremental)
//!  each target: libFuzzer -max_total_time/-runs
//!      corpus  ~/.cache/quicdesk/fuzz-corpus/<target>  (grows, not committed)
//!      seeds   fuzz/seeds/<target>                      (committed, read only)
//!      crashes fuzz/artifacts/<target>/crash-…          (kept, reported)
//!  ──► table: executions, exec/s, coverage, corpus, crashes
//! ```
//!
//! cargo-fuzz builds the targets with LLVM's sanitizer-coverage passes (`-s none`: no
//! sanitizer, which would need nightly's `-Zsanitizer`); `RUSTC_BOOTSTRAP=1` lets stable rustc
//! take the `-Z` flags cargo-fuzz passes. OpenH264 is C++: it is compiled with clang's
//! `-fsanitize=fuzzer-no-link` (through a small compiler wrapper that touches no other C++), so
//! the H.264 target is guided by the decoder's own branches and not only by the Rust around it.
//! Everything heavy stays in cargo-fuzz and libFuzzer; this module installs, builds, runs and
//! reads libFuzzer's final statistics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod tools;

use self::tools::Tools;
use crate::proc::{root, run};

/// How long `cargo xtask test` fuzzes each target.
const CI_SECONDS: u64 = 20;
/// An input that takes longer than this (seconds) is reported as a hang.
const TIMEOUT_SECS: u64 = 20;
/// The environment variable of known findings a run tolerates (see `fuzz/src/lib.rs`).
const SUPPRESS_ENV: &str = "QUICDESK_FUZZ_SUPPRESS";
/// Where targets that run C code save each input before running it (`fuzz/src/lib.rs`).
const LAST_INPUT_ENV: &str = "QUICDESK_FUZZ_LAST_INPUT";
/// A target process that has used no CPU for this long is stuck: libFuzzer's crash handler
/// deadlocks when C code aborts inside malloc (heap corruption), and then never exits.
const STUCK_AFTER: Duration = Duration::from_secs(60);

pub const USAGE: &str = "\
cargo xtask fuzz [--minutes N | --seconds N] [--runs N] [--write-seeds] [TARGET...]

  Coverage-guided fuzzing (libFuzzer through cargo-fuzz, on stable) of the targets in fuzz/
  (all of them unless named), one after the other, then a table of executions, exec/s,
  coverage (libFuzzer's cov and ft), corpus size and crashes per target.

  --minutes N, --seconds N  how long to fuzz each target (default 1 minute; with only --runs,
                            no time limit)
  --runs N                  stop each target after N executions (whichever comes first)
  --write-seeds             rewrite fuzz/seeds/<target>/ from each target's seed generator
                            (the project's own encoders) instead of fuzzing
  TARGET...                 only these targets

  Installs cargo-fuzz into ~/.cache/quicdesk/tools if it is missing, and clang (apt) for the
  instrumented OpenH264 build. Builds into ~/.cache/quicdesk/fuzz-target, keeps each corpus in
  ~/.cache/quicdesk/fuzz-corpus/<target> (seeded from fuzz/seeds/<target>), and logs in
  ~/.cache/quicdesk/fuzz-logs (<target>.log: the last clean run). A crash fails the command;
  libFuzzer's input is kept in fuzz/artifacts/<target>/ and the command says how to replay it.
  QUICDESK_FUZZ_SUPPRESS=name,... relaxes the checks of known, reported findings (never in CI).";

#[derive(Debug, Default)]
struct Options {
    seconds: Option<u64>,
    runs: Option<u64>,
    write_seeds: bool,
    targets: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut number = |what: &str| -> Result<u64> {
            it.next()
                .with_context(|| format!("{what} takes a number"))?
                .parse()
                .with_context(|| format!("{what} takes a number"))
        };
        match a.as_str() {
            "--minutes" => o.seconds = Some(number("--minutes")? * 60),
            "--seconds" => o.seconds = Some(number("--seconds")?),
            "--runs" => o.runs = Some(number("--runs")?),
            "--write-seeds" => o.write_seeds = true,
            flag if flag.starts_with('-') => bail!("unknown option {flag:?}\n\n{USAGE}"),
            target => o.targets.push(target.to_owned()),
        }
    }
    if o.seconds == Some(0) {
        // libFuzzer reads -max_total_time=0 as "no limit".
        bail!("--minutes and --seconds take a number above 0");
    }
    if o.seconds.is_none() && o.runs.is_none() {
        o.seconds = Some(60);
    }
    Ok(o)
}

/// `cargo xtask fuzz ...`
pub fn fuzz(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let all = targets()?;
    let chosen = if o.targets.is_empty() {
        all
    } else {
        for t in &o.targets {
            if !all.contains(t) {
                bail!("no fuzz target {t:?}; there are: {}", all.join(", "));
            }
        }
        o.targets.clone()
    };
    let tools = Tools::prepare()?;
    if o.write_seeds {
        return write_seeds(&tools, &chosen);
    }
    if let Ok(s) = std::env::var(SUPPRESS_ENV) {
        eprintln!("note: {SUPPRESS_ENV}={s}: the checks of these known findings are relaxed");
    }
    fuzz_all(&tools, &chosen, o.seconds, o.runs, false)
}

/// What `cargo xtask test` runs: every target, coverage-guided, [`CI_SECONDS`] each, with no
/// finding suppressed.
pub fn ci() -> Result<()> {
    eprintln!("\n== fuzz targets: coverage-guided, {CI_SECONDS} s each ==");
    let tools = Tools::prepare()?;
    fuzz_all(&tools, &targets()?, Some(CI_SECONDS), None, true)
}

/// The targets, as `fuzz/Cargo.toml` lists them (every `[[bin]]`).
fn targets() -> Result<Vec<String>> {
    let manifest = root().join("fuzz/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(v) = line.strip_prefix("name") {
            let name = v
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            out.push(name.to_owned());
        }
    }
    if out.is_empty() {
        bail!("{} lists no fuzz targets", manifest.display());
    }
    Ok(out)
}

fn write_seeds(tools: &Tools, targets: &[String]) -> Result<()> {
    let seeds = root().join("fuzz/seeds");
    for t in targets {
        let dir = seeds.join(t);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        run(Command::new(tools.bin_dir.join(t)).env("QUICDESK_FUZZ_WRITE_SEEDS", &seeds))?;
    }
    Ok(())
}

/// What one target's run did.
#[derive(Debug, Default)]
struct Outcome {
    executions: u64,
    exec_per_sec: u64,
    cov: u64,
    ft: u64,
    corpus: usize,
    elapsed: Duration,
    /// The input libFuzzer kept for a crash, hang or out-of-memory.
    artifact: Option<PathBuf>,
    failed: Option<String>,
    log: PathBuf,
}

fn fuzz_all(
    tools: &Tools,
    targets: &[String],
    seconds: Option<u64>,
    runs: Option<u64>,
    strict: bool,
) -> Result<()> {
    let mut outcomes = Vec::new();
    for t in targets {
        let o = fuzz_one(tools, t, seconds, runs, strict)?;
        let status = match &o.failed {
            None => "ok".to_owned(),
            Some(why) => format!("FAILED: {why}"),
        };
        eprintln!(
            "fuzz: {t}: {} executions in {:.0?}, cov {} ft {}, {status}",
            o.executions, o.elapsed, o.cov, o.ft
        );
        outcomes.push((t, o));
    }
    print_table(&outcomes);
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| o.failed.is_some())
        .collect();
    for (t, o) in &failed {
        eprintln!("\n{t}: {}", o.failed.as_deref().unwrap_or_default());
        eprintln!("  log: {}", o.log.display());
        if let Some(a) = &o.artifact {
            eprintln!("  input: {}", a.display());
            if let Ok(bytes) = std::fs::read(a) {
                eprintln!("  input ({} bytes, hex): {}", bytes.len(), hex(&bytes, 512));
            }
            eprintln!(
                "  replay: {} {}",
                tools.bin_dir.join(t.as_str()).display(),
                a.display()
            );
        }
        let log = std::fs::read_to_string(&o.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines
            .iter()
            .position(|l| l.contains("panicked at") || l.contains("ERROR: libFuzzer"))
            .unwrap_or(lines.len().saturating_sub(30));
        for l in lines.iter().skip(from).take(40) {
            eprintln!("  | {l}");
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} fuzz targets failed: {}",
            failed.len(),
            outcomes.len(),
            failed
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

fn fuzz_one(
    tools: &Tools,
    target: &str,
    seconds: Option<u64>,
    runs: Option<u64>,
    strict: bool,
) -> Result<Outcome> {
    let corpus = tools.cache.join("fuzz-corpus").join(target);
    let artifacts = root().join("fuzz/artifacts").join(target);
    let logs = tools.cache.join("fuzz-logs");
    for d in [&corpus, &artifacts, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // Named by this process, so that runs at the same time (CI and someone's long run) never
    // write into one file; a clean run's log then becomes `<target>.log`.
    let log = logs.join(format!("{target}-{}.log", std::process::id()));
    minimize_if_large(tools, target, &corpus, &logs)?;
    let seeds = root().join("fuzz/seeds").join(target);
    let before: Vec<PathBuf> = files(&artifacts);
    let mut cmd = Command::new(tools.bin_dir.join(target));
    cmd.arg("-print_final_stats=1")
        .arg(format!("-timeout={TIMEOUT_SECS}"))
        .arg("-rss_limit_mb=2048")
        .arg(format!("-artifact_prefix={}/", artifacts.display()));
    if let Some(s) = seconds {
        cmd.arg(format!("-max_total_time={s}"));
    }
    if let Some(n) = runs {
        cmd.arg(format!("-runs={n}"));
    }
    cmd.arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    if strict {
        cmd.env_remove(SUPPRESS_ENV);
    }
    let limit = match (seconds, runs) {
        (Some(s), Some(n)) => format!("{s} s or {n} runs"),
        (Some(s), None) => format!("{s} s"),
        (None, Some(n)) => format!("{n} runs"),
        (None, None) => "no limit".into(),
    };
    eprintln!("fuzz: {target} ({limit}), log {}", log.display());
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let last_input = artifacts.join("last-input");
    let _ = std::fs::remove_file(&last_input);
    let t = Instant::now();
    let mut child = cmd
        .env("RUST_BACKTRACE", "1")
        .env(LAST_INPUT_ENV, &last_input)
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("running {}", tools.bin_dir.join(target).display()))?;
    // libFuzzer ends itself at its limits; this only ends a process that cannot: one stuck
    // without using the CPU, or one far past its time.
    let deadline = seconds.map(|s| Duration::from_secs(s + 300));
    let (mut cpu, mut progress) = (cpu_ticks(child.id()), Instant::now());
    let mut stuck = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
        let now = cpu_ticks(child.id());
        if now != cpu {
            (cpu, progress) = (now, Instant::now());
        }
        let why = if progress.elapsed() > STUCK_AFTER {
            Some(format!(
                "stuck: no CPU used for {} s (likely a crash whose handler deadlocked: heap \
                 corruption found inside malloc)",
                STUCK_AFTER.as_secs()
            ))
        } else if deadline.is_some_and(|d| t.elapsed() > d) {
            Some("still running long after its time limit".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            let _ = child.kill();
            stuck = Some(why);
            break child.wait()?;
        }
    };
    let elapsed = t.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut o = Outcome {
        elapsed,
        corpus: files(&corpus).len(),
        log,
        ..Outcome::default()
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            o.executions = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            o.exec_per_sec = v.trim().parse().unwrap_or(0);
        } else if line.contains(" cov: ") {
            o.cov = field(line, "cov:").unwrap_or(o.cov);
            o.ft = field(line, "ft:").unwrap_or(o.ft);
        } else if let Some((_, p)) = line.split_once("Test unit written to ") {
            o.artifact = Some(PathBuf::from(p.trim()));
        }
    }
    if o.executions == 0 {
        // Ended before its final statistics: the last status line says how far it got.
        o.executions = text
            .lines()
            .filter_map(|l| l.strip_prefix('#')?.split_whitespace().next()?.parse().ok())
            .max()
            .unwrap_or(0);
    }
    if o.exec_per_sec == 0 && elapsed.as_secs_f64() > 0.0 {
        o.exec_per_sec = (o.executions as f64 / elapsed.as_secs_f64()) as u64;
    }
    if o.artifact.is_none() {
        o.artifact = files(&artifacts)
            .into_iter()
            .find(|f| !before.contains(f) && *f != last_input);
    }
    // A process that died or was ended without writing its input: the input the target saved
    // before running it (targets with C code do) is the one.
    if !status.success()
        && o.artifact.is_none()
        && let Ok(input) = std::fs::read(&last_input)
    {
        let kept = artifacts.join(format!("crash-or-hang-{:016x}", fnv1a(&input)));
        if std::fs::write(&kept, &input).is_ok() {
            o.artifact = Some(kept);
        }
    }
    let _ = std::fs::remove_file(&last_input);
    if let Some(why) = stuck {
        o.failed = Some(why);
    } else if !status.success() {
        let what = text
            .lines()
            .find(|l| l.contains("ERROR: libFuzzer:"))
            .map(|l| {
                l.split("ERROR: libFuzzer:")
                    .nth(1)
                    .unwrap_or(l)
                    .trim()
                    .to_owned()
            })
            .unwrap_or_else(|| format!("exited with {status}"));
        let panic = text
            .lines()
            .skip_while(|l| !l.contains("panicked at"))
            .nth(1)
            .map(|l| format!(" ({})", l.trim()))
            .unwrap_or_default();
        o.failed = Some(format!("{what}{panic}"));
    } else if o.executions == 0 {
        o.failed = Some("no executions (see the log)".into());
    }
    if o.failed.is_none() {
        let last = logs.join(format!("{target}.log"));
        if std::fs::rename(&o.log, &last).is_ok() {
            o.log = last;
        }
    }
    Ok(o)
}

/// User and system CPU time of process `pid` in clock ticks (0 where /proc cannot say).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses; utime and stime
    // are the 14th and 15th fields of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    num(11) + num(12)
}

/// A 64-bit FNV-1a hash, to name a saved input by its content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The number after `key` in a libFuzzer status line.
fn field(line: &str, key: &str) -> Option<u64> {
    let rest = line.split_once(key)?.1.trim_start();
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A cached corpus past this many inputs (and past twice what its last merge kept) is merged
/// down (libFuzzer's `-merge=1`: the inputs that add coverage, smallest first) before a run: a
/// 20 s CI run otherwise spends all its time replaying it (h264_decode's 47 k inputs took 71 s
/// and fuzzed nothing new; merged, 6.9 k with the same coverage).
const MAX_CORPUS_FILES: usize = 4000;

fn minimize_if_large(tools: &Tools, target: &str, corpus: &Path, logs: &Path) -> Result<()> {
    let n = files(corpus).len();
    let marker = corpus.with_extension("merged");
    let last: usize = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if n <= MAX_CORPUS_FILES.max(2 * last) {
        return Ok(());
    }
    let merged = corpus.with_extension("merging");
    let _ = std::fs::remove_dir_all(&merged);
    std::fs::create_dir_all(&merged).with_context(|| format!("creating {}", merged.display()))?;
    let log = logs.join(format!("{target}-merge-{}.log", std::process::id()));
    eprintln!(
        "fuzz: {target}: merging its corpus of {n} inputs down (once), log {}",
        log.display()
    );
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let status = Command::new(tools.bin_dir.join(target))
        .arg("-merge=1")
        .arg(format!("-timeout={TIMEOUT_SECS}"))
        .arg("-rss_limit_mb=2048")
        .arg(&merged)
        .arg(corpus)
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("running {} -merge=1", tools.bin_dir.join(target).display()))?;
    let kept = files(&merged).len();
    if !status.success() || kept == 0 {
        let _ = std::fs::remove_dir_all(&merged);
        bail!(
            "merging {target}'s corpus failed ({status}, {kept} inputs kept); the corpus is \
             untouched; see {}",
            log.display()
        );
    }
    std::fs::remove_dir_all(corpus).with_context(|| format!("removing {}", corpus.display()))?;
    std::fs::rename(&merged, corpus).with_context(|| format!("renaming {}", merged.display()))?;
    std::fs::write(&marker, kept.to_string())
        .with_context(|| format!("writing {}", marker.display()))?;
    eprintln!("fuzz: {target}: corpus merged from {n} to {kept} inputs");
    Ok(())
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn hex(bytes: &[u8], max: usize) -> String {
    let mut s: String = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > max {
        s.push('…');
    }
    s
}

fn print_table(outcomes: &[(&String, Outcome)]) {
    println!(
        "\n| target | executions | exec/s | cov | ft | corpus | time | crashes |\n\
         |---|---:|---:|---:|---:|---:|---:|---|"
    );
    for (t, o) in outcomes {
        let crashes = match (&o.failed, &o.artifact) {
            (None, _) => "0".to_owned(),
            (Some(why), Some(a)) => format!("1: {why} ({})", a.display()),
            (Some(why), None) => format!("1: {why}"),
        };
        println!(
            "| {t} | {} | {} | {} | {} | {} | {:.0?} | {crashes} |",
            o.executions, o.exec_per_sec, o.cov, o.ft, o.corpus, o.elapsed
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_of_a_process() {
        let me = std::process::id();
        let start = cpu_ticks(me);
        let mut x = 0u64;
        let t = Instant::now();
        while cpu_ticks(me) == start && t.elapsed() < Duration::from_secs(5) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(cpu_ticks(me) > start, "{x}");
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn reads_libfuzzer_status_lines() {
        let l = "#162074\tDONE   cov: 3108 ft: 13188 corp: 1708/1232Kb lim: 3831 exec/s: 5228";
        assert_eq!(field(l, "cov:"), Some(3108));
        assert_eq!(field(l, "ft:"), Some(13188));
        assert_eq!(field(l, "rss:"), None);
    }

    #[test]
    fn options() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = parse(&a(&["--minutes", "2", "relay", "stun"])).unwrap();
        assert_eq!((o.seconds, o.runs), (Some(120), None));
        assert_eq!(o.targets, ["relay", "stun"]);
        let o = parse(&a(&["--runs", "1000"])).unwrap();
        assert_eq!((o.seconds, o.runs), (None, Some(1000)));
        assert!(parse(&a(&["--minutes"])).is_err());
        assert!(parse(&a(&["--seconds", "0"])).is_err());
        assert!(parse(&a(&["--bogus"])).is_err());
        assert_eq!(parse(&[]).unwrap().seconds, Some(60));
    }

    #[test]
    fn every_target_in_the_manifest_is_found() {
        let t = targets().unwrap();
        for name in [
            "relay",
            "stun",
            "h264_decode",
            "session_control",
            "rendezvous_core",
            "path_agent",
        ] {
            assert!(t.iter().any(|x| x == name), "{name} missing from {t:?}");
        }
    }
}
