//! The partition driver's safety net: a bug in the host step (a panic, not
//! a plugin trap, which is an ordinary error) stops that partition with a
//! status saying so, and nothing else.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::records::Compression;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::tasks::drive;
use super::Control;
use crate::log::batch::build;
use crate::processor::host::{Batch, Factory, Invoke, InvokeError, Output, TaskContext};
use crate::processor::scratch::Scratch;
use crate::processor::spec::Limits;
use crate::processor::status::PartitionState;

/// Stands for a bug on the host side of a step.
struct Panics;

impl Invoke for Panics {
    fn process(
        &mut self,
        _batch: Batch<'_>,
        _task: &mut TaskContext,
    ) -> Result<Vec<Output>, InvokeError> {
        panic!("a bug in the host step");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_step_fails_its_partition_with_a_status_and_the_driver_ends() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = Scratch::open(dir.path()).unwrap();
    let input = scratch.store.partition("in", 0).unwrap();
    let entries: Vec<build::Entry> = vec![(None, Some(b"x".to_vec()), 1_700_000_000_000)];
    input
        .append(&build::batch(&entries, Compression::None))
        .unwrap();
    let factory: Factory = Arc::new(|| Ok(Box::new(Panics) as Box<dyn Invoke>));
    let task = scratch.task("panics", factory, Limits::default());
    let stats = task.stats().clone();
    let (_control, control_rx) = watch::channel(Control::default());
    let (_shutdown, shutdown_rx) = watch::channel(false);
    let driver = tokio::spawn(drive(task, Handle::current(), control_rx, shutdown_rx));
    // The driver gives up on this partition: it returns, rather than
    // retrying a step that panicked.
    tokio::time::timeout(Duration::from_secs(30), driver)
        .await
        .expect("the driver ends after the panic")
        .expect("the driver itself does not panic");
    assert_eq!(stats.state(), PartitionState::Failed);
    let error = stats.last_error().expect("a last error");
    assert!(
        error.message.contains("internal error") && error.message.contains("panicked"),
        "{}",
        error.message
    );
    // Nothing was committed past the record.
    assert_eq!(
        stats
            .committed_offset
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // The log is still usable.
    assert_eq!(input.high_watermark(), 1);
}
