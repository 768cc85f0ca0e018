//! Scripted input for `peer connect --input-script`, and a backend that logs what a host
//! receives (`peer host --input-log`). Both are for tests and automation.
//!
//! Script format, one step per line, `#` starts a comment:
//!
//! ```text
//! wait 200ms | move X Y (0..=1) | down B | up B | click B (B: left right middle back forward)
//! wheel DX DY | key NAME | keydown NAME | keyup NAME | text ANYTHING | monitor N
//! ```
//!
//! `monitor N` asks the host to share its monitor N (as `peer host --list-monitors` counts,
//! from 0). It travels on the control stream, apart from the input events: put a `wait` after
//! it when what follows must land on the new monitor.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use input::{BoundedText, InputBackend, InputError, InputEvent, Key, MouseButton, NormalizedPoint};
use tokio::sync::mpsc;

use crate::controller::Request;

/// A script line that could not be understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: {msg}")]
    Parse { line: usize, msg: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Wait(Duration),
    Event(InputEvent),
    Request(Request),
}

/// A parsed input script.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    steps: Vec<Step>,
}

fn button(s: &str) -> Result<MouseButton, String> {
    Ok(match s {
        "left" => MouseButton::Left,
        "right" => MouseButton::Right,
        "middle" => MouseButton::Middle,
        "back" => MouseButton::Back,
        "forward" => MouseButton::Forward,
        _ => {
            return Err(format!(
                "unknown button {s:?} (left, right, middle, back, forward)"
            ));
        }
    })
}

fn key(s: &str) -> Result<Key, String> {
    s.parse::<Key>().map_err(|_| {
        format!("unknown key {s:?} (physical key names such as KeyA, Enter, ShiftLeft)")
    })
}

fn fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside 0..=1"))
    }
}

fn parse_line(line: &str) -> Result<Vec<Step>, String> {
    let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let args: Vec<&str> = rest.split_whitespace().collect();
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("{cmd} takes {n} argument(s)"))
        }
    };
    let ev = |e: InputEvent| Step::Event(e);
    Ok(match cmd {
        "wait" => {
            arity(1)?;
            vec![Step::Wait(
                humantime::parse_duration(args[0]).map_err(|e| format!("bad duration: {e}"))?,
            )]
        }
        "move" => {
            arity(2)?;
            let (x, y) = (fraction(args[0])?, fraction(args[1])?);
            // fractions in 0..=1 scale into the u16 range
            let scale = |v: f64| (v * f64::from(u16::MAX)).round() as u16;
            vec![ev(InputEvent::MouseMove {
                pos: NormalizedPoint::new(scale(x), scale(y)),
            })]
        }
        "down" | "up" => {
            arity(1)?;
            vec![ev(InputEvent::MouseButton {
                button: button(args[0])?,
                pressed: cmd == "down",
            })]
        }
        "click" => {
            arity(1)?;
            let b = button(args[0])?;
            vec![
                ev(InputEvent::MouseButton {
                    button: b,
                    pressed: true,
                }),
                ev(InputEvent::MouseButton {
                    button: b,
                    pressed: false,
                }),
            ]
        }
        "wheel" => {
            arity(2)?;
            let n = |s: &str| {
                s.parse::<i16>()
                    .map_err(|_| format!("{s:?} is not a small integer"))
            };
            vec![ev(InputEvent::Wheel {
                dx: n(args[0])?,
                dy: n(args[1])?,
            })]
        }
        "key" => {
            arity(1)?;
            let k = key(args[0])?;
            vec![
                ev(InputEvent::Key {
                    key: k,
                    pressed: true,
                }),
                ev(InputEvent::Key {
                    key: k,
                    pressed: false,
                }),
            ]
        }
        "keydown" | "keyup" => {
            arity(1)?;
            vec![ev(InputEvent::Key {
                key: key(args[0])?,
                pressed: cmd == "keydown",
            })]
        }
        "monitor" => {
            arity(1)?;
            let n = args[0]
                .parse::<u32>()
                .ok()
                .filter(|&n| n < proto::session::MAX_MONITORS)
                .ok_or_else(|| {
                    format!(
                        "{:?} is not a monitor number (0 to {})",
                        args[0],
                        proto::session::MAX_MONITORS - 1
                    )
                })?;
            vec![Step::Request(Request::SwitchMonitor(n))]
        }
        "text" => {
            let text = BoundedText::new(rest.trim()).map_err(|e| format!("bad text: {e}"))?;
            vec![ev(InputEvent::Text { text })]
        }
        _ => return Err(format!("unknown command {cmd:?}")),
    })
}

impl Script {
    /// Parses a script.
    pub fn parse(text: &str) -> Result<Self, ScriptError> {
        let mut steps = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split_once('#').map_or(raw, |(l, _)| l).trim();
            if line.is_empty() {
                continue;
            }
            steps.extend(parse_line(line).map_err(|msg| ScriptError::Parse { line: i + 1, msg })?);
        }
        Ok(Self { steps })
    }

    /// Reads and parses a script file.
    pub fn load(path: &Path) -> Result<Self, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// The events, without the waits.
    pub fn events(&self) -> Vec<InputEvent> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Event(e) => Some(e.clone()),
                Step::Wait(_) | Step::Request(_) => None,
            })
            .collect()
    }

    /// The requests (monitor switches), without the rest.
    pub fn requests(&self) -> Vec<Request> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Request(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// Sends the events to `input` and the requests to `requests` in order, pausing at each
    /// `wait`.
    pub async fn play(self, input: mpsc::Sender<InputEvent>, requests: mpsc::Sender<Request>) {
        for step in self.steps {
            let sent = match step {
                Step::Wait(d) => {
                    tokio::time::sleep(d).await;
                    Ok(())
                }
                Step::Event(e) => input.send(e).await.map_err(drop),
                Step::Request(r) => requests.send(r).await.map_err(drop),
            };
            if sent.is_err() {
                return;
            }
        }
    }
}

/// An input backend that appends each event it is given to a file, one `Debug` line each,
/// instead of performing it (`peer host --input-log`, for tests and audits). The file records
/// typed text by design, so it is created mode 0600 and never opened through a link.
#[derive(Debug)]
pub struct LogBackend {
    path: PathBuf,
    held: input::RecordingBackend,
}

impl LogBackend {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            held: input::RecordingBackend::new(),
        }
    }

    fn append(&self, ev: &InputEvent) -> Result<(), InputError> {
        let mut f =
            certs::open_private_file(&self.path).map_err(|e| InputError::Backend(e.to_string()))?;
        writeln!(f, "{ev:?}").map_err(|e| InputError::Backend(e.to_string()))
    }
}

impl InputBackend for LogBackend {
    fn inject(&mut self, event: &InputEvent) -> Result<(), InputError> {
        self.held.inject(event)?;
        self.append(event)
    }

    fn release_all(&mut self) -> Result<(), InputError> {
        let before = self.held.events().len();
        self.held.release_all()?;
        for ev in self.held.events().split_off(before) {
            self.append(&ev)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let s = Script::parse(
            "# comment\nwait 10ms\nmove 0.5 1\nclick left\ndown right\nup right\nwheel 0 -3\n\
             key KeyA\nkeydown ShiftLeft\nkeyup ShiftLeft\ntext héllo wörld  # typed\n\
             monitor 1\n",
        )
        .unwrap();
        assert_eq!(s.requests(), vec![Request::SwitchMonitor(1)]);
        let ev = s.events();
        assert_eq!(ev.len(), 11);
        assert_eq!(
            ev[0],
            InputEvent::MouseMove {
                pos: NormalizedPoint::new(32768, 65535)
            }
        );
        assert_eq!(
            ev[10],
            InputEvent::Text {
                text: BoundedText::new("héllo wörld").unwrap()
            }
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (bad, line) in [
            ("move 2 0", 1),
            ("\nclick nose", 2),
            ("key NoSuchKey", 1),
            ("wait soon", 1),
            ("jump", 1),
            ("wheel 1", 1),
            ("monitor -1", 1),
            ("monitor 64", 1),
            ("monitor", 1),
        ] {
            match Script::parse(bad) {
                Err(ScriptError::Parse { line: l, .. }) => assert_eq!(l, line, "{bad:?}"),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }
}
