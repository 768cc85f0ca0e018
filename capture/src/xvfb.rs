//! A private virtual X display (Xvfb) for tests and tools: started on a free display number,
//! stopped when dropped, its screen split into RandR monitors on request; plus the probes tests
//! use on it (pointer position, an `xev` window that records what it receives).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running Xvfb server.
#[derive(Debug)]
pub struct VirtualDisplay {
    child: Child,
    name: String,
}

impl VirtualDisplay {
    /// Starts `Xvfb -screen 0 WIDTHxHEIGHTx24` on a display number Xvfb picks itself
    /// (`-displayfd`, so tests starting displays at the same time never share one) and waits
    /// until it accepts connections. Fails with a message naming `cargo xtask setup` if Xvfb is
    /// missing.
    pub fn start(width: u32, height: u32) -> std::io::Result<Self> {
        let xvfb = ["/usr/bin/Xvfb", "/usr/local/bin/Xvfb"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "Xvfb is not installed: run `cargo xtask setup` (installs xvfb)",
                )
            })?;
        let mut child = Command::new(xvfb)
            // Xvfb writes the display number it chose to fd 1 once it is ready.
            .args(["-displayfd", "1"])
            .args(["-screen", "0", &format!("{width}x{height}x24")])
            .args(["-nolisten", "tcp", "-noreset"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let Some(mut out) = child.stdout.take() else {
            let _ = child.kill();
            return Err(std::io::Error::other("Xvfb's stdout is missing"));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // One line, "N\n"; then keep draining so Xvfb never blocks on the pipe.
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while out.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                if byte[0] == b'\n' {
                    let _ = tx.send(String::from_utf8_lossy(&line).trim().to_owned());
                    line.clear();
                } else {
                    line.push(byte[0]);
                }
            }
        });
        let number = match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "Xvfb did not report a display number: {other:?}"
                )));
            }
        };
        Ok(Self {
            child,
            name: format!(":{number}"),
        })
    }

    /// The display name, e.g. `:50`, for `DISPLAY`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command with `DISPLAY` set to this display.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.name);
        c
    }

    /// Where the pointer is, as `xdotool getmouselocation` reports it.
    pub fn pointer(&self) -> std::io::Result<(u32, u32)> {
        let out = self
            .command("xdotool")
            .args(["getmouselocation", "--shell"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| -> std::io::Result<u32> {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("no {k} in xdotool's {text:?}")))
        };
        Ok((get("X=")?, get("Y=")?))
    }

    /// A window's position and size on the screen: `(x, y, width, height)`, from
    /// `xdotool getwindowgeometry --shell`.
    pub fn window_geometry(&self, id: &str) -> std::io::Result<(i32, i32, u32, u32)> {
        let out = self
            .command("xdotool")
            .args(["getwindowgeometry", "--shell", id])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| -> std::io::Result<i64> {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("no {k} in xdotool's {text:?}")))
        };
        let n = |v: i64| i32::try_from(v).map_err(std::io::Error::other);
        let u = |v: i64| u32::try_from(v).map_err(std::io::Error::other);
        Ok((
            n(get("X=")?)?,
            n(get("Y=")?)?,
            u(get("WIDTH=")?)?,
            u(get("HEIGHT=")?)?,
        ))
    }

    /// A screenshot of the whole display as tightly packed RGB, with its width and height
    /// (ImageMagick's `import`).
    pub fn screenshot_rgb(&self) -> std::io::Result<(u32, u32, Vec<u8>)> {
        let size = self
            .command("xdpyinfo")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())?;
        let dims = size
            .lines()
            .find_map(|l| l.trim().strip_prefix("dimensions:"))
            .and_then(|d| d.split_whitespace().next())
            .and_then(|d| d.split_once('x'))
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
            .ok_or_else(|| std::io::Error::other("xdpyinfo shows no dimensions"))?;
        let out = self
            .command("import")
            .args(["-window", "root", "-depth", "8", "rgb:-"])
            .output()?;
        if !out.status.success() || out.stdout.len() != (dims.0 * dims.1 * 3) as usize {
            return Err(std::io::Error::other(format!(
                "import gave {} bytes for {}x{}: {}",
                out.stdout.len(),
                dims.0,
                dims.1,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok((dims.0, dims.1, out.stdout))
    }

    /// The two-monitor layout the monitor-switching tests share, for [`Self::set_monitors`] on
    /// a screen of at least 1280x600: `big`, 800x600 at the origin, and `small`, 480x360 to its
    /// right.
    pub const TWO_MONITORS: [(&'static str, &'static str); 2] = [
        ("big", "800/200x600/150+0+0"),
        ("small", "480/120x360/90+800+0"),
    ];

    /// Splits the screen into RandR monitors, `(name, geometry)` each, the geometry as
    /// `xrandr --setmonitor` takes it (`W/MMxH/MM+X+Y`: pixels/millimetres, then the offset).
    /// Returns every monitor the display lists afterwards, and the new ones in the order asked.
    pub fn set_monitors<const N: usize>(
        &self,
        split: [(&str, &str); N],
    ) -> std::io::Result<(Vec<crate::Monitor>, [crate::Monitor; N])> {
        for (name, geometry) in split {
            let out = self
                .command("xrandr")
                .args(["--setmonitor", name, geometry, "none"])
                .output()?;
            if !out.status.success() {
                return Err(std::io::Error::other(format!(
                    "xrandr --setmonitor {name} {geometry}: {out:?}"
                )));
            }
        }
        let all = crate::x11::list_monitors(Some(&self.name)).map_err(std::io::Error::other)?;
        let named = |name: &str| {
            all.iter()
                .find(|m| m.name == name)
                .cloned()
                .ok_or_else(|| std::io::Error::other(format!("no monitor {name} in {all:?}")))
        };
        let mut new = Vec::with_capacity(N);
        for (name, _) in split {
            new.push(named(name)?);
        }
        let new = new.try_into().expect("one monitor per name");
        Ok((all, new))
    }

    /// The character of the first keysym bound to each keycode (`xmodmap -pk`), for keysyms
    /// that stand for one character (Latin-1 and Unicode keysyms).
    pub fn keymap(&self) -> std::io::Result<std::collections::HashMap<u32, char>> {
        let out = self.command("xmodmap").arg("-pk").output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "xmodmap -pk failed (run `cargo xtask setup`, package x11-xserver-utils): {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(parse_keymap(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Waits until a visible window whose name matches `pattern` exists; its X id.
    pub fn wait_window(&self, pattern: &str, within: Duration) -> std::io::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let out = self
                .command("xdotool")
                .args(["search", "--onlyvisible", "--name", pattern])
                .output()?;
            if let Some(id) = String::from_utf8_lossy(&out.stdout).lines().next() {
                return Ok(id.trim().to_owned());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no window named {pattern:?} on {} within {within:?}",
                        self.name
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `xmodmap -pk` lines (`    248    \t0x00fc (udiaeresis)\t...`): keycode to the character of
/// its first keysym.
fn parse_keymap(text: &str) -> std::collections::HashMap<u32, char> {
    let mut map = std::collections::HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(code), Some(sym)) = (words.next(), words.next()) else {
            continue;
        };
        let (Ok(code), Some(Ok(sym))) = (
            code.parse::<u32>(),
            sym.strip_prefix("0x").map(|h| u32::from_str_radix(h, 16)),
        ) else {
            continue;
        };
        let c = match sym {
            0x20..=0x7e | 0xa0..=0xff => char::from_u32(sym),
            0x0100_0100..=0x0110_ffff => char::from_u32(sym - 0x0100_0000),
            _ => None,
        };
        if let Some(c) = c {
            map.insert(code, c);
        }
    }
    map
}

/// An `xev` window on a display, recording the keyboard and button events it receives.
///
/// Tests wait on what xev printed ([`XevWindow::wait_for`]) rather than sleeping, and end with
/// [`XevWindow::finish`], which types a marker key (Pause) after everything else and returns
/// the log up to it: an event the test caused arrives before the marker, so counts such as
/// "released once" are final, not a snapshot that a late event could still change.
#[derive(Debug)]
pub struct XevWindow {
    child: Child,
    display: String,
    out: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// The key [`XevWindow::finish`] types to mark the end of a test's events.
const MARKER_KEYSYM: &str = "Pause)";

impl XevWindow {
    /// Opens xev's window at `geometry` (e.g. `400x300+0+0`) and waits until it is mapped.
    pub fn start(display: &VirtualDisplay, geometry: &str) -> std::io::Result<Self> {
        let mut child = display
            .command("xev")
            .args([
                "-geometry",
                geometry,
                "-event",
                "keyboard",
                "-event",
                "button",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let out = Arc::new(Mutex::new(String::new()));
        let reader = child.stdout.take().map(|mut stdout| {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stdout.read(&mut buf) {
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        });
        let xev = Self {
            child,
            display: display.name().to_owned(),
            out,
            reader,
        };
        display.wait_window("Event Tester", Duration::from_secs(10))?;
        Ok(xev)
    }

    /// What xev has printed so far.
    pub fn log(&self) -> XevLog {
        XevLog(self.out.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Waits until what xev printed satisfies `done`; the log then, or a `TimedOut` error that
    /// names `what` and shows the log.
    pub fn wait_for(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&XevLog) -> bool,
    ) -> std::io::Result<XevLog> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if done(&log) {
                return Ok(log);
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "xev: {what} not seen within {within:?}; xev printed:\n{}",
                        log.0
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types the marker key (the pointer must be over the window, which has the focus without
    /// a window manager), waits until xev shows it, stops xev and returns what it printed
    /// before the marker.
    pub fn finish(mut self) -> std::io::Result<XevLog> {
        let status = Command::new("xdotool")
            .env("DISPLAY", &self.display)
            .args(["key", "Pause"])
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "xdotool key Pause failed: {status}"
            )));
        }
        let log = self.wait_for("the end marker (Pause)", Duration::from_secs(10), |l| {
            l.before_marker().is_some()
        })?;
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Ok(log.before_marker().expect("checked above"))
    }
}

impl Drop for XevWindow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an [`XevWindow`] printed.
#[derive(Debug, Clone)]
pub struct XevLog(pub String);

impl XevLog {
    /// The characters of the key presses, in order (from `XLookupString gives 1 bytes: (61) "a"`).
    pub fn typed(&self) -> String {
        let mut out = String::new();
        let mut in_press = false;
        for line in self.0.lines() {
            if line.starts_with("KeyPress") {
                in_press = true;
            } else if line.starts_with("KeyRelease") {
                in_press = false;
            } else if in_press
                && line.contains("XLookupString gives")
                && let Some((_, quoted)) = line.split_once('"')
            {
                out.push_str(quoted.trim_end_matches('"'));
            }
        }
        out
    }

    /// Like [`typed`](Self::typed), but a key press xev could not look up (`NoSymbol`) is
    /// resolved through the server's keymap (`keymap`, from [`VirtualDisplay::keymap`]).
    ///
    /// When a client such as enigo maps a keysym onto a spare keycode and presses it at once,
    /// xev (Xlib) sometimes looks the key up before it has fetched the new mapping and prints
    /// `NoSymbol`, although the server delivered the keycode the new keysym is bound to. What
    /// the server received is what a test of the injecting side must check.
    pub fn typed_on(&self, keymap: &std::collections::HashMap<u32, char>) -> String {
        let mut out = String::new();
        let mut in_press = false;
        let mut unresolved: Option<u32> = None;
        for line in self.0.lines() {
            if line.starts_with("KeyPress") {
                in_press = true;
            } else if line.starts_with("KeyRelease") {
                in_press = false;
            } else if in_press && line.contains("(keysym 0x0, NoSymbol)") {
                unresolved = line
                    .split_once("keycode ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .and_then(|n| n.parse().ok());
            } else if in_press && line.contains("XLookupString gives") {
                if let Some(c) = unresolved.take().and_then(|k| keymap.get(&k)) {
                    out.push(*c);
                } else if let Some((_, quoted)) = line.split_once('"') {
                    out.push_str(quoted.trim_end_matches('"'));
                }
            }
        }
        out
    }

    /// How many events of this type (`KeyPress`, `ButtonRelease`, ...) arrived.
    pub fn count(&self, event: &str) -> usize {
        self.0.lines().filter(|l| l.starts_with(event)).count()
    }

    /// The log before the marker's `KeyPress`, once its `KeyRelease` has arrived too.
    fn before_marker(&self) -> Option<XevLog> {
        let mut press_at = None;
        let mut block_start = 0;
        let mut block_kind = "";
        let mut offset = 0;
        for line in self.0.split_inclusive('\n') {
            if line.starts_with("KeyPress") || line.starts_with("KeyRelease") {
                block_start = offset;
                block_kind = if line.starts_with("KeyPress") {
                    "press"
                } else {
                    "release"
                };
            } else if line.contains(MARKER_KEYSYM) && line.contains("keysym") {
                match (block_kind, press_at) {
                    ("press", None) => press_at = Some(block_start),
                    ("release", Some(at)) => return Some(XevLog(self.0[..at].to_owned())),
                    _ => {}
                }
            }
            offset += line.len();
        }
        None
    }
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::XevLog;

    fn key(kind: &str, keysym: &str, text: &str) -> String {
        format!(
            "{kind} event, serial 37, synthetic NO, window 0x1200001,\n    root 0x1ea, subw 0x0, \
             time 1, (10,10), root:(10,10),\n    state 0x0, keycode 38 (keysym {keysym}), \
             same_screen YES,\n    XLookupString gives 1 bytes: (61) \"{text}\"\n\n"
        )
    }

    #[test]
    fn unlooked_up_presses_are_resolved_through_the_servers_keymap() {
        let keymap = super::parse_keymap(
            "There are 7 KeySyms per KeyCode; KeyCodes range from 8 to 255.\n\n                 KeyCode\tKeysym (Keysym)\t...\n    Value  \tValue   (Name)  \t...\n\n                  38    \t0x0061 (a)\t0x0041 (A)\n    248    \t0x00fc (udiaeresis)\t0x00fc              (udiaeresis)\n    249    \t0x1000153 (U0153)\n    250    \n",
        );
        assert_eq!(keymap.get(&38), Some(&'a'));
        assert_eq!(keymap.get(&248), Some(&'ü'));
        assert_eq!(keymap.get(&249), Some(&'œ'));
        assert_eq!(keymap.len(), 3);
        let unknown = key("KeyPress", "0x0, NoSymbol", "").replace("keycode 38", "keycode 248");
        let unknown = unknown.replace("1 bytes: (61) \"\"", "0 bytes: ");
        let log = XevLog(key("KeyPress", "0x61, a", "a") + &unknown);
        assert_eq!(log.typed(), "a");
        assert_eq!(log.typed_on(&keymap), "aü");
    }

    #[test]
    fn the_log_ends_before_the_marker_once_it_is_released() {
        let a = key("KeyPress", "0x61, a", "a") + &key("KeyRelease", "0x61, a", "a");
        let press = key("KeyPress", "0xff13, Pause", "");
        let release = key("KeyRelease", "0xff13, Pause", "");
        assert!(XevLog(a.clone()).before_marker().is_none());
        assert!(XevLog(a.clone() + &press).before_marker().is_none());
        let log = XevLog(a.clone() + &press + &release)
            .before_marker()
            .unwrap();
        assert_eq!(log.0, a);
        assert_eq!(log.typed(), "a");
        assert_eq!(log.count("KeyRelease"), 1);
    }
}
