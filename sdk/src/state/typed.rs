//! Typed stores over the raw [`Store`]: keys through [`Key`], values as
//! JSON (`serde_json`), which is what the broker's state queries decode and
//! show.
//!
//! Key encodings (what the query URL's key must be):
//!
//! | key type | bytes |
//! |---|---|
//! | `String`, `str` | the UTF-8 bytes, as is |
//! | `Vec<u8>`, `[u8]` | as is |
//! | unsigned integers | big-endian, fixed width |
//! | signed integers | big-endian, fixed width, sign bit flipped (byte order = numeric order) |

use std::borrow::{Borrow, Cow};
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Prefetched, RawScan, Store};
use crate::{Error, Result};

/// A type that encodes as a state key (borrowed forms included: `str`,
/// `[u8]`).
pub trait KeyBytes {
    /// The key's bytes in the store.
    fn key_bytes(&self) -> Cow<'_, [u8]>;
}

/// A key type a typed store holds, which decodes back from its bytes (for
/// scans).
pub trait Key: KeyBytes + Sized {
    /// The key from its bytes in the store.
    fn from_key_bytes(bytes: Vec<u8>) -> Result<Self>;
}

impl KeyBytes for str {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl KeyBytes for String {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}

impl Key for String {
    fn from_key_bytes(bytes: Vec<u8>) -> Result<Self> {
        Ok(String::from_utf8(bytes)?)
    }
}

impl KeyBytes for [u8] {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}

impl KeyBytes for Vec<u8> {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}

impl Key for Vec<u8> {
    fn from_key_bytes(bytes: Vec<u8>) -> Result<Self> {
        Ok(bytes)
    }
}

impl<T: KeyBytes + ?Sized> KeyBytes for &T {
    fn key_bytes(&self) -> Cow<'_, [u8]> {
        (**self).key_bytes()
    }
}

macro_rules! integer_keys {
    ($($int:ty => $flip:expr),* $(,)?) => {$(
        impl KeyBytes for $int {
            fn key_bytes(&self) -> Cow<'_, [u8]> {
                Cow::Owned((*self ^ $flip).to_be_bytes().to_vec())
            }
        }

        impl Key for $int {
            fn from_key_bytes(bytes: Vec<u8>) -> Result<Self> {
                let array = bytes.try_into().map_err(|bytes: Vec<u8>| {
                    Error::new(format!(
                        "a {}-byte key is not a {}",
                        bytes.len(),
                        stringify!($int)
                    ))
                })?;
                Ok(<$int>::from_be_bytes(array) ^ $flip)
            }
        }
    )*};
}

integer_keys! {
    u8 => 0, u16 => 0, u32 => 0, u64 => 0, u128 => 0,
    i8 => i8::MIN, i16 => i16::MIN, i32 => i32::MIN, i64 => i64::MIN, i128 => i128::MIN,
}

/// A store of `V` values (JSON) by `K` keys.
///
/// ```
/// use sluice_sdk::state::KeyValueStore;
///
/// let balances = KeyValueStore::<String, i64>::open("balances")?;
/// balances.put("ann", &12)?;
/// assert_eq!(balances.get("ann")?, Some(12));
/// assert_eq!(balances.store().get(b"ann").as_deref(), Some(&b"12"[..]));
/// # Ok::<(), sluice_sdk::Error>(())
/// ```
pub struct KeyValueStore<K, V> {
    store: Store,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for KeyValueStore<K, V> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KeyValueStore")
            .field("store", &self.store)
            .finish()
    }
}

impl<K: Key, V: Serialize + DeserializeOwned> KeyValueStore<K, V> {
    /// Opens store `name` (declared with `--store NAME`).
    pub fn open(name: &str) -> Result<Self> {
        Ok(Self::new(Store::open(name)?))
    }

    /// A typed view of an open raw store.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            types: PhantomData,
        }
    }

    /// The raw store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The value at `key`, if any; an error when it does not parse as `V`.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: KeyBytes + ?Sized,
    {
        get_typed(&self.store, key)
    }

    /// The values at `keys`, in one crossing.
    pub fn get_many<Q>(&self, keys: &[&Q]) -> Result<Vec<Option<V>>>
    where
        K: Borrow<Q>,
        Q: KeyBytes + ?Sized,
    {
        get_many_typed(&self.store, keys)
    }

    /// Sets `key` to `value`.
    pub fn put<Q>(&self, key: &Q, value: &V) -> Result<()>
    where
        K: Borrow<Q>,
        Q: KeyBytes + ?Sized,
    {
        self.store
            .put(&key.key_bytes(), &serde_json::to_vec(value)?);
        Ok(())
    }

    /// Deletes `key`.
    pub fn delete<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: KeyBytes + ?Sized,
    {
        self.store.delete(&key.key_bytes());
    }

    /// Every entry with `start <= key < end` (`None`: unbounded), in key
    /// order, fetched page by page.
    pub fn scan(&self, start: Option<&K>, end: Option<&K>) -> Scan<'_, K, V> {
        let start = start.map(|key| key.key_bytes().into_owned());
        let end = end.map(|key| key.key_bytes().into_owned());
        Scan {
            raw: self
                .store
                .scan_all(start.as_deref().unwrap_or(&[]), end.as_deref()),
            types: PhantomData,
        }
    }

    /// Reads `keys` in one crossing, for a batch's read-modify-write; write
    /// back with [`Prefetched::flush`].
    pub fn prefetch<'k, Q>(
        &self,
        keys: impl IntoIterator<Item = &'k Q>,
    ) -> Result<Prefetched<'_, V>>
    where
        K: Borrow<Q>,
        Q: KeyBytes + ?Sized + 'k,
    {
        Prefetched::load(&self.store, keys.into_iter().map(|key| key.key_bytes()))
    }
}

/// `keys` as the byte keys the store takes (borrowed where a key is
/// already bytes: the store packs them into one buffer anyway).
fn byte_keys<'q, Q: KeyBytes + ?Sized>(keys: &[&'q Q]) -> Vec<Cow<'q, [u8]>> {
    keys.iter().map(|&key| key.key_bytes()).collect()
}

/// The JSON value at `key` of `store` (typed stores and tables alike).
fn get_typed<V: DeserializeOwned, Q: KeyBytes + ?Sized>(
    store: &Store,
    key: &Q,
) -> Result<Option<V>> {
    let bytes = key.key_bytes();
    store
        .get(&bytes)
        .map(|value| decode_value(store, &bytes, &value))
        .transpose()
}

/// The JSON values at `keys` of `store`, in one crossing.
fn get_many_typed<V: DeserializeOwned, Q: KeyBytes + ?Sized>(
    store: &Store,
    keys: &[&Q],
) -> Result<Vec<Option<V>>> {
    let keys = byte_keys(keys);
    let mut values: Vec<Option<V>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
    let mut failed = None;
    // Each value decoded straight from the answer buffer, not copied out
    // of it first; the first value that does not decode is the error.
    store.get_many_with(&keys, |index, value| {
        if failed.is_some() {
            return;
        }
        if let Some(value) = value {
            match decode_value(store, &keys[index], value) {
                Ok(decoded) => values[index] = Some(decoded),
                Err(error) => failed = Some(error),
            }
        }
    });
    match failed {
        Some(error) => Err(error),
        None => Ok(values),
    }
}

pub(super) fn decode_value<V: DeserializeOwned>(
    store: &Store,
    key: &[u8],
    value: &[u8],
) -> Result<V> {
    serde_json::from_slice(value).map_err(|error| {
        Error::from(error).context(format_args!(
            "store `{}`, key {}",
            store.name(),
            String::from_utf8_lossy(key)
        ))
    })
}

/// The typed entries of a range (see [`KeyValueStore::scan`]).
#[derive(Debug)]
pub struct Scan<'a, K, V> {
    raw: RawScan<'a>,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K: Key, V: DeserializeOwned> Iterator for Scan<'_, K, V> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        let (key, value) = self.raw.next()?;
        let value = decode_value(self.raw.store, &key, &value);
        Some(value.and_then(|value| Ok((K::from_key_bytes(key)?, value))))
    }
}

/// A read-only table the broker materialises from a topic (its latest value
/// per key; a tombstone removes the key), opened by name like a store.
/// Values are the topic's record values, parsed as JSON into `V`.
///
/// On the host, fill it with
/// [`testing::Task::table`](crate::testing::Task::table).
pub struct Table<K, V> {
    store: Store,
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> std::fmt::Debug for Table<K, V> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Table")
            .field("store", &self.store)
            .finish()
    }
}

impl<K: KeyBytes, V: DeserializeOwned> Table<K, V> {
    /// Opens table `name`.
    pub fn open(name: &str) -> Result<Self> {
        Ok(Self {
            store: Store::open(name)?,
            types: PhantomData,
        })
    }

    /// The latest value at `key`, if any.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>>
    where
        K: Borrow<Q>,
        Q: KeyBytes + ?Sized,
    {
        get_typed(&self.store, key)
    }

    /// The latest values at `keys`, in one crossing (a batch's lookups),
    /// answers in the same order.
    pub fn get_many<Q>(&self, keys: &[&Q]) -> Result<Vec<Option<V>>>
    where
        K: Borrow<Q>,
        Q: KeyBytes + ?Sized,
    {
        get_many_typed(&self.store, keys)
    }

    /// [`get_many`](Self::get_many) as raw bytes: the caller decodes each
    /// value, and can name the record whose lookup held a bad one.
    pub fn get_many_raw<Q>(&self, keys: &[&Q]) -> Vec<Option<Vec<u8>>>
    where
        K: Borrow<Q>,
        Q: KeyBytes + ?Sized,
    {
        self.store.get_many(&byte_keys(keys))
    }

    /// The latest value at `key` as raw bytes.
    pub fn get_raw<Q>(&self, key: &Q) -> Option<Vec<u8>>
    where
        K: Borrow<Q>,
        Q: KeyBytes + ?Sized,
    {
        self.store.get(&key.key_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::host;

    #[test]
    fn integer_keys_sort_numerically() {
        let keys: Vec<Vec<u8>> = [-5_i64, -1, 0, 3, i64::MAX]
            .iter()
            .map(|key| key.key_bytes().into_owned())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(i64::from_key_bytes(keys[0].clone()).unwrap(), -5);
        assert_eq!(7_u32.key_bytes().as_ref(), [0, 0, 0, 7]);
        assert!(u32::from_key_bytes(vec![1]).is_err());
    }

    #[test]
    fn values_are_json_and_scans_are_typed() {
        host::replace(host::TaskState::default());
        let store = KeyValueStore::<String, Vec<u32>>::open("lists").unwrap();
        store.put("b", &vec![2]).unwrap();
        store.put(&"a".to_owned(), &vec![1, 1]).unwrap();
        store.put("c", &vec![]).unwrap();
        assert_eq!(store.store().get(b"a").unwrap(), b"[1,1]");
        let got = store.get_many(&["a", "zz"]).unwrap();
        assert_eq!(got, [Some(vec![1, 1]), None]);
        let scanned: Vec<_> = store
            .scan(Some(&"b".to_owned()), None)
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            scanned,
            [("b".to_owned(), vec![2]), ("c".to_owned(), vec![])]
        );
        store.delete("b");
        assert_eq!(store.get("b").unwrap(), None);
        store.store().put(b"bad", b"{");
        let error = store.get("bad").unwrap_err();
        assert!(
            error.message().contains("store `lists`, key bad"),
            "{error}"
        );
        // get_many decodes from the answer buffer and names the bad key too.
        let error = store.get_many(&["a", "bad", "c"]).unwrap_err();
        assert!(
            error.message().contains("store `lists`, key bad"),
            "{error}"
        );
    }

    #[test]
    fn counters_read_as_integers() {
        host::replace(host::TaskState::default());
        let store = KeyValueStore::<u64, i64>::open("n").unwrap();
        store.store().add(&9_u64.key_bytes(), -4);
        assert_eq!(store.get(&9).unwrap(), Some(-4));
    }
}
