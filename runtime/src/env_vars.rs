//! The deployment's environment variables: settings and secrets (API keys, a sign-in
//! provider's issuer) kept in the data folder, set and listed by the operator (`runtime env`,
//! the admin endpoints `GET /api/env` and `POST /api/env`), read by the app's auth config at
//! deploy (over the server's process environment) and by actions.
//!
//! One JSON object in `DATA/env.json`, mode 0600 from its creation, replaced whole on each
//! change (written beside it, then renamed), so a reader never sees half a change.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The variables' file in the data folder.
pub const ENV_FILE: &str = "env.json";
/// Variables one deployment may hold.
pub const MAX_ENV_VARS: usize = 100;
/// Bytes of a variable's name.
pub const MAX_ENV_NAME_BYTES: usize = 40;
/// Bytes of a variable's value.
pub const MAX_ENV_VALUE_BYTES: usize = 8 * 1024;

/// Why a name is not a variable name: letters, digits and `_`, not starting with a digit,
/// at most [`MAX_ENV_NAME_BYTES`].
pub fn name_error(name: &str) -> Option<String> {
    let shown: String = name.chars().take(64).collect();
    if name.is_empty() || name.len() > MAX_ENV_NAME_BYTES {
        return Some(format!(
            "the variable name {shown:?} must be 1 to {MAX_ENV_NAME_BYTES} bytes (MAX_ENV_NAME_BYTES)"
        ));
    }
    let mut chars = name.chars();
    let first = chars.next().expect("not empty");
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Some(format!(
            "the variable name {shown:?} must be letters, digits and '_', not starting with a digit"
        ));
    }
    None
}

/// The variables of one data folder.
#[derive(Clone, Debug)]
pub struct EnvVars {
    path: PathBuf,
}

impl EnvVars {
    pub fn of(data_dir: &Path) -> EnvVars {
        EnvVars {
            path: data_dir.join(ENV_FILE),
        }
    }

    /// Every variable, by name; none when the file does not exist yet.
    pub fn load(&self) -> Result<BTreeMap<String, String>, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is not an object of variables ({e}); fix or delete it",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(format!("reading {}: {e}", self.path.display())),
        }
    }

    /// Sets each `Some` and removes each `None`, all checked first, and `accept` given the
    /// variables as they would be: a change with one bad name or value, or one `accept`
    /// refuses, changes nothing. Returns the variables after the change.
    pub fn change(
        &self,
        changes: &BTreeMap<String, Option<String>>,
        accept: impl FnOnce(&BTreeMap<String, String>) -> Result<(), String>,
    ) -> Result<BTreeMap<String, String>, String> {
        for (name, value) in changes {
            if let Some(reason) = name_error(name) {
                return Err(reason);
            }
            if let Some(value) = value {
                if value.len() > MAX_ENV_VALUE_BYTES {
                    return Err(format!(
                        "the value of {name} is {} bytes, over the limit MAX_ENV_VALUE_BYTES ({MAX_ENV_VALUE_BYTES} bytes)",
                        value.len()
                    ));
                }
            }
        }
        let mut vars = self.load()?;
        for (name, value) in changes {
            match value {
                Some(value) => vars.insert(name.clone(), value.clone()),
                None => vars.remove(name),
            };
        }
        if vars.len() > MAX_ENV_VARS {
            return Err(format!(
                "the deployment would hold {} variables, over the limit MAX_ENV_VARS ({MAX_ENV_VARS})",
                vars.len()
            ));
        }
        accept(&vars)?;
        self.write(&vars)
            .map_err(|e| format!("writing {}: {e}", self.path.display()))?;
        Ok(vars)
    }

    fn write(&self, vars: &BTreeMap<String, String>) -> io::Result<()> {
        let temporary = self.path.with_extension("json.new");
        let _ = std::fs::remove_file(&temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(&serde_json::to_vec_pretty(vars).map_err(io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_set_unset_checked_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let vars = EnvVars::of(dir.path());
        assert!(vars.load().unwrap().is_empty());
        let set = |pairs: &[(&str, Option<&str>)]| {
            vars.change(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
                    .collect(),
                |_| Ok(()),
            )
        };
        let after = set(&[("API_KEY", Some("secret")), ("_X1", Some(""))]).unwrap();
        assert_eq!(after.len(), 2);
        let mode = std::fs::metadata(dir.path().join(ENV_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(set(&[("API_KEY", None)]).unwrap().len(), 1);
        assert_eq!(EnvVars::of(dir.path()).load().unwrap()["_X1"], "");

        for (pairs, error) in [
            (
                vec![("1X", Some("v"))],
                "must be letters, digits and '_', not starting with a digit",
            ),
            (vec![("A-B", Some("v"))], "must be letters, digits and '_'"),
            (
                vec![("", Some("v"))],
                "must be 1 to 40 bytes (MAX_ENV_NAME_BYTES)",
            ),
        ] {
            let message = set(&pairs).unwrap_err();
            assert!(message.contains(error), "{message}");
        }
        let big = "v".repeat(MAX_ENV_VALUE_BYTES + 1);
        let message = set(&[("OK", Some("v")), ("BIG", Some(&big))]).unwrap_err();
        assert!(
            message.contains("over the limit MAX_ENV_VALUE_BYTES"),
            "{message}"
        );
        assert!(
            !vars.load().unwrap().contains_key("OK"),
            "a refused change changes nothing"
        );
        let many: Vec<(String, Option<&str>)> = (0..=MAX_ENV_VARS)
            .map(|i| (format!("V{i}"), Some("v")))
            .collect();
        let many: Vec<(&str, Option<&str>)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert!(set(&many).unwrap_err().contains("MAX_ENV_VARS"));
    }
}
