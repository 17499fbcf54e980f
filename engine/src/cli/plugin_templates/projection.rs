//! `{{name}}`: a Sluice event-sourcing projection. Shopping-cart events,
//! keyed by cart id, are applied in order to each cart's state (the store
//! `carts`), and every change writes the cart's new state under its key:
//! on a compacted output topic the latest record per cart is the cart, and
//! a checked-out cart becomes a tombstone. Replaying the events from the
//! start (`--from earliest --reset-state`) rebuilds the same state.
//! Change `Event` and `apply` for your own events.
//!
//! Deploy with `--store carts` (the store the carts live in).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_sdk::state::KeyValueStore;
use sluice_sdk::{
    Batch, Error, NoConfig, Output, Outputs, ProcessError, Processor, Record, Result,
};

/// The store the carts live in (`--store carts`).
pub const STORE: &str = "carts";

/// One event, the record's JSON value.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// `quantity` of `item` put in the cart.
    Added { item: String, quantity: u64 },
    /// `item` taken out.
    Removed { item: String },
    /// The cart is done: its state is deleted.
    CheckedOut,
}

/// A cart's state, as stored (JSON, so state queries show it) and written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    /// Quantity per item.
    pub items: BTreeMap<String, u64>,
    /// Events applied.
    pub events: u64,
}

/// `event` applied to `cart`; `None`: the cart is gone. An event that does
/// not apply is an error (the batch is rolled back and names the record).
pub fn apply(cart: Option<Cart>, event: Event) -> Result<Option<Cart>> {
    let mut cart = cart.unwrap_or_default();
    cart.events += 1;
    match event {
        Event::Added { item, quantity } => *cart.items.entry(item).or_default() += quantity,
        Event::Removed { item } => {
            if cart.items.remove(&item).is_none() {
                return Err(Error::new(format!("`{item}` is not in the cart")));
            }
        }
        Event::CheckedOut => return Ok(None),
    }
    Ok(Some(cart))
}

/// The processor: its store.
#[derive(Debug)]
pub struct Projection {
    carts: KeyValueStore<String, Cart>,
}

/// A record's cart id and event; `None` skips a tombstone.
fn event(record: &Record) -> Result<Option<(String, Event)>> {
    if record.value.is_none() {
        return Ok(None);
    }
    Ok(Some((record.key_str()?.to_owned(), record.json()?)))
}

impl Processor for Projection {
    type Config = NoConfig;

    fn init(_: NoConfig) -> Result<Self> {
        Ok(Self {
            carts: KeyValueStore::open(STORE)?,
        })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        let mut events = Vec::with_capacity(batch.len());
        for (source, record) in batch.indexed() {
            if let Some(event) = event(&record).map_err(|error| ProcessError::at(source, error))? {
                events.push((source, event));
            }
        }
        // One read of the batch's carts, one write back.
        let mut carts = self.carts.prefetch(events.iter().map(|(_, (id, _))| id))?;
        for (source, (id, event)) in events {
            let cart = carts.get(&id)?.cloned();
            match apply(cart, event).map_err(|error| ProcessError::at(source, error))? {
                Some(cart) => {
                    outputs.push(source, Output::upsert(id.as_str(), &cart)?);
                    carts.put(&id, cart);
                }
                None => {
                    outputs.push(source, Output::delete(id.as_str()));
                    carts.delete(&id);
                }
            }
        }
        carts.flush()?;
        Ok(())
    }
}

sluice_sdk::export!(Projection);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{Harness, Task};

    use super::*;

    fn harness() -> Harness {
        Task::new()
            .store(STORE)
            .processor::<Projection>(&[])
            .unwrap()
    }

    fn event(cart: &str, json: &str) -> Record {
        Record::new(json).with_key(cart)
    }

    #[test]
    fn events_project_to_the_latest_cart() {
        let mut harness = harness();
        let outputs = harness
            .run(vec![
                event("c1", r#"{"type":"added","item":"tea","quantity":2}"#),
                event("c1", r#"{"type":"added","item":"jam","quantity":1}"#),
                event("c2", r#"{"type":"added","item":"tea","quantity":1}"#),
                event("c1", r#"{"type":"removed","item":"jam"}"#),
            ])
            .unwrap();
        let latest: Cart = outputs[3].json().unwrap();
        assert_eq!(latest.items, BTreeMap::from([("tea".to_owned(), 2)]));
        assert_eq!(latest.events, 3);
        assert_eq!(harness.get_json::<Cart>(STORE, b"c1"), Some(latest));

        let outputs = harness
            .run(vec![event("c1", r#"{"type":"checked_out"}"#)])
            .unwrap();
        assert_eq!(outputs[0].key_str(), Ok("c1"));
        assert_eq!(outputs[0].value, None, "a tombstone");
        assert_eq!(harness.get(STORE, b"c1"), None);
        assert!(harness.get(STORE, b"c2").is_some());
    }

    #[test]
    fn an_event_that_does_not_apply_rolls_its_batch_back() {
        let mut harness = harness();
        let error = harness
            .run(vec![
                event("c1", r#"{"type":"added","item":"tea","quantity":2}"#),
                event("c1", r#"{"type":"removed","item":"jam"}"#),
            ])
            .unwrap_err();
        assert_eq!(error.record_index(), Some(1));
        assert!(
            error.message().contains("`jam` is not in the cart"),
            "{error}"
        );
        assert_eq!(harness.get(STORE, b"c1"), None);
    }
}
