//! The `rendezvous` program's console side: the console's settings from the command line, and
//! the `rendezvous user …` commands (users are made here before anyone can log in). Part of
//! the binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::{RunArgs, default_data_dir};

#[derive(Subcommand, Debug)]
pub(crate) enum UserCommand {
    /// Add a user. The password is read without echo (or from standard input with
    /// --password-stdin); it must be strong (12+ characters, about 55 bits).
    Add {
        name: String,
        /// admin (everything), operator (hosts and sessions) or auditor (read only).
        #[arg(long, default_value = "admin")]
        role: rendezvous::console::Role,
        /// Read the password from standard input's first line (scripts, tests).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// Set a user's password (its browser sessions end).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// List the users.
    List {
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// Remove a user (its sessions and API keys too); the last admin cannot be removed.
    Remove {
        name: String,
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// Turn a user's TOTP second factor on (prints the secret for an authenticator app) or off.
    Totp {
        name: String,
        /// Remove the second factor instead.
        #[arg(long)]
        off: bool,
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
}

/// The console's settings, if it is to run.
pub(crate) fn console_config(args: &RunArgs) -> Option<rendezvous::console::Config> {
    let listen = args.console_listen?;
    let certificate = match (&args.console_cert, &args.console_key) {
        (Some(chain), Some(key)) => rendezvous::console::Certificate::Files {
            chain: chain.clone(),
            key: key.clone(),
        },
        _ => rendezvous::console::Certificate::SelfSigned {
            names: if args.console_names.is_empty() {
                vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
            } else {
                args.console_names.clone()
            },
        },
    };
    Some(rendezvous::console::Config {
        listen,
        certificate,
    })
}

/// A password typed twice without echo, or read from standard input's first line.
fn read_new_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("Password: ").context("reading the password")?;
    let again = rpassword::prompt_password("Again: ").context("reading the password")?;
    anyhow::ensure!(first == again, "the two passwords differ");
    Ok(first)
}

/// `rendezvous user …`.
pub(crate) fn user(cmd: UserCommand) -> anyhow::Result<()> {
    use rendezvous::console;
    match cmd {
        UserCommand::Add {
            name,
            role,
            password_stdin,
            data_dir,
        } => {
            let pw = read_new_password(password_stdin)?;
            console::add_user(&data_dir, &name, role, &pw)?;
            eprintln!("user {name} ({role}) added");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
            data_dir,
        } => {
            let pw = read_new_password(password_stdin)?;
            console::set_password(&data_dir, &name, &pw)?;
            eprintln!("password of {name} changed; its sessions ended");
        }
        UserCommand::List { data_dir } => {
            for u in console::list_users(&data_dir)? {
                println!(
                    "{}\t{}\t{}",
                    u.name,
                    u.role,
                    if u.totp { "totp" } else { "-" }
                );
            }
        }
        UserCommand::Remove { name, data_dir } => {
            console::remove_user(&data_dir, &name)?;
            eprintln!("user {name} removed");
        }
        UserCommand::Totp {
            name,
            off,
            data_dir,
        } => match console::set_totp(&data_dir, &name, !off)? {
            Some((uri, secret)) => {
                eprintln!("Add this to an authenticator app (it is shown once):");
                println!("{uri}");
                eprintln!("secret: {secret}");
            }
            None => eprintln!("second factor of {name} removed"),
        },
    }
    Ok(())
}
