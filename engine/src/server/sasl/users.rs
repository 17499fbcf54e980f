//! The SASL users: names and their SCRAM credentials (SHA-256 and
//! SHA-512; SASL/PLAIN checks a password against the SHA-256 one), in
//! `<data-dir>/users.json`, readable by the broker's user only, replaced
//! atomically on every change. Managed through the admin API
//! (`sluice user`), so only the operator can add one.
//!
//! ```json
//! {"version": 1, "users": {"alice": {"SCRAM-SHA-256": {"salt": "…",
//!   "iterations": 4096, "stored_key": "…", "server_key": "…"},
//!   "SCRAM-SHA-512": {…}}}}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::scram::{Credential, Hash};

/// The file in the data directory.
const USERS_FILE: &str = "users.json";

/// Users one broker keeps at most.
pub(crate) const USERS_MAX: usize = 10_000;

/// Longest user name, and password.
pub(crate) const NAME_BYTES_MAX: usize = 256;
pub(crate) const PASSWORD_BYTES_MAX: usize = 1024;

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    users: BTreeMap<String, BTreeMap<String, Credential>>,
}

/// The users, in memory and on disk.
#[derive(Debug)]
pub(crate) struct Users {
    path: PathBuf,
    users: RwLock<BTreeMap<String, BTreeMap<String, Credential>>>,
}

/// A user as listed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UserInfo {
    pub(crate) name: String,
    pub(crate) mechanisms: Vec<String>,
}

impl Users {
    pub(crate) fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(USERS_FILE);
        let users = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: File = serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{} is unreadable: {e}", path.display()))?;
                file.users
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(error.into()),
        };
        Ok(Self {
            path,
            users: RwLock::new(users),
        })
    }

    /// The credential of `name` for `hash`.
    pub(crate) fn credential(&self, name: &str, hash: Hash) -> Option<Credential> {
        let users = self.users.read().expect("users lock");
        users.get(name)?.get(hash.mechanism()).cloned()
    }

    /// Creates `name` or changes its password.
    pub(crate) fn set(&self, name: &str, password: &str) -> Result<(), String> {
        if name.is_empty() || name.len() > NAME_BYTES_MAX || name.chars().any(char::is_control) {
            return Err(format!(
                "a user name has 1 to {NAME_BYTES_MAX} bytes and no control characters"
            ));
        }
        if password.is_empty() || password.len() > PASSWORD_BYTES_MAX {
            return Err(format!("a password has 1 to {PASSWORD_BYTES_MAX} bytes"));
        }
        let mut credentials = BTreeMap::new();
        for hash in [Hash::Sha256, Hash::Sha512] {
            let credential = Credential::new(hash, password).map_err(|e| e.to_string())?;
            credentials.insert(hash.mechanism().to_string(), credential);
        }
        let mut users = self.users.write().expect("users lock");
        if !users.contains_key(name) && users.len() >= USERS_MAX {
            return Err(format!(
                "{USERS_MAX} users exist, the most one broker keeps"
            ));
        }
        let previous = users.insert(name.to_string(), credentials);
        if let Err(error) = self.save(&users) {
            match previous {
                Some(previous) => users.insert(name.to_string(), previous),
                None => users.remove(name),
            };
            return Err(format!("saving the users failed: {error}"));
        }
        Ok(())
    }

    /// Deletes `name`; whether it existed.
    pub(crate) fn delete(&self, name: &str) -> Result<bool, String> {
        let mut users = self.users.write().expect("users lock");
        let Some(previous) = users.remove(name) else {
            return Ok(false);
        };
        if let Err(error) = self.save(&users) {
            users.insert(name.to_string(), previous);
            return Err(format!("saving the users failed: {error}"));
        }
        Ok(true)
    }

    pub(crate) fn list(&self) -> Vec<UserInfo> {
        let users = self.users.read().expect("users lock");
        users
            .iter()
            .map(|(name, credentials)| UserInfo {
                name: name.clone(),
                mechanisms: credentials.keys().cloned().collect(),
            })
            .collect()
    }

    fn save(&self, users: &BTreeMap<String, BTreeMap<String, Credential>>) -> std::io::Result<()> {
        let file = File {
            version: 1,
            users: users.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("users serialize");
        crate::random::write_private(&self.path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_persist_without_their_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(dir.path()).unwrap();
        users.set("alice", "wonderland").unwrap();
        assert!(users.set("", "x").is_err());
        let text = std::fs::read_to_string(dir.path().join(USERS_FILE)).unwrap();
        assert!(!text.contains("wonderland"));
        let reopened = Users::open(dir.path()).unwrap();
        let credential = reopened.credential("alice", Hash::Sha256).unwrap();
        assert!(credential.verifies(Hash::Sha256, "wonderland"));
        assert_eq!(reopened.list()[0].mechanisms.len(), 2);
        assert!(reopened.delete("alice").unwrap());
        assert!(!reopened.delete("alice").unwrap());
        assert!(Users::open(dir.path()).unwrap().list().is_empty());
    }
}
