//! Linux: the parent's side ([`IsolatedDecoder`]) here; the worker in `worker`, its sandbox in
//! `sandbox`, the shared memory's mappings in `raw`.

mod raw;
mod sandbox;
mod worker;

use std::fmt;
use std::io::{self, IoSlice, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use memmap2::Mmap;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

pub use worker::{worker_main, worker_main_with_test_hooks};

use super::protocol::{
    ANSWER_LEN, Answer, Init, Layout, REQUEST_HEADER_LEN, RequestHeader, SHM_LEN, parse_answer,
};
use super::{FRAME_TIMEOUT, SPAWN_TIMEOUT};
use crate::Decode;
use crate::convert::PlanesRef;
use crate::decoder::{check_input, write_picture};
use crate::{CodecError, DecodedFrame};

/// An H.264 decoder that runs OpenH264 in a sandboxed child process. See the [module
/// documentation](crate::isolated).
pub struct IsolatedDecoder {
    /// The worker while it runs; why it stopped once it did.
    state: State,
    /// Our read-only view of the picture memory.
    shm: Mmap,
    /// Sequence number of the last request (0: the ready answer).
    seq: u32,
    /// Request buffer: header and Annex-B bytes, written at once.
    request: Vec<u8>,
}

enum State {
    Running { child: Child, sock: UnixStream },
    Stopped(String),
}

impl fmt::Debug for IsolatedDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("IsolatedDecoder");
        match &self.state {
            State::Running { child, .. } => s.field("pid", &child.id()),
            State::Stopped(why) => s.field("stopped", why),
        };
        s.finish_non_exhaustive()
    }
}

/// Why an exchange with the worker failed.
enum Failure {
    /// No answer within this time.
    Timeout(Duration),
    /// End of input or a broken pipe: the worker exited or closed its side.
    Closed,
    Io(io::Error),
    Protocol(String),
}

impl IsolatedDecoder {
    /// Starts `cmd` as the worker, hands it the shared picture memory and waits until it is set
    /// up and sandboxed (at most 5 s). `cmd` must run [`worker_main`](crate::isolated::worker_main);
    /// its stdin and stdout are replaced, its stderr is left as set (the worker reports why it
    /// stops there).
    ///
    /// `cmd` must start the worker directly (a wrapper may `exec` it, not fork it): the worker
    /// refuses to start unless this process is its parent.
    ///
    /// Call this from the thread that will own the decoder and outlive it (the decode thread):
    /// the worker is killed when that thread ends (`PR_SET_PDEATHSIG` follows the spawning
    /// thread), and in any case when this process dies.
    ///
    /// # Errors
    ///
    /// [`CodecError::WorkerSpawn`] if the process cannot be started, dies, or does not answer
    /// as a worker in time.
    pub fn spawn(mut cmd: Command) -> Result<Self, CodecError> {
        let failed =
            |what: &str, e: &dyn fmt::Display| CodecError::WorkerSpawn(format!("{what}: {e}"));
        let (shm_fd, shm) = raw::create_picture_memory(SHM_LEN)
            .map_err(|e| failed("creating the picture memory", &e))?;
        let (sock, theirs) = UnixStream::pair().map_err(|e| failed("socketpair", &e))?;
        let theirs_out = theirs.try_clone().map_err(|e| failed("socketpair", &e))?;
        cmd.stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::from(OwnedFd::from(theirs_out)));
        let child = cmd.spawn().map_err(|e| failed("spawn", &e))?;
        // `cmd` holds our copies of the worker's ends: closing them makes the worker's death an
        // end of input here.
        drop(cmd);
        let mut this = Self {
            state: State::Running { child, sock },
            shm,
            seq: 0,
            request: Vec::new(),
        };
        let init = Init {
            shm_len: SHM_LEN as u64,
            parent_pid: std::process::id(),
        };
        let ready = this
            .send_init(&init, shm_fd)
            .and_then(|()| this.read_answer(Deadline::after(SPAWN_TIMEOUT)));
        match ready {
            Ok(Answer::Ready) => Ok(this),
            Ok(other) => {
                let e = this.stop(Failure::Protocol(format!("{other:?} instead of ready")));
                Err(CodecError::WorkerSpawn(e.to_string()))
            }
            Err(failure) => Err(CodecError::WorkerSpawn(this.stop(failure).to_string())),
        }
    }

    /// The worker's process id while it runs; `None` once it stopped.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Running { child, .. } => Some(child.id()),
            State::Stopped(_) => None,
        }
    }

    /// Sends one request and reads its answer, within [`FRAME_TIMEOUT`].
    fn exchange(&mut self, annexb: &[u8]) -> Result<Answer, Failure> {
        let deadline = Deadline::after(FRAME_TIMEOUT);
        self.seq = self.seq.checked_add(1).unwrap_or(1);
        let header = RequestHeader {
            seq: self.seq,
            // `check_input` bounded the length by MAX_ENCODED_FRAME_LEN (8 MiB).
            len: u32::try_from(annexb.len())
                .map_err(|_| Failure::Protocol("request too long".into()))?,
        };
        self.request.clear();
        self.request.extend_from_slice(&header.encode());
        self.request.extend_from_slice(annexb);
        debug_assert_eq!(self.request.len(), REQUEST_HEADER_LEN + annexb.len());
        let mut sock = self.sock()?;
        let mut sent = 0;
        while sent < self.request.len() {
            sock.set_write_timeout(Some(deadline.left()?))
                .map_err(Failure::Io)?;
            match sock.write(&self.request[sent..]) {
                Ok(0) => return Err(Failure::Closed),
                Ok(n) => sent += n,
                Err(e) => deadline.classify(e)?,
            }
        }
        self.read_answer(deadline)
    }

    /// Reads one answer to the current request before `deadline`.
    fn read_answer(&self, deadline: Deadline) -> Result<Answer, Failure> {
        let mut sock = self.sock()?;
        let mut buf = [0; ANSWER_LEN];
        let mut filled = 0;
        while filled < ANSWER_LEN {
            sock.set_read_timeout(Some(deadline.left()?))
                .map_err(Failure::Io)?;
            match sock.read(&mut buf[filled..]) {
                Ok(0) => return Err(Failure::Closed),
                Ok(n) => filled += n,
                Err(e) => deadline.classify(e)?,
            }
        }
        parse_answer(&buf, self.seq).map_err(Failure::Protocol)
    }

    fn send_init(&self, init: &Init, shm_fd: OwnedFd) -> Result<(), Failure> {
        let sock = self.sock()?;
        sock.set_write_timeout(Some(SPAWN_TIMEOUT))
            .map_err(Failure::Io)?;
        let fds = [shm_fd.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(Failure::Protocol("no room for the descriptor".into()));
        }
        let bytes = init.encode();
        // A socket buffer takes the 24 bytes at once; anything less is treated as a failure.
        match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(&bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err(Failure::Protocol("set-up message cut short".into())),
            Err(e) => Deadline::after(SPAWN_TIMEOUT).classify(e.into()),
        }
    }

    fn sock(&self) -> Result<&UnixStream, Failure> {
        match &self.state {
            State::Running { sock, .. } => Ok(sock),
            State::Stopped(_) => Err(Failure::Closed),
        }
    }

    /// Ends the worker after `failure` and returns the error that tells why. After this the
    /// decoder is stopped for good.
    fn stop(&mut self, failure: Failure) -> CodecError {
        let state = std::mem::replace(&mut self.state, State::Stopped(String::new()));
        let error = match state {
            State::Stopped(why) => CodecError::WorkerExited(format!("stopped after: {why}")),
            State::Running { mut child, sock } => {
                drop(sock);
                match failure {
                    Failure::Closed => CodecError::WorkerExited(reap(&mut child)),
                    Failure::Timeout(after) => {
                        kill(&mut child);
                        CodecError::WorkerTimeout(after)
                    }
                    Failure::Io(e) => {
                        kill(&mut child);
                        CodecError::WorkerExited(format!("killed after an i/o error: {e}"))
                    }
                    Failure::Protocol(why) => {
                        kill(&mut child);
                        CodecError::WorkerProtocol(why)
                    }
                }
            }
        };
        self.state = State::Stopped(error.to_string());
        error
    }
}

impl Decode for IsolatedDecoder {
    /// Decodes one encoded frame into `out` exactly as the in-process [`Decoder`](crate::Decoder)
    /// does (same limits, results and errors, same effect on `out`), the decoding itself done by
    /// the worker. At most 2 s per frame.
    ///
    /// # Errors
    ///
    /// As [`Decoder`](crate::Decoder)'s, and when the worker fails:
    /// [`CodecError::WorkerExited`] (it died, or it was stopped earlier),
    /// [`CodecError::WorkerTimeout`], [`CodecError::WorkerProtocol`]. After these the worker is
    /// gone (killed and reaped) and every later call fails: spawn a new decoder, and ask the
    /// sender for a key frame. `out` is then empty (0x0).
    fn decode_into(&mut self, annexb: &[u8], out: &mut DecodedFrame) -> Result<bool, CodecError> {
        if !check_input(annexb)? {
            return Ok(false);
        }
        let answer = match self.exchange(annexb) {
            Ok(answer) => answer,
            Err(failure) => {
                *out = DecodedFrame::default();
                return Err(self.stop(failure));
            }
        };
        match answer {
            Answer::NoPicture => Ok(false),
            Answer::DecoderError(message) => Err(CodecError::Decoder(message)),
            Answer::ConversionError(message) => {
                *out = DecodedFrame::default();
                Err(CodecError::Conversion(message))
            }
            Answer::Picture { width, height } => {
                let shm = &self.shm[..];
                let result = write_picture(
                    width as usize,
                    height as usize,
                    |width, height| {
                        let Some(l) = Layout::new(width, height, shm.len()) else {
                            return Err(CodecError::WorkerProtocol(format!(
                                "a {width}x{height} picture does not fit the shared memory"
                            )));
                        };
                        Ok(PlanesRef {
                            width,
                            height,
                            y: &shm[l.y],
                            u: &shm[l.u],
                            v: &shm[l.v],
                            y_stride: l.y_stride,
                            uv_stride: l.uv_stride,
                        })
                    },
                    out,
                );
                if let Err(CodecError::WorkerProtocol(why)) = result {
                    return Err(self.stop(Failure::Protocol(why)));
                }
                result
            }
            Answer::Ready => Err(self.stop(Failure::Protocol("a second ready answer".into()))),
        }
    }
}

impl Drop for IsolatedDecoder {
    fn drop(&mut self) {
        if let State::Running { child, .. } = &mut self.state {
            kill(child);
        }
    }
}

/// When an exchange must be over.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    /// The timeout it was set with, for the error.
    after: Duration,
}

impl Deadline {
    fn after(after: Duration) -> Self {
        Self {
            at: Instant::now() + after,
            after,
        }
    }

    /// Time left, or the timeout failure.
    fn left(self) -> Result<Duration, Failure> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(Failure::Timeout(self.after))
        } else {
            Ok(left)
        }
    }

    /// Classifies an I/O error on the socket: `Ok` to retry (interrupted), else the failure.
    fn classify(self, e: io::Error) -> Result<(), Failure> {
        match e.kind() {
            io::ErrorKind::Interrupted => Ok(()),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                Err(Failure::Timeout(self.after))
            }
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Err(Failure::Closed),
            _ => Err(Failure::Io(e)),
        }
    }
}

/// Waits for a worker that closed its side to exit (up to 500 ms, then kills it), and says how
/// it ended.
fn reap(child: &mut Child) -> String {
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        match child.try_wait() {
            Ok(Some(status)) => return describe(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break,
        }
    }
    kill(child);
    "closed its pipes but kept running; killed".into()
}

/// Kills and reaps the worker.
fn kill(child: &mut Child) {
    // Fails only if it already exited, which `wait` then reaps.
    let _ = child.kill();
    let _ = child.wait();
}

fn describe(status: ExitStatus) -> String {
    if status.signal() == Some(libc::SIGSYS) {
        format!("{status}, a system call its sandbox forbids")
    } else {
        status.to_string()
    }
}
