//! Kafka-style authorization: ACLs (principal, resource, pattern, host,
//! operation, allow or deny) and the decision every Kafka handler asks for
//! before it acts, as Kafka's `AclAuthorizer` decides:
//!
//! 1. The processors' own groups and topics (`sluice-processor-*`) are the
//!    broker's: clients may describe and read them (so Kafka tools show a
//!    processor's lag and its changelog), never join, commit to, write,
//!    alter or delete them, whatever the ACLs say.
//! 2. With `[acl] enabled = false` (the default) everything else is allowed.
//! 3. Super users (`[acl] super_users`) may do everything else.
//! 4. A matching DENY wins over any ALLOW.
//! 5. With no ACL at all on the resource, `allow_everyone_if_no_acl_found`
//!    decides (default false: nothing is allowed that is not granted).
//! 6. Otherwise a matching ALLOW is needed. ALLOW of READ, WRITE, DELETE or
//!    ALTER implies DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL
//!    covers every operation.
//!
//! An ACL matches a resource when its name equals the resource's (LITERAL),
//! is `*` (LITERAL, every resource of the type), or is a prefix of it
//! (PREFIXED); a principal when it is the same or `User:*`; a host when it
//! is the client's address or `*`.
//!
//! The ACLs live in [`store`] (`<data-dir>/acls.json`) and are managed with
//! CreateAcls/DescribeAcls/DeleteAcls (Kafka's admin clients,
//! `kafka-acls.sh`) or `sluice acl` through the admin API.

pub(crate) mod store;
mod types;

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub(crate) use store::Acls;
pub(crate) use types::{
    AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType,
};

/// The one name of the cluster resource, as in Kafka.
pub(crate) const CLUSTER_NAME: &str = "kafka-cluster";

/// Prefix of the names the broker keeps for processors: their consumer
/// groups (`sluice-processor-NAME`), changelog and repartition topics
/// (`processor::spec`).
pub(crate) const PROCESSOR_PREFIX: &str = "sluice-processor-";

/// The principal of a connection that did not authenticate.
pub(crate) const ANONYMOUS: &str = "User:ANONYMOUS";

/// Authorization settings (`[acl]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AclConfig {
    /// Enforce the ACLs on the Kafka listener. Default false: every client
    /// may do everything (except touch the processors' groups and topics),
    /// as in Kafka without an authorizer.
    pub(crate) enabled: bool,
    /// Principals allowed everything, e.g. `["User:admin"]`. Default none.
    pub(crate) super_users: Vec<String>,
    /// Allow an operation on a resource that no ACL names (Kafka's
    /// `allow.everyone.if.no.acl.found`). Default false.
    pub(crate) allow_everyone_if_no_acl_found: bool,
    /// ACLs one broker keeps at most; creating more is refused. Default
    /// 100 000.
    pub(crate) acls_max: usize,
}

impl Default for AclConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            acls_max: 100_000,
        }
    }
}

/// Who sent a request: the authenticated principal (`User:NAME`, or
/// `User:ANONYMOUS`) and the address it connected from.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) principal: Arc<str>,
    pub(crate) host: Option<IpAddr>,
}

impl Caller {
    /// A caller that did not authenticate.
    pub(crate) fn anonymous(host: Option<IpAddr>) -> Self {
        Self {
            principal: Arc::from(ANONYMOUS),
            host,
        }
    }

    /// A caller authenticated as `user`.
    pub(crate) fn user(user: &str, host: Option<IpAddr>) -> Self {
        Self {
            principal: Arc::from(format!("User:{user}")),
            host,
        }
    }
}

/// Whether `name` is one of the processors' groups or topics.
pub(crate) fn is_processor_resource(name: &str) -> bool {
    name.starts_with(PROCESSOR_PREFIX)
}

/// Whether the processors' own resources forbid `operation` whatever the
/// ACLs say: their groups may only be described (a client joining one
/// would take partitions from the processor, a commit would move its
/// position), their topics only read and described.
fn refused_on_processor_resources(
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    if !is_processor_resource(name) {
        return false;
    }
    match resource_type {
        ResourceType::Group => operation != Operation::Describe,
        ResourceType::Topic => !matches!(
            operation,
            Operation::Describe | Operation::DescribeConfigs | Operation::Read
        ),
        ResourceType::Cluster | ResourceType::TransactionalId => false,
    }
}

/// The decision: [`Authorizer::allows`].
#[derive(Debug)]
pub(crate) struct Authorizer {
    config: AclConfig,
    acls: Arc<Acls>,
}

impl Authorizer {
    pub(crate) fn new(config: AclConfig, acls: Arc<Acls>) -> Self {
        Self { config, acls }
    }

    /// Whether ACLs are enforced (the ACL APIs answer SECURITY_DISABLED
    /// otherwise, as Kafka's do without an authorizer).
    pub(crate) fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub(crate) fn acls(&self) -> &Arc<Acls> {
        &self.acls
    }

    /// Whether `caller` may do `operation` on the resource.
    pub(crate) fn allows(
        &self,
        caller: &Caller,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if refused_on_processor_resources(operation, resource_type, name) {
            return false;
        }
        if !self.config.enabled || self.is_super_user(caller) {
            return true;
        }
        let decision = self.acls.decide(caller, operation, resource_type, name);
        match decision {
            store::Decision::Denied => false,
            store::Decision::NoAcls => self.config.allow_everyone_if_no_acl_found,
            store::Decision::Allowed => true,
            store::Decision::NotAllowed => false,
        }
    }

    /// Whether `caller` may do `operation` on some resource of the type
    /// (Kafka's `authorizeByResourceType`, which lets a producer with
    /// WRITE on any topic be idempotent): no DENY of it on every resource
    /// of the type, and an ALLOW for it or `allow_everyone_if_no_acl_found`.
    pub(crate) fn allows_any(
        &self,
        caller: &Caller,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if !self.config.enabled || self.is_super_user(caller) {
            return true;
        }
        let (allowed, denied) = self.acls.by_type(caller, operation, resource_type);
        !denied && (allowed || self.config.allow_everyone_if_no_acl_found)
    }

    fn is_super_user(&self, caller: &Caller) -> bool {
        self.config
            .super_users
            .iter()
            .any(|user| user.as_str() == &*caller.principal)
    }
}

#[cfg(test)]
mod tests;
