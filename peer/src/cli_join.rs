//! `peer join`: checks an invite's rendezvous, enrolls this machine's keys when the invite
//! carries an enrollment token, and saves the rendezvous in the configuration file. Part of
//! the binary.

use anyhow::{Context, bail};

use crate::cli_args::resolve_addr;

/// `peer join`: checks the invite's rendezvous answers with its key, enrolls this machine's
/// keys when the invite carries an enrollment token, then saves the rendezvous (never the
/// token: it is spent).
pub(crate) async fn join(
    invite: &str,
    path: &std::path::Path,
    data_dir: &std::path::Path,
    no_check: bool,
) -> anyhow::Result<()> {
    let invite: proto::invite::Invite = invite.parse()?;
    if invite.token.is_some() && no_check {
        bail!(
            "this invite carries an enrollment token, which must reach the rendezvous: drop --no-check"
        );
    }
    if !no_check {
        let mut answered = None;
        for a in &invite.addresses {
            let checked = match resolve_addr(a).await {
                Ok(addr) => peer::config::check_rendezvous(addr, invite.fingerprint)
                    .await
                    .map(|()| addr)
                    .with_context(|| format!("rendezvous {a}")),
                Err(e) => Err(e),
            };
            match checked {
                Ok(addr) => {
                    answered = Some(addr);
                    break;
                }
                Err(e) => eprintln!("{e:#}"),
            }
        }
        let Some(addr) = answered else {
            bail!(
                "no address of the invite answered with its key: nothing saved \
                 (--no-check saves it anyway)"
            );
        };
        eprintln!("the rendezvous at {addr} answered with the invite's key");
        if let Some(token) = &invite.token {
            enroll_keys(addr, &invite, token, data_dir).await?;
        }
    }
    peer::config::join(path, &invite)?;
    eprintln!(
        "saved in {}: `peer host` and `peer connect CODE` now use this rendezvous",
        path.display()
    );
    Ok(())
}

/// Enrolls this machine's host key, then its controller key (each takes one use of the
/// token); the host key must be enrolled, the controller key only matters on a rendezvous
/// closed to strangers.
async fn enroll_keys(
    addr: std::net::SocketAddr,
    invite: &proto::invite::Invite,
    token: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    for (i, role) in ["host", "controller"].into_iter().enumerate() {
        let identity = certs::Identity::load_or_create(data_dir, role)
            .with_context(|| format!("the {role} key in {}", data_dir.display()))?;
        match peer::config::enroll(addr, invite.fingerprint, &identity, token).await {
            Ok(()) => eprintln!("this machine's {role} key is enrolled"),
            Err(e) if i == 0 => {
                bail!("enrolling this machine's host key: {e}: nothing saved")
            }
            Err(e) => eprintln!(
                "the controller key was not enrolled ({e}): on a rendezvous closed to \
                 strangers this machine cannot connect to others; ask for a token with two uses"
            ),
        }
    }
    Ok(())
}
