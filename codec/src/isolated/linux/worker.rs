//! The worker process: set up, enter the sandbox, then decode requests from stdin until it
//! closes.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

use memmap2::MmapMut;
use openh264::decoder::Decoder as H264Decoder;
use openh264::formats::YUVSource;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use super::{raw, sandbox};
use crate::MAX_ENCODED_FRAME_LEN;
use crate::decoder::{SequenceGuard, new_openh264, picture_size};
use crate::isolated::protocol::{
    ANSWER_LEN, Answer, INIT_LEN, Init, Layout, REQUEST_HEADER_LEN, RequestHeader, SHM_LEN,
    encode_answer,
};

/// Runs the worker and exits the process. See [`crate::isolated::worker_main`].
pub fn worker_main() -> ! {
    exit(serve(&Hooks::default()))
}

/// [`worker_main`] with the test hooks read from the environment. See
/// [`crate::isolated::worker_main_with_test_hooks`].
pub fn worker_main_with_test_hooks() -> ! {
    let hooks = Hooks::from_env();
    let result = match &hooks.probe {
        Some(probe) => run_probe(probe, hooks.no_sandbox),
        None => serve(&hooks),
    };
    exit(result)
}

fn exit(result: Result<(), String>) -> ! {
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("quicdesk decoder process: {e}");
            1
        }
    };
    std::process::exit(code)
}

/// Test hooks, read from the environment by [`worker_main_with_test_hooks`] only.
#[derive(Debug, Default)]
struct Hooks {
    /// `QUICDESK_DECODER_TEST_PROBE`: instead of serving, try something the sandbox forbids and
    /// print on stdout whether it worked.
    probe: Option<Probe>,
    /// `QUICDESK_DECODER_TEST_NO_SANDBOX=1`: run the probe without the sandbox, so a test can
    /// tell that the probe works. Honoured for probes only: requests are never decoded outside
    /// the sandbox.
    no_sandbox: bool,
    /// `QUICDESK_DECODER_TEST_LIE`: answer every request falsely, the way a compromised worker
    /// could.
    lie: Option<Lie>,
}

#[derive(Debug)]
enum Probe {
    /// `open:PATH`: open a file for reading (killed by the sandbox).
    Open(String),
    /// `cwd`: ask for the working directory (refused with EPERM by the sandbox).
    Cwd,
}

#[derive(Debug, Clone, Copy)]
enum Lie {
    /// Bytes that are no answer at all.
    Garbage,
    /// A picture far larger than allowed.
    Huge,
    /// The answer to another request.
    WrongSeq,
    /// An unknown status.
    BadStatus,
    /// Half an answer, then exit.
    Truncated,
    /// No answer: wait for a request that never comes.
    Stall,
    /// Abort on the first request.
    Crash,
}

impl Hooks {
    fn from_env() -> Self {
        let var = |name| std::env::var(name).ok();
        let probe = var("QUICDESK_DECODER_TEST_PROBE").map(|p| match p.strip_prefix("open:") {
            Some(path) => Probe::Open(path.to_owned()),
            None => Probe::Cwd,
        });
        let lie = var("QUICDESK_DECODER_TEST_LIE").and_then(|l| match l.as_str() {
            "garbage" => Some(Lie::Garbage),
            "huge" => Some(Lie::Huge),
            "seq" => Some(Lie::WrongSeq),
            "status" => Some(Lie::BadStatus),
            "truncated" => Some(Lie::Truncated),
            "stall" => Some(Lie::Stall),
            "crash" => Some(Lie::Crash),
            _ => None,
        });
        Self {
            probe,
            no_sandbox: var("QUICDESK_DECODER_TEST_NO_SANDBOX").as_deref() == Some("1"),
            lie,
        }
    }
}

fn run_probe(probe: &Probe, no_sandbox: bool) -> Result<(), String> {
    // Set up as a real worker does, so the sandbox is tested on the same process state.
    let _decoder = new_openh264().map_err(|e| e.to_string())?;
    if !no_sandbox {
        sandbox::enter(None)?;
    }
    let line = match probe {
        Probe::Open(path) => match std::fs::File::open(path) {
            Ok(_) => "open: ok".to_owned(),
            Err(e) => format!("open: {e}"),
        },
        Probe::Cwd => match std::env::current_dir() {
            Ok(_) => "cwd: ok".to_owned(),
            Err(e) => format!("cwd: {e}"),
        },
    };
    write_all(format!("{line}\n").as_bytes())
}

/// Serves requests until stdin closes.
fn serve(hooks: &Hooks) -> Result<(), String> {
    let (init, memfd) = receive_init()?;
    if init.shm_len != SHM_LEN as u64 {
        return Err(format!("picture memory of {} bytes", init.shm_len));
    }
    let mut shm =
        raw::map_picture_memory(memfd, SHM_LEN).map_err(|e| format!("picture memory: {e}"))?;
    let mut decoder = new_openh264().map_err(|e| e.to_string())?;
    let mut sequence = SequenceGuard::default();
    let mut request = Vec::new();
    sandbox::enter(Some(init.parent_pid))?;
    write_all(&encode_answer(0, &Answer::Ready))?;
    loop {
        let mut header = [0; REQUEST_HEADER_LEN];
        if !read_exact(&mut header)? {
            return Ok(()); // the parent closed: done
        }
        let header = RequestHeader::parse(&header).ok_or("malformed request")?;
        let len = header.len as usize;
        if len > MAX_ENCODED_FRAME_LEN {
            return Err(format!("request of {len} bytes"));
        }
        request.resize(len, 0);
        if !read_exact(&mut request)? {
            return Err("request cut short".into());
        }
        let answer = decode((&mut decoder, &mut sequence), &request, &mut shm);
        match hooks.lie {
            None => write_all(&encode_answer(header.seq, &answer))?,
            Some(lie) => tell(lie, header.seq, &answer)?,
        }
    }
}

/// Decodes one request and leaves the picture, if any, in `shm`.
fn decode(
    (decoder, sequence): (&mut H264Decoder, &mut SequenceGuard),
    annexb: &[u8],
    shm: &mut MmapMut,
) -> Answer {
    if annexb.is_empty() {
        return Answer::NoPicture; // as `Decoder::decode_into`: OpenH264 never sees it
    }
    // As `Decoder::decode_into`: a new sequence gets a new OpenH264 decoder.
    if let Err(e) = sequence.before_decode(decoder, annexb) {
        return match e {
            crate::CodecError::Decoder(m) => Answer::DecoderError(m),
            other => Answer::DecoderError(other.to_string()),
        };
    }
    let yuv = match decoder.decode(annexb) {
        Ok(Some(yuv)) => yuv,
        Ok(None) => return Answer::NoPicture,
        Err(e) => return Answer::DecoderError(e.to_string()),
    };
    let (w, h) = yuv.dimensions();
    let saturate = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let answer = Answer::Picture {
        width: saturate(w),
        height: saturate(h),
    };
    // A size the parent refuses is told without planes: it gives the same error as in-process.
    let Ok((width, height)) = picture_size(w, h) else {
        return answer;
    };
    let Some(layout) = Layout::new(width, height, shm.len()) else {
        // Cannot happen: SHM_LEN holds every picture `picture_size` accepts.
        return Answer::ConversionError("picture does not fit the shared memory".into());
    };
    let (y_stride, uv_stride, _) = yuv.strides();
    let copied = copy_plane(yuv.y(), y_stride, w, h, &mut shm[layout.y.clone()])
        && copy_plane(
            yuv.u(),
            uv_stride,
            layout.uv_stride,
            layout.uv_rows,
            &mut shm[layout.u.clone()],
        )
        && copy_plane(
            yuv.v(),
            uv_stride,
            layout.uv_stride,
            layout.uv_rows,
            &mut shm[layout.v.clone()],
        );
    if copied {
        answer
    } else {
        Answer::ConversionError("decoded planes shorter than the picture".into())
    }
}

/// Copies `rows` rows of `width` bytes, `stride` apart in `src`, tightly into `dst`. False if
/// `src` is too short.
fn copy_plane(src: &[u8], stride: usize, width: usize, rows: usize, dst: &mut [u8]) -> bool {
    if stride == width && src.len() >= dst.len() {
        dst.copy_from_slice(&src[..dst.len()]);
        return true;
    }
    for (row, out) in dst.chunks_exact_mut(width).take(rows).enumerate() {
        let Some(line) = row
            .checked_mul(stride)
            .and_then(|start| src.get(start..start.checked_add(width)?))
        else {
            return false;
        };
        out.copy_from_slice(line);
    }
    true
}

/// Answers falsely, for the tests of the parent's checks.
fn tell(lie: Lie, seq: u32, truth: &Answer) -> Result<(), String> {
    match lie {
        Lie::Garbage => write_all(&[0xa5; ANSWER_LEN]),
        Lie::Huge => write_all(&encode_answer(
            seq,
            &Answer::Picture {
                width: u32::MAX,
                height: 65536,
            },
        )),
        Lie::WrongSeq => write_all(&encode_answer(seq.wrapping_add(1), truth)),
        Lie::BadStatus => {
            let mut buf = encode_answer(seq, &Answer::NoPicture);
            buf[8] = 0xee;
            write_all(&buf)
        }
        Lie::Truncated => {
            write_all(&encode_answer(seq, truth)[..ANSWER_LEN / 2])?;
            Err("lying: exit after half an answer".into())
        }
        Lie::Stall => {
            // The parent waits for this answer and sends nothing more: blocks until it gives up.
            let mut byte = [0];
            let _ = read_exact(&mut byte);
            Err("lying: stalled".into())
        }
        Lie::Crash => std::process::abort(),
    }
}

/// Receives the init message and the picture memory's descriptor from stdin.
fn receive_init() -> Result<(Init, OwnedFd), String> {
    let mut buf = [0; INIT_LEN];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        rustix::stdio::stdin(),
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receiving the set-up message: {e}"))?;
    let mut fd = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for received_fd in fds {
                fd.get_or_insert(received_fd); // extra descriptors are dropped, closing them
            }
        }
    }
    let fd = fd.ok_or("set-up message without the picture memory")?;
    // The rest of the message, if the socket handed out only its start.
    if received.bytes < INIT_LEN && !read_exact(&mut buf[received.bytes..])? {
        return Err("set-up message cut short".into());
    }
    let init = Init::parse(&buf).ok_or("malformed set-up message")?;
    Ok((init, fd))
}

/// Fills `buf` from stdin; `false` on end of input before the first byte.
fn read_exact(buf: &mut [u8]) -> Result<bool, String> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::io::read(rustix::stdio::stdin(), &mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err("input cut short".into()),
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("reading a request: {e}")),
        }
    }
    Ok(true)
}

/// Writes all of `buf` to stdout, unbuffered.
fn write_all(mut buf: &[u8]) -> Result<(), String> {
    while !buf.is_empty() {
        match rustix::io::write(rustix::stdio::stdout(), buf) {
            Ok(0) => return Err("stdout closed".into()),
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("writing an answer: {e}")),
        }
    }
    Ok(())
}
