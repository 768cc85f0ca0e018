//! The `rendezvous` program's set-up commands as an operator runs them.

use std::process::Command;

fn rendezvous(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rendezvous"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn an_invite_names_the_addresses_given_and_this_servers_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = rendezvous(
        &[
            "invite",
            "--address",
            "rv.example.com:7700",
            "--address",
            "[2001:db8::7]:7700",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let invite: proto::invite::Invite = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    assert_eq!(
        invite.addresses,
        ["rv.example.com:7700", "[2001:db8::7]:7700"]
    );
    // The key is the one the server runs with (the same data directory).
    let fp = rendezvous(&["fingerprint"], dir.path());
    assert_eq!(
        String::from_utf8(fp.stdout).unwrap().trim(),
        invite.fingerprint.to_string()
    );

    // An address peers cannot use is refused, with the reason, and nothing is printed.
    let bad = rendezvous(&["invite", "--address", "0.0.0.0:7700"], dir.path());
    assert!(!bad.status.success());
    assert!(bad.stdout.is_empty());
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(why.contains("host:port"), "{why}");
    // Without an address it says what to give.
    let none = rendezvous(&["invite"], dir.path());
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--address"));
}
