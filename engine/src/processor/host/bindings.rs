//! The contract's host bindings, one module per released version (the
//! host keeps every one: `wit/README.md`'s versioning rule). A component is
//! run with the bindings of the `handler` version it exports.
//!
//! `types` is the same in both versions but for `batch` (0.2's is one
//! buffer), so the output lifting (`lift.rs`), which checks shapes, not
//! package versions, serves both, and each has its batch lowering
//! (`abi/mod.rs`, `abi/packed.rs`).

/// `sluice:processor@0.1.0`: stateless processors.
pub(crate) mod v01 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0/processor.wit",
        world: "processor",
    });
}

/// `sluice:processor@0.2.0`: 0.1 plus keyed state, the clock and timers.
/// Its imports may trap (a state limit, or a storage failure).
pub(crate) mod v02 {
    wasmtime::component::bindgen!({
        path: "../wit/processor.wit",
        world: "processor",
        imports: { default: trappable },
        with: {
            "sluice:processor/state.store": crate::processor::host::stateful::StoreHandle,
        },
    });
}

/// The `handler` export of each version, as components name it.
pub(crate) const HANDLER_EXPORT_V01: &str = "sluice:processor/handler@0.1.0";
pub(crate) const HANDLER_EXPORT_V02: &str = "sluice:processor/handler@0.2.0";
/// 0.2's `timers` export.
pub(crate) const TIMERS_EXPORT_V02: &str = "sluice:processor/timers@0.2.0";
