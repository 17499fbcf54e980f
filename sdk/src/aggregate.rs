//! Aggregations per key: what a record adds to a running aggregate
//! ([`Aggregator`]: [`Count`], [`Sum`], [`Reduce`], [`Fold`]), and the
//! batch functions that keep one aggregate per key in a store
//! ([`aggregate`], [`count`], [`sum`], [`reduce`], [`fold`]). The windowed
//! forms are in [`window`](crate::window).
//!
//! A batch is aggregated in two crossings (see
//! [`Prefetched`](crate::state::Prefetched)): its keys read with one
//! `get-many`, the new aggregates written with one `put-many`; a key that
//! repeats in the batch sees its earlier records. The result is one
//! [`Update`] per input, in input order, so the outputs a processor pushes
//! from them are in source order.
//!
//! ```
//! use sluice_sdk::aggregate;
//! use sluice_sdk::state::KeyValueStore;
//!
//! let counts = KeyValueStore::<String, u64>::open("counts")?;
//! let keys = [(0, "a".to_owned()), (1, "b".to_owned()), (2, "a".to_owned())];
//! let updates = aggregate::count(&counts, keys)?;
//! let seen: Vec<_> = updates.iter().map(|u| (u.source, u.key.as_str(), u.aggregate)).collect();
//! assert_eq!(seen, [(0, "a", 1), (1, "b", 1), (2, "a", 2)]);
//! # Ok::<(), sluice_sdk::Error>(())
//! ```

use std::marker::PhantomData;
use std::ops::Add;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::state::{Key, KeyValueStore, Prefetched};
use crate::{Error, Result};

/// How inputs fold into an aggregate.
pub trait Aggregator {
    /// What one record contributes.
    type Input;
    /// The running aggregate, stored as JSON.
    type Aggregate: Serialize + DeserializeOwned + Clone;

    /// `aggregate` (`None`: the key's first input) with `input` added.
    fn add(&self, aggregate: Option<Self::Aggregate>, input: Self::Input) -> Self::Aggregate;

    /// Two aggregates as one (`earlier` covers older records): what session
    /// windows need when a record bridges two sessions. The default refuses.
    fn merge(&self, earlier: Self::Aggregate, later: Self::Aggregate) -> Result<Self::Aggregate> {
        let _ = (earlier, later);
        Err(Error::new(
            "this aggregation cannot merge aggregates (session windows need Aggregator::merge)",
        ))
    }
}

/// Counts inputs: a `u64`, stored as its decimal text (which is also what
/// [`Store::add`](crate::state::Store::add) writes).
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl Aggregator for Count {
    type Input = ();
    type Aggregate = u64;

    fn add(&self, aggregate: Option<u64>, (): ()) -> u64 {
        aggregate.unwrap_or(0).saturating_add(1)
    }

    fn merge(&self, earlier: u64, later: u64) -> Result<u64> {
        Ok(earlier.saturating_add(later))
    }
}

/// Sums inputs of type `T` (`i64`, `f64`, …).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum<T>(PhantomData<fn() -> T>);

impl<T> Sum<T> {
    /// A sum.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Aggregator for Sum<T>
where
    T: Add<Output = T> + Serialize + DeserializeOwned + Clone,
{
    type Input = T;
    type Aggregate = T;

    fn add(&self, aggregate: Option<T>, input: T) -> T {
        match aggregate {
            Some(sum) => sum + input,
            None => input,
        }
    }

    fn merge(&self, earlier: T, later: T) -> Result<T> {
        Ok(earlier + later)
    }
}

/// Combines inputs pairwise with a function: the first input is the
/// aggregate, each later one is combined into it (`max`, `min`, latest, …).
#[derive(Debug, Clone, Copy)]
pub struct Reduce<T, F> {
    combine: F,
    types: PhantomData<fn() -> T>,
}

impl<T, F: Fn(T, T) -> T> Reduce<T, F> {
    /// A reduction by `combine(aggregate, input)`.
    pub fn new(combine: F) -> Self {
        Self {
            combine,
            types: PhantomData,
        }
    }
}

impl<T, F> Aggregator for Reduce<T, F>
where
    T: Serialize + DeserializeOwned + Clone,
    F: Fn(T, T) -> T,
{
    type Input = T;
    type Aggregate = T;

    fn add(&self, aggregate: Option<T>, input: T) -> T {
        match aggregate {
            Some(aggregate) => (self.combine)(aggregate, input),
            None => input,
        }
    }

    fn merge(&self, earlier: T, later: T) -> Result<T> {
        Ok((self.combine)(earlier, later))
    }
}

/// An initializer and an adder: `add(aggregate or init(), input)`.
#[derive(Debug, Clone, Copy)]
pub struct Fold<I, A, Init, Adder> {
    init: Init,
    add: Adder,
    types: PhantomData<fn(I) -> A>,
}

impl<I, A, Init: Fn() -> A, Adder: Fn(A, I) -> A> Fold<I, A, Init, Adder> {
    /// A fold from `init()` with `add`.
    pub fn new(init: Init, add: Adder) -> Self {
        Self {
            init,
            add,
            types: PhantomData,
        }
    }
}

impl<I, A, Init, Adder> Aggregator for Fold<I, A, Init, Adder>
where
    A: Serialize + DeserializeOwned + Clone,
    Init: Fn() -> A,
    Adder: Fn(A, I) -> A,
{
    type Input = I;
    type Aggregate = A;

    fn add(&self, aggregate: Option<A>, input: I) -> A {
        (self.add)(aggregate.unwrap_or_else(&self.init), input)
    }
}

/// A key's aggregate after one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Update<K, A> {
    /// The input's `source` (its record's index in the batch).
    pub source: u32,
    /// The key.
    pub key: K,
    /// The key's aggregate, this input included.
    pub aggregate: A,
}

/// Folds `inputs` (`(source, key, input)`, in record order) into the
/// per-key aggregates of `store`, in one `get-many` and one `put-many`, and
/// returns each input's [`Update`].
pub fn aggregate<K, G>(
    store: &KeyValueStore<K, G::Aggregate>,
    aggregator: &G,
    inputs: impl IntoIterator<Item = (u32, K, G::Input)>,
) -> Result<Vec<Update<K, G::Aggregate>>>
where
    K: Key,
    G: Aggregator,
{
    let inputs: Vec<_> = inputs.into_iter().collect();
    // Each key found once: its slot serves the read and the write.
    let (mut batch, slots) = Prefetched::load_slots(
        store.store(),
        inputs.iter().map(|(_, key, _)| key.key_bytes()),
    )?;
    let mut updates = Vec::with_capacity(inputs.len());
    for ((source, key, input), slot) in inputs.into_iter().zip(slots) {
        let current = batch.value_at(slot).cloned();
        let aggregate = aggregator.add(current, input);
        batch.put_at(slot, aggregate.clone());
        updates.push(Update {
            source,
            key,
            aggregate,
        });
    }
    batch.flush()?;
    Ok(updates)
}

/// Counts `(source, key)` inputs per key.
pub fn count<K: Key>(
    store: &KeyValueStore<K, u64>,
    inputs: impl IntoIterator<Item = (u32, K)>,
) -> Result<Vec<Update<K, u64>>> {
    let inputs = inputs.into_iter().map(|(source, key)| (source, key, ()));
    aggregate(store, &Count, inputs)
}

/// Sums `(source, key, value)` inputs per key.
pub fn sum<K, T>(
    store: &KeyValueStore<K, T>,
    inputs: impl IntoIterator<Item = (u32, K, T)>,
) -> Result<Vec<Update<K, T>>>
where
    K: Key,
    T: Add<Output = T> + Serialize + DeserializeOwned + Clone,
{
    aggregate(store, &Sum::new(), inputs)
}

/// Reduces `(source, key, value)` inputs per key with `combine`.
pub fn reduce<K, T>(
    store: &KeyValueStore<K, T>,
    inputs: impl IntoIterator<Item = (u32, K, T)>,
    combine: impl Fn(T, T) -> T,
) -> Result<Vec<Update<K, T>>>
where
    K: Key,
    T: Serialize + DeserializeOwned + Clone,
{
    aggregate(store, &Reduce::new(combine), inputs)
}

/// Folds `(source, key, input)` inputs per key from `init()` with `add`.
pub fn fold<K, I, A>(
    store: &KeyValueStore<K, A>,
    inputs: impl IntoIterator<Item = (u32, K, I)>,
    init: impl Fn() -> A,
    add: impl Fn(A, I) -> A,
) -> Result<Vec<Update<K, A>>>
where
    K: Key,
    A: Serialize + DeserializeOwned + Clone,
{
    aggregate(store, &Fold::new(init, add), inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::host;

    fn fresh() {
        host::replace(host::TaskState::default());
    }

    #[test]
    fn sums_and_reductions_keep_running_per_key_across_batches() {
        fresh();
        let sums = KeyValueStore::<String, i64>::open("sums").unwrap();
        let first = sum(&sums, [(0, "a".to_owned(), 5), (1, "a".to_owned(), -2)]).unwrap();
        assert_eq!(first[1].aggregate, 3);
        let second = sum(&sums, [(0, "a".to_owned(), 10)]).unwrap();
        assert_eq!(second[0].aggregate, 13);
        assert_eq!(sums.store().get(b"a").unwrap(), b"13");

        let maxima = KeyValueStore::<u32, i64>::open("max").unwrap();
        let updates = reduce(&maxima, [(0, 1, 4), (1, 1, 2), (2, 2, 1)], i64::max).unwrap();
        let values: Vec<i64> = updates.iter().map(|update| update.aggregate).collect();
        assert_eq!(values, [4, 4, 1]);
    }

    #[test]
    fn folds_start_from_init() {
        fresh();
        let lists = KeyValueStore::<String, Vec<String>>::open("lists").unwrap();
        let inputs = [(0, "k".to_owned(), "x"), (3, "k".to_owned(), "y")];
        let updates = fold(&lists, inputs, Vec::new, |mut list, item: &str| {
            list.push(item.to_owned());
            list
        })
        .unwrap();
        assert_eq!(updates[1].source, 3);
        assert_eq!(lists.get("k").unwrap().unwrap(), ["x", "y"]);
    }

    #[test]
    fn merging_is_defined_where_it_can_be() {
        assert_eq!(Count.merge(2, 3).unwrap(), 5);
        assert_eq!(Sum::<f64>::new().merge(0.5, 1.0).unwrap(), 1.5);
        assert_eq!(Reduce::new(i64::min).merge(4, -1).unwrap(), -1);
        let fold = Fold::new(|| 0_u8, |a, b: u8| a + b);
        assert!(fold.merge(1, 2).is_err());
    }
}
