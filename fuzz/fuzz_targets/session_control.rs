//! The session's control stream, both ends, as `peer::host::authenticate`/`control_loop` and
//! `peer::controller::authenticate` run it, but sans IO: a host and a controller exchange
//! `ControlMsg` wire frames (`proto::wire`, with valid length prefixes so fuzzed bytes reach
//! postcard) through two queues the fuzzer controls. It delivers, drops, tampers with or
//! injects frames, and picks the passwords, the key derivation (one-time, or argon2id at the
//! cheapest costs) and whether a man in the middle splits the TLS session (different exporters).
//!
//! Checked:
//! - frames decode to messages that survive a round trip, or to errors, never "incomplete";
//! - the host accepts an `Auth` exactly when it is the honest controller's answer to the host's
//!   own challenge, with the same secret and the same exporter; the controller accepts a
//!   `Welcome` exactly when it carries the host's confirmation of that exchange (no forged
//!   element or confirmation ever passes; a wrong password or a split session always fails);
//! - `Kdf::derive`: one-time passwords compare as normalized (idempotent), argon2id refuses
//!   costs beyond its maximum without hashing; costs in between are too slow to fuzz and are
//!   skipped;
//! - remote text goes through `peer::text::printable` as documented (no control or
//!   bidirectional-control character, cut to `MAX_CHARS` with an ellipsis only when cut);
//! - remote candidates through `sane_candidates`, `pathagent::predicted` (around the first),
//!   `pathagent::Birthday::for_mappings` (after the wire's mapping became the agent's);
//! - every message an end writes fits `MAX_CONTROL_LEN`.
#![no_main]

use std::collections::VecDeque;
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use peer::auth::{ControllerAuth, ControllerKeys, HostAuth};
use pathagent::Birthday;
use peer::nat::{self, Mapping};
use peer::password::{Cost, Kdf, normalize_one_time};
use proto::session::{ControlMsg, MAX_CONTROL_LEN, VERSION};
use peer::text::{MAX_CHARS, printable};
use quicdesk_fuzz::{Reader, Writer, check_candidates, framed, write_seeds_if_asked};
use proto::wire;

const HOST_EXPORTER: [u8; 32] = [7; 32];

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `printable` as its documentation states it.
fn check_printable(s: &str) -> String {
    let out = printable(s);
    assert!(
        !out.chars().any(|c| c.is_control() || is_bidi_control(c)),
        "unsafe character left in {out:?}"
    );
    let kept: Vec<char> = s
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect();
    if kept.len() <= MAX_CHARS {
        let kept: String = kept.iter().collect();
        assert_eq!(out, kept, "nothing was cut, yet the text changed");
    } else {
        let cut: String = kept[..MAX_CHARS].iter().collect();
        assert_eq!(out, format!("{cut}…"));
    }
    out
}

/// Cheap enough to run on every input.
fn cheap(cost: &Cost) -> bool {
    cost.m_kib <= 64 && cost.t <= 2 && cost.p <= 4
}

/// Beyond what a controller must accept (`password::MAX_COST`).
fn over_max(cost: &Cost) -> bool {
    cost.m_kib > 256 * 1024 || cost.t > 16 || cost.p > 8
}

/// The secret for `typed` under `kdf`, or `None` when deriving fails or is too slow to fuzz.
fn derive(kdf: &Kdf, typed: &str) -> Option<Vec<u8>> {
    match kdf {
        Kdf::OneTime => {
            let n = normalize_one_time(typed);
            assert_eq!(normalize_one_time(&n), n, "normalizing twice changes it");
            let secret = peer::password::derive(&kdf, typed).expect("one-time derivation cannot fail");
            assert_eq!(*secret, n.into_bytes());
            Some(secret.to_vec())
        }
        Kdf::Argon2id { cost, .. } if over_max(cost) => {
            assert!(
                peer::password::derive(&kdf, typed).is_err(),
                "an excessive cost {cost:?} was accepted"
            );
            None
        }
        Kdf::Argon2id { cost, .. } if cheap(cost) => peer::password::derive(&kdf, typed).ok().map(|s| {
            assert_eq!(s.len(), 32);
            s.to_vec()
        }),
        _ => None,
    }
}

/// Decodes one frame from a queue. Untampered frames are whole: a message or an error.
fn decode(frame: &[u8], whole: bool) -> Option<ControlMsg> {
    match wire::decode::<ControlMsg>(frame, MAX_CONTROL_LEN) {
        Ok(Some((msg, used))) => {
            assert!(used <= frame.len());
            if whole {
                assert_eq!(used, frame.len());
            }
            let again = wire::encode(&msg, MAX_CONTROL_LEN).expect("a decoded message re-encodes");
            let back = wire::decode::<ControlMsg>(&again, MAX_CONTROL_LEN)
                .expect("re-encoded decodes")
                .expect("whole");
            assert_eq!(back.0, msg);
            Some(msg)
        }
        Ok(None) => {
            assert!(!whole, "a whole frame reported as incomplete");
            None
        }
        Err(_) => None,
    }
}

fn encode(msg: &ControlMsg) -> Vec<u8> {
    wire::encode(msg, MAX_CONTROL_LEN).expect("every control message we send fits")
}

/// Candidates from the other end, as both ends treat them.
fn candidates(addrs: &[SocketAddr], mapping: Mapping, own_mapping: Mapping) {
    let seen_as: SocketAddr = "198.51.100.1:4000".parse().expect("address");
    let own: [SocketAddr; 1] = ["10.0.0.2:4000".parse().expect("address")];
    let sane = proto::rendezvous::sane_candidates(addrs, Some(seen_as), &own);
    check_candidates(&sane, addrs, Some(seen_as), &own);
    let predicted = sane.first().map(|&c| pathagent::predicted(c)).unwrap_or_default();
    assert!(predicted.len() <= 2 * usize::from(pathagent::PREDICT_SPAN));
    for (i, p) in predicted.iter().enumerate() {
        assert!(p.port() >= 1024 && !predicted[..i].contains(p));
        assert!(sane.first().is_some_and(|c| c.ip() == p.ip() && c != p));
    }
    let (mapping, own_mapping) = (nat::from_wire(mapping), nat::from_wire(own_mapping));
    let b = Birthday::for_mappings(own_mapping, mapping);
    let a = Birthday::for_mappings(mapping, own_mapping);
    // The two ends agree on their roles.
    assert!(matches!(
        (a, b),
        (Birthday::Off, Birthday::Off)
            | (Birthday::Pool, Birthday::Spray)
            | (Birthday::Spray, Birthday::Pool)
    ));
}

enum Host {
    AwaitHello,
    AwaitAuth(HostAuth, Vec<u8>),
    Serving { punching: bool },
    Closed,
}

enum Controller {
    AwaitChallenge,
    AwaitWelcome(ControllerKeys),
    Serving,
    Done,
}

struct Session {
    host: Host,
    controller: Controller,
    kdf: Kdf,
    host_secret: Vec<u8>,
    typed: String,
    controller_exporter: [u8; 32],
    /// Frames on their way, with whether they are still as their sender wrote them.
    to_host: VecDeque<(Vec<u8>, bool)>,
    to_controller: VecDeque<(Vec<u8>, bool)>,
    /// What the controller answered, with the element and secret it answered with.
    controller_auth: Option<(Vec<u8>, [u8; 32], Vec<u8>, Vec<u8>)>,
    /// The host's confirmation, once it accepted.
    host_confirm: Option<[u8; 32]>,
}

impl Session {
    fn to_controller(&mut self, msg: &ControlMsg) {
        self.to_controller.push_back((encode(msg), true));
    }

    fn to_host(&mut self, msg: &ControlMsg) {
        self.to_host.push_back((encode(msg), true));
    }

    fn host_gets(&mut self, msg: ControlMsg) {
        match std::mem::replace(&mut self.host, Host::Closed) {
            Host::AwaitHello => match msg {
                ControlMsg::Hello { version } if version == VERSION => {
                    let (auth, spake_h) = HostAuth::start(&self.host_secret, HOST_EXPORTER);
                    self.to_controller(&ControlMsg::Challenge {
                        kdf: self.kdf,
                        spake: spake_h.clone(),
                    });
                    self.host = Host::AwaitAuth(auth, spake_h);
                }
                ControlMsg::Hello { version } => {
                    let reason =
                        format!("unsupported protocol version {version} (host speaks {VERSION})");
                    self.to_controller(&ControlMsg::Denied { reason });
                }
                _ => {}
            },
            Host::AwaitAuth(auth, spake_h) => {
                let ControlMsg::Auth { spake, confirm } = msg else {
                    return;
                };
                let honest = self
                    .controller_auth
                    .as_ref()
                    .is_some_and(|(s, c, seen, secret)| {
                        *s == spake
                            && *c == confirm
                            && *seen == spake_h
                            && *secret == self.host_secret
                    })
                    && self.controller_exporter == HOST_EXPORTER;
                match auth.finish(&spake, &confirm) {
                    Ok(mac) => {
                        assert!(honest, "the host accepted an Auth that proves nothing");
                        self.host_confirm = Some(mac);
                        self.to_controller(&ControlMsg::Welcome {
                            width: 1280,
                            height: 720,
                            confirm: mac,
                        });
                        self.host = Host::Serving { punching: false };
                    }
                    Err(e) => {
                        assert!(!honest, "the host refused the honest controller: {e}");
                        self.to_controller(&ControlMsg::WrongPassword);
                    }
                }
            }
            Host::Serving { punching } => {
                self.host = Host::Serving { punching };
                match msg {
                    ControlMsg::KeyFrameRequest => {}
                    ControlMsg::Ping { sent_us } => self.to_controller(&ControlMsg::Pong {
                        sent_us,
                        host_us: 1_700_000_000_000_000,
                    }),
                    ControlMsg::Goodbye { reason } => {
                        check_printable(&reason);
                        self.host = Host::Closed;
                    }
                    ControlMsg::Candidates { .. } if punching => {}
                    ControlMsg::Candidates { addrs, mapping } => {
                        candidates(&addrs, mapping, Mapping::EndpointIndependent);
                        self.host = Host::Serving { punching: true };
                        let own = ["198.51.100.1:4000".parse().expect("address")];
                        self.to_controller(&ControlMsg::Candidates {
                            addrs: proto::rendezvous::sane_candidates(&own, None, &[]),
                            mapping: Mapping::EndpointIndependent,
                        });
                    }
                    _ => self.host = Host::Closed,
                }
            }
            Host::Closed => {}
        }
    }

    fn controller_gets(&mut self, msg: ControlMsg) {
        match std::mem::replace(&mut self.controller, Controller::Done) {
            Controller::AwaitChallenge => match msg {
                ControlMsg::Challenge { kdf, spake } => {
                    let Some(secret) = derive(&kdf, &self.typed) else {
                        return;
                    };
                    let Ok(keys) =
                        ControllerAuth::start(&secret, self.controller_exporter).finish(&spake)
                    else {
                        return;
                    };
                    self.controller_auth =
                        Some((keys.spake_c.clone(), keys.confirm, spake, secret));
                    self.to_host(&ControlMsg::Auth {
                        spake: keys.spake_c.clone(),
                        confirm: keys.confirm,
                    });
                    self.controller = Controller::AwaitWelcome(keys);
                }
                ControlMsg::Denied { reason } => {
                    check_printable(&reason);
                }
                _ => {}
            },
            Controller::AwaitWelcome(keys) => match msg {
                ControlMsg::Welcome { confirm, .. } => {
                    let proven = self.host_confirm == Some(confirm);
                    match keys.verify_host(&confirm) {
                        Ok(()) => {
                            assert!(proven, "the controller accepted an unproven host");
                            self.controller = Controller::Serving;
                            self.to_host(&ControlMsg::Candidates {
                                addrs: vec!["203.0.113.4:5000".parse().expect("address")],
                                mapping: Mapping::EndpointDependent,
                            });
                        }
                        Err(e) => assert!(!proven, "the controller refused the host: {e}"),
                    }
                }
                ControlMsg::Denied { reason } => {
                    check_printable(&reason);
                }
                _ => {}
            },
            Controller::Serving => {
                self.controller = Controller::Serving;
                match msg {
                    ControlMsg::Candidates { addrs, mapping } => {
                        candidates(&addrs, mapping, Mapping::EndpointDependent);
                    }
                    ControlMsg::Goodbye { reason } | ControlMsg::Denied { reason } => {
                        check_printable(&reason);
                        self.controller = Controller::Done;
                    }
                    _ => {}
                }
            }
            Controller::Done => {}
        }
    }
}

fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let flags = r.u8();
    let host_pw = String::from_utf8_lossy(r.blob8()).into_owned();
    let typed = String::from_utf8_lossy(r.blob8()).into_owned();
    let kdf = if flags & 1 == 1 {
        let salt = r.array::<16>();
        let p = 1 + u32::from(r.u8() % 2);
        let cost = Cost {
            m_kib: 8 * p + u32::from(r.u8() % 49),
            t: 1 + u32::from(r.u8() % 2),
            p,
        };
        Kdf::Argon2id { salt, cost }
    } else {
        Kdf::OneTime
    };
    let host_secret = derive(&kdf, &host_pw).expect("a cheap valid cost derives");
    let mut s = Session {
        host: Host::AwaitHello,
        controller: Controller::AwaitChallenge,
        kdf,
        host_secret,
        typed,
        controller_exporter: if flags & 2 == 2 {
            [8; 32]
        } else {
            HOST_EXPORTER
        },
        to_host: VecDeque::new(),
        to_controller: VecDeque::new(),
        controller_auth: None,
        host_confirm: None,
    };
    let version = if flags & 4 == 4 { VERSION + 1 } else { VERSION };
    s.to_host(&ControlMsg::Hello { version });
    let mut ops = 0;
    while !r.is_empty() && ops < 64 {
        ops += 1;
        match r.u8() % 7 {
            0 => {
                if let Some((frame, whole)) = s.to_host.pop_front()
                    && let Some(msg) = decode(&frame, whole)
                {
                    s.host_gets(msg);
                }
            }
            1 => {
                if let Some((frame, whole)) = s.to_controller.pop_front()
                    && let Some(msg) = decode(&frame, whole)
                {
                    s.controller_gets(msg);
                }
            }
            2 => {
                if let Some(msg) = decode(&framed(r.blob16()), true) {
                    s.host_gets(msg);
                }
            }
            3 => {
                if let Some(msg) = decode(&framed(r.blob16()), true) {
                    s.controller_gets(msg);
                }
            }
            4 => {
                let (to_host, pos, xor) = (r.bool(), r.u16(), r.u8());
                let queue = if to_host {
                    &mut s.to_host
                } else {
                    &mut s.to_controller
                };
                if let Some((frame, whole)) = queue.front_mut()
                    && xor != 0
                {
                    let i = usize::from(pos) % frame.len();
                    frame[i] ^= xor;
                    // A changed length field may cut the frame short or run past its end.
                    *whole &= i >= wire::HEADER_LEN;
                }
            }
            5 => {
                if r.bool() {
                    s.to_host.pop_front();
                } else {
                    s.to_controller.pop_front();
                }
            }
            _ => {
                check_printable(&String::from_utf8_lossy(r.blob16()));
            }
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut w = Writer::new();
    let mut out = Vec::new();
    let deliver_all = |w: &mut Writer| {
        // Hello, Challenge, Auth, Welcome, Candidates both ways.
        for op in [0u8, 1, 0, 1, 0, 1] {
            w.u8(op);
        }
    };
    // One-time password, typed differently (case, dash): the whole exchange succeeds.
    w.u8(0).blob8(b"abcd-efgh").blob8(b"ABCDEFGH");
    deliver_all(&mut w);
    let ping = wire::encode(&ControlMsg::Ping { sent_us: 42 }, MAX_CONTROL_LEN).expect("fits");
    let bye = wire::encode(
        &ControlMsg::Goodbye {
            reason: "bye\x1b[2J\u{202E}".into(),
        },
        MAX_CONTROL_LEN,
    )
    .expect("fits");
    w.u8(2).blob16(&ping[4..]).u8(1).u8(2).blob16(&bye[4..]);
    out.push(w.finish());
    // A wrong password.
    w.u8(0).blob8(b"abcd-efgh").blob8(b"abcd-efgj");
    deliver_all(&mut w);
    out.push(w.finish());
    // Argon2id at the cheapest cost.
    w.u8(1)
        .blob8(b"correct horse battery")
        .blob8(b"correct horse battery");
    w.bytes(&[3; 16]).u8(0).u8(0).u8(0);
    deliver_all(&mut w);
    out.push(w.finish());
    // A split TLS session (different exporters).
    w.u8(2).blob8(b"abcd-efgh").blob8(b"abcd-efgh");
    deliver_all(&mut w);
    out.push(w.finish());
    // An old protocol version: denied.
    w.u8(4).blob8(b"x").blob8(b"x").u8(0).u8(1);
    out.push(w.finish());
    // Tampering: the challenge's element, then the Auth's confirmation.
    w.u8(0).blob8(b"abcd-efgh").blob8(b"abcd-efgh");
    w.u8(0).u8(4).bool(false).u16(20).u8(1).u8(1).u8(0);
    out.push(w.finish());
    w.u8(0).blob8(b"abcd-efgh").blob8(b"abcd-efgh");
    w.u8(0).u8(1).u8(4).bool(true).u16(60).u8(0x80).u8(0).u8(1);
    out.push(w.finish());
    // Injected messages of every kind the host and the controller read.
    let msgs = [
        ControlMsg::Hello { version: VERSION },
        ControlMsg::Auth {
            spake: vec![0x41; 33],
            confirm: [0; 32],
        },
        ControlMsg::Challenge {
            kdf: Kdf::Argon2id {
                salt: [1; 16],
                cost: Cost {
                    m_kib: 1 << 30,
                    t: 1,
                    p: 1,
                },
            },
            spake: vec![0x42; 33],
        },
        ControlMsg::Welcome {
            width: 1,
            height: 1,
            confirm: [9; 32],
        },
        ControlMsg::Denied {
            reason: "no\u{9b}31m".into(),
        },
        ControlMsg::WrongPassword,
        ControlMsg::KeyFrameRequest,
        ControlMsg::Pong {
            sent_us: 1,
            host_us: 2,
        },
        ControlMsg::Candidates {
            addrs: vec![
                "[::ffff:203.0.113.9]:7000".parse().expect("address"),
                "127.0.0.1:1".parse().expect("address"),
                "198.51.100.1:4000".parse().expect("address"),
            ],
            mapping: Mapping::Unknown,
        },
    ];
    // Regression (found here, fixed in c187c74): 200 characters and a bidirectional override
    // are not cut, so they are shown without an ellipsis.
    let text = format!("{}\u{202E}", "a".repeat(200));
    w.u8(0).blob8(b"").blob8(b"").u8(6).blob16(text.as_bytes());
    out.push(w.finish());
    w.u8(0).blob8(b"1").blob8(b"1");
    for m in &msgs {
        let f = wire::encode(m, MAX_CONTROL_LEN).expect("fits");
        w.u8(2).blob16(&f[4..]).u8(3).blob16(&f[4..]);
    }
    out.push(w.finish());
    out
}

fuzz_target!(
    init: write_seeds_if_asked("session_control", seeds),
    |data: &[u8]| run(data)
);
