//! The export macros: one per kind of function, plus [`export!`] for a
//! [`Processor`](crate::Processor) type.
//!
//! Each expands, on `wasm32`, to the contract's `handler` export for the
//! plugin crate. On the host it expands to a compile-time check and nothing
//! else: an anonymous `const` holding, as a function pointer, the very
//! closure the `wasm32` export's `init` runs (`|config|
//! sluice_sdk::__private::filter(keep, config)` and so on). Building that
//! closure type-checks the plugin's function against the kind's bounds
//! (argument and return types, the config type's `DeserializeOwned`, the
//! error's `Display`) exactly as the `wasm32` build will, so a wrong
//! signature fails `cargo test` and `cargo check` on the host instead of
//! only `sluice plugin build`. The closure is never called and exports no
//! symbol, so several plugin crates still link into one host binary (the
//! engine's native baseline) without clashing; and since it names the
//! function, a private plugin function is not reported as unused.

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
///
/// A function of another shape is a compile error on the host too, not only
/// when building for `wasm32` (here: the record taken by value).
///
/// ```compile_fail,E0631
/// fn non_empty(record: sluice_sdk::Record, _: &sluice_sdk::NoConfig) -> sluice_sdk::Result<bool> {
///     Ok(record.value.is_some_and(|value| !value.is_empty()))
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
///
/// A wrong signature fails on the host (here: a flat-map's return type).
///
/// ```compile_fail,E0271
/// use sluice_sdk::{NoConfig, Output, Record, Result};
/// fn tag(record: Record, _: &NoConfig) -> Result<Vec<Output>> {
///     Ok(vec![Output::from_record(record).header("seen-by", "tag")])
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
///
/// A wrong signature fails on the host (here: items that are not
/// [`Output`](crate::Output)s).
///
/// ```compile_fail,E0271
/// use sluice_sdk::{NoConfig, Record, Result};
/// fn words(record: Record, _: &NoConfig) -> Result<Vec<String>> {
///     Ok(record.value_str()?.split_whitespace().map(String::from).collect())
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
///
/// A wrong signature fails on the host (here: no `Option`, so no way to
/// drop a record).
///
/// ```compile_fail,E0271
/// use sluice_sdk::{NoConfig, Record, Result};
/// fn by_key(record: &Record, _: &NoConfig) -> Result<String> {
///     Ok(format!("events-{}", record.key_str()?))
/// }
/// sluice_sdk::route!(by_key);
/// ```
#[macro_export]
macro_rules! route {
    ($function:path) => {
        $crate::__export_handler!(|config| $crate::__private::route($function, config));
    };
}

/// Exports a type implementing [`Processor`](crate::Processor) (see there
/// for an example).
///
/// A type that does not implement it fails on the host too.
///
/// ```compile_fail,E0277
/// struct Counter;
/// sluice_sdk::export!(Counter);
/// ```
#[macro_export]
macro_rules! export {
    ($processor:ty) => {
        $crate::__export_handler!(|config| $crate::__private::processor::<$processor, _, _>(
            config
        ));
    };
}

/// The `handler` and `timers` exports, given the closure `init` builds the
/// handler with (a function kind's `on-timer` returns no outputs).
///
/// On `wasm32`: a local type implementing the generated `Guest` trait by
/// delegating to the SDK, and wit-bindgen's export glue (which also embeds
/// the component type in the plugin crate). Elsewhere: the same closure,
/// type-checked and never called (see the [module docs](self)).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_handler {
    (|$config:ident| $make:expr) => {
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn(
            &[($crate::__private::String, $crate::__private::String)],
        ) -> $crate::Result<$crate::__private::BoxedHandler> = |$config| $make;

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

            impl $crate::__private::TimersGuest for SluiceHandler {
                fn on_timer(
                    timers: $crate::__private::Vec<$crate::__private::WitTimer>,
                ) -> ::core::result::Result<
                    $crate::__private::Vec<$crate::__private::WitOutput>,
                    $crate::__private::WitProcessError,
                > {
                    $crate::__private::guest_on_timer(timers)
                }
            }

    $crate::bindings::__export_processor!(SluiceHandler with_types_in $crate::bindings);
        };
    };
}

/// More signatures the macros refuse on the host, one mistake per example;
/// compiled only as doctests. Each is a signature the `wasm32` build would
/// refuse too: before the host check, all of these passed `cargo test`.
///
/// The config type must deserialize (`C: DeserializeOwned`):
///
/// ```compile_fail,E0277
/// struct Threshold(usize);
/// fn long(record: &sluice_sdk::Record, min: &Threshold) -> sluice_sdk::Result<bool> {
///     Ok(record.value.as_ref().is_some_and(|value| value.len() >= min.0))
/// }
/// sluice_sdk::filter!(long);
/// ```
///
/// The config is borrowed, not taken by value:
///
/// ```compile_fail,E0631
/// use sluice_sdk::{NoConfig, Record, Result};
/// fn by_key(record: &Record, _: NoConfig) -> Result<Option<String>> {
///     Ok(record.key_str().ok().map(str::to_owned))
/// }
/// sluice_sdk::route!(by_key);
/// ```
///
/// The function returns a `Result`:
///
/// ```compile_fail,E0271
/// fn keep(_: &sluice_sdk::Record, _: &sluice_sdk::NoConfig) -> bool {
///     true
/// }
/// sluice_sdk::filter!(keep);
/// ```
///
/// whose error is `Display`:
///
/// ```compile_fail,E0277
/// use sluice_sdk::{NoConfig, Output, Record};
/// fn words(record: Record, _: &NoConfig) -> Result<Vec<Output>, ()> {
///     Ok(vec![Output::from_record(record)])
/// }
/// sluice_sdk::flat_map!(words);
/// ```
///
/// A map takes the record by value (it may move its buffers into the
/// output):
///
/// ```compile_fail,E0631
/// use sluice_sdk::{NoConfig, Output, Record, Result};
/// fn tag(record: &Record, _: &NoConfig) -> Result<Output> {
///     Ok(Output::value(record.value.clone().unwrap_or_default()))
/// }
/// sluice_sdk::map!(tag);
/// ```
///
/// A router's topic converts into a `String`:
///
/// ```compile_fail,E0277
/// use sluice_sdk::{NoConfig, Record, Result};
/// fn by_partition(record: &Record, _: &NoConfig) -> Result<Option<i32>> {
///     Ok(Some(record.partition))
/// }
/// sluice_sdk::route!(by_partition);
/// ```
#[cfg(doctest)]
mod refused_signatures {}
