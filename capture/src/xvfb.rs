//! A private virtual X display (Xvfb) for tests and tools: started on a free display number,
//! stopped when dropped; plus the probes tests use on it (pointer position, an `xev` window
//! that records what it receives).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// An `xev` window on a display, recording the keyboard and button events it receives.
#[derive(Debug)]
pub struct XevWindow {
    child: Child,
}

impl XevWindow {
    /// Opens xev's window at `geometry` (e.g. `400x300+0+0`) and waits until it is mapped.
    pub fn start(display: &VirtualDisplay, geometry: &str) -> std::io::Result<Self> {
        let child = display
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
        let xev = Self { child };
        display.wait_window("Event Tester", Duration::from_secs(10))?;
        Ok(xev)
    }

    /// Stops xev and returns what it printed.
    pub fn finish(mut self) -> std::io::Result<XevLog> {
        std::thread::sleep(Duration::from_millis(300)); // let the last events arrive
        let _ = self.child.kill();
        let mut text = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut text)?;
        }
        Ok(XevLog(text))
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

    /// How many events of this type (`KeyPress`, `ButtonRelease`, ...) arrived.
    pub fn count(&self, event: &str) -> usize {
        self.0.lines().filter(|l| l.starts_with(event)).count()
    }
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
