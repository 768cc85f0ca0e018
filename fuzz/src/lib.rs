//! What the fuzz targets share: reading a sequence of operations out of the fuzzer's bytes
//! ([`Reader`], and [`Writer`] to make seeds in the same format), a random number generator the
//! fuzzer controls ([`FuzzRng`]), and writing each target's seeds ([`write_seeds_if_asked`]).
//!
//! The targets are run by `cargo xtask fuzz` (coverage-guided libFuzzer through cargo-fuzz);
//! `cargo xtask fuzz --write-seeds` asks every target binary for its seeds and stores them under
//! `fuzz/seeds/<target>/`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The environment variable that makes a target binary write its seeds into
/// `$QUICDESK_FUZZ_WRITE_SEEDS/<target>/` and exit instead of fuzzing.
pub const WRITE_SEEDS_ENV: &str = "QUICDESK_FUZZ_WRITE_SEEDS";

/// The environment variable naming the file where [`remember_input`] saves each input.
pub const LAST_INPUT_ENV: &str = "QUICDESK_FUZZ_LAST_INPUT";

/// For targets that run C code: saves `data` to `$QUICDESK_FUZZ_LAST_INPUT` (when set) before
/// the target runs it. When C code aborts inside malloc (glibc found the heap corrupted),
/// libFuzzer's crash handler deadlocks on the allocator's lock and never writes the input;
/// `cargo xtask fuzz` then ends the stuck process and keeps this file. One small file write per
/// execution.
pub fn remember_input(data: &[u8]) {
    static PATH: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    if let Some(path) = PATH.get_or_init(|| std::env::var_os(LAST_INPUT_ENV).map(PathBuf::from)) {
        let _ = std::fs::write(path, data);
    }
}

/// The environment variable naming known findings (comma-separated) whose checks a run
/// relaxes, see [`suppressed`].
pub const SUPPRESS_ENV: &str = "QUICDESK_FUZZ_SUPPRESS";

/// Whether the known finding `name` is suppressed for this run ([`SUPPRESS_ENV`]): a finding
/// that was reported and not fixed yet would otherwise stop every run of its target at once.
/// CI never sets it; a target with a suppressed check is not clean.
pub fn suppressed(name: &str) -> bool {
    static LIST: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        std::env::var(SUPPRESS_ENV)
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .iter()
    .any(|s| s == name)
}

/// Reads fields off the front of the fuzzer's bytes. Past the end every read gives zeros (or an
/// empty slice), so any input decodes to some sequence of operations.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Exactly `N` bytes, zero-padded at the end.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let got = self.bytes(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    /// A blob with a one-byte length before it.
    pub fn blob8(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }

    /// A blob with a two-byte length before it.
    pub fn blob16(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.bytes(n)
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Builds inputs in [`Reader`]'s format, for seeds.
#[derive(Debug, Default, Clone)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    /// See [`Reader::blob8`]; panics (seed code only) when `b` is too long.
    pub fn blob8(&mut self, b: &[u8]) -> &mut Self {
        self.u8(u8::try_from(b.len()).expect("seed blob fits a one-byte length"));
        self.bytes(b)
    }

    /// See [`Reader::blob16`]; panics (seed code only) when `b` is too long.
    pub fn blob16(&mut self, b: &[u8]) -> &mut Self {
        self.u16(u16::try_from(b.len()).expect("seed blob fits a two-byte length"));
        self.bytes(b)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// A random number generator whose output the fuzzer chooses: the given bytes first, then a
/// fixed pseudo-random sequence (never a constant, so rejection sampling cannot loop forever).
#[derive(Debug, Clone)]
pub struct FuzzRng<'a> {
    bytes: &'a [u8],
    state: u64,
}

impl<'a> FuzzRng<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            state: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn next_byte(&mut self) -> u8 {
        if let Some((&b, rest)) = self.bytes.split_first() {
            self.bytes = rest;
            return b;
        }
        // splitmix64
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as u8
    }
}

impl rand::RngCore for FuzzRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for d in dst {
            *d = self.next_byte();
        }
    }
}

/// A wire frame (`proto::wire`: 4-byte big-endian length, then the body) around `body`,
/// so that fuzzed bytes reach the message decoder rather than stopping at the length check.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// If [`WRITE_SEEDS_ENV`] names a directory, writes `seeds()` into `<dir>/<target>/` (one file
/// per seed, named by its index) and exits the process; otherwise returns at once. Called from
/// each target's `init`.
pub fn write_seeds_if_asked(target: &str, seeds: impl FnOnce() -> Vec<Vec<u8>>) {
    let Some(dir) = std::env::var_os(WRITE_SEEDS_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir).join(target);
    let result = (|| -> std::io::Result<usize> {
        std::fs::create_dir_all(&dir)?;
        let seeds = seeds();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed)?;
        }
        Ok(seeds.len())
    })();
    match result {
        Ok(n) => {
            eprintln!("{target}: wrote {n} seeds to {}", dir.display());
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("{target}: cannot write seeds to {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
}

/// The rules of `proto::rendezvous::sane_candidates` for its output `out`, given `given`, the
/// receiver's address as others see it (`seen_as`) and its `own` addresses: at most
/// `MAX_CANDIDATES`, no repeats, unmapped, no port 0, no unspecified, multicast, broadcast or
/// link-local address, loopback only for a receiver on loopback, none of `own`, and each one of
/// the given addresses.
pub fn check_candidates(
    out: &[SocketAddr],
    given: &[SocketAddr],
    seen_as: Option<SocketAddr>,
    own: &[SocketAddr],
) {
    use std::net::IpAddr;
    assert!(out.len() <= proto::rendezvous::MAX_CANDIDATES);
    let local_only = seen_as.is_some_and(|a| a.ip().to_canonical().is_loopback());
    for (i, a) in out.iter().enumerate() {
        assert!(!out[..i].contains(a), "repeated candidate {a}");
        let ip = a.ip();
        assert_eq!(ip, ip.to_canonical(), "mapped candidate {a}");
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
        assert!(
            a.port() != 0
                && !ip.is_unspecified()
                && !ip.is_multicast()
                && ip != IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
                && !link_local,
            "candidate {a} is nowhere to send to"
        );
        assert!(local_only || !ip.is_loopback(), "loopback candidate {a}");
        assert!(
            !own.iter()
                .any(|o| o.port() == a.port() && o.ip().to_canonical() == ip),
            "candidate {a} is the receiver itself"
        );
        assert!(
            given
                .iter()
                .any(|g| g.port() == a.port() && g.ip().to_canonical() == ip),
            "candidate {a} came from nowhere"
        );
    }
}
