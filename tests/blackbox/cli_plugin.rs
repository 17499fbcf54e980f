//! `sluice plugin new` and `sluice plugin build` as a plugin author runs
//! them: the real binary scaffolds a crate of every kind into a temporary
//! folder, then one scaffold is compiled to a wasm32-wasip2 component by
//! real cargo and its own unit tests are run on the host.
//!
//! The scaffold builds go to `<target>/scaffold` (beside the test binary's
//! own target folder) so that repeated runs reuse the compiled SDK and
//! dependencies instead of starting cold in each new temporary folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::harness::sluice_binary;

/// Every kind `plugin new` offers, with its template's file name.
const KINDS: [(&str, &str); 7] = [
    ("filter", "filter.rs"),
    ("map", "map.rs"),
    ("flat-map", "flat_map.rs"),
    ("route", "route.rs"),
    ("aggregate", "aggregate.rs"),
    ("window", "window.rs"),
    ("projection", "projection.rs"),
];

/// The stateful kinds, with the store their deployment must declare.
const STATEFUL_KINDS: [(&str, &str); 3] = [
    ("aggregate", "totals"),
    ("window", "windows"),
    ("projection", "carts"),
];

/// The templates `sluice` compiles in, read here from the source tree.
const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cli/plugin_templates");

/// Runs `sluice` with `args` in `dir`.
fn sluice(dir: &Path, args: &[&str]) -> Output {
    Command::new(sluice_binary())
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("running sluice")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// stdout of a run that must have succeeded.
fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "sluice failed ({}): stderr: {}",
        output.status,
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The folder cargo builds scaffolds in: `<target>/scaffold`, where
/// `<target>` holds this test binary (`<target>/debug/deps/blackbox-…`).
fn scaffold_target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary is in <target>/<profile>/deps");
    target.join("scaffold")
}

/// The SDK folder a default `plugin new` points at.
fn sdk_folder() -> PathBuf {
    std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk")).expect("the SDK folder")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Scaffolds a `kind` plugin named `name` into `<root>/plugin`.
fn scaffold(root: &Path, name: &str, kind: &str) -> PathBuf {
    let dir = root.join("plugin");
    let stdout = ok(sluice(
        root,
        &[
            "plugin",
            "new",
            name,
            "--kind",
            kind,
            "--dir",
            dir.to_str().unwrap(),
        ],
    ));
    assert!(
        stdout.starts_with(&format!("created {kind} plugin {name} in ")),
        "{stdout}"
    );
    assert!(stdout.contains("sluice plugin build"), "{stdout}");
    dir
}

#[test]
fn new_scaffolds_every_kind() {
    for (kind, template) in KINDS {
        let root = TempDir::new().unwrap();
        let name = format!("demo-{kind}");
        let dir = scaffold(root.path(), &name, kind);
        let manifest = read(&dir.join("Cargo.toml"));
        let parsed: toml::Value = toml::from_str(&manifest).expect("Cargo.toml is TOML");
        assert_eq!(parsed["package"]["name"].as_str(), Some(name.as_str()));
        let sdk = sdk_folder();
        assert!(
            manifest.contains(sdk.to_str().unwrap()),
            "{kind}: Cargo.toml does not name the SDK at {}:\n{manifest}",
            sdk.display()
        );
        let expected = read(&Path::new(TEMPLATES).join(template))
            .replace("{{name}}", &name)
            .replace("{{crate_name}}", &name.replace('-', "_"));
        assert_eq!(
            read(&dir.join("src/lib.rs")),
            expected,
            "{kind}: src/lib.rs"
        );
        assert!(
            read(&dir.join("README.md")).contains(&name),
            "{kind}: README"
        );
        assert!(read(&dir.join(".gitignore")).contains("target"), "{kind}");
        for file in ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"] {
            let contents = read(&dir.join(file));
            let placeholders = [
                "{{name}}",
                "{{crate_name}}",
                "{{sdk_path}}",
                "{{try_it}}",
                "{{deploy}}",
                "{{state}}",
            ];
            for placeholder in placeholders {
                assert!(
                    !contents.contains(placeholder),
                    "{kind}: {placeholder} in {file}"
                );
            }
        }
    }
}

#[test]
fn new_defaults_to_a_folder_named_after_the_plugin() {
    let root = TempDir::new().unwrap();
    ok(sluice(root.path(), &["plugin", "new", "big-orders"]));
    let lib = read(&root.path().join("big-orders/src/lib.rs"));
    assert_eq!(
        lib,
        read(&Path::new(TEMPLATES).join("filter.rs"))
            .replace("{{name}}", "big-orders")
            .replace("{{crate_name}}", "big_orders")
    );
}

#[test]
fn new_refuses_to_overwrite_and_bad_names() {
    let root = TempDir::new().unwrap();
    let taken = root.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), "mine").unwrap();
    let output = sluice(root.path(), &["plugin", "new", "p", "--dir", "taken"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(read(&taken.join("notes.txt")), "mine");
    assert_eq!(std::fs::read_dir(&taken).unwrap().count(), 1);

    let output = sluice(root.path(), &["plugin", "new", "9lives"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("starts with a letter"));
    let output = sluice(
        root.path(),
        &["plugin", "new", "p", "--sdk-path", "nowhere"],
    );
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--sdk-path"));
    assert!(!root.path().join("p").exists(), "nothing is left behind");
}

#[test]
fn build_refuses_a_folder_without_a_crate() {
    let root = TempDir::new().unwrap();
    let output = sluice(root.path(), &["plugin", "build"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no Cargo.toml"), "{stderr}");
}

#[test]
fn a_filter_scaffold_builds_to_a_component_and_passes_its_tests() {
    let root = TempDir::new().unwrap();
    let dir = scaffold(root.path(), "demo-filter", "filter");
    let target = scaffold_target_dir();

    let build = Command::new(sluice_binary())
        .args(["plugin", "build", dir.to_str().unwrap(), "--format", "json"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("running sluice plugin build");
    let stdout = ok(build);
    let built: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let wasm = PathBuf::from(built["wasm"].as_str().expect("a wasm path"));
    assert!(wasm.is_absolute(), "{}", wasm.display());
    assert!(
        wasm.starts_with(&target),
        "{} is not under {}",
        wasm.display(),
        target.display()
    );
    let bytes = std::fs::read(&wasm).expect("the .wasm exists");
    assert!(bytes.starts_with(b"\0asm"), "not WebAssembly");
    assert_eq!(built["bytes"].as_u64(), Some(bytes.len() as u64));
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(built["sha256"].as_str(), Some(sha256.as_str()));

    // Text output, from inside the crate: the path alone, as `$(…)` wants.
    let build = Command::new(sluice_binary())
        .args(["plugin", "build"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("running sluice plugin build");
    assert_eq!(ok(build), format!("{}\n", wasm.display()));

    let test = Command::new("cargo")
        .arg("test")
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("running cargo test");
    assert!(
        test.status.success(),
        "cargo test in the scaffold failed:\n{}{}",
        text(&test.stdout),
        text(&test.stderr)
    );
}

/// Builds the scaffold in `dir` to a component and runs its unit tests;
/// returns the `.wasm` path.
fn build_and_test(dir: &Path) -> PathBuf {
    let target = scaffold_target_dir();
    let build = Command::new(sluice_binary())
        .args(["plugin", "build", dir.to_str().unwrap()])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("running sluice plugin build");
    let wasm = PathBuf::from(ok(build).trim_end());
    let bytes = std::fs::read(&wasm).expect("the .wasm exists");
    assert!(bytes.starts_with(b"\0asm"), "not WebAssembly");
    let test = Command::new("cargo")
        .arg("test")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("running cargo test");
    let stdout = text(&test.stdout);
    assert!(
        test.status.success(),
        "cargo test in {} failed:\n{stdout}{}",
        dir.display(),
        text(&test.stderr)
    );
    assert!(stdout.contains("test result: ok. 2 passed"), "{stdout}");
    wasm
}

#[test]
fn stateful_scaffolds_build_to_components_pass_their_tests_and_say_how_to_deploy() {
    for (kind, store) in STATEFUL_KINDS {
        let root = TempDir::new().unwrap();
        let name = format!("demo-{kind}");
        let dir = scaffold(root.path(), &name, kind);
        let store_flag = format!("--store {store}");
        let readme = read(&dir.join("README.md"));
        let deploy = readme
            .lines()
            .find(|line| line.starts_with(&format!("sluice processor deploy {name} ")))
            .unwrap_or_else(|| panic!("{kind}: no deploy command in the README:\n{readme}"));
        assert!(deploy.ends_with(&store_flag), "{kind}: {deploy}");
        assert!(
            readme.contains(&format!("sluice processor state get {name} {store} KEY")),
            "{kind}: {readme}"
        );
        let try_line = readme
            .lines()
            .find(|line| line.contains("sluice plugin run"))
            .unwrap_or_else(|| panic!("{kind}: no local run: {readme}"));
        assert!(try_line.contains(&store_flag), "{kind}: {try_line}");
        let sample = try_line
            .split('\'')
            .nth(3)
            .unwrap_or_else(|| panic!("{kind}: no sample record in {try_line}"));
        let lib = read(&dir.join("src/lib.rs"));
        assert!(
            lib.contains(&format!("pub const STORE: &str = \"{store}\";")),
            "{kind}: the code opens another store than the README deploys"
        );
        let wasm = build_and_test(&dir);
        // The README's local run works: the plugin gets its store.
        let mut run = Command::new(sluice_binary());
        run.args(["plugin", "run"])
            .arg(&wasm)
            .args(["--store", store])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = run.spawn().unwrap();
        std::io::Write::write_all(
            child.stdin.as_mut().unwrap(),
            format!("{sample}\n").as_bytes(),
        )
        .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{kind}: plugin run --store {store}: {}",
            text(&output.stderr)
        );
    }
}
