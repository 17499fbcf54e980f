//! The words of an ACL, with Kafka's wire codes (`AclOperation`,
//! `ResourceType`, `PatternType`, `AclPermissionType` in Kafka's
//! `org.apache.kafka.common`) and the names `kafka-acls.sh` and the JSON
//! of the admin API use (`TOPIC`, `READ`, `PREFIXED`, `ALLOW`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Kafka's code for "any" in a filter.
const ANY: i8 = 1;

macro_rules! coded {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal, $text:literal;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub(crate) enum $name {
            $(#[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Kafka's wire code.
            pub(crate) fn code(self) -> i8 {
                match self { $(Self::$variant => $code,)* }
            }

            /// From Kafka's wire code; `None` for ANY, UNKNOWN and codes
            /// this broker does not know.
            pub(crate) fn from_code(code: i8) -> Option<Self> {
                match code { $($code => Some(Self::$variant),)* _ => None }
            }

            /// Kafka's name, e.g. `TRANSACTIONAL_ID`.
            pub(crate) fn name(self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }

            /// From a name in any case, with `-` or `_` between words.
            pub(crate) fn parse(text: &str) -> Option<Self> {
                let wanted = text.to_ascii_uppercase().replace('-', "_");
                match wanted.as_str() { $($text => Some(Self::$variant),)* _ => None }
            }

            /// Every name, for error messages.
            #[allow(dead_code)] // not every type lists its names in a message
            pub(crate) fn names() -> &'static [&'static str] {
                &[$($text,)*]
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

coded! {
    /// What an ACL is about.
    ResourceType {
        Topic = 2, "TOPIC";
        Group = 3, "GROUP";
        Cluster = 4, "CLUSTER";
        TransactionalId = 5, "TRANSACTIONAL_ID";
    }
}

coded! {
    /// How an ACL's resource name matches.
    PatternType {
        Literal = 3, "LITERAL";
        Prefixed = 4, "PREFIXED";
    }
}

coded! {
    /// What a principal does to a resource.
    Operation {
        All = 2, "ALL";
        Read = 3, "READ";
        Write = 4, "WRITE";
        Create = 5, "CREATE";
        Delete = 6, "DELETE";
        Alter = 7, "ALTER";
        Describe = 8, "DESCRIBE";
        ClusterAction = 9, "CLUSTER_ACTION";
        DescribeConfigs = 10, "DESCRIBE_CONFIGS";
        AlterConfigs = 11, "ALTER_CONFIGS";
        IdempotentWrite = 12, "IDEMPOTENT_WRITE";
    }
}

coded! {
    /// Whether an ACL grants or forbids.
    Permission {
        Deny = 2, "DENY";
        Allow = 3, "ALLOW";
    }
}

impl Operation {
    /// Whether an ALLOW of `self` grants `wanted` (ALL grants everything;
    /// READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies
    /// DESCRIBE_CONFIGS).
    pub(crate) fn allows(self, wanted: Operation) -> bool {
        use Operation::*;
        self == wanted
            || self == All
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` forbids `wanted` (only itself and ALL).
    pub(crate) fn denies(self, wanted: Operation) -> bool {
        self == wanted || self == Operation::All
    }

    /// The operations that make sense on a resource type (what
    /// `kafka-acls.sh` accepts).
    fn valid_on(self, resource_type: ResourceType) -> bool {
        use Operation::*;
        match resource_type {
            ResourceType::Topic => matches!(
                self,
                All | Read
                    | Write
                    | Create
                    | Delete
                    | Alter
                    | Describe
                    | DescribeConfigs
                    | AlterConfigs
            ),
            ResourceType::Group => matches!(self, All | Read | Describe | Delete),
            ResourceType::Cluster => matches!(
                self,
                All | Create
                    | ClusterAction
                    | DescribeConfigs
                    | AlterConfigs
                    | IdempotentWrite
                    | Alter
                    | Describe
            ),
            ResourceType::TransactionalId => matches!(self, All | Describe | Write),
        }
    }
}

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AclBinding {
    pub(crate) resource_type: ResourceType,
    pub(crate) resource_name: String,
    pub(crate) pattern_type: PatternType,
    /// `User:NAME`, or `User:*` for everyone.
    pub(crate) principal: String,
    /// A client address, or `*` for any.
    pub(crate) host: String,
    pub(crate) operation: Operation,
    pub(crate) permission: Permission,
}

/// Longest resource name or principal an ACL may hold.
pub(super) const NAME_BYTES_MAX: usize = 1024;

impl AclBinding {
    /// Checks what Kafka checks before storing an ACL, and that the
    /// operation makes sense on the resource.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.resource_name.is_empty() || self.resource_name.len() > NAME_BYTES_MAX {
            return Err(format!("a resource name has 1 to {NAME_BYTES_MAX} bytes"));
        }
        if self.resource_type == ResourceType::Cluster
            && (self.resource_name != super::CLUSTER_NAME
                || self.pattern_type != PatternType::Literal)
        {
            return Err(format!(
                "the CLUSTER resource is the LITERAL name {:?}",
                super::CLUSTER_NAME
            ));
        }
        if self.pattern_type == PatternType::Prefixed && self.resource_name == "*" {
            return Err(
                "a PREFIXED pattern of \"*\" is not allowed; use LITERAL \"*\" for every resource"
                    .into(),
            );
        }
        match self.principal.split_once(':') {
            Some(("User", name)) if !name.is_empty() && self.principal.len() <= NAME_BYTES_MAX => {}
            _ => {
                return Err(format!(
                    "principal {:?} is not User:NAME (or User:* for everyone)",
                    self.principal
                ))
            }
        }
        if self.host != "*" && self.host.parse::<IpAddr>().is_err() {
            return Err(format!(
                "host {:?} is neither an IP address nor \"*\"",
                self.host
            ));
        }
        if !self.operation.valid_on(self.resource_type) {
            return Err(format!(
                "operation {} does not apply to a {} resource",
                self.operation, self.resource_type
            ));
        }
        Ok(())
    }

    /// Whether this ACL's resource pattern covers `name`.
    pub(crate) fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == "*",
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }
}

/// How a filter matches resource patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum PatternFilter {
    /// Any pattern type; the name, if given, equal.
    #[default]
    Any,
    /// ACLs that would apply to the named resource: equal LITERAL names,
    /// the LITERAL `*`, and PREFIXED patterns the name starts with.
    Match,
    /// This pattern type only.
    Exactly(PatternType),
}

impl PatternFilter {
    /// From Kafka's wire code (ANY = 1, MATCH = 2, or a pattern type).
    pub(crate) fn from_code(code: i8) -> Option<Self> {
        match code {
            ANY => Some(Self::Any),
            2 => Some(Self::Match),
            code => PatternType::from_code(code).map(Self::Exactly),
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "ANY" => Some(Self::Any),
            "MATCH" => Some(Self::Match),
            other => PatternType::parse(other).map(Self::Exactly),
        }
    }
}

/// Which ACLs DescribeAcls and DeleteAcls mean; `None` fields match
/// anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AclFilter {
    pub(crate) resource_type: Option<ResourceType>,
    pub(crate) resource_name: Option<String>,
    pub(crate) pattern: PatternFilter,
    pub(crate) principal: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) operation: Option<Operation>,
    pub(crate) permission: Option<Permission>,
}

impl AclFilter {
    /// From Kafka's wire fields; an error names the field that holds a
    /// code this broker does not know.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<Self, String> {
        fn code<T>(code: i8, field: &str, parse: fn(i8) -> Option<T>) -> Result<Option<T>, String> {
            if code == ANY {
                return Ok(None);
            }
            parse(code)
                .map(Some)
                .ok_or_else(|| format!("unknown {field} code {code}"))
        }
        Ok(Self {
            resource_type: code(resource_type, "resource type", ResourceType::from_code)?,
            resource_name: resource_name.map(String::from),
            pattern: PatternFilter::from_code(pattern)
                .ok_or_else(|| format!("unknown pattern type code {pattern}"))?,
            principal: principal.map(String::from),
            host: host.map(String::from),
            operation: code(operation, "operation", Operation::from_code)?,
            permission: code(permission, "permission type", Permission::from_code)?,
        })
    }

    /// Whether `acl` is one this filter means.
    pub(crate) fn matches(&self, acl: &AclBinding) -> bool {
        let name_matches = match (self.pattern, &self.resource_name) {
            (PatternFilter::Any, name) => name.as_ref().is_none_or(|n| *n == acl.resource_name),
            (PatternFilter::Exactly(pattern), name) => {
                pattern == acl.pattern_type && name.as_ref().is_none_or(|n| *n == acl.resource_name)
            }
            (PatternFilter::Match, None) => true,
            (PatternFilter::Match, Some(name)) => acl.covers(name),
        };
        name_matches
            && self.resource_type.is_none_or(|t| t == acl.resource_type)
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}
