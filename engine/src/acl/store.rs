//! The ACLs, in memory (indexed by resource type, pattern type and name,
//! so a decision looks up the resource's own name, `*`, and its prefixes
//! rather than scanning every ACL) and in `<data-dir>/acls.json`, replaced
//! atomically on every change before the change takes effect:
//!
//! ```json
//! {"version": 1, "acls": [{"resource_type": "TOPIC", "resource_name": "orders",
//!   "pattern_type": "LITERAL", "principal": "User:alice", "host": "*",
//!   "operation": "READ", "permission": "ALLOW"}]}
//! ```

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::types::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use super::Caller;

/// The file in the data directory.
const ACLS_FILE: &str = "acls.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    acls: Vec<AclBinding>,
}

/// What the ACLs say about one request (before the broker's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A matching DENY.
    Denied,
    /// No ACL names the resource at all.
    NoAcls,
    /// A matching ALLOW and no DENY.
    Allowed,
    /// ACLs name the resource, none allows this.
    NotAllowed,
}

/// The ACLs and their index.
#[derive(Debug, Default)]
struct Snapshot {
    acls: BTreeSet<AclBinding>,
    /// (resource type, pattern type) → resource name → its ACLs.
    index: HashMap<(ResourceType, PatternType), HashMap<String, Vec<AclBinding>>>,
}

impl Snapshot {
    fn new(acls: BTreeSet<AclBinding>) -> Self {
        let mut index: HashMap<_, HashMap<String, Vec<AclBinding>>> = HashMap::new();
        for acl in &acls {
            index
                .entry((acl.resource_type, acl.pattern_type))
                .or_default()
                .entry(acl.resource_name.clone())
                .or_default()
                .push(acl.clone());
        }
        Self { acls, index }
    }

    /// Every ACL whose pattern covers `name`.
    fn covering<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let literal = self.index.get(&(resource_type, PatternType::Literal));
        let exact = literal.and_then(|names| names.get(name));
        let wildcard = literal
            .filter(|_| name != "*")
            .and_then(|names| names.get("*"));
        let prefixed = self
            .index
            .get(&(resource_type, PatternType::Prefixed))
            .into_iter()
            .flat_map(move |names| prefixes_in(names, name));
        exact.into_iter().chain(wildcard).flatten().chain(prefixed)
    }
}

/// The ACLs of `names` (PREFIXED patterns) that `name` starts with: looks
/// up each prefix of `name`, or walks the patterns when there are fewer of
/// them than prefixes, so the cost is the smaller of the two.
fn prefixes_in<'a>(
    names: &'a HashMap<String, Vec<AclBinding>>,
    name: &'a str,
) -> Box<dyn Iterator<Item = &'a AclBinding> + 'a> {
    if names.len() < name.len() {
        Box::new(
            names
                .iter()
                .filter(move |(prefix, _)| name.starts_with(prefix.as_str()))
                .flat_map(|(_, acls)| acls),
        )
    } else {
        Box::new(
            name.char_indices()
                .map(|(at, c)| &name[..at + c.len_utf8()])
                .filter_map(|prefix| names.get(prefix))
                .flatten(),
        )
    }
}

/// Whether `acl` applies to `caller` (its principal or `User:*`, its
/// address or `*`).
fn applies_to(acl: &AclBinding, caller: &Caller) -> bool {
    (acl.principal == *caller.principal || acl.principal == "User:*")
        && (acl.host == "*"
            || caller
                .host
                .is_some_and(|host| acl.host.parse::<std::net::IpAddr>() == Ok(host)))
}

/// The ACLs, in memory and on disk.
#[derive(Debug)]
pub(crate) struct Acls {
    path: PathBuf,
    acls_max: usize,
    snapshot: RwLock<Snapshot>,
}

impl Acls {
    /// Reads `<data_dir>/acls.json` (none yet: no ACLs).
    pub(crate) fn open(data_dir: &Path, acls_max: usize) -> anyhow::Result<Self> {
        let path = data_dir.join(ACLS_FILE);
        let acls = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: File = serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("{} is unreadable: {e}", path.display()))?;
                for acl in &file.acls {
                    acl.validate()
                        .map_err(|e| anyhow::anyhow!("{}: {acl:?}: {e}", path.display()))?;
                }
                file.acls.into_iter().collect()
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(error) => return Err(anyhow::anyhow!("reading {}: {error}", path.display())),
        };
        Ok(Self {
            path,
            acls_max,
            snapshot: RwLock::new(Snapshot::new(acls)),
        })
    }

    /// What the ACLs say about `caller` doing `operation` on the resource.
    pub(crate) fn decide(
        &self,
        caller: &Caller,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> Decision {
        let snapshot = self.snapshot.read().expect("acls lock");
        let mut any = false;
        let mut allowed = false;
        for acl in snapshot.covering(resource_type, name) {
            any = true;
            if !applies_to(acl, caller) {
                continue;
            }
            match acl.permission {
                Permission::Deny if acl.operation.denies(operation) => return Decision::Denied,
                Permission::Allow if acl.operation.allows(operation) => allowed = true,
                _ => {}
            }
        }
        match (any, allowed) {
            (false, _) => Decision::NoAcls,
            (true, true) => Decision::Allowed,
            (true, false) => Decision::NotAllowed,
        }
    }

    /// Whether some ALLOW of `operation` on a resource of the type applies
    /// to `caller`, and no DENY of it on every such resource (LITERAL `*`).
    pub(crate) fn allows_any(
        &self,
        caller: &Caller,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        let snapshot = self.snapshot.read().expect("acls lock");
        let applying = || {
            snapshot
                .acls
                .iter()
                .filter(|acl| acl.resource_type == resource_type && applies_to(acl, caller))
        };
        let denied_everywhere = applying().any(|acl| {
            acl.permission == Permission::Deny
                && acl.pattern_type == PatternType::Literal
                && acl.resource_name == "*"
                && acl.operation.denies(operation)
        });
        !denied_everywhere
            && applying()
                .any(|acl| acl.permission == Permission::Allow && acl.operation.allows(operation))
    }

    /// The ACLs `filter` matches.
    pub(crate) fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        let snapshot = self.snapshot.read().expect("acls lock");
        snapshot
            .acls
            .iter()
            .filter(|acl| filter.matches(acl))
            .cloned()
            .collect()
    }

    /// Adds `acls` (one that exists already is fine); each gets its own
    /// verdict. The valid ones are saved together before they apply.
    pub(crate) fn create(&self, acls: Vec<AclBinding>) -> Vec<Result<(), String>> {
        let mut snapshot = self.snapshot.write().expect("acls lock");
        let mut next = snapshot.acls.clone();
        let mut verdicts: Vec<Result<(), String>> = acls
            .into_iter()
            .map(|acl| {
                acl.validate()?;
                if !next.contains(&acl) && next.len() >= self.acls_max {
                    return Err(format!(
                        "{} ACLs exist, the most this broker keeps ([acl] acls_max)",
                        self.acls_max
                    ));
                }
                next.insert(acl);
                Ok(())
            })
            .collect();
        if next.len() != snapshot.acls.len() {
            if let Err(error) = self.save(&next) {
                let message = format!("saving the ACLs failed: {error}");
                for verdict in verdicts.iter_mut().filter(|v| v.is_ok()) {
                    *verdict = Err(message.clone());
                }
                return verdicts;
            }
            *snapshot = Snapshot::new(next);
        }
        verdicts
    }

    /// Removes the ACLs each filter matches; per filter, what it removed.
    pub(crate) fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, String> {
        let mut snapshot = self.snapshot.write().expect("acls lock");
        let mut next = snapshot.acls.clone();
        let removed: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|filter| {
                let matched: Vec<AclBinding> = snapshot
                    .acls
                    .iter()
                    .filter(|a| filter.matches(a))
                    .cloned()
                    .collect();
                for acl in &matched {
                    next.remove(acl);
                }
                matched
            })
            .collect();
        if next.len() != snapshot.acls.len() {
            self.save(&next)
                .map_err(|error| format!("saving the ACLs failed: {error}"))?;
            *snapshot = Snapshot::new(next);
        }
        Ok(removed)
    }

    fn save(&self, acls: &BTreeSet<AclBinding>) -> std::io::Result<()> {
        let file = File {
            version: 1,
            acls: acls.iter().cloned().collect(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("acls serialize");
        crate::random::write_private(&self.path, &json)
    }
}
