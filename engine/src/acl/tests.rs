use std::sync::Arc;

use super::*;

fn acl(
    resource_type: ResourceType,
    name: &str,
    pattern_type: PatternType,
    principal: &str,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.into(),
        pattern_type,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission,
    }
}

fn authorizer(config: AclConfig, acls: Vec<AclBinding>) -> (tempfile::TempDir, Authorizer) {
    let dir = tempfile::tempdir().unwrap();
    let store = Acls::open(dir.path(), config.acls_max).unwrap();
    for verdict in store.create(acls) {
        verdict.unwrap();
    }
    (dir, Authorizer::new(config, Arc::new(store)))
}

fn enabled() -> AclConfig {
    AclConfig {
        enabled: true,
        ..AclConfig::default()
    }
}

fn alice() -> Caller {
    Caller::user("alice", Some("10.0.0.1".parse().unwrap()))
}

use Operation::*;
use PatternType::*;
use Permission::*;
use ResourceType::*;

#[test]
fn disabled_allows_everything_but_the_processors_resources() {
    let (_dir, auth) = authorizer(AclConfig::default(), vec![]);
    assert!(auth.allows(&alice(), Write, Topic, "orders"));
    assert!(auth.allows(&alice(), Read, Group, "app"));
    assert!(!auth.allows(&alice(), Read, Group, "sluice-processor-counts"));
    assert!(auth.allows(&alice(), Describe, Group, "sluice-processor-counts"));
    assert!(!auth.allows(&alice(), Delete, Group, "sluice-processor-counts"));
    assert!(auth.allows(&alice(), Read, Topic, "sluice-processor-counts-changelog"));
    assert!(!auth.allows(&alice(), Write, Topic, "sluice-processor-counts-changelog"));
    assert!(!auth.allows(&alice(), Delete, Topic, "sluice-processor-counts-changelog"));
}

#[test]
fn enabled_denies_what_no_acl_grants_and_implies_describe() {
    let (_dir, auth) = authorizer(
        enabled(),
        vec![acl(Topic, "orders", Literal, "User:alice", Read, Allow)],
    );
    assert!(auth.allows(&alice(), Read, Topic, "orders"));
    assert!(
        auth.allows(&alice(), Describe, Topic, "orders"),
        "READ implies DESCRIBE"
    );
    assert!(!auth.allows(&alice(), Write, Topic, "orders"));
    assert!(
        !auth.allows(&alice(), Read, Topic, "payments"),
        "no ACL names it"
    );
    let bob = Caller::user("bob", None);
    assert!(!auth.allows(&bob, Read, Topic, "orders"));
    assert!(!auth.allows(&Caller::anonymous(None), Read, Topic, "orders"));
}

#[test]
fn deny_wins_and_prefixes_and_wildcards_match() {
    let (_dir, auth) = authorizer(
        enabled(),
        vec![
            acl(Topic, "app.", Prefixed, "User:*", All, Allow),
            acl(Topic, "app.secret", Literal, "User:alice", Read, Deny),
            acl(Group, "*", Literal, "User:alice", Read, Allow),
        ],
    );
    assert!(auth.allows(&alice(), Write, Topic, "app.orders"));
    assert!(auth.allows(&Caller::user("bob", None), Read, Topic, "app.secret"));
    assert!(
        !auth.allows(&alice(), Read, Topic, "app.secret"),
        "DENY wins"
    );
    assert!(
        auth.allows(&alice(), Write, Topic, "app.secret"),
        "DENY READ is not DENY WRITE"
    );
    assert!(!auth.allows(&alice(), Read, Topic, "ap"));
    assert!(auth.allows(&alice(), Read, Group, "anything"));
    assert!(!auth.allows(&alice(), Delete, Group, "anything"));
    assert!(
        !auth.allows(&alice(), Read, Group, "sluice-processor-x"),
        "no ACL opens a processor's group"
    );
}

#[test]
fn super_users_hosts_and_the_no_acl_default() {
    let config = AclConfig {
        super_users: vec!["User:admin".into()],
        allow_everyone_if_no_acl_found: true,
        ..enabled()
    };
    let mut from_host = acl(Topic, "orders", Literal, "User:alice", Write, Allow);
    from_host.host = "10.0.0.2".into();
    let (_dir, auth) = authorizer(config, vec![from_host]);
    assert!(auth.allows(&Caller::user("admin", None), Delete, Topic, "orders"));
    assert!(!auth.allows(&alice(), Write, Topic, "orders"), "other host");
    let there = Caller::user("alice", Some("10.0.0.2".parse().unwrap()));
    assert!(auth.allows(&there, Write, Topic, "orders"));
    assert!(
        auth.allows(&alice(), Write, Topic, "unnamed"),
        "no ACL: everyone"
    );
}

#[test]
fn allows_any_sees_a_grant_on_some_resource() {
    let (_dir, auth) = authorizer(
        enabled(),
        vec![acl(Topic, "app.", Prefixed, "User:alice", Write, Allow)],
    );
    assert!(auth.allows_any(&alice(), Write, Topic));
    assert!(!auth.allows_any(&Caller::user("bob", None), Write, Topic));
    // With allow_everyone_if_no_acl_found, anyone not denied everywhere.
    let open = AclConfig {
        allow_everyone_if_no_acl_found: true,
        ..enabled()
    };
    let (_dir, auth) = authorizer(
        open,
        vec![acl(Topic, "*", Literal, "User:mallory", Write, Deny)],
    );
    assert!(auth.allows_any(&alice(), Write, Topic));
    assert!(!auth.allows_any(&Caller::user("mallory", None), Write, Topic));
}

#[test]
fn an_ipv4_client_on_a_dual_stack_listener_matches_its_ipv4_acl() {
    let mut from_host = acl(Topic, "orders", Literal, "User:alice", Write, Allow);
    from_host.host = "10.0.0.5".into();
    let (_dir, auth) = authorizer(enabled(), vec![from_host]);
    let mapped = Caller::user("alice", Some("::ffff:10.0.0.5".parse().unwrap()));
    assert!(auth.allows(&mapped, Write, Topic, "orders"));
    let other = Caller::user("alice", Some("::ffff:10.0.0.6".parse().unwrap()));
    assert!(!auth.allows(&other, Write, Topic, "orders"));
}

#[test]
fn create_all_is_all_or_nothing_at_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Acls::open(dir.path(), 2).unwrap();
    let one = acl(Topic, "a", Literal, "User:x", Read, Allow);
    assert_eq!(store.create_all(vec![one.clone()]), Ok(1));
    let two = acl(Topic, "b", Literal, "User:x", Read, Allow);
    let three = acl(Topic, "c", Literal, "User:x", Read, Allow);
    assert!(store
        .create_all(vec![two.clone(), three])
        .unwrap_err()
        .contains("acls_max"));
    assert_eq!(store.describe(&AclFilter::default()), vec![one.clone()]);
    assert_eq!(store.create_all(vec![one, two]), Ok(1));
}

#[test]
fn acls_persist_and_filters_delete_what_they_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = Acls::open(dir.path(), 3).unwrap();
    let read = acl(Topic, "orders", Literal, "User:alice", Read, Allow);
    let write = acl(Topic, "app.", Prefixed, "User:bob", Write, Allow);
    let bad = acl(Group, "g", Literal, "alice", Read, Allow);
    let verdicts = store.create(vec![read.clone(), write.clone(), bad]);
    assert!(verdicts[0].is_ok() && verdicts[1].is_ok());
    assert!(
        verdicts[2].as_ref().unwrap_err().contains("User:NAME"),
        "{verdicts:?}"
    );
    let reopened = Acls::open(dir.path(), 3).unwrap();
    assert_eq!(reopened.describe(&AclFilter::default()).len(), 2);

    let matching = AclFilter {
        resource_type: Some(Topic),
        resource_name: Some("app.orders".into()),
        pattern: PatternFilter::Match,
        ..AclFilter::default()
    };
    assert_eq!(reopened.describe(&matching), vec![write.clone()]);
    let removed = reopened.delete(&[matching]).unwrap();
    assert_eq!(removed, vec![vec![write]]);
    assert_eq!(
        Acls::open(dir.path(), 3)
            .unwrap()
            .describe(&AclFilter::default()),
        vec![read]
    );
}

#[test]
fn the_bound_and_validation_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Acls::open(dir.path(), 1).unwrap();
    let one = acl(Topic, "a", Literal, "User:x", Read, Allow);
    let two = acl(Topic, "b", Literal, "User:x", Read, Allow);
    assert!(store.create(vec![one.clone()])[0].is_ok());
    assert!(
        store.create(vec![one])[0].is_ok(),
        "an existing ACL is fine"
    );
    assert!(store.create(vec![two])[0]
        .as_ref()
        .unwrap_err()
        .contains("acls_max"));
    let checks = [
        acl(Cluster, "other", Literal, "User:x", Alter, Allow),
        acl(Topic, "*", Prefixed, "User:x", Read, Allow),
        acl(Group, "g", Literal, "User:x", Write, Allow),
        acl(Topic, "", Literal, "User:x", Read, Allow),
    ];
    for bad in checks {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    let mut host = acl(Topic, "t", Literal, "User:x", Read, Allow);
    host.host = "example.com".into();
    assert!(host.validate().unwrap_err().contains("IP address"));
}
