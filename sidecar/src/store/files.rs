//! The files on disk: the data directory is `0700`, the database and its
//! `-wal`/`-shm` files `0600` (they hold webhook secrets and SMTP
//! passwords); looser modes found are tightened, with a log line. Before
//! SQLite touches anything, the directory and the database are probed for
//! writing, so a read-only mount or a permission problem is named as
//! such — never mistaken for a damaged database.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Mode of the data directory.
pub(super) const DIR_MODE: u32 = 0o700;
/// Mode of the database files.
pub(super) const FILE_MODE: u32 = 0o600;
/// Prefix of the probe file created and removed in the data directory at
/// open (followed by the process and thread, so openers never collide).
const PROBE: &str = ".telltale-write-check";

/// Why a file or directory cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwritable {
    /// It is on a read-only file system (mount).
    ReadOnlyFileSystem,
    /// The daemon's user may not write it.
    PermissionDenied,
    /// The file system or SQLite refused for another reason.
    Other,
}

impl Unwritable {
    /// What an I/O error says about writing.
    pub fn of(e: &io::Error) -> Option<Self> {
        match e.kind() {
            io::ErrorKind::ReadOnlyFilesystem => Some(Unwritable::ReadOnlyFileSystem),
            io::ErrorKind::PermissionDenied => Some(Unwritable::PermissionDenied),
            _ => None,
        }
    }
}

impl std::fmt::Display for Unwritable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unwritable::ReadOnlyFileSystem => {
                "it is on a read-only file system (mount the data directory read-write, or give --data-dir a writable volume)"
            }
            Unwritable::PermissionDenied => {
                "permission denied to the daemon's user (check the owner and mode of the data directory and its files)"
            }
            Unwritable::Other => "writes to it are refused",
        })
    }
}

/// The error for an I/O failure on `path`: unwritable if it says so,
/// otherwise `other`.
fn io_error(path: &Path, source: io::Error, other: fn(PathBuf, io::Error) -> StoreError) -> StoreError {
    match Unwritable::of(&source) {
        Some(why) => StoreError::Unwritable { path: path.to_owned(), why, source },
        None => other(path.to_owned(), source),
    }
}

fn dir_error(path: PathBuf, source: io::Error) -> StoreError {
    StoreError::DataDir { path, source }
}

fn file_error(path: PathBuf, source: io::Error) -> StoreError {
    StoreError::File { path, source }
}

/// Create the data directory (`0700`) or secure the existing one, then
/// check that it can be written.
pub(super) fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(|e| io_error(dir, e, dir_error))?;
    let meta = fs::metadata(dir).map_err(|e| io_error(dir, e, dir_error))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o1002 == 0o1002 {
        // /tmp and the like: tightening would break every other user.
        return Err(StoreError::SharedDataDir { path: dir.to_owned(), mode });
    }
    if mode & 0o077 != 0 {
        match fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)) {
            Ok(()) => {
                tracing::warn!(path = %dir.display(), from = %format!("{mode:o}"), to = %format!("{DIR_MODE:o}"), "Data directory was open to other users; restricted to the daemon's user.");
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                // Owned by another user: the probe below still tells
                // whether the daemon can work in it.
                tracing::warn!(path = %dir.display(), mode = %format!("{mode:o}"), owner = meta.uid(), "Data directory is open to other users and owned by another user; left as it is.");
            }
            Err(e) => return Err(io_error(dir, e, dir_error)),
        }
    }
    let probe = dir.join(format!("{PROBE}-{}-{:?}", std::process::id(), std::thread::current().id()));
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&probe)
        .map_err(|e| io_error(dir, e, dir_error))?;
    match fs::remove_file(&probe) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(dir, e, dir_error)),
        _ => Ok(()),
    }
}

/// Create the database file (empty, `0600`) if there is none, and check
/// that it can be written (without writing to it). Its mode is tightened
/// once it is known to be a telltale database ([`tighten_db_files`]).
pub(super) fn prepare_db(db: &Path) -> Result<(), StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(db)
        .map_err(|e| io_error(db, e, file_error))?;
    Ok(())
}

/// The database and its `-wal`/`-shm` files, those that exist, at `0600`.
pub(super) fn tighten_db_files(db: &Path) -> Result<(), StoreError> {
    for path in companions(db) {
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&path, e, file_error)),
        };
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 || mode & 0o7000 != 0 {
            fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE))
                .map_err(|e| io_error(&path, e, file_error))?;
            tracing::warn!(path = %path.display(), from = %format!("{mode:o}"), to = %format!("{FILE_MODE:o}"), "Database file was readable by other users (it holds secrets); restricted to the daemon's user.");
        }
    }
    Ok(())
}

/// Does the database's `-wal` file hold changes not yet in the database?
pub(super) fn wal_pending(db: &Path) -> bool {
    let [_, wal, _] = companions(db);
    fs::metadata(wal).is_ok_and(|m| m.len() > 0)
}

/// `path` for an SQLite `file:` URI (percent-encoded).
pub(super) fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The database file and the files SQLite keeps beside it.
pub(super) fn companions(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [db.to_owned(), with("-wal"), with("-shm")]
}

#[cfg(test)]
mod tests;
