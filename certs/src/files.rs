//! Files that hold secrets or private records (keys, saved state, databases, logs): created
//! readable by the owner only, never through a symbolic link, and checked for owner and mode
//! before they are trusted.
//!
//! On Unix a private file is mode 0600 and owned by the effective user; a private directory is
//! owned by that user and writable by nobody else. Elsewhere the checks are left to the
//! platform's defaults (per-user profile directories on Windows).

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::Error;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and its parents) with mode 0700 if it is missing, then checks it as
/// [`check_private_dir`] does.
pub fn create_private_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
    }
    #[cfg(not(unix))]
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    check_private_dir(dir)
}

/// Refuses a data directory that is a symbolic link, belongs to another user, or that others
/// may write to (they could swap a key or a database under us).
pub fn check_private_dir(dir: &Path) -> Result<(), Error> {
    let meta = fs::symlink_metadata(dir).map_err(io_err(dir))?;
    let insecure = |why: String| Error::InsecurePath {
        path: dir.to_path_buf(),
        why,
    };
    if !meta.is_dir() {
        return Err(insecure("not a directory (a symbolic link?)".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(insecure(format!(
                "owned by uid {}, not by this user (uid {me})",
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(insecure(format!(
                "others may write to it (mode {mode:o}); run: chmod go-w {}",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Refuses a private file that is a symbolic link, not a regular file, belongs to another user
/// or that others may read.
pub fn check_private_file(path: &Path) -> Result<(), Error> {
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    if !meta.file_type().is_file() {
        return Err(Error::InsecurePath {
            path: path.to_path_buf(),
            why: "not a regular file (a symbolic link?)".into(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(Error::InsecurePath {
                path: path.to_path_buf(),
                why: format!("owned by uid {}, not by this user (uid {me})", meta.uid()),
            });
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::InsecureKeyFile {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

fn private_options(opts: &mut fs::OpenOptions) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
        // Refuse to open through a symbolic link at the last component.
        opts.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    #[cfg(not(unix))]
    let _ = opts;
}

/// Opens `path` for appending, creating it mode 0600 if missing; an existing file must pass
/// [`check_private_file`]. Never follows a symbolic link.
pub fn open_private_file(path: &Path) -> Result<fs::File, Error> {
    let mut opts = fs::OpenOptions::new();
    opts.append(true).create(true);
    private_options(&mut opts);
    let f = opts.open(path).map_err(io_err(path))?;
    check_private_file(path)?;
    Ok(f)
}

/// Makes sure `path` exists as a private file (empty if new), e.g. before a database library
/// opens it by name.
pub fn ensure_private_file(path: &Path) -> Result<(), Error> {
    open_private_file(path).map(drop)
}

/// Writes `bytes` to `path` atomically (a new temp file, then a rename), readable by the owner
/// only. A stale or planted temp file (even a symbolic link) is removed first, and the temp
/// file is created exclusively, so nothing is ever written through a link.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    private_options(&mut opts);
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_0600_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        create_private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);

        let log = data.join("input.log");
        open_private_file(&log).unwrap();
        assert_eq!(mode(&log), 0o600);

        // A link planted where a file will be written: opening refuses to follow it, and
        // the atomic writer replaces the link instead of writing through it.
        let target = dir.path().join("victim");
        fs::write(&target, b"precious").unwrap();
        let planted = data.join("planted.log");
        symlink(&target, &planted).unwrap();
        assert!(
            matches!(&open_private_file(&planted), Err(Error::Io { source, .. })
                if source.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())),
            "a link is not followed"
        );
        let state = data.join("host.json");
        symlink(&target, data.join("host.tmp")).unwrap();
        write_private_file(&state, b"{}").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert_eq!(mode(&state), 0o600);
        symlink(&target, data.join("linked.json")).unwrap();
        write_private_file(&data.join("linked.json"), b"x").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious");

        // A readable existing file is refused, as is a directory others can write.
        fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            open_private_file(&log),
            Err(Error::InsecureKeyFile { .. })
        ));
        fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            check_private_dir(&data),
            Err(Error::InsecurePath { .. })
        ));
        let linked_dir = dir.path().join("linked");
        symlink(&data, &linked_dir).unwrap();
        assert!(matches!(
            check_private_dir(&linked_dir),
            Err(Error::InsecurePath { .. })
        ));
    }
}
