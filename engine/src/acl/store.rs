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
    // No pattern is longer than an ACL name may be: a longer prefix of a
    // (client-chosen, maybe huge) name cannot match.
    let longest = super::types::NAME_BYTES_MAX;
    if names.len() < name.len().min(longest) {
        Box::new(
            names
                .iter()
                .filter(move |(prefix, _)| name.starts_with(prefix.as_str()))
                .flat_map(|(_, acls)| acls),
        )
    } else {
        Box::new(
            name.char_indices()
                .take_while(move |(at, _)| *at < longest)
                .map(|(at, c)| &name[..at + c.len_utf8()])
                .filter_map(|prefix| names.get(prefix))
                .flatten(),
        )
    }
}

/// Whether `acl` applies to `caller` (its principal or `User:*`, its
/// address or `*`).
/// Addresses compare canonically: on a dual-stack listener an IPv4 client
/// arrives as `::ffff:a.b.c.d`, which an ACL naming `a.b.c.d` means too.
fn applies_to(acl: &AclBinding, caller: &Caller) -> bool {
    (acl.principal == *caller.principal || acl.principal == "User:*")
        && (acl.host == "*"
            || caller.host.is_some_and(|host| {
                acl.host
                    .parse::<std::net::IpAddr>()
                    .map(|a| a.to_canonical())
                    == Ok(host.to_canonical())
            }))
}

/// The ACLs, in memory and on disk.
#[derive(Debug)]
pub(crate) struct Acls {
    path: PathBuf,
    acls_max: usize,
    /// Read by every authorization; written only to swap in a snapshot
    /// already built and saved, so a change's file write and fsync never
    /// hold it.
    snapshot: RwLock<std::sync::Arc<Snapshot>>,
    /// Serialises changes (build, save, swap).
    changes: std::sync::Mutex<()>,
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
            snapshot: RwLock::new(std::sync::Arc::new(Snapshot::new(acls))),
            changes: std::sync::Mutex::new(()),
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
    /// to `caller` (the first), and whether a DENY of it on every such
    /// resource (LITERAL `*`) does (the second).
    pub(crate) fn by_type(
        &self,
        caller: &Caller,
        operation: Operation,
        resource_type: ResourceType,
    ) -> (bool, bool) {
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
        let allowed = applying()
            .any(|acl| acl.permission == Permission::Allow && acl.operation.allows(operation));
        (allowed, denied_everywhere)
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

    /// The ACLs now (a cheap clone of the snapshot's handle).
    fn current(&self) -> std::sync::Arc<Snapshot> {
        self.snapshot.read().expect("acls lock").clone()
    }

    /// Saves `next` and makes it the ACLs in force.
    fn replace(&self, next: BTreeSet<AclBinding>) -> Result<(), String> {
        self.save(&next)
            .map_err(|error| format!("saving the ACLs failed: {error}"))?;
        let next = std::sync::Arc::new(Snapshot::new(next));
        *self.snapshot.write().expect("acls lock") = next;
        Ok(())
    }

    /// Adds `acls` (one that exists already is fine); each gets its own
    /// verdict (CreateAcls). The valid ones are saved together before they
    /// apply.
    pub(crate) fn create(&self, acls: Vec<AclBinding>) -> Vec<Result<(), String>> {
        let _change = self.changes.lock().expect("acls change lock");
        let current = self.current();
        let mut next = current.acls.clone();
        let mut verdicts: Vec<Result<(), String>> = acls
            .into_iter()
            .map(|acl| {
                acl.validate()?;
                if !next.contains(&acl) && next.len() >= self.acls_max {
                    return Err(self.full());
                }
                next.insert(acl);
                Ok(())
            })
            .collect();
        if next.len() != current.acls.len() {
            if let Err(message) = self.replace(next) {
                for verdict in verdicts.iter_mut().filter(|v| v.is_ok()) {
                    *verdict = Err(message.clone());
                }
            }
        }
        verdicts
    }

    /// Adds all of `acls` (validated by the caller) or none: refused whole
    /// when they would not fit under `acls_max`. Returns how many are new.
    pub(crate) fn create_all(&self, acls: Vec<AclBinding>) -> Result<usize, String> {
        let _change = self.changes.lock().expect("acls change lock");
        let current = self.current();
        let mut next = current.acls.clone();
        next.extend(acls);
        let added = next.len() - current.acls.len();
        if next.len() > self.acls_max.max(current.acls.len()) {
            return Err(self.full());
        }
        if added > 0 {
            self.replace(next)?;
        }
        Ok(added)
    }

    fn full(&self) -> String {
        format!("{} ACLs at most are kept ([acl] acls_max)", self.acls_max)
    }

    /// Removes the ACLs each filter matches; per filter, what it removed.
    pub(crate) fn delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, String> {
        let _change = self.changes.lock().expect("acls change lock");
        let current = self.current();
        let mut next = current.acls.clone();
        let removed: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|filter| {
                let matched: Vec<AclBinding> = current
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
        if next.len() != current.acls.len() {
            self.replace(next)?;
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
