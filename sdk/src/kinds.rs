//! The kinds of processor and the one batch loop each runs.
//!
//! A plugin is either a plain function of one kind (filter, map, flat-map,
//! route), exported with the matching macro, or a type implementing
//! [`Processor`] for full control over a batch. Each kind is an adapter
//! implementing [`Handler`]: the same code runs behind the WebAssembly
//! export and behind [`testing`](crate::testing) on the host, so what a unit
//! test sees (source indexes, forwards, errors) is what the broker gets.

use std::fmt::Display;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::clock::Timer;
use crate::{config, Batch, Output, Outputs, ProcessError, Record, Result};

/// A processor with full control over each batch.
///
/// ```
/// use sluice_sdk::{Batch, Outputs, Output, ProcessError, Processor, Result};
///
/// /// Numbers each record of a partition, from `start`.
/// struct Counter {
///     next: u64,
/// }
///
/// #[derive(serde::Deserialize)]
/// struct Config {
///     start: u64,
/// }
///
/// impl Processor for Counter {
///     type Config = Config;
///
///     fn init(config: Config) -> Result<Self> {
///         Ok(Counter { next: config.start })
///     }
///
///     fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
///         for (source, record) in batch.indexed() {
///             outputs.push(source, Output::from_record(record).header("n", self.next.to_string()));
///             self.next += 1;
///         }
///         Ok(())
///     }
/// }
///
/// sluice_sdk::export!(Counter);
/// ```
pub trait Processor: Sized + 'static {
    /// The configuration, deserialized from the `--config` pairs (see
    /// [`config`](crate::config)).
    type Config: DeserializeOwned;

    /// Builds the instance, once, before the first batch. An error fails the
    /// instance with its message.
    fn init(config: Self::Config) -> Result<Self>;

    /// Processes one batch: pushes outputs in non-decreasing source order.
    /// On error nothing of the batch is written, and the call's state
    /// changes are rolled back.
    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError>;

    /// Handles due timers (scheduled with
    /// [`clock::schedule`](crate::clock::schedule)), in `(at, key)` order;
    /// each fires exactly once. An output's `source` is an index into
    /// `timers`; it must emit (a forward is refused: there is no input
    /// record), and a timestamp left unset is the timer's `at`. On error
    /// the call's state changes are rolled back and the timers stay due.
    ///
    /// The default handles none (a processor that schedules no timer).
    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        let _ = (timers, outputs);
        Ok(())
    }
}

/// A ready instance: what `init` builds and `process` calls, for every kind.
#[doc(hidden)]
pub trait Handler {
    /// Processes one batch into `outputs`.
    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError>;

    /// Handles due timers; the function kinds schedule none.
    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        let _ = (timers, outputs);
        Ok(())
    }
}

/// A boxed [`Handler`], as the guest entry points and the test harness hold it.
#[doc(hidden)]
pub type BoxedHandler = Box<dyn Handler>;

struct Custom<P>(P);

impl<P: Processor> Handler for Custom<P> {
    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        self.0.process(batch, outputs)
    }

    fn on_timer(&mut self, timers: Vec<Timer>, outputs: &mut Outputs) -> Result<(), ProcessError> {
        self.0.on_timer(timers, outputs)
    }
}

/// Builds a [`Processor`] from config pairs.
#[doc(hidden)]
pub fn processor<P, K, V>(pairs: &[(K, V)]) -> Result<BoxedHandler>
where
    P: Processor,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let config = config::from_pairs::<P::Config, K, V>(pairs)?;
    Ok(Box::new(Custom(P::init(config)?)))
}

/// A kind adapter: the user's function and its parsed config.
struct Adapter<F, C, Marker> {
    function: F,
    config: C,
    /// The function's error and return types, which the impls below need to
    /// name.
    marker: PhantomData<fn() -> Marker>,
}

fn adapter<F, C, Marker, K, V>(function: F, pairs: &[(K, V)]) -> Result<Adapter<F, C, Marker>>
where
    C: DeserializeOwned,
    K: AsRef<str>,
    V: AsRef<str>,
{
    Ok(Adapter {
        function,
        config: config::from_pairs(pairs)?,
        marker: PhantomData,
    })
}

// Type-level markers telling the kinds apart (a function type could in
// principle satisfy two kinds' bounds); never constructed.
#[allow(dead_code)]
struct FilterKind<E>(E);
#[allow(dead_code)]
struct MapKind<E>(E);
#[allow(dead_code)]
struct FlatMapKind<I, E>(I, E);
#[allow(dead_code)]
struct RouteKind<T, E>(T, E);

impl<F, C, E> Handler for Adapter<F, C, FilterKind<E>>
where
    F: Fn(&Record, &C) -> Result<bool, E>,
    E: Display,
{
    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        outputs.reserve(batch.len());
        for (source, record) in batch.indexed() {
            match (self.function)(&record, &self.config) {
                Ok(true) => outputs.forward(source),
                Ok(false) => {}
                Err(error) => return Err(ProcessError::at(source, error)),
            }
        }
        Ok(())
    }
}

impl<F, C, E> Handler for Adapter<F, C, MapKind<E>>
where
    F: Fn(Record, &C) -> Result<Output, E>,
    E: Display,
{
    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        outputs.reserve(batch.len());
        for (source, record) in batch.indexed() {
            match (self.function)(record, &self.config) {
                Ok(output) => outputs.push(source, output),
                Err(error) => return Err(ProcessError::at(source, error)),
            }
        }
        Ok(())
    }
}

impl<F, C, I, E> Handler for Adapter<F, C, FlatMapKind<I, E>>
where
    F: Fn(Record, &C) -> Result<I, E>,
    I: IntoIterator<Item = Output>,
    E: Display,
{
    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        outputs.reserve(batch.len());
        for (source, record) in batch.indexed() {
            match (self.function)(record, &self.config) {
                Ok(produced) => {
                    for output in produced {
                        outputs.push(source, output);
                    }
                }
                Err(error) => return Err(ProcessError::at(source, error)),
            }
        }
        Ok(())
    }
}

impl<F, C, T, E> Handler for Adapter<F, C, RouteKind<T, E>>
where
    F: Fn(&Record, &C) -> Result<Option<T>, E>,
    T: Into<String>,
    E: Display,
{
    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        outputs.reserve(batch.len());
        for (source, record) in batch.indexed() {
            match (self.function)(&record, &self.config) {
                Ok(Some(topic)) => outputs.forward_to(source, topic),
                Ok(None) => {}
                Err(error) => return Err(ProcessError::at(source, error)),
            }
        }
        Ok(())
    }
}

/// Builds a filter: `function` returns `true` to keep (forward) a record.
#[doc(hidden)]
pub fn filter<F, C, E, K, V>(function: F, pairs: &[(K, V)]) -> Result<BoxedHandler>
where
    F: Fn(&Record, &C) -> Result<bool, E> + 'static,
    C: DeserializeOwned + 'static,
    E: Display + 'static,
    K: AsRef<str>,
    V: AsRef<str>,
{
    Ok(Box::new(adapter::<F, C, FilterKind<E>, K, V>(
        function, pairs,
    )?))
}

/// Builds a map: `function` turns each record into one output.
#[doc(hidden)]
pub fn map<F, C, E, K, V>(function: F, pairs: &[(K, V)]) -> Result<BoxedHandler>
where
    F: Fn(Record, &C) -> Result<Output, E> + 'static,
    C: DeserializeOwned + 'static,
    E: Display + 'static,
    K: AsRef<str>,
    V: AsRef<str>,
{
    Ok(Box::new(adapter::<F, C, MapKind<E>, K, V>(
        function, pairs,
    )?))
}

/// Builds a flat-map: `function` turns each record into any number of
/// outputs.
#[doc(hidden)]
pub fn flat_map<F, C, I, E, K, V>(function: F, pairs: &[(K, V)]) -> Result<BoxedHandler>
where
    F: Fn(Record, &C) -> Result<I, E> + 'static,
    C: DeserializeOwned + 'static,
    I: IntoIterator<Item = Output> + 'static,
    E: Display + 'static,
    K: AsRef<str>,
    V: AsRef<str>,
{
    Ok(Box::new(adapter::<F, C, FlatMapKind<I, E>, K, V>(
        function, pairs,
    )?))
}

/// Builds a router: `function` names the topic to forward each record to,
/// or `None` to drop it.
#[doc(hidden)]
pub fn route<F, C, T, E, K, V>(function: F, pairs: &[(K, V)]) -> Result<BoxedHandler>
where
    F: Fn(&Record, &C) -> Result<Option<T>, E> + 'static,
    C: DeserializeOwned + 'static,
    T: Into<String> + 'static,
    E: Display + 'static,
    K: AsRef<str>,
    V: AsRef<str>,
{
    Ok(Box::new(adapter::<F, C, RouteKind<T, E>, K, V>(
        function, pairs,
    )?))
}

/// A processor instance on the host: built from config pairs exactly as the
/// WebAssembly `init` builds it, and run over batches by the same loop as
/// the `process` export. The engine runs plugins natively through it (its
/// benchmark baseline); [`testing::Harness`](crate::testing::Harness) wraps
/// it for unit tests.
pub struct Instance {
    handler: BoxedHandler,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Instance").finish_non_exhaustive()
    }
}

impl Instance {
    /// A filter, as [`filter!`](crate::filter) exports it.
    pub fn filter<F, C, E, K, V>(function: F, config: &[(K, V)]) -> Result<Self>
    where
        F: Fn(&Record, &C) -> Result<bool, E> + 'static,
        C: DeserializeOwned + 'static,
        E: Display + 'static,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        filter(function, config).map(Self::from_handler)
    }

    /// A map, as [`map!`](crate::map) exports it.
    pub fn map<F, C, E, K, V>(function: F, config: &[(K, V)]) -> Result<Self>
    where
        F: Fn(Record, &C) -> Result<Output, E> + 'static,
        C: DeserializeOwned + 'static,
        E: Display + 'static,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        map(function, config).map(Self::from_handler)
    }

    /// A flat-map, as [`flat_map!`](crate::flat_map) exports it.
    pub fn flat_map<F, C, I, E, K, V>(function: F, config: &[(K, V)]) -> Result<Self>
    where
        F: Fn(Record, &C) -> Result<I, E> + 'static,
        C: DeserializeOwned + 'static,
        I: IntoIterator<Item = Output> + 'static,
        E: Display + 'static,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        flat_map(function, config).map(Self::from_handler)
    }

    /// A router, as [`route!`](crate::route) exports it.
    pub fn route<F, C, T, E, K, V>(function: F, config: &[(K, V)]) -> Result<Self>
    where
        F: Fn(&Record, &C) -> Result<Option<T>, E> + 'static,
        C: DeserializeOwned + 'static,
        T: Into<String> + 'static,
        E: Display + 'static,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        route(function, config).map(Self::from_handler)
    }

    /// A [`Processor`], as [`export!`](crate::export) exports it.
    pub fn processor<P, K, V>(config: &[(K, V)]) -> Result<Self>
    where
        P: Processor,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        processor::<P, K, V>(config).map(Self::from_handler)
    }

    fn from_handler(handler: BoxedHandler) -> Self {
        Self { handler }
    }

    /// Processes one batch, pushing its outputs onto `outputs`. Stream
    /// time ([`clock::stream_time`](crate::clock::stream_time)) advances as
    /// the batch's records are taken.
    pub fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        crate::clock::begin_call();
        self.handler.process(batch, outputs)
    }

    /// Handles due timers, pushing outputs (sources index `timers`).
    pub fn on_timer(
        &mut self,
        timers: Vec<Timer>,
        outputs: &mut Outputs,
    ) -> Result<(), ProcessError> {
        crate::clock::begin_call();
        self.handler.on_timer(timers, outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NoConfig, Payload};

    fn odd_length(record: &Record, _: &NoConfig) -> Result<bool> {
        Ok(record
            .value
            .as_ref()
            .is_some_and(|value| value.len() % 2 == 1))
    }

    fn batch(values: &[&str]) -> Batch {
        Batch::new(
            "in",
            0,
            values.iter().map(|value| Record::new(*value)).collect(),
        )
    }

    #[test]
    fn an_instance_runs_batch_after_batch() {
        let mut instance = Instance::filter(odd_length, &[] as &[(String, String)]).unwrap();
        let mut outputs = Outputs::with_capacity(4);
        instance
            .process(batch(&["a", "bb", "ccc"]), &mut outputs)
            .unwrap();
        let first = std::mem::take(&mut outputs).into_pairs().unwrap();
        let sources: Vec<u32> = first.iter().map(|(source, _)| *source).collect();
        assert_eq!(sources, [0, 2]);
        assert!(first
            .iter()
            .all(|(_, output)| output.payload == Payload::Forward));

        outputs.forward(5);
        outputs.clear();
        instance.process(batch(&["bb", "a"]), &mut outputs).unwrap();
        let second = outputs.into_pairs().unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].0, 1, "sources restart at 0 for every batch");
    }

    #[test]
    fn config_errors_fail_the_instance() {
        let error = Instance::filter(odd_length, &[("x", "1")]).unwrap_err();
        assert!(error.message().contains("takes no config"), "{error}");
    }
}
