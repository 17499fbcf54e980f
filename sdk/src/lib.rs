//! Guest SDK for Sluice stream processors.
//!
//! A processor is a WebAssembly component that Sluice runs over the
//! partitions of its input topics (the contract is `wit/processor.wit`). With
//! this crate a processor is one plain function and one macro:
//!
//! ```
//! use sluice_sdk::{Record, Result};
//!
//! #[derive(serde::Deserialize)]
//! pub struct Config {
//!     min_amount: f64,
//! }
//!
//! /// Keeps orders of at least `min_amount`.
//! pub fn big_orders(record: &Record, config: &Config) -> Result<bool> {
//!     #[derive(serde::Deserialize)]
//!     struct Order { amount: f64 }
//!     Ok(record.json::<Order>()?.amount >= config.min_amount)
//! }
//!
//! sluice_sdk::filter!(big_orders);
//! # let kept = sluice_sdk::testing::run_filter(big_orders, &[("min_amount", "10")],
//! #     sluice_sdk::testing::records(&[r#"{"amount": 12}"#, r#"{"amount": 3}"#])).unwrap();
//! # assert_eq!(kept.len(), 1);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type
//! `cdylib`) and deploy the `.wasm` with `sluice processor deploy`; the
//! `--config key=value` pairs become the `Config` (see [`config`]).
//!
//! # Kinds
//!
//! | macro | function | outputs |
//! |---|---|---|
//! | [`filter!`] | `fn(&Record, &C) -> Result<bool, E>` | the record forwarded unchanged when `true` |
//! | [`map!`] | `fn(Record, &C) -> Result<Output, E>` | one [`Output`] per record |
//! | [`flat_map!`] | `fn(Record, &C) -> Result<impl IntoIterator<Item = Output>, E>` | any number per record |
//! | [`route!`] | `fn(&Record, &C) -> Result<Option<String>, E>` | the record forwarded unchanged to the topic, or dropped |
//! | [`export!`] | a type implementing [`Processor`] | whatever it pushes per batch, and per due timer ([`Processor::on_timer`]) |
//!
//! `C` is any `serde::Deserialize` type, parsed once per instance; `E` is any
//! `Display` error (this crate's [`Error`], `String`, `anyhow::Error`, …).
//! An error fails the batch and names the record that caused it.
//!
//! # State, time and windows
//!
//! Contract 0.2 adds keyed state ([`state`]), stream time and timers
//! ([`clock`], [`Processor::on_timer`]), per-key aggregations
//! ([`aggregate`]) and event-time windows ([`window`]). A windowed count in
//! a few lines:
//!
//! ```
//! use sluice_sdk::aggregate::Count;
//! use sluice_sdk::window::{Emit, WindowResult, Windowed, Windows};
//! use sluice_sdk::{Batch, Error, NoConfig, Output, Outputs, ProcessError, Processor, Result, Timer};
//!
//! pub struct Clicks {
//!     counts: Windowed<Count>,
//! }
//!
//! impl Processor for Clicks {
//!     type Config = NoConfig;
//!     fn init(_: NoConfig) -> Result<Self> {
//!         let counts = Windowed::new("counts", Windows::tumbling(60_000)?, Count)?
//!             .grace_ms(5_000)
//!             .emit(Emit::Final);
//!         Ok(Self { counts })
//!     }
//!     fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
//!         let key = |r: &sluice_sdk::Record| Ok::<_, Error>(r.key.clone().map(|k| (k, ())));
//!         self.counts.process(batch, outputs, key, emit)
//!     }
//!     fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
//!         self.counts.on_timer(&timers, outputs, emit)
//!     }
//! }
//!
//! fn emit(result: &WindowResult<u64>) -> Result<Output> {
//!     Ok(Output::json(&result.aggregate)?.key(result.key.clone()).timestamp(result.window.end))
//! }
//!
//! sluice_sdk::export!(Clicks);
//! # use sluice_sdk::{testing::Task, Record};
//! # let mut harness = Task::new().store("counts").processor::<Clicks>(&[]).unwrap();
//! # assert!(harness.run(vec![Record::new("").with_key("a").with_timestamp(1)]).unwrap().is_empty());
//! # let closed = harness.run(vec![Record::new("").with_key("b").with_timestamp(65_000)]).unwrap();
//! # assert_eq!((closed[0].value_str(), closed[0].timestamp), (Ok("1"), 60_000));
//! ```
//!
//! # Testing
//!
//! The functions stay plain Rust: call them directly in unit tests, or run
//! them through [`testing`] for exactly what the broker would write. On the
//! host the macros export nothing (so the crate also links as an rlib) but
//! still type-check the function against its kind: a wrong signature fails
//! `cargo test`, not only the `wasm32` build.

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs, clippy::all)]
#[doc(hidden)]
pub mod bindings {
    //! What `wit_bindgen::generate!` makes of `wit/processor.wit`.
    wit_bindgen::generate!({
        path: "../wit/processor.wit",
        world: "processor",
        pub_export_macro: true,
        export_macro_name: "__export_processor",
        default_bindings_module: "::sluice_sdk::bindings",
    });
}

/// The plugin's allocator (feature `talc`, on by default): talc instead of
/// Rust's default dlmalloc, with freed small blocks cached in front of it
/// (see `alloc.rs`). Every key and value the broker hands a plugin is one
/// allocation and one free, so the allocator is on the per-record path.
#[cfg(all(
    feature = "talc",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator::new();

#[cfg(any(
    test,
    all(
        feature = "talc",
        target_family = "wasm",
        not(target_feature = "atomics")
    )
))]
mod alloc;

pub mod aggregate;
pub mod clock;
pub mod config;
mod error;
#[cfg(target_arch = "wasm32")]
mod guest;
pub mod json;
mod kinds;
pub mod log;
mod macros;
mod output;
mod record;
pub mod repartition;
pub mod state;
pub mod testing;
pub mod window;

pub use clock::{Domain, Timer};
pub use config::NoConfig;
pub use error::{Error, ProcessError, Result};
pub use kinds::{Instance, Processor};
pub use output::{Output, OutputRecord, Outputs, Payload};
pub use record::{Batch, Header, Indexed, Record, Records};

/// Re-exported so plugins can name serde's traits without their own
/// dependency (the derive macros still need `serde` in the plugin's
/// `Cargo.toml`).
pub use serde;
/// Re-exported for plugins that build JSON values.
pub use serde_json;

/// What the export macros expand to; not a public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::guest::{
        guest_init, guest_on_timer, guest_process, Guest, TimersGuest, WitBatch, WitOutput,
        WitProcessError, WitTimer,
    };
    pub use crate::kinds::{filter, flat_map, map, processor, route, BoxedHandler, Handler};
    pub use std::string::String;
    pub use std::vec::Vec;
}
