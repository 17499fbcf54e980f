//! The compiled-component cache, verified before anything in it runs.
//!
//! Compiling a plugin takes seconds; loading its compiled form takes
//! milliseconds. But a compiled artifact is machine code mapped as
//! executable after only a format and version check, so whoever can write
//! the cache could run code in the broker. Each artifact's SHA-256 is
//! therefore recorded with the deployment that uses it (in the same atomic
//! write as the rest of the deployment), and an artifact is loaded only if
//! its bytes hash to that record; otherwise the plugin is compiled again
//! from its `.wasm` (whose own hash names it) and the artifact replaced.
//!
//! Layout: `<dir>/<wasm sha256>.cwasm`, one per plugin binary deployed;
//! files no deployment names are deleted at start-up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::log::io::write_atomic;
use crate::log::StdIo;
use crate::random::hex;

/// Compiled components on disk, by the hash of their `.wasm`.
pub(crate) struct ComponentCache {
    dir: PathBuf,
    hits: AtomicUsize,
    misses: AtomicUsize,
}

/// A component and the SHA-256 (hex) of its compiled artifact.
pub(crate) struct Cached {
    pub(crate) component: Component,
    pub(crate) artifact_sha256: String,
}

impl ComponentCache {
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
        })
    }

    fn path(&self, wasm_sha256: &str) -> PathBuf {
        self.dir.join(format!("{wasm_sha256}.cwasm"))
    }

    /// The component of `wasm`: its cached artifact when that hashes to
    /// `expected` (the hash recorded with the deployment), else compiled
    /// afresh and cached.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        expected: Option<&str>,
    ) -> anyhow::Result<Cached> {
        let wasm_sha256 = hex(&Sha256::digest(wasm));
        let path = self.path(&wasm_sha256);
        if let Some(expected) = expected {
            if let Some(component) = self.load_verified(engine, &path, expected) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Cached {
                    component,
                    artifact_sha256: expected.to_string(),
                });
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let component = compile(engine, wasm)?;
        let artifact = component
            .serialize()
            .map_err(|e| anyhow::anyhow!("serializing the compiled plugin failed: {e:#}"))?;
        let artifact_sha256 = hex(&Sha256::digest(&artifact));
        if let Err(error) = write_atomic(&StdIo, &path, &artifact) {
            // Still usable: the next start compiles again.
            tracing::warn!(path = %path.display(), %error, "writing a compiled plugin to the cache failed");
        }
        Ok(Cached {
            component,
            artifact_sha256,
        })
    }

    /// The artifact at `path`, if its bytes hash to `expected` and this
    /// engine accepts them.
    fn load_verified(&self, engine: &Engine, path: &Path, expected: &str) -> Option<Component> {
        let bytes = std::fs::read(path).ok()?;
        let actual = hex(&Sha256::digest(&bytes));
        if actual != expected {
            tracing::warn!(path = %path.display(), expected, actual,
                "a cached compiled plugin does not match the hash recorded with its deployment; compiling it again");
            return None;
        }
        match deserialize(engine, &bytes) {
            Ok(component) => Some(component),
            Err(error) => {
                // Another wasmtime version or configuration wrote it.
                tracing::info!(path = %path.display(), %error,
                    "a cached compiled plugin cannot be loaded by this broker; compiling it again");
                None
            }
        }
    }

    /// Deletes the artifacts of plugin binaries no deployment uses.
    pub(crate) fn retain(&self, wasm_sha256s: &[String]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let keep = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .is_some_and(|stem| wasm_sha256s.iter().any(|s| s == stem));
            if !keep {
                if let Err(error) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), %error, "removing an unused compiled plugin failed");
                }
            }
        }
    }

    /// Components loaded from the cache, and compiled afresh.
    pub(crate) fn stats(&self) -> (usize, usize) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// Compiles `wasm` (no cache).
pub(crate) fn compile(engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
    Component::new(engine, wasm).map_err(|error| {
        anyhow::anyhow!(
            "not a valid WebAssembly component (build plugins for wasm32-wasip2): {error:#}"
        )
    })
}

/// Loads a compiled artifact.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> anyhow::Result<Component> {
    // SAFETY: `Component::deserialize` trusts its input to be what
    // `Component::serialize` produced; a forged artifact is arbitrary code.
    // The only caller passes bytes whose SHA-256 equals the one recorded
    // with the deployment when this broker serialized them (see the module
    // header), so they are that output, unmodified. wasmtime itself checks
    // the format, its version and the engine configuration.
    unsafe { Component::deserialize(engine, bytes) }.map_err(|e| anyhow::anyhow!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    /// A real plugin: the suite's 0.1 fixture.
    fn plugin() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/contract-0.1/uppercase.wasm"
        );
        std::fs::read(path).unwrap()
    }

    #[test]
    fn loads_only_an_artifact_that_matches_its_recorded_hash() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ComponentCache::open(dir.path()).unwrap();
        let engine = engine();
        let wasm = plugin();
        let first = cache.load_or_compile(&engine, &wasm, None).unwrap();
        assert_eq!(cache.stats(), (0, 1));
        let again = cache
            .load_or_compile(&engine, &wasm, Some(&first.artifact_sha256))
            .unwrap();
        assert_eq!(again.artifact_sha256, first.artifact_sha256);
        assert_eq!(cache.stats(), (1, 1), "loaded from the cache");
        // A tampered artifact (one byte changed) is not loaded: compiled
        // again, and the cache holds the good one once more.
        let path = cache.path(&hex(&Sha256::digest(&wasm)));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let recompiled = cache
            .load_or_compile(&engine, &wasm, Some(&first.artifact_sha256))
            .unwrap();
        assert_eq!(cache.stats(), (1, 2), "compiled again");
        assert_eq!(
            hex(&Sha256::digest(std::fs::read(&path).unwrap())),
            recompiled.artifact_sha256
        );
        // Unused artifacts go.
        cache.retain(&[]);
        assert!(!path.exists());
    }
}
