//! The export macros: one per kind of function, plus [`export!`] for a
//! [`Processor`](crate::Processor) type.
//!
//! Each expands, on `wasm32` only, to the contract's `handler` export for the
//! plugin crate. On the host it expands to nothing: the plugin's functions
//! stay plain Rust, and several plugin crates can be linked into one host
//! binary (the engine's native baseline) without clashing export symbols.

/// Exports `function` as a filter: `fn(&Record, &C) -> Result<bool, E>`,
/// where `C: DeserializeOwned` is the config type and `E: Display`. `true`
/// keeps the record: it is forwarded unchanged to the default output.
///
/// ```
/// fn non_empty(record: &sluice_sdk::Record, _: &sluice_sdk::NoConfig) -> sluice_sdk::Result<bool> {
///     Ok(record.value.as_deref().is_some_and(|value| !value.is_empty()))
/// }
/// sluice_sdk::filter!(non_empty);
/// ```
#[macro_export]
macro_rules! filter {
    ($function:path) => {
        $crate::__export_handler!(|config| $crate::__private::filter($function, config));
    };
}

/// Exports `function` as a map: `fn(Record, &C) -> Result<Output, E>`, one
/// output per record (which may be [`Output::forward`](crate::Output::forward)).
///
/// ```
/// use sluice_sdk::{NoConfig, Output, Record, Result};
/// fn tag(record: Record, _: &NoConfig) -> Result<Output> {
///     Ok(Output::from_record(record).header("seen-by", "tag"))
/// }
/// sluice_sdk::map!(tag);
/// ```
#[macro_export]
macro_rules! map {
    ($function:path) => {
        $crate::__export_handler!(|config| $crate::__private::map($function, config));
    };
}

/// Exports `function` as a flat-map: `fn(Record, &C) -> Result<I, E>` where
/// `I: IntoIterator<Item = Output>` (a `Vec<Output>`, an `Option<Output>`, …):
/// any number of outputs per record.
///
/// ```
/// use sluice_sdk::{NoConfig, Output, Record, Result};
/// fn words(record: Record, _: &NoConfig) -> Result<Vec<Output>> {
///     Ok(record.value_str()?.split_whitespace().map(Output::value).collect())
/// }
/// sluice_sdk::flat_map!(words);
/// ```
#[macro_export]
macro_rules! flat_map {
    ($function:path) => {
        $crate::__export_handler!(|config| $crate::__private::flat_map($function, config));
    };
}

/// Exports `function` as a router: `fn(&Record, &C) -> Result<Option<T>, E>`
/// with `T: Into<String>`. `Some(topic)` forwards the record unchanged to
/// `topic`; `None` drops it.
///
/// ```
/// use sluice_sdk::{NoConfig, Record, Result};
/// fn by_key(record: &Record, _: &NoConfig) -> Result<Option<String>> {
///     Ok(record.key_str().ok().map(|key| format!("events-{key}")))
/// }
/// sluice_sdk::route!(by_key);
/// ```
#[macro_export]
macro_rules! route {
    ($function:path) => {
        $crate::__export_handler!(|config| $crate::__private::route($function, config));
    };
}

/// Exports a type implementing [`Processor`](crate::Processor).
#[macro_export]
macro_rules! export {
    ($processor:ty) => {
        $crate::__export_handler!(|config| $crate::__private::processor::<$processor, _, _>(
            config
        ));
    };
}

/// The `handler` export itself: a local type implementing the generated
/// `Guest` trait by delegating to the SDK, and wit-bindgen's export glue
/// (which also embeds the component type in the plugin crate).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_handler {
    (|$config:ident| $make:expr) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            struct SluiceHandler;

            impl $crate::__private::Guest for SluiceHandler {
                fn init(
                    config: $crate::__private::Vec<(
                        $crate::__private::String,
                        $crate::__private::String,
                    )>,
                ) -> ::core::result::Result<(), $crate::__private::String> {
                    $crate::__private::guest_init(|$config| $make, config)
                }

                fn process(
                    batch: $crate::__private::WitBatch,
                ) -> ::core::result::Result<
                    $crate::__private::Vec<$crate::__private::WitOutput>,
                    $crate::__private::WitProcessError,
                > {
                    $crate::__private::guest_process(batch)
                }
            }

    $crate::bindings::__export_processor!(SluiceHandler with_types_in $crate::bindings);
        };
    };
}
