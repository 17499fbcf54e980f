//! Start-up: every persisted deployment compiled (at most
//! `processors.compiles_max` at once, on their own threads: compiling is
//! CPU-bound and must not hold an async worker) and started, or listed as
//! broken with why.

use std::sync::{Arc, Mutex};

use super::{Deployment, Processors};
use crate::log::io::write_atomic;
use crate::log::StdIo;

impl Processors {
    /// Starts the persisted deployments. Compiling is CPU-bound: at most
    /// `compiles_max` plugins compile at once, each on its own thread (the
    /// caller runs this on a blocking thread, off the async workers).
    pub(super) fn load(self: &Arc<Self>) -> anyhow::Result<()> {
        let mut specs = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("json") {
                specs.push(path);
            }
        }
        let workers = self.config.compiles_max.max(1);
        // Starting a deployment spawns its partition tasks on the runtime.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let mut used = Vec::new();
        for path in &specs {
            if let Ok(deployment) = std::fs::read(path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| Ok(serde_json::from_slice::<Deployment>(&bytes)?))
            {
                used.push(deployment.wasm_sha256);
            }
        }
        self.runtime.retain_cached(&used);
        let queue = Mutex::new(specs.into_iter());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                    let Some(path) = queue.lock().expect("load queue lock").next() else {
                        return;
                    };
                    self.load_one(&path);
                });
            }
        });
        Ok(())
    }

    /// Compiles and starts one persisted deployment, or lists it as broken.
    fn load_one(self: &Arc<Self>, path: &std::path::Path) {
        let loaded = std::fs::read(path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(serde_json::from_slice::<Deployment>(&bytes)?))
            .and_then(|mut deployment| {
                let wasm = std::fs::read(self.blob_path(&deployment.wasm_sha256))?;
                let recorded = deployment.artifact_sha256.take();
                let (plugin, artifact_sha256) =
                    self.runtime.compile_cached(&wasm, recorded.as_deref())?;
                deployment.artifact_sha256 = artifact_sha256;
                if deployment.artifact_sha256 != recorded {
                    // Compiled again: record the new artifact's hash.
                    let json = serde_json::to_vec_pretty(&deployment)?;
                    write_atomic(&StdIo, path, &json)?;
                }
                Ok((deployment, plugin))
            });
        match loaded {
            Ok((deployment, plugin)) => {
                tracing::info!(processor = %deployment.name, "resuming processor");
                // Deployed with stores, yet no state at all: the state
                // folder was deleted or lost.
                let lost = !deployment.stores.is_empty()
                    && self.state.existing(&deployment.name).is_none();
                self.start(Arc::new(deployment), plugin, lost);
            }
            Err(error) => {
                let name = path
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                let message =
                    format!("cannot resume after restart: {error:#}; redeploy or remove it");
                tracing::error!(processor = %name, error = %message, "cannot resume processor");
                self.broken
                    .lock()
                    .expect("registry lock")
                    .insert(name, message);
            }
        }
    }
}
