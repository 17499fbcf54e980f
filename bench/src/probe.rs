//! Issue 12's "a batch as one byte buffer plus an index" experiment, the
//! host side: the `buffer-probe` component (`bench/probe`) does what the
//! `noop` plugin does (keeps every other record, reads none), but takes
//! the batch as two lists, every key and value back to back in one and
//! four numbers per record in the other, where the processor contract
//! lowers a list of records with a list per key and per value (each a
//! `realloc` call into the guest: the boundary's floor, see
//! `engine/src/processor/abi.rs`). Packing the two lists from the records
//! is inside the measured call, as the broker would have to do it.

use std::path::Path;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use sluice::processor::host::InputRecord;

wasmtime::component::bindgen!({
    path: "probe/wit",
    world: "probe",
});

/// `index`'s mark of a missing key or value.
const NONE: u32 = u32::MAX;

struct Host {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// An instance of the probe and its packing buffers.
pub(crate) struct BufferProbe {
    store: Store<Host>,
    probe: Probe,
    data: Vec<u8>,
    index: Vec<u32>,
}

impl BufferProbe {
    /// Instantiates the component at `path`.
    pub(crate) fn new(path: &Path) -> anyhow::Result<Self> {
        let engine = Engine::default();
        let component = Component::from_file(&engine, path)
            .map_err(|e| anyhow::anyhow!("compiling {}: {e}", path.display()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let host = Host {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&engine, host);
        let probe = Probe::instantiate(&mut store, &component, &linker)?;
        Ok(Self {
            store,
            probe,
            data: Vec::new(),
            index: Vec::new(),
        })
    }

    /// One call over `records`; returns how many it kept.
    pub(crate) fn call(&mut self, records: &[InputRecord]) -> anyhow::Result<usize> {
        self.data.clear();
        self.index.clear();
        let add = |bytes: Option<&[u8]>, data: &mut Vec<u8>| match bytes {
            Some(bytes) => {
                data.extend_from_slice(bytes);
                bytes.len() as u32
            }
            None => NONE,
        };
        for record in records {
            let key = add(record.key.as_deref(), &mut self.data);
            let value = add(record.value.as_deref(), &mut self.data);
            self.index.extend([
                record.offset as u32,
                (record.offset >> 32) as u32,
                key,
                value,
            ]);
        }
        let kept = self
            .probe
            .call_keep_even(&mut self.store, &self.data, &self.index)?;
        Ok(kept.len())
    }
}
