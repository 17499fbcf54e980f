//! The plugins under test, built once per test run for wasm32-wasip2 (in
//! their own target folder beside the test's, so the nested cargo never
//! waits on the outer one's lock) and handed to tests as paths.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Every plugin crate in `plugins/`.
const PLUGINS: [&str; 20] = [
    "uppercase",
    "rekey-count",
    "timer-echo",
    "windowed-count",
    "aggregate-json",
    "sessionize",
    "projection",
    "enrich",
    "top-n",
    "filter-json",
    "map-json",
    "route-by-field",
    "inspect",
    "fault-trap",
    "fault-loop",
    "fault-alloc",
    "fault-huge-output",
    "fault-error",
    "fault-sleep",
    "fault-alias-output",
];

/// The workspace root.
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine/ has a parent")
        .to_path_buf()
}

/// `<target>`: the folder holding `debug/deps/<this test binary>`.
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// The built component of plugin crate `name` (e.g. `filter-json`).
pub(crate) fn wasm(name: &str) -> PathBuf {
    assert!(PLUGINS.contains(&name), "unknown plugin {name}");
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(build_all);
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

fn build_all() -> PathBuf {
    let target = target_dir().join("wasm-plugins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--quiet",
            "--profile",
            "plugin",
            "--target",
            "wasm32-wasip2",
        ]);
    for plugin in PLUGINS {
        command.args(["-p", plugin]);
    }
    let status = command
        .status()
        .expect("running cargo to build the plugins");
    assert!(status.success(), "building the plugins failed: {status}");
    target.join("wasm32-wasip2").join("plugin")
}
