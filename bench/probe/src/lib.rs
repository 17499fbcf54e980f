//! The batch-as-one-buffer experiment's guest: keeps the records at even
//! positions (as `noop` keeps even offsets) without reading their bytes.
//! The offsets are in the index, so it could read them; like `noop`, it
//! decides on the record's place alone.

wit_bindgen::generate!({
    path: "wit",
    world: "probe",
});

/// Four `u32`s per record in the index.
const INDEX_WORDS: usize = 4;

struct Probe;

impl Guest for Probe {
    fn keep_even(data: Vec<u8>, index: Vec<u32>) -> Vec<u32> {
        let records = index.len() / INDEX_WORDS;
        // The data is not read, but it is held until the call returns, as
        // a plugin reading it would.
        std::hint::black_box(&data);
        (0..records as u32).step_by(2).collect()
    }
}

export!(Probe);
