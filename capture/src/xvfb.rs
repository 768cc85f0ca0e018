//! A private virtual X display (Xvfb) for tests and tools: started on a free display number,
//! stopped when dropped.

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
    /// Starts `Xvfb :N -screen 0 WIDTHxHEIGHTx24` on the first free N from 50 and waits until it
    /// accepts connections. Fails with a message naming `cargo xtask setup` if Xvfb is missing.
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
        for n in 50..400u32 {
            if Path::new(&format!("/tmp/.X{n}-lock")).exists()
                || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            {
                continue;
            }
            let name = format!(":{n}");
            let mut child = Command::new(xvfb)
                .arg(&name)
                .args(["-screen", "0", &format!("{width}x{height}x24")])
                .args(["-nolisten", "tcp", "-noreset"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let socket = format!("/tmp/.X11-unix/X{n}");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    // Lost a race for this display number: try the next one.
                    eprintln!("Xvfb {name} exited with {status}; trying the next display number");
                    break;
                }
                if Path::new(&socket).exists() {
                    return Ok(Self { child, name });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(std::io::Error::other("no free X display number for Xvfb"))
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
}

impl Drop for VirtualDisplay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
