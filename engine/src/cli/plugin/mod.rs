//! `sluice plugin`: the plugin author's loop without a broker. `new`
//! scaffolds a crate from the templates in `plugin_templates/` (compiled
//! into the binary, so any `sluice` can scaffold), `build` compiles a crate
//! to a `wasm32-wasip2` component with cargo and prints where the `.wasm`
//! is, and `run` feeds a `.wasm` records from a file or stdin and prints
//! what it writes (implemented in `run.rs`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

mod run;

use super::processor::parse_config_pair;
use super::{emit, OutputFormat};

/// The Rust target plugins are compiled for: WASI 0.2 components.
const WASM_TARGET: &str = "wasm32-wasip2";

/// The SDK of the source tree this binary was built from; `new` points
/// scaffolds at it unless `--sdk-path` says otherwise.
const BUILT_IN_SDK_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

/// The SDK's package name, checked in the `--sdk-path` folder.
const SDK_PACKAGE: &str = "sluice-sdk";

/// Longest plugin (package) name, as on crates.io.
const PLUGIN_NAME_CHARS_MAX: usize = 64;

/// Names a package cannot take: Rust keywords (its library name must be an
/// identifier), crates every build links, and the SDK it depends on.
const RESERVED_NAMES: &str = "abstract alloc as async await become box break const continue \
    core crate do dyn else enum extern false final fn for gen if impl in let loop macro match mod \
    move mut override priv proc_macro pub ref return self static std struct super test trait true \
    try type typeof unsafe unsized use virtual where while yield sluice_sdk";

/// `sluice plugin` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Create a plugin crate (filter, map, flat-map, route, or the stateful
    /// aggregate, window and projection) ready to test and build.
    #[command(after_help = "Examples:
  sluice plugin new big-orders
  sluice plugin new to-json --kind map
  sluice plugin new splitter --kind flat-map --dir plugins/splitter
  sluice plugin new router --kind route --sdk-path ~/src/sluice/sdk
  sluice plugin new revenue --kind aggregate
  sluice plugin new views-per-minute --kind window
  sluice plugin new carts --kind projection")]
    New(NewArgs),
    /// Compile a plugin crate to a .wasm component and print its path.
    #[command(after_help = "Examples:
  sluice plugin build
  sluice plugin build plugins/big-orders --format json
  sluice processor deploy big-orders --wasm \"$(sluice plugin build)\" --input orders --output big

Runs `cargo build --release --target wasm32-wasip2` in DIR; cargo's progress and
errors go to stderr, the .wasm path alone to stdout.")]
    Build(BuildArgs),
    /// Run a .wasm plugin over records from a file or stdin and print what it
    /// writes; no broker needed.
    #[command(after_help = "Examples:
  printf 'a\\nbb\\nccc\\n' | sluice plugin run big_orders.wasm --config threshold=2
  sluice plugin run \"$(sluice plugin build)\" --input records.txt --topic orders")]
    Run(PluginRunArgs),
}

/// The kinds of plugin `new` can scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PluginKind {
    /// Keep or drop each record.
    Filter,
    /// Turn each record into one new record.
    Map,
    /// Turn each record into zero or more records.
    FlatMap,
    /// Send each record to one of the outputs (or none).
    Route,
    /// Keep a running aggregate per key in a store (stateful).
    Aggregate,
    /// Aggregate per key per time window, written when a window closes
    /// (stateful).
    Window,
    /// Apply events to per-key state, written as a table (stateful).
    Projection,
}

impl PluginKind {
    /// The scaffold's `src/lib.rs`.
    fn lib_rs(self) -> &'static str {
        match self {
            Self::Filter => include_str!("../plugin_templates/filter.rs"),
            Self::Map => include_str!("../plugin_templates/map.rs"),
            Self::FlatMap => include_str!("../plugin_templates/flat_map.rs"),
            Self::Route => include_str!("../plugin_templates/route.rs"),
            Self::Aggregate => include_str!("../plugin_templates/aggregate.rs"),
            Self::Window => include_str!("../plugin_templates/window.rs"),
            Self::Projection => include_str!("../plugin_templates/projection.rs"),
        }
    }

    /// The store a stateful kind's template keeps its state in (its
    /// deployment needs `--store` with it); `None` for stateless kinds.
    fn store(self) -> Option<&'static str> {
        match self {
            Self::Filter | Self::Map | Self::FlatMap | Self::Route => None,
            Self::Aggregate => Some("totals"),
            Self::Window => Some("windows"),
            Self::Projection => Some("carts"),
        }
    }

    /// The deploy command of a scaffold named `name`: stateful kinds
    /// declare their store, and the table-writing ones (their output is
    /// latest-per-key) want a compacted output topic.
    fn deploy(self, name: &str) -> String {
        let deploy = format!(
            "sluice processor deploy {name} --wasm \"$(sluice plugin build)\" --input IN --output OUT"
        );
        match self.store() {
            None => deploy,
            Some(store) if self == Self::Window => format!("{deploy} --store {store}"),
            Some(store) => format!(
                "sluice topic create OUT --config cleanup.policy=compact\n{deploy} --store {store}"
            ),
        }
    }

    /// How to try a scaffold on records without a broker (`plugin run`,
    /// with a local store for the stateful kinds): a sample record of
    /// what the kind's code reads.
    fn try_it(self) -> String {
        let sample = match self {
            Self::Aggregate => r#"{"key":"k","value":{"amount":5}}"#,
            Self::Window => r#"{"key":"k","value":"hello"}"#,
            Self::Projection => {
                r#"{"key":"c1","value":{"type":"added","item":"tea","quantity":2}}"#
            }
            _ => "hello",
        };
        let store = self
            .store()
            .map_or(String::new(), |store| format!(" --store {store}"));
        format!(
            "printf '%s\\n' '{sample}' | sluice plugin run \"$(sluice plugin build)\"{store}   # try it on a record\n"
        )
    }

    /// What the README says about state, for stateful kinds.
    fn state_notes(self, name: &str) -> String {
        let Some(store) = self.store() else {
            return String::new();
        };
        format!(
            "\n## State\n\nThe processor keeps its state in the store `{store}`, declared at deploy\n\
             with `--store {store}`; Sluice keeps it in RocksDB, committed with the\n\
             input position (and, under the default exactly-once, the outputs), so a\n\
             restart neither loses nor double-counts. Read it while it runs:\n\n\
             ```sh\n\
             sluice processor state scan {name} {store}\n\
             sluice processor state get {name} {store} KEY\n\
             ```\n\n\
             Rebuild it from the input with `--from earliest --reset-state` on a redeploy.\n"
        )
    }

    /// The name users type (`--kind flat-map`).
    fn name(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Map => "map",
            Self::FlatMap => "flat-map",
            Self::Route => "route",
            Self::Aggregate => "aggregate",
            Self::Window => "window",
            Self::Projection => "projection",
        }
    }
}

/// `sluice plugin new` options.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// Package name: letters, digits, '-' and '_', starting with a letter.
    #[arg(value_parser = parse_plugin_name)]
    pub(crate) name: String,
    /// What the plugin does with each record.
    #[arg(long, value_enum, default_value_t = PluginKind::Filter)]
    pub(crate) kind: PluginKind,
    /// Where to create the crate; must not exist or be empty [default: ./NAME].
    #[arg(long, value_name = "PATH")]
    pub(crate) dir: Option<PathBuf>,
    /// The Sluice SDK's folder (`sdk/` of a Sluice source tree) [default: the
    /// one this binary was built from].
    #[arg(long, value_name = "PATH")]
    pub(crate) sdk_path: Option<PathBuf>,
}

/// `sluice plugin build` options.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The plugin crate.
    #[arg(default_value = ".", value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Optimised build (the default).
    #[arg(long, conflicts_with = "debug")]
    pub(crate) release: bool,
    /// Unoptimised build, quicker to compile.
    #[arg(long)]
    pub(crate) debug: bool,
    /// Output format: the path alone, or {"wasm", "bytes", "sha256"}.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
}

/// `sluice plugin run` options.
#[derive(Debug, Args)]
pub(crate) struct PluginRunArgs {
    /// The plugin: a WebAssembly component built for wasm32-wasip2.
    #[arg(value_name = "WASM")]
    pub(crate) wasm: PathBuf,
    /// Plugin configuration entry; repeat for several.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config_pair)]
    pub(crate) config: Vec<(String, String)>,
    /// Records to feed the plugin, one per line: a JSON object of `key`,
    /// `value`, `headers`, `timestamp` and `offset`, or else the value
    /// itself [default: stdin].
    #[arg(long, value_name = "FILE")]
    pub(crate) input: Option<PathBuf>,
    /// Topic the records appear to come from.
    #[arg(long, default_value = "input")]
    pub(crate) topic: String,
    /// Partition the records appear to come from.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) partition: i32,
    /// A keyed state store the plugin may open; repeat for several. The
    /// state lives in a temporary folder for the run; event-time timers
    /// fire as stream time passes them (their outputs print with
    /// `"timer"`), processing-time timers due at the end fire then.
    #[arg(long = "store", value_name = "NAME")]
    pub(crate) stores: Vec<String>,
    /// Output format of what the plugin writes.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) format: OutputFormat,
}

/// Runs a `sluice plugin` subcommand. Synchronous: nothing here needs the
/// async runtime, and `run` starts the wasm host its own way.
pub(crate) fn run(command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::New(args) => new(&args),
        PluginCommand::Build(args) => build(&args),
        PluginCommand::Run(args) => run::run(&args),
    }
}

// ---------------------------------------------------------------------------
// `new`.

/// A package name that is also usable as its library's name once `-`
/// becomes `_`.
pub(crate) fn parse_plugin_name(raw: &str) -> Result<String, String> {
    let Some(first) = raw.chars().next() else {
        return Err("the plugin name is empty".to_string());
    };
    if !first.is_ascii_alphabetic() {
        return Err(format!("{raw:?}: a plugin name starts with a letter"));
    }
    if raw.len() > PLUGIN_NAME_CHARS_MAX {
        return Err(format!(
            "{raw:?} has {} characters; at most {PLUGIN_NAME_CHARS_MAX} are allowed",
            raw.len()
        ));
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(format!(
            "{bad:?} is not allowed in a plugin name; use letters, digits, '-' and '_'"
        ));
    }
    let library = crate_name(raw);
    if RESERVED_NAMES
        .split_whitespace()
        .any(|name| name == library)
    {
        return Err(format!("{raw:?} is reserved in Rust; choose another name"));
    }
    Ok(raw.to_string())
}

/// The library name cargo derives from a package name.
fn crate_name(name: &str) -> String {
    name.replace('-', "_")
}

fn new(args: &NewArgs) -> Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    check_free(&dir)?;
    let sdk = sdk_path(args.sdk_path.as_deref())?;
    let files = scaffold(&args.name, args.kind, &sdk)?;
    let existed = dir.exists();
    if let Err(error) = write_files(&dir, &files) {
        if !existed {
            // Leave nothing half-made behind; the error says what failed.
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(error);
    }
    emit(&next_steps(&args.name, args.kind, &dir))
}

/// Refuses a `dir` that is a file or a non-empty directory.
fn check_free(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} already exists and is not empty; choose another --dir or remove it",
            dir.display()
        );
    }
    Ok(())
}

/// The SDK folder, absolute, after checking it holds the `sluice-sdk`
/// package (a scaffold elsewhere on disk finds it by this path).
fn sdk_path(given: Option<&Path>) -> Result<PathBuf> {
    let path = given.unwrap_or(Path::new(BUILT_IN_SDK_PATH));
    let canonical = match std::fs::canonicalize(path) {
        Ok(canonical) => canonical,
        Err(error) if given.is_none() => bail!(
            "the Sluice SDK is not at {}, where this binary was built ({error}); \
             pass --sdk-path with the sdk/ folder of a Sluice source tree",
            path.display()
        ),
        Err(error) => bail!("--sdk-path {}: {error}", path.display()),
    };
    let manifest = canonical.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("{} is not the Sluice SDK", canonical.display()))?;
    let name = toml::from_str::<toml::Value>(&text)
        .ok()
        .and_then(|v| v.get("package")?.get("name")?.as_str().map(str::to_string));
    if name.as_deref() != Some(SDK_PACKAGE) {
        bail!(
            "{} is not the Sluice SDK: its Cargo.toml is not the {SDK_PACKAGE} package",
            canonical.display()
        );
    }
    Ok(canonical)
}

/// The scaffold's files: path inside the crate → contents.
fn scaffold(name: &str, kind: PluginKind, sdk: &Path) -> Result<Vec<(&'static str, String)>> {
    let Some(sdk) = sdk.to_str() else {
        bail!(
            "the SDK path {} is not UTF-8, so Cargo.toml cannot name it",
            sdk.display()
        );
    };
    // A TOML basic string: backslashes and quotes escaped.
    let sdk = sdk.replace('\\', "\\\\").replace('"', "\\\"");
    let crate_name = crate_name(name);
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{sdk_path}}", &sdk)
    };
    let readme = fill(include_str!("../plugin_templates/README.md.tmpl"))
        .replace("{{try_it}}", &kind.try_it())
        .replace("{{deploy}}", &kind.deploy(name))
        .replace("{{state}}", &kind.state_notes(name));
    Ok(vec![
        (
            "Cargo.toml",
            fill(include_str!("../plugin_templates/Cargo.toml.tmpl")),
        ),
        ("src/lib.rs", fill(kind.lib_rs())),
        ("README.md", readme),
        (
            ".gitignore",
            fill(include_str!("../plugin_templates/gitignore")),
        ),
    ])
}

fn write_files(dir: &Path, files: &[(&str, String)]) -> Result<()> {
    for (relative, contents) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn next_steps(name: &str, kind: PluginKind, dir: &Path) -> String {
    let dir = dir.display();
    let indent =
        |text: &str| -> String { text.lines().map(|line| format!("  {line}\n")).collect() };
    format!(
        "created {kind} plugin {name} in {dir}

Next:
  cd {dir}
  cargo test              # its unit tests, on this machine
  sluice plugin build     # compile it to a .wasm component; prints the path
{try_it}{deploy}",
        kind = kind.name(),
        try_it = indent(&kind.try_it()),
        deploy = indent(&kind.deploy(name)),
    )
}

// ---------------------------------------------------------------------------
// `build`.

/// One `.wasm` that cargo produced.
#[derive(Debug, PartialEq, Eq)]
struct WasmArtifact {
    path: PathBuf,
    /// The Cargo.toml of the package it belongs to.
    manifest_path: PathBuf,
}

/// The parts of a cargo JSON message that `build` reads.
#[derive(Debug, Deserialize)]
struct CargoMessage {
    reason: String,
    #[serde(default)]
    target: Option<CargoTarget>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
    #[serde(default)]
    manifest_path: PathBuf,
}

#[derive(Debug, Deserialize)]
struct CargoTarget {
    #[serde(default)]
    kind: Vec<String>,
}

fn build(args: &BuildArgs) -> Result<()> {
    let manifest = args.dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "no Cargo.toml in {}; run this in a plugin crate or give its folder \
             (`sluice plugin new` makes one)",
            args.dir.display()
        );
    }
    check_wasm_target(&args.dir)?;
    let artifacts = cargo_build(&args.dir, !args.debug)?;
    let own = std::fs::canonicalize(&manifest).unwrap_or(manifest);
    let mut wasm: Vec<PathBuf> = artifacts
        .iter()
        .filter(|a| a.manifest_path == own)
        .map(|a| a.path.clone())
        .collect();
    if wasm.is_empty() {
        // A workspace folder: every member's component.
        wasm = artifacts.into_iter().map(|a| a.path).collect();
    }
    wasm.sort();
    wasm.dedup();
    if wasm.is_empty() {
        bail!(
            "cargo built no .wasm component in {}; a plugin's Cargo.toml needs \
             [lib] crate-type = [\"cdylib\"]",
            args.dir.display()
        );
    }
    let mut out = String::new();
    for path in wasm {
        out += &artifact_line(&path, args.format)?;
    }
    emit(&out)
}

/// Fails with the fix when rustup reports the wasm target missing. Without
/// rustup (a toolchain managed another way) cargo itself says so.
fn check_wasm_target(dir: &Path) -> Result<()> {
    let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return Ok(());
    };
    if !output.status.success() {
        return Ok(());
    }
    let installed = String::from_utf8_lossy(&output.stdout);
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    bail!(
        "the Rust target {WASM_TARGET} is not installed; add it with \
         `rustup target add {WASM_TARGET}`"
    )
}

/// Runs cargo in `dir`, its progress and diagnostics on our stderr, and
/// returns the `.wasm` files of the cdylib targets it reported.
fn cargo_build(dir: &Path, release: bool) -> Result<Vec<WasmArtifact>> {
    let mut command = Command::new("cargo");
    command.arg("build");
    if release {
        command.arg("--release");
    }
    command
        .args([
            "--target",
            WASM_TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command
        .spawn()
        .context("cannot run cargo; is Rust installed (see https://rustup.rs)?")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut artifacts = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read cargo's output")?;
        artifacts.extend(wasm_artifacts(&line));
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status}); its errors are above");
    }
    Ok(artifacts)
}

/// The `.wasm` files of a `compiler-artifact` message of a cdylib target;
/// nothing for any other line.
fn wasm_artifacts(line: &str) -> Vec<WasmArtifact> {
    let Ok(message) = serde_json::from_str::<CargoMessage>(line) else {
        return Vec::new();
    };
    let cdylib = message
        .target
        .is_some_and(|t| t.kind.iter().any(|k| k == "cdylib"));
    if message.reason != "compiler-artifact" || !cdylib {
        return Vec::new();
    }
    message
        .filenames
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "wasm"))
        .map(|path| WasmArtifact {
            path,
            manifest_path: message.manifest_path.clone(),
        })
        .collect()
}

/// The line `build` prints for one `.wasm`, after checking it is one.
fn artifact_line(path: &Path, format: OutputFormat) -> Result<String> {
    let path = std::fs::canonicalize(path)
        .with_context(|| format!("cargo reported {}, which is missing", path.display()))?;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if !bytes.starts_with(b"\0asm") {
        bail!("{} is not a WebAssembly file", path.display());
    }
    Ok(match format {
        OutputFormat::Text => format!("{}\n", path.display()),
        OutputFormat::Json => {
            let document = json!({
                "wasm": path,
                "bytes": bytes.len(),
                "sha256": sha256_hex(&bytes),
            });
            format!("{document}\n")
        }
    })
}

/// Lowercase hex SHA-256, as the admin API reports `wasm_sha256`.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<PluginCommand, clap::Error> {
        let cli = Cli::try_parse_from(["sluice", "plugin"].iter().chain(args))?;
        match cli.command {
            Command::Plugin(command) => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn plugin_names() {
        assert_eq!(parse_plugin_name("big-orders_2"), Ok("big-orders_2".into()));
        assert!(parse_plugin_name("").is_err());
        assert!(parse_plugin_name("2fast").unwrap_err().contains("letter"));
        assert!(parse_plugin_name("a.b").unwrap_err().contains("'.'"));
        assert!(parse_plugin_name("fn").unwrap_err().contains("reserved"));
        assert!(parse_plugin_name("sluice-sdk").is_err());
        assert!(parse_plugin_name(&"a".repeat(64)).is_ok());
        assert!(parse_plugin_name(&"a".repeat(65)).is_err());
        assert_eq!(crate_name("big-orders"), "big_orders");
    }

    #[test]
    fn kinds_parse_as_typed() {
        let kind = |raw: &str| match parse(&["new", "p", "--kind", raw]) {
            Ok(PluginCommand::New(args)) => args.kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(kind("filter"), PluginKind::Filter);
        assert_eq!(kind("map"), PluginKind::Map);
        assert_eq!(kind("flat-map"), PluginKind::FlatMap);
        assert_eq!(kind("route"), PluginKind::Route);
        assert!(parse(&["new", "p", "--kind", "reduce"]).is_err());
        for kind in PluginKind::value_variants() {
            let value = kind.to_possible_value().unwrap();
            assert_eq!(value.get_name(), kind.name());
        }
    }

    #[test]
    fn build_and_run_arguments() {
        let Ok(PluginCommand::Build(build)) = parse(&["build"]) else {
            panic!("build");
        };
        assert_eq!(build.dir, PathBuf::from("."));
        assert!(!build.debug);
        assert!(parse(&["build", "--release", "--debug"]).is_err());
        let Ok(PluginCommand::Run(run)) = parse(&[
            "run",
            "p.wasm",
            "--config",
            "a=1",
            "--config",
            "b=",
            "--partition",
            "3",
        ]) else {
            panic!("run");
        };
        assert_eq!(run.wasm, PathBuf::from("p.wasm"));
        assert_eq!(
            run.config,
            [("a".to_string(), "1".to_string()), ("b".into(), "".into())]
        );
        assert_eq!((run.topic.as_str(), run.partition), ("input", 3));
        assert_eq!(run.input, None);
        assert_eq!(run.format, OutputFormat::Text);
        assert!(parse(&["run", "p.wasm", "--config", "novalue"]).is_err());
    }

    #[test]
    fn scaffolds_fill_every_placeholder() {
        let sdk = Path::new("/opt/sluice \"sdk\"");
        for kind in PluginKind::value_variants() {
            let files = scaffold("big-orders", *kind, sdk).unwrap();
            let paths: Vec<&str> = files.iter().map(|(path, _)| *path).collect();
            assert_eq!(
                paths,
                ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"]
            );
            for (path, contents) in &files {
                for placeholder in [
                    "{{name}}",
                    "{{crate_name}}",
                    "{{sdk_path}}",
                    "{{try_it}}",
                    "{{deploy}}",
                    "{{state}}",
                ] {
                    assert!(!contents.contains(placeholder), "{placeholder} in {path}");
                }
                if let Some(store) = kind.store() {
                    let flag = format!("--output OUT --store {store}\n");
                    assert!(contents.contains(&flag) || *path != "README.md", "{path}");
                    let constant = format!("pub const STORE: &str = \"{store}\";");
                    assert!(contents.contains(&constant) || *path != "src/lib.rs");
                }
            }
            let manifest: toml::Value = toml::from_str(&files[0].1).unwrap();
            assert_eq!(manifest["package"]["name"].as_str(), Some("big-orders"));
            assert!(files[0].1.contains("/opt/sluice \\\"sdk\\\""));
            assert_eq!(files[1].1, fill_like_new(kind.lib_rs()));
        }
    }

    fn fill_like_new(template: &str) -> String {
        template
            .replace("{{name}}", "big-orders")
            .replace("{{crate_name}}", "big_orders")
    }

    #[test]
    fn new_refuses_non_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_free(&dir.path().join("absent")).is_ok());
        assert!(check_free(dir.path()).is_ok());
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let error = format!("{:#}", check_free(dir.path()).unwrap_err());
        assert!(error.contains("not empty"), "{error}");
        let error = format!("{:#}", check_free(&dir.path().join("file")).unwrap_err());
        assert!(error.contains("not a directory"), "{error}");
    }

    #[test]
    fn the_sdk_path_must_hold_the_sdk() {
        let built_in = sdk_path(None).unwrap();
        assert!(built_in.is_absolute());
        assert!(built_in.join("Cargo.toml").is_file());
        let dir = tempfile::tempdir().unwrap();
        let error = format!("{:#}", sdk_path(Some(dir.path())).unwrap_err());
        assert!(error.contains("not the Sluice SDK"), "{error}");
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"other\"\n",
        )
        .unwrap();
        assert!(sdk_path(Some(dir.path())).is_err());
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[package]\nname = \"sluice-sdk\"\n",
        )
        .unwrap();
        let found = sdk_path(Some(dir.path())).unwrap();
        assert_eq!(found, std::fs::canonicalize(dir.path()).unwrap());
        let error = format!(
            "{:#}",
            sdk_path(Some(&dir.path().join("nope"))).unwrap_err()
        );
        assert!(error.contains("--sdk-path"), "{error}");
    }

    #[test]
    fn cdylib_artifacts_are_picked_from_cargo_messages() {
        let cdylib = r#"{"reason":"compiler-artifact","package_id":"path+file:///p#0.1.0","manifest_path":"/p/Cargo.toml","target":{"kind":["cdylib"],"crate_types":["cdylib"],"name":"p","src_path":"/p/src/lib.rs"},"filenames":["/p/target/wasm32-wasip2/release/p.wasm"],"fresh":false}"#;
        assert_eq!(
            wasm_artifacts(cdylib),
            [WasmArtifact {
                path: "/p/target/wasm32-wasip2/release/p.wasm".into(),
                manifest_path: "/p/Cargo.toml".into(),
            }]
        );
        let rlib = r#"{"reason":"compiler-artifact","manifest_path":"/s/Cargo.toml","target":{"kind":["lib"]},"filenames":["/t/libs.rlib"]}"#;
        assert!(wasm_artifacts(rlib).is_empty());
        let finished = r#"{"reason":"build-finished","success":true}"#;
        assert!(wasm_artifacts(finished).is_empty());
        assert!(wasm_artifacts("not json").is_empty());
        let both = r#"{"reason":"compiler-artifact","manifest_path":"/p/Cargo.toml","target":{"kind":["cdylib","rlib"]},"filenames":["/t/p.wasm","/t/libp.rlib"]}"#;
        assert_eq!(wasm_artifacts(both).len(), 1);
    }

    #[test]
    fn artifact_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        std::fs::write(&path, b"\0asm\x0d\0\x01\0").unwrap();
        let canonical = std::fs::canonicalize(&path).unwrap();
        let text = artifact_line(&path, OutputFormat::Text).unwrap();
        assert_eq!(text, format!("{}\n", canonical.display()));
        let line = artifact_line(&path, OutputFormat::Json).unwrap();
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["wasm"], canonical.to_str().unwrap());
        assert_eq!(json["bytes"], 8);
        assert_eq!(json["sha256"], sha256_hex(b"\0asm\x0d\0\x01\0"));
        std::fs::write(&path, b"ELF").unwrap();
        assert!(artifact_line(&path, OutputFormat::Text).is_err());
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
