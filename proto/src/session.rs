//! The peer-to-peer session protocol, spoken over one QUIC connection from controller to host.
//!
//! Streams:
//! - **control** (bidirectional, opened first by the controller): authentication (the
//!   password proof, the host's user's approval, or both: [`Approval`]), then key-frame
//!   requests, clock pings, monitor switches and goodbyes, as [`ControlMsg`] in
//!   [`crate::wire`] frames.
//! - **video** (unidirectional host → controller, one per group of pictures): a
//!   [`StreamKind::Video`] tag byte, then frames, each a wire frame holding a [`VideoHeader`] and
//!   Annex-B H.264. A new key frame opens a new stream and resets the previous one, so stale
//!   frames are never waited for.
//! - **input** (unidirectional controller → host, high priority): a [`StreamKind::Input`] tag,
//!   then one wire frame per `input::InputEvent` in the `input` crate's encoding.

use serde::{Deserialize, Serialize};

/// ALPN of the peer-to-peer protocol.
pub const ALPN: &[u8] = b"quicdesk/1";
/// Protocol version carried in `Hello`. Version 4 added [`ControlMsg::Introduce`],
/// [`ControlMsg::Access`], [`ControlMsg::Asking`] and [`ControlMsg::Granted`] (attended
/// access); a host refuses any other version with a `Denied` that names both.
pub const VERSION: u32 = 4;
/// Largest control message.
pub const MAX_CONTROL_LEN: usize = 4 * 1024;
/// Largest encoded video frame (a 4K key frame at high quality fits with room to spare).
pub const MAX_VIDEO_FRAME_LEN: usize = 8 * 1024 * 1024;
/// Priority of the input stream relative to video (quinn: higher is sent first).
pub const INPUT_PRIORITY: i32 = 100;
/// Priority of the control stream.
pub const CONTROL_PRIORITY: i32 = 50;
/// Largest picture side a host may announce or send, in pixels.
pub const MAX_SCREEN_SIDE: u32 = 16384;
/// Most monitors a host may announce ([`ControlMsg::Screen`]).
pub const MAX_MONITORS: u32 = 64;
/// Longest reason in [`ControlMsg::SwitchFailed`], in bytes.
pub const MAX_REASON_LEN: usize = 256;
/// Longest self-declared controller name in [`ControlMsg::Introduce`], in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest approval wait a host may announce in [`ControlMsg::Asking`], in seconds.
pub const MAX_ASKING_SECS: u32 = 600;

/// The first byte of every unidirectional stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum StreamKind {
    Video = 1,
    Input = 2,
}

impl StreamKind {
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Video),
            2 => Some(Self::Input),
            _ => None,
        }
    }
}

/// Messages on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ControlMsg {
    /// Controller → host: the protocol version it speaks.
    Hello { version: u32 },
    /// Host → controller: how to derive the secret from the password, and the host's SPAKE2
    /// element (which reveals nothing about the password). See `peer::auth`.
    Challenge { kdf: Kdf, spake: Vec<u8> },
    /// Controller → host: the controller's SPAKE2 element and key confirmation.
    Auth { spake: Vec<u8>, confirm: [u8; 32] },
    /// Host → controller: authenticated; the host's key confirmation and the screen size that
    /// video will carry.
    Welcome {
        width: u32,
        height: u32,
        confirm: [u8; 32],
    },
    /// Host → controller: refused, and why.
    Denied { reason: String },
    /// Host → controller: the controller's proof did not check out (a wrong password, or an
    /// interception: the two cannot be told apart).
    WrongPassword,
    /// Controller → host: send a key frame (e.g. after a decode error).
    KeyFrameRequest,
    /// Controller → host: clock probe (controller's clock, µs since the Unix epoch).
    Ping { sent_us: u64 },
    /// Host → controller: answer to `Ping` with the host's clock at answering.
    Pong { sent_us: u64, host_us: u64 },
    /// Either side: the session ends.
    Goodbye { reason: String },
    /// Either side, after `Welcome`: addresses where the sender may be reached directly, for
    /// hole punching (sent only to a peer that has proven the password), and how the
    /// sender's NAT maps ports (which decides birthday punching, `pathagent::Birthday`).
    Candidates {
        addrs: Vec<std::net::SocketAddr>,
        mapping: Mapping,
    },
    /// Controller → host, after `Welcome`: share monitor `index` (as the host's
    /// `--list-monitors` counts) instead. Answered by exactly one `Screen` or `SwitchFailed`.
    SwitchMonitor { index: u32 },
    /// Host → controller: the switch is done; video from the next key frame on has this size.
    Screen(Screen),
    /// Host → controller: monitor `index` could not be shared, and why (at most
    /// [`MAX_REASON_LEN`] bytes); the monitor shared before goes on.
    SwitchFailed { index: u32, reason: String },
    /// Controller → host, right after `Hello`: the name its user goes by, as the controller
    /// itself declares it (at most [`MAX_NAME_LEN`] bytes; empty for none). Nothing vouches
    /// for it: the host shows it marked as self-declared, beside the key's fingerprint.
    Introduce { name: String },
    /// Host → controller, answering `Hello`: how this host decides whether to let the
    /// controller in. A `Challenge` follows for [`Approval::Password`] and [`Approval::Both`];
    /// `Asking` for [`Approval::Prompt`].
    Access { mode: Approval },
    /// Host → controller: its user is being asked to accept; the answer comes within
    /// `seconds` (at most [`MAX_ASKING_SECS`]), else the host denies.
    Asking { seconds: u32 },
    /// Host → controller, just before `Welcome`: what the session may do.
    Granted(Permissions),
}

/// How a host decides whether to let a controller in (`peer host --approve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approval {
    /// The controller proves the password (SPAKE2); nobody is asked.
    #[default]
    Password,
    /// No password: the host's user accepts or denies. The controller's assurance of the
    /// host's identity is then only the rendezvous's word (and known hosts).
    Prompt,
    /// The password first, then the host's user accepts or denies.
    Both,
}

impl Approval {
    /// Whether the controller must prove the password.
    pub fn needs_password(self) -> bool {
        matches!(self, Self::Password | Self::Both)
    }

    /// Whether the host's user is asked.
    pub fn asks_user(self) -> bool {
        matches!(self, Self::Prompt | Self::Both)
    }
}

impl std::fmt::Display for Approval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Password => "password",
            Self::Prompt => "prompt",
            Self::Both => "both",
        })
    }
}

/// What a session may do, as the host granted it. Clipboard and file streams do not exist
/// yet: their flags are carried so that both sides agree once they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Permissions {
    /// The controller's input is performed; without it the session is view-only and the host
    /// drops every input event.
    pub input: bool,
    pub clipboard: bool,
    pub files: bool,
}

impl Permissions {
    /// Everything (a session let in by its password alone, as before attended access).
    pub const ALL: Self = Self {
        input: true,
        clipboard: true,
        files: true,
    };
    /// Viewing only.
    pub const VIEW_ONLY: Self = Self {
        input: false,
        clipboard: false,
        files: false,
    };
}

impl std::fmt::Display for Permissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let granted: Vec<&str> = [
            (self.input, "input"),
            (self.clipboard, "clipboard"),
            (self.files, "files"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if granted.is_empty() {
            f.write_str("view only")
        } else {
            write!(f, "view, {}", granted.join(", "))
        }
    }
}

/// The monitor a host shares (in [`ControlMsg::Screen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
    /// The index now shared, as the host's `--list-monitors` counts.
    pub monitor: u32,
    /// How many monitors the host has (at most [`MAX_MONITORS`]).
    pub monitors: u32,
}

impl Screen {
    /// Whether this is what a host may say: both sides in `1..=`[`MAX_SCREEN_SIDE`],
    /// `monitor < monitors <= `[`MAX_MONITORS`].
    pub fn is_sane(&self) -> bool {
        (1..=MAX_SCREEN_SIDE).contains(&self.width)
            && (1..=MAX_SCREEN_SIDE).contains(&self.height)
            && self.monitor < self.monitors
            && self.monitors <= MAX_MONITORS
    }
}

impl std::fmt::Display for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            width,
            height,
            monitor,
            monitors,
        } = self;
        write!(f, "monitor {monitor} of {monitors} ({width}x{height})")
    }
}

impl ControlMsg {
    /// Whether a `Screen`, `SwitchFailed`, `Introduce` or `Asking` message holds what its
    /// sender may say ([`Screen::is_sane`], a reason of at most [`MAX_REASON_LEN`] bytes, a
    /// name of at most [`MAX_NAME_LEN`], a wait of 1 to [`MAX_ASKING_SECS`] seconds). Other
    /// messages pass.
    pub fn is_sane(&self) -> bool {
        match self {
            Self::Screen(screen) => screen.is_sane(),
            Self::SwitchFailed { reason, .. } => reason.len() <= MAX_REASON_LEN,
            Self::Introduce { name } => name.len() <= MAX_NAME_LEN,
            Self::Asking { seconds } => (1..=MAX_ASKING_SECS).contains(seconds),
            _ => true,
        }
    }
}

/// Length of an encoded [`VideoHeader`].
pub const VIDEO_HEADER_LEN: usize = 8 + 8 + 4 + 4 + 1;

/// What precedes each encoded frame on a video stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoHeader {
    pub frame_no: u64,
    /// Host clock, µs since the Unix epoch, when the frame was captured.
    pub captured_at_us: u64,
    pub width: u32,
    pub height: u32,
    pub key_frame: bool,
}

/// Why a video frame could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    #[error("video frame shorter than its header")]
    Short,
    #[error("video frame has unknown flags {0:#x}")]
    Flags(u8),
    #[error("video frame size {0}x{1} is out of range")]
    Size(u32, u32),
}

impl VideoHeader {
    /// Writes the header followed by `payload` into one buffer.
    pub fn encode_with(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(VIDEO_HEADER_LEN + payload.len());
        out.extend_from_slice(&self.frame_no.to_be_bytes());
        out.extend_from_slice(&self.captured_at_us.to_be_bytes());
        out.extend_from_slice(&self.width.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
        out.push(u8::from(self.key_frame));
        out.extend_from_slice(payload);
        out
    }

    /// Splits a received frame into header and payload.
    pub fn decode(buf: &[u8]) -> Result<(Self, &[u8]), VideoError> {
        if buf.len() < VIDEO_HEADER_LEN {
            return Err(VideoError::Short);
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&buf[i..i + 4]);
            u32::from_be_bytes(b)
        };
        let (width, height) = (u32_at(16), u32_at(20));
        if width == 0 || height == 0 || width > MAX_SCREEN_SIDE || height > MAX_SCREEN_SIDE {
            return Err(VideoError::Size(width, height));
        }
        let key_frame = match buf[24] {
            0 => false,
            1 => true,
            f => return Err(VideoError::Flags(f)),
        };
        Ok((
            Self {
                frame_no: u64_at(0),
                captured_at_us: u64_at(8),
                width,
                height,
                key_frame,
            },
            &buf[VIDEO_HEADER_LEN..],
        ))
    }
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

/// How the controller turns what its user typed into the secret the exchange runs over; told
/// by the host in its challenge (the derivation itself is `peer::password::derive`). Not
/// `non_exhaustive`: a controller must know every derivation a host may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kdf {
    /// A one-time password, normalized (`peer::password::normalize_one_time`).
    OneTime,
    /// A fixed password through argon2id with this salt and cost.
    Argon2id { salt: [u8; 16], cost: Cost },
}

/// How the NAT in front of a socket maps it to public ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mapping {
    /// The same public address and port for every destination (no NAT, or a cone NAT).
    EndpointIndependent,
    /// A different public port per destination (a symmetric NAT).
    EndpointDependent,
    /// Not known: the rendezvous runs no STUN responder, or it did not answer.
    Unknown,
}

impl std::fmt::Display for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mapping::EndpointIndependent => "endpoint-independent",
            Mapping::EndpointDependent => "endpoint-dependent",
            Mapping::Unknown => "unknown",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_header_round_trip_and_rejects() {
        let h = VideoHeader {
            frame_no: 42,
            captured_at_us: 1_700_000_000_000_000,
            width: 1280,
            height: 720,
            key_frame: true,
        };
        let buf = h.encode_with(b"nal");
        let (back, payload) = VideoHeader::decode(&buf).unwrap();
        assert_eq!(back, h);
        assert_eq!(payload, b"nal");
        assert_eq!(VideoHeader::decode(&buf[..10]), Err(VideoError::Short));
        let mut bad = buf.clone();
        bad[24] = 7;
        assert_eq!(VideoHeader::decode(&bad), Err(VideoError::Flags(7)));
        let mut zero = buf;
        zero[16..20].copy_from_slice(&0u32.to_be_bytes());
        assert!(matches!(
            VideoHeader::decode(&zero),
            Err(VideoError::Size(..))
        ));
    }

    #[test]
    fn older_messages_keep_their_encoding_and_screen_messages_are_checked() {
        // Appended variants must not renumber the older ones (postcard encodes the index).
        let old = crate::wire::encode(&ControlMsg::KeyFrameRequest, MAX_CONTROL_LEN).unwrap();
        assert_eq!(&old[4..], &[6]);
        let switch = ControlMsg::SwitchMonitor { index: 3 };
        let frame = crate::wire::encode(&switch, MAX_CONTROL_LEN).unwrap();
        assert_eq!(&frame[4..], &[11, 3]);
        assert_eq!(
            crate::wire::decode::<ControlMsg>(&frame, MAX_CONTROL_LEN).unwrap(),
            Some((switch, frame.len()))
        );
        let screen = |width, height, monitor, monitors| {
            ControlMsg::Screen(Screen {
                width,
                height,
                monitor,
                monitors,
            })
        };
        assert!(screen(1920, 1080, 1, 2).is_sane());
        // The same bytes as when `Screen` was a variant with its own fields.
        let frame = crate::wire::encode(&screen(1920, 1080, 1, 2), MAX_CONTROL_LEN).unwrap();
        assert_eq!(&frame[4..], &[12, 0x80, 0x0f, 0xb8, 0x08, 1, 2]);
        // Version 4's messages come after every older one.
        let granted = ControlMsg::Granted(Permissions::VIEW_ONLY);
        let frame = crate::wire::encode(&granted, MAX_CONTROL_LEN).unwrap();
        assert_eq!(&frame[4..], &[17, 0, 0, 0]);
        let access = ControlMsg::Access {
            mode: Approval::Prompt,
        };
        let frame = crate::wire::encode(&access, MAX_CONTROL_LEN).unwrap();
        assert_eq!(&frame[4..], &[15, 1]);
        assert!(ControlMsg::Asking { seconds: 30 }.is_sane());
        assert_eq!(Permissions::VIEW_ONLY.to_string(), "view only");
        assert_eq!(
            Permissions::ALL.to_string(),
            "view, input, clipboard, files"
        );
        for bad in [
            ControlMsg::Introduce {
                name: "n".repeat(MAX_NAME_LEN + 1),
            },
            ControlMsg::Asking { seconds: 0 },
            ControlMsg::Asking {
                seconds: MAX_ASKING_SECS + 1,
            },
            screen(0, 1080, 0, 1),
            screen(1920, MAX_SCREEN_SIDE + 1, 0, 1),
            screen(1920, 1080, 2, 2),
            screen(1920, 1080, 0, MAX_MONITORS + 1),
            ControlMsg::SwitchFailed {
                index: 0,
                reason: "x".repeat(MAX_REASON_LEN + 1),
            },
        ] {
            assert!(!bad.is_sane(), "{bad:?}");
        }
    }

    #[test]
    fn control_messages_never_panic_on_garbage() {
        // Random bodies behind a correct length header, so postcard really sees them.
        let (mut decoded, mut malformed) = (0, 0);
        let mut x: u32 = 12345;
        for _ in 0..50_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let len = (x >> 24) as usize % 48;
            let body: Vec<u8> = (0..len)
                .map(|i| (x.rotate_left(i as u32 * 5) % 13) as u8)
                .collect();
            let mut frame = (len as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            match crate::wire::decode::<ControlMsg>(&frame, MAX_CONTROL_LEN) {
                Ok(Some(_)) => decoded += 1,
                Err(crate::wire::WireError::Malformed(_)) => malformed += 1,
                other => panic!("a complete frame gave {other:?}"),
            }
            let _ = VideoHeader::decode(&body);
        }
        assert!(decoded > 100 && malformed > 100, "{decoded} {malformed}");
    }
}
