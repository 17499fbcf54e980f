//! `projection`: an event-sourcing projection. Applies account events to
//! per-account state (store `accounts`) and writes each account's new state
//! to the output, a compacted topic: the latest record per account is its
//! current state, and a closed account is a tombstone.
//!
//! # Events
//!
//! Record values are JSON objects, keyed by account id (a record key, when
//! present, must equal `account`):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `type` | `"opened"`, `"deposited"`, `"withdrawn"` or `"closed"` | what happened |
//! | `account` | string | the account id |
//! | `amount` | integer, minor units (cents), `>= 0` | for `deposited` and `withdrawn` (required there); ignored otherwise |
//!
//! Rules: `opened` needs an account that is not open; the others need an
//! open one. `withdrawn` may not take the balance below zero. `closed`
//! deletes the account's state (it may be opened again later). An event
//! breaking a rule, with an unknown `type`, or that is not such an object,
//! is an error naming the record (its index in the batch; the broker adds
//! topic, partition and offset), and the batch is rolled back: the
//! processor's error policy decides what happens to it. Tombstone inputs
//! are skipped.
//!
//! # State and output
//!
//! Stored and written value: `{"account":"…","balance":…,"status":"open","events":…}`
//! (`events` counts the events applied since the account was opened), key =
//! the account id. `closed` writes a tombstone (null value) for the key.
//!
//! ```sh
//! sluice topic create accounts --config cleanup.policy=compact
//! sluice processor deploy accounts --wasm target/wasm32-wasip2/plugin/projection.wasm \
//!     --input account-events --output accounts --store accounts
//! ```

use serde::{Deserialize, Serialize};
use sluice_sdk::state::KeyValueStore;
use sluice_sdk::{
    Batch, Error, NoConfig, Output, Outputs, ProcessError, Processor, Record, Result,
};

/// The store the accounts live in (deploy with `--store accounts`).
pub const STORE: &str = "accounts";

/// What happened to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The account starts, with balance 0.
    Opened,
    /// `amount` is added.
    Deposited,
    /// `amount` is taken.
    Withdrawn,
    /// The account ends.
    Closed,
}

/// One input event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The account id.
    pub account: String,
    /// Minor units, for deposits and withdrawals.
    #[serde(default)]
    pub amount: Option<i64>,
}

/// An account's state, as stored and written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The account id.
    pub account: String,
    /// Minor units; never negative.
    pub balance: i64,
    /// Always `open` (a closed account has no state).
    pub status: String,
    /// Events applied since it was opened, `opened` included.
    pub events: u64,
}

/// `event` applied to `account` (`None`: not open). `Ok(None)`: closed.
pub fn apply(account: Option<Account>, event: &Event) -> Result<Option<Account>> {
    let name = &event.account;
    let amount = || match event.amount {
        Some(amount) if amount >= 0 => Ok(amount),
        Some(amount) => Err(Error::new(format!("negative amount {amount}"))),
        None => Err(Error::new(format!("{:?} needs an amount", event.kind))),
    };
    let Some(mut state) = account else {
        if event.kind != EventType::Opened {
            return Err(Error::new(format!("account `{name}` is not open")));
        }
        return Ok(Some(Account {
            account: name.clone(),
            balance: 0,
            status: "open".to_owned(),
            events: 1,
        }));
    };
    state.events += 1;
    match event.kind {
        EventType::Opened => return Err(Error::new(format!("account `{name}` is already open"))),
        EventType::Deposited => {
            state.balance = state
                .balance
                .checked_add(amount()?)
                .ok_or_else(|| Error::new(format!("account `{name}`: balance overflow")))?;
        }
        EventType::Withdrawn => {
            let amount = amount()?;
            if amount > state.balance {
                return Err(Error::new(format!(
                    "account `{name}`: withdrawing {amount} from a balance of {}",
                    state.balance
                )));
            }
            state.balance -= amount;
        }
        EventType::Closed => return Ok(None),
    }
    Ok(Some(state))
}

/// A record's event; `None` for a tombstone.
pub fn event(record: &Record) -> Result<Option<Event>> {
    if record.value.is_none() {
        return Ok(None);
    }
    let event: Event = record.json()?;
    if let Some(key) = record.key.as_deref() {
        if key != event.account.as_bytes() {
            return Err(Error::new(format!(
                "record key `{}` is not the event's account `{}`",
                String::from_utf8_lossy(key),
                event.account
            )));
        }
    }
    Ok(Some(event))
}

/// The processor.
#[derive(Debug)]
pub struct Projection {
    accounts: KeyValueStore<String, Account>,
}

impl Processor for Projection {
    type Config = NoConfig;

    fn init(_: NoConfig) -> Result<Self> {
        Ok(Self {
            accounts: KeyValueStore::open(STORE)?,
        })
    }

    fn process(&mut self, batch: Batch, outputs: &mut Outputs) -> Result<(), ProcessError> {
        let mut events = Vec::with_capacity(batch.len());
        for (source, record) in batch.indexed() {
            if let Some(event) = event(&record).map_err(|error| ProcessError::at(source, error))? {
                events.push((source, event));
            }
        }
        // One read for the batch's accounts, one write back.
        let mut accounts = self
            .accounts
            .prefetch(events.iter().map(|(_, event)| event.account.as_str()))?;
        for (source, event) in events {
            let current = accounts.get(event.account.as_str())?.cloned();
            let next = apply(current, &event).map_err(|error| ProcessError::at(source, error))?;
            let output = match next {
                Some(state) => {
                    let output = Output::upsert(event.account.as_str(), &state)?;
                    accounts.put(event.account.as_str(), state);
                    output
                }
                None => {
                    accounts.delete(event.account.as_str());
                    Output::delete(event.account.as_str())
                }
            };
            outputs.push(source, output);
        }
        accounts.flush()?;
        Ok(())
    }
}

sluice_sdk::export!(Projection);

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use sluice_sdk::testing::{Harness, Task, TestOutput};

    use super::*;

    fn harness() -> Harness {
        Task::new()
            .store(STORE)
            .processor::<Projection>(&[])
            .unwrap()
    }

    fn event(kind: &str, account: &str, amount: Option<i64>) -> Record {
        let mut value = json!({"type": kind, "account": account});
        if let Some(amount) = amount {
            value["amount"] = json!(amount);
        }
        Record::new(value.to_string()).with_key(account)
    }

    fn states(outputs: &[TestOutput]) -> Vec<Option<Value>> {
        outputs
            .iter()
            .map(|output| output.value.as_ref().map(|_| output.json().unwrap()))
            .collect()
    }

    #[test]
    fn events_project_to_the_latest_state_per_account() {
        let mut accounts = harness();
        let outputs = accounts
            .run(vec![
                event("opened", "a1", None),
                event("deposited", "a1", Some(100)),
                event("opened", "b2", None),
                event("withdrawn", "a1", Some(30)),
            ])
            .unwrap();
        assert_eq!(
            states(&outputs)[3],
            Some(json!({"account": "a1", "balance": 70, "status": "open", "events": 3}))
        );
        assert_eq!(outputs[3].key_str(), Ok("a1"));
        let stored: Account = accounts.get_json(STORE, b"a1").unwrap();
        assert_eq!(stored.balance, 70);

        let closed = accounts.run(vec![event("closed", "a1", None)]).unwrap();
        assert_eq!(states(&closed), [None], "a tombstone");
        assert_eq!(closed[0].key_str(), Ok("a1"));
        assert_eq!(accounts.get(STORE, b"a1"), None);
        let reopened = accounts.run(vec![event("opened", "a1", None)]).unwrap();
        assert_eq!(states(&reopened)[0].as_ref().unwrap()["events"], 1);
    }

    #[test]
    fn invalid_events_are_errors_naming_the_record() {
        let mut accounts = harness();
        accounts
            .run(vec![
                event("opened", "a1", None),
                event("deposited", "a1", Some(10)),
            ])
            .unwrap();
        let cases = [
            (
                event("withdrawn", "a1", Some(16)),
                "withdrawing 16 from a balance of 15",
            ),
            (event("deposited", "zz", Some(1)), "`zz` is not open"),
            (
                event("refunded", "a1", Some(1)),
                "unknown variant `refunded`",
            ),
            (event("opened", "a1", None), "already open"),
            (event("deposited", "a1", None), "needs an amount"),
            (event("deposited", "a1", Some(-5)), "negative amount"),
            (Record::new("not json"), "invalid JSON"),
            (
                event("deposited", "a1", Some(1)).with_key("b2"),
                "is not the event's account",
            ),
        ];
        for (bad, message) in cases {
            let batch = vec![event("deposited", "a1", Some(5)), bad];
            let error = accounts.run(batch).unwrap_err();
            assert_eq!(error.record_index(), Some(1), "{error}");
            assert!(error.message().contains(message), "{error}");
        }
        let stored: Account = accounts.get_json(STORE, b"a1").unwrap();
        assert_eq!(stored.balance, 10, "every failed batch rolled back");
    }

    #[test]
    fn the_same_result_record_by_record() {
        let events = vec![
            event("opened", "a1", None),
            event("deposited", "a1", Some(5)),
            event("deposited", "a1", Some(7)),
            event("withdrawn", "a1", Some(12)),
        ];
        let mut whole = harness();
        let together = states(&whole.run(events.clone()).unwrap());
        let mut split = harness();
        let apart: Vec<_> = events
            .into_iter()
            .flat_map(|record| states(&split.run(vec![record]).unwrap()))
            .collect();
        assert_eq!(together, apart);
        assert_eq!(whole.entries(STORE), split.entries(STORE));
    }
}
