//! The `peer` program as a user runs it: setting a fixed password.

use std::io::Write;
use std::process::{Command, Stdio};

fn set_password(dir: &std::path::Path, input: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["password", "set", "--stdin", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_fixed_password_is_checked_and_stored_only_as_a_private_hash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("host");
    let weak = set_password(&data, "123456\n");
    assert!(!weak.status.success());
    let err = String::from_utf8_lossy(&weak.stderr);
    assert!(err.contains("too weak"), "{err}");
    assert!(!data.join("password.json").exists());

    let ok = set_password(&data, "kq8v-2mzx-77ta-pw\n");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let stored = std::fs::read_to_string(data.join("password.json")).unwrap();
    assert!(!stored.contains("kq8v"), "the password in clear: {stored}");
    assert!(stored.contains("m_kib"), "{stored}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("password.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The host refuses a --password flag: a password never goes on a command line.
    let flag = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["host", "--password", "kq8v-2mzx-77ta-pw"])
        .output()
        .unwrap();
    assert!(!flag.status.success());
    assert!(
        String::from_utf8_lossy(&flag.stderr).contains("unexpected argument"),
        "{}",
        String::from_utf8_lossy(&flag.stderr)
    );
}
