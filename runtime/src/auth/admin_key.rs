//! The deployment's admin key: made at the first start of a data folder, kept in a file only
//! its owner can read, required for every admin surface (logs, export, import, metrics,
//! internal functions), compared in constant time, rotatable.
//!
//! The file is read at every check, so `runtime admin-key --rotate` takes effect in a running
//! server at once; admin requests are rare next to calls, and the read is one small file.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The key's file in the data folder.
pub const ADMIN_KEY_FILE: &str = "admin_key";
/// Random bytes in a key: 256 bits.
pub const ADMIN_KEY_RANDOM_BYTES: usize = 32;
/// What every key starts with, so that a key in a log or a paste is recognisable (and secret
/// scanners can be taught its shape).
pub const ADMIN_KEY_PREFIX: &str = "fvx_admin_";
/// The largest key file read: a key is 74 bytes; anything far larger is not one.
const MAX_ADMIN_KEY_FILE_BYTES: u64 = 4096;

/// Why an admin request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminKeyError {
    /// No key was sent.
    Missing,
    /// A key was sent and it is not the deployment's.
    Wrong,
    /// The server could not read its own key file.
    Unreadable(String),
}

impl AdminKeyError {
    /// The `code` of the 401 (or 500) answer.
    pub fn code(&self) -> &'static str {
        match self {
            AdminKeyError::Missing => "MissingAdminKey",
            AdminKeyError::Wrong => "BadAdminKey",
            AdminKeyError::Unreadable(_) => "InternalServerError",
        }
    }
}

impl std::fmt::Display for AdminKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminKeyError::Missing => f.write_str(
                "this needs the deployment's admin key: send the header `Authorization: Convex <key>` (`runtime admin-key` prints the key of a local data folder)",
            ),
            AdminKeyError::Wrong => f.write_str(
                "the admin key sent is not this deployment's (was it rotated? `runtime admin-key` prints the current one)",
            ),
            AdminKeyError::Unreadable(reason) => {
                write!(f, "the server cannot read its admin key: {reason}")
            }
        }
    }
}

/// The admin key's file in a data folder.
#[derive(Clone, Debug)]
pub struct AdminKeyFile {
    path: PathBuf,
}

impl AdminKeyFile {
    /// The key file of `data_dir`, made with a new key if there is none; the new key is
    /// returned too, for the first start to show it once.
    pub fn open_or_create(data_dir: &Path) -> io::Result<(AdminKeyFile, Option<String>)> {
        let file = AdminKeyFile {
            path: data_dir.join(ADMIN_KEY_FILE),
        };
        let key = new_key()?;
        match write_private(&file.path, &key, false) {
            Ok(()) => Ok((file, Some(key))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                file.read().map_err(io::Error::other)?;
                Ok((file, None))
            }
            Err(e) => Err(e),
        }
    }

    /// The key file of `data_dir`, which must exist (for commands that read the key of a
    /// local deployment).
    pub fn existing(data_dir: &Path) -> Result<AdminKeyFile, String> {
        let file = AdminKeyFile {
            path: data_dir.join(ADMIN_KEY_FILE),
        };
        file.read()?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key.
    pub fn read(&self) -> Result<String, String> {
        let shown = self.path.display();
        let file = File::open(&self.path).map_err(|e| format!("reading {shown}: {e}"))?;
        let mut text = String::new();
        file.take(MAX_ADMIN_KEY_FILE_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| format!("reading {shown}: {e}"))?;
        let key = text.trim();
        if !key.starts_with(ADMIN_KEY_PREFIX) || key.len() < ADMIN_KEY_PREFIX.len() + 32 {
            return Err(format!(
                "{shown} does not hold an admin key (it should be one line starting with {ADMIN_KEY_PREFIX}); delete it and restart the server to make a new one"
            ));
        }
        Ok(key.to_owned())
    }

    /// Replaces the key with a new one (the old one stops working at once) and returns it.
    pub fn rotate(&self) -> io::Result<String> {
        let key = new_key()?;
        let temporary = self.path.with_extension("new");
        let _ = std::fs::remove_file(&temporary);
        write_private(&temporary, &key, true)?;
        std::fs::rename(&temporary, &self.path)?;
        Ok(key)
    }

    /// Whether `given` is the key, compared in constant time: both sides are hashed first,
    /// so neither the key's bytes nor its length show in the time taken.
    pub fn check(&self, given: Option<&str>) -> Result<(), AdminKeyError> {
        let given = given.ok_or(AdminKeyError::Missing)?;
        let key = self.read().map_err(AdminKeyError::Unreadable)?;
        if keys_match(&key, given) {
            Ok(())
        } else {
            Err(AdminKeyError::Wrong)
        }
    }
}

fn keys_match(key: &str, given: &str) -> bool {
    let (a, b) = (
        Sha256::digest(key.as_bytes()),
        Sha256::digest(given.as_bytes()),
    );
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

fn new_key() -> io::Result<String> {
    let mut bytes = [0u8; ADMIN_KEY_RANDOM_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| io::Error::other(format!("the system's random source failed: {e}")))?;
    let mut key = String::with_capacity(ADMIN_KEY_PREFIX.len() + 2 * bytes.len());
    key.push_str(ADMIN_KEY_PREFIX);
    for byte in bytes {
        key.push_str(&format!("{byte:02x}"));
    }
    Ok(key)
}

/// Writes `key` to a new file at `path` that only its owner can read and write (mode 0600
/// from its creation, so it is never readable by others, even for a moment).
fn write_private(path: &Path, key: &str, overwrite_ok: bool) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if overwrite_ok {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path)?;
    // The mode above is filtered by the umask; this is exact.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(file, "{key}")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_checked_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let (file, made) = AdminKeyFile::open_or_create(dir.path()).unwrap();
        let key = made.expect("a new folder gets a new key");
        assert!(key.starts_with(ADMIN_KEY_PREFIX));
        assert_eq!(key.len(), ADMIN_KEY_PREFIX.len() + 64);
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner may read the key");

        let (again, made) = AdminKeyFile::open_or_create(dir.path()).unwrap();
        assert_eq!(made, None, "the key is made once");
        assert_eq!(again.read().unwrap(), key);

        assert_eq!(file.check(Some(&key)), Ok(()));
        assert_eq!(file.check(None), Err(AdminKeyError::Missing));
        assert_eq!(file.check(Some("fvx_admin_00")), Err(AdminKeyError::Wrong));
        assert_eq!(
            file.check(Some(&key[..key.len() - 1])),
            Err(AdminKeyError::Wrong)
        );

        let rotated = file.rotate().unwrap();
        assert_ne!(rotated, key);
        assert_eq!(file.check(Some(&key)), Err(AdminKeyError::Wrong));
        assert_eq!(
            again.check(Some(&rotated)),
            Ok(()),
            "a running server sees the new key"
        );
        let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_that_holds_no_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ADMIN_KEY_FILE), "hello\n").unwrap();
        let error = AdminKeyFile::existing(dir.path()).unwrap_err();
        assert!(error.contains("does not hold an admin key"), "{error}");
        let missing = tempfile::tempdir().unwrap();
        let error = AdminKeyFile::existing(missing.path()).unwrap_err();
        assert!(error.contains("admin_key"), "{error}");
    }
}
