//! `rendezvous --config FILE` (or `QUICDESK_RV_CONFIG`): the server's settings from a TOML file,
//! one key per long flag (`listen = "0.0.0.0:7700"`, `relay-idle = "60s"`, `no-stun = true`;
//! `_` and `-` alike). Part of the binary.
//!
//! Precedence: the command line, then each flag's environment variable, then the file, then the
//! built-in defaults. It works on the arguments before clap sees them: each setting of the file
//! that neither the command line nor its environment variable gives goes in front of the
//! command line's own arguments (clap keeps the last occurrence, and the command is built with
//! `args_override_self`), so the file can say everything a flag can and nothing else: an
//! unknown key is an error naming the known ones, never ignored.

use std::ffi::OsString;
use std::path::Path;

/// Largest configuration file read.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// Reads `path` as a TOML table.
///
/// # Errors
///
/// A message naming the file and what is wrong.
pub fn load(path: &Path) -> Result<toml::Table, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(format!(
            "{}: larger than {MAX_FILE_LEN} bytes",
            path.display()
        ));
    }
    text.parse::<toml::Table>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The arguments for clap: `argv` (program name first, then perhaps a subcommand named in
/// `subcommands`) with `file`'s settings for `cmd`'s flags put in front of the rest.
///
/// # Errors
///
/// An unknown key, or a value that is not a string, number or boolean.
pub fn merge(
    cmd: &clap::Command,
    file: &toml::Table,
    argv: Vec<OsString>,
) -> Result<Vec<OsString>, String> {
    let given = |long: &str| {
        argv.iter().skip(1).any(|a| {
            a.to_str().is_some_and(|a| {
                a.strip_prefix("--")
                    .is_some_and(|f| f == long || f.starts_with(&format!("{long}=")))
            })
        })
    };
    let known: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.get_long().is_some())
        .collect();
    let mut front: Vec<OsString> = Vec::new();
    for (key, value) in file {
        let long = key.replace('_', "-");
        let Some(arg) = known.iter().find(|a| a.get_long() == Some(long.as_str())) else {
            let names: Vec<&str> = known
                .iter()
                .filter_map(|a| a.get_long())
                .filter(|l| !matches!(*l, "help" | "version" | "config"))
                .collect();
            return Err(format!(
                "unknown setting {key:?} (known: {})",
                names.join(", ")
            ));
        };
        let from_env = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
        if given(&long) || from_env {
            continue;
        }
        let flag = OsString::from(format!("--{long}"));
        match value {
            toml::Value::Boolean(true) => front.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => front.extend([flag, s.into()]),
            toml::Value::Integer(i) => front.extend([flag, i.to_string().into()]),
            toml::Value::Float(f) => front.extend([flag, f.to_string().into()]),
            // A flag given several times (e.g. `console-name = ["a", "b"]`).
            toml::Value::Array(items) if arg.get_action().takes_values() => {
                for item in items {
                    let toml::Value::String(s) = item else {
                        return Err(format!("setting {key:?}: a list of strings, please"));
                    };
                    front.extend([flag.clone(), s.into()]);
                }
            }
            other => {
                return Err(format!(
                    "setting {key:?}: give a string, number or true/false, not {}",
                    other.type_str()
                ));
            }
        }
    }
    let mut out = argv;
    // After the program name and the subcommand, if one is named.
    let at = if out
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| cmd.get_name() == a)
    {
        2
    } else {
        1.min(out.len())
    };
    out.splice(at..at, front);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn cmd() -> Command {
        Command::new("run")
            .args_override_self(true)
            .arg(
                Arg::new("listen")
                    .long("listen")
                    .default_value("0.0.0.0:7700"),
            )
            .arg(
                Arg::new("relay_idle")
                    .long("relay-idle")
                    .env("QUICDESK_TEST_RELAY_IDLE_UNSET"),
            )
            .arg(
                Arg::new("no_stun")
                    .long("no-stun")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("max").long("max"))
    }

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_file_fills_what_the_command_line_leaves() {
        let file: toml::Table = r#"
            listen = "127.0.0.1:9000"
            relay_idle = "30s"
            no-stun = true
            max = 7
        "#
        .parse()
        .unwrap();
        let merged = merge(&cmd(), &file, args(&["rv", "--listen", "10.0.0.1:1"])).unwrap();
        let m = cmd().get_matches_from(merged);
        assert_eq!(
            m.get_one::<String>("listen").unwrap(),
            "10.0.0.1:1",
            "the command line wins"
        );
        assert_eq!(m.get_one::<String>("relay_idle").unwrap(), "30s");
        assert!(m.get_flag("no_stun"));
        assert_eq!(m.get_one::<String>("max").unwrap(), "7");
        // `--flag=value` counts as given too.
        let merged = merge(&cmd(), &file, args(&["rv", "--listen=10.0.0.2:2"])).unwrap();
        let m = cmd().get_matches_from(merged);
        assert_eq!(m.get_one::<String>("listen").unwrap(), "10.0.0.2:2");
    }

    #[test]
    fn unknown_or_odd_settings_are_refused() {
        let typo: toml::Table = "lisen = \"x\"".parse().unwrap();
        let err = merge(&cmd(), &typo, args(&["rv"])).unwrap_err();
        assert!(err.contains("lisen") && err.contains("listen"), "{err}");
        let table: toml::Table = "listen = { a = 1 }".parse().unwrap();
        assert!(merge(&cmd(), &table, args(&["rv"])).is_err());
        let list: toml::Table = "listen = [1, 2]".parse().unwrap();
        assert!(merge(&cmd(), &list, args(&["rv"])).is_err());
    }
}
