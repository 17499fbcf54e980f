//! Kafka ACLs on a SASL listener: each user may do what an ACL grants and
//! nothing else (kcat as the clients), the operator manages the ACLs with
//! `sluice acl`, and Kafka's own admin APIs manage them for a principal
//! allowed to ALTER the cluster (kafkajs).

use std::process::{Command, Output};

use crate::processors::Pipeline;

/// A SASL listener enforcing ACLs, with `admin` as super user.
const CONFIG: &str = "[kafka]\nsecurity_protocol = \"SASL_PLAINTEXT\"\n\n\
    [acl]\nenabled = true\nsuper_users = [\"User:admin\"]\n";

/// Every user's password in these tests.
const PASSWORD: &str = "pass word";

fn start_with_users(users: &[&str]) -> Pipeline {
    let pipeline = Pipeline::start_with_config(CONFIG);
    for user in users {
        pipeline.sluice_ok(&["user", "create", user, "--password", PASSWORD]);
    }
    pipeline
}

/// `sluice acl create ARGS` (whitespace-separated), which must succeed.
fn acl_create(pipeline: &Pipeline, args: &str) {
    let mut command = vec!["acl", "create"];
    command.extend(args.split_whitespace());
    pipeline.sluice_ok(&command);
}

/// kcat as `user` (SCRAM-SHA-256).
fn kcat_as(pipeline: &Pipeline, user: &str) -> Command {
    let mut command = Command::new("kcat");
    command
        .args(["-b", &pipeline.broker.kafka.to_string()])
        .args([
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-256",
            "-X",
            &format!("sasl.username={user}"),
            "-X",
            &format!("sasl.password={PASSWORD}"),
        ]);
    command
}

/// Produces `lines` to `topic` as `user`.
fn produce(pipeline: &Pipeline, user: &str, topic: &str, lines: &str) -> Output {
    let mut command = kcat_as(pipeline, user);
    command.args(["-P", "-t", topic]);
    crate::harness::output_with_input(&mut command, lines.as_bytes())
}

/// Reads `topic` to its end as `user`, in consumer group `group`.
fn consume(pipeline: &Pipeline, user: &str, topic: &str, group: &str) -> Output {
    kcat_as(pipeline, user)
        .args(["-G", group, topic, "-o", "beginning", "-e", "-q"])
        .args(["-m", "10"])
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn each_user_may_do_what_its_acls_grant_and_nothing_else() {
    let pipeline = start_with_users(&["admin", "alice", "bob"]);
    // The super user creates the topics (auto-created on first write).
    let made = produce(&pipeline, "admin", "orders", "first\n");
    assert!(made.status.success(), "{}", stderr(&made));
    let made = produce(&pipeline, "admin", "payroll", "secret\n");
    assert!(made.status.success(), "{}", stderr(&made));

    acl_create(
        &pipeline,
        "--allow-principal User:alice --operation write --topic orders",
    );
    acl_create(
        &pipeline,
        "--allow-principal User:bob --operation read --topic orders --group bob- \
         --resource-pattern-type prefixed",
    );
    let listed = pipeline.sluice_ok(&["acl", "list", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["enforced"], true, "{listed:#}");
    assert_eq!(listed["acls"].as_array().unwrap().len(), 3, "{listed:#}");

    // alice writes orders, not payroll, and cannot read either.
    let wrote = produce(&pipeline, "alice", "orders", "second\n");
    assert!(wrote.status.success(), "{}", stderr(&wrote));
    let refused = produce(&pipeline, "alice", "payroll", "forged\n");
    assert!(
        stderr(&refused).contains("Topic authorization failed"),
        "{}",
        stderr(&refused)
    );
    let read = consume(&pipeline, "alice", "orders", "bob-alice");
    assert!(!read.status.success() && read.stdout.is_empty(), "{read:?}");

    // bob reads orders in a bob- group (prefixed ACLs), not in another group,
    // and writes nothing.
    let read = consume(&pipeline, "bob", "orders", "bob-readers");
    assert!(read.status.success(), "{}", stderr(&read));
    assert_eq!(String::from_utf8_lossy(&read.stdout), "first\nsecond\n");
    let read = consume(&pipeline, "bob", "orders", "others");
    assert!(!read.status.success() && read.stdout.is_empty(), "{read:?}");
    assert!(
        stderr(&read).contains("Group authorization failed"),
        "{}",
        stderr(&read)
    );
    let refused = produce(&pipeline, "bob", "orders", "forged\n");
    assert!(
        stderr(&refused).contains("Topic authorization failed"),
        "{}",
        stderr(&refused)
    );

    // Metadata shows each user only the topics it may describe.
    let topics = |user: &str| {
        let output = kcat_as(&pipeline, user)
            .args(["-L", "-J"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let mut names: Vec<String> = listing["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(topics("alice"), ["orders"]);
    assert_eq!(topics("admin"), ["orders", "payroll"]);

    // A deleted ACL no longer grants: bob can no longer read.
    let deleted = pipeline.sluice_ok(&[
        "acl",
        "delete",
        "--principal",
        "User:bob",
        "--topic",
        "orders",
    ]);
    assert!(deleted.contains("1 ACL(s) deleted"), "{deleted}");
    let read = consume(&pipeline, "bob", "orders", "bob-again");
    assert!(!read.status.success() && read.stdout.is_empty(), "{read:?}");

    // A filterless delete must be asked for with --all.
    let output = pipeline.sluice(&["acl", "delete"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--all"), "{}", stderr(&output));
}

#[test]
fn kafka_admin_clients_manage_acls_when_they_may_alter_the_cluster() {
    let mut pipeline = start_with_users(&["admin", "alice"]);
    let node_dir = crate::clients::node_dir();
    // Restarts keep the Kafka address.
    let bootstrap = pipeline.broker.kafka.to_string();
    let run = |user: &str, prefix: &str| {
        Command::new("node")
            .current_dir(&node_dir)
            .arg("kafkajs_acls.js")
            .args([&bootstrap, "SCRAM-SHA-512", user, PASSWORD, prefix])
            .output()
            .unwrap()
    };
    // alice may not change the ACLs: CLUSTER_AUTHORIZATION_FAILED.
    let refused = run("alice", "a");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("Cluster authorization failed"),
        "{}",
        stderr(&refused)
    );
    // The super user creates two ACLs, lists them, deletes one.
    let output = run("admin", "app");
    assert!(output.status.success(), "{}", stderr(&output));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // Operation codes: READ 3, WRITE 4; pattern LITERAL 3, PREFIXED 4;
    // permission ALLOW 3.
    assert_eq!(
        result["described"],
        serde_json::json!(["app-orders/3/3/3", "app/4/4/3"]),
        "{result:#}"
    );
    assert_eq!(result["deleted"], 1, "{result:#}");
    assert_eq!(result["remaining"], serde_json::json!(["app/4/4/3"]));
    // The operator sees what the Kafka client left, and it survives a restart.
    pipeline.restart("TERM");
    let listed = pipeline.sluice_ok(&["acl", "list", "--principal", "User:carol"]);
    assert!(
        listed.contains("PREFIXED") && listed.contains("WRITE") && !listed.contains("READ"),
        "{listed}"
    );
    // After a restart alice is still refused, by the same ACLs.
    assert!(!run("alice", "b").status.success());
}

/// Transactions need WRITE on the transactional id besides the topic; an
/// idempotent producer needs only WRITE on a topic (KIP-679).
#[test]
fn a_transactional_producer_needs_write_on_its_transactional_id() {
    let pipeline = start_with_users(&["admin", "alice"]);
    let made = produce(&pipeline, "admin", "ledger", "opening\n");
    assert!(made.status.success(), "{}", stderr(&made));
    acl_create(
        &pipeline,
        "--allow-principal User:alice --operation write --topic ledger",
    );
    let bootstrap = pipeline.broker.kafka.to_string();
    let run = |value: &str| {
        let output = crate::clients::python_script(
            "ck_acl_txn.py",
            &[&bootstrap, "alice", PASSWORD, "ledger", "alice-txn", value],
        )
        .output()
        .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let refused = run("refused");
    assert_eq!(
        refused,
        serde_json::json!({
            "transactional": "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
            "idempotent": "delivered",
        })
    );
    acl_create(
        &pipeline,
        "--allow-principal User:alice --operation write --transactional-id alice- \
         --resource-pattern-type prefixed",
    );
    let allowed = run("allowed");
    assert_eq!(allowed["transactional"], "committed", "{allowed:#}");
    // What the log holds: the refused transaction wrote nothing.
    let read = kcat_as(&pipeline, "admin")
        .args([
            "-C",
            "-t",
            "ledger",
            "-e",
            "-q",
            "-X",
            "isolation.level=read_committed",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read.stdout),
        "opening\nrefused\nallowed\nallowed\n"
    );
}

/// `sluice`'s own Kafka verbs authenticate with `--user` and
/// SLUICE_PASSWORD, and are held to the same ACLs as any client.
#[test]
fn sluice_kafka_verbs_authenticate_and_obey_the_acls() {
    let pipeline = start_with_users(&["admin", "alice"]);
    let sluice_as = |user: &str, password: &str, args: &[&str], input: &str| {
        let mut command = Command::new(crate::harness::sluice_binary());
        command
            .args(args)
            .args(["--user", user])
            .env("SLUICE_BROKERS", pipeline.broker.kafka.to_string())
            .env("SLUICE_PASSWORD", password)
            .env("SLUICE_SASL_MECHANISM", "SCRAM-SHA-512");
        crate::harness::output_with_input(&mut command, input.as_bytes())
    };
    let created = sluice_as(
        "admin",
        PASSWORD,
        &["topic", "create", "notes", "-p", "2"],
        "",
    );
    assert!(created.status.success(), "{}", stderr(&created));
    acl_create(
        &pipeline,
        "--allow-principal User:alice --operation write --operation read --topic notes",
    );
    acl_create(
        &pipeline,
        "--allow-principal User:alice --operation read --group alice-notes",
    );
    let produced = sluice_as("alice", PASSWORD, &["produce", "notes"], "a\nb\n");
    assert!(produced.status.success(), "{}", stderr(&produced));
    // In a group: the coordinator and heartbeat connections authenticate too.
    let consumed = sluice_as(
        "alice",
        PASSWORD,
        &["consume", "notes", "-n", "2", "-g", "alice-notes"],
        "",
    );
    assert!(consumed.status.success(), "{}", stderr(&consumed));
    let mut lines: Vec<String> = String::from_utf8_lossy(&consumed.stdout)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(lines, ["a", "b"]);

    // alice may not create topics; the error says so.
    let refused = sluice_as("alice", PASSWORD, &["topic", "create", "mine"], "");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("TOPIC_AUTHORIZATION_FAILED"),
        "{}",
        stderr(&refused)
    );
    // A wrong password, and no user at all, fail with a message that says why.
    let wrong = sluice_as("alice", "wrong", &["topic", "list"], "");
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("SASL authentication as \"alice\"")
            && stderr(&wrong).contains("SASL_AUTHENTICATION_FAILED"),
        "{}",
        stderr(&wrong)
    );
    let anonymous = pipeline.sluice(&["topic", "list"]);
    assert!(!anonymous.status.success());
    assert!(
        stderr(&anonymous).contains("--user"),
        "{}",
        stderr(&anonymous)
    );
}
