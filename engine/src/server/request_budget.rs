//! The broker-wide budget of request bytes in memory
//! (`kafka.queued_request_bytes_max`).
//!
//! A frame reserves its whole size before its body is read, so a frame
//! holds either all it needs or nothing: frames that each hold part of the
//! budget can never wait on one another forever. Waiting is not first in,
//! first out (a tokio `Semaphore` queue would make a 100 MiB waiter hold
//! back every small request behind it until 100 MiB are free): each waiter
//! tries again whenever bytes are returned and takes its share if it fits,
//! as Kafka's memory pool does. What one stalled peer can hold is bounded by
//! `kafka.request_body_timeout_ms`.

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Request bytes that may be held at once, shared by all connections.
pub(crate) struct RequestBudget {
    bytes: Arc<Semaphore>,
    /// Woken whenever a reservation is returned.
    returned: Arc<Notify>,
}

/// A reservation; returned to the budget when dropped.
pub(crate) struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    returned: Arc<Notify>,
}

impl RequestBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(bytes)),
            returned: Arc::new(Notify::new()),
        }
    }

    /// Bytes free now (`/metrics`: the budget less this is what is queued).
    pub(crate) fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Reserves `bytes` (at least 1) once they fit, without queueing
    /// behind larger reservations.
    pub(crate) async fn reserve(&self, bytes: u32) -> Reservation {
        let bytes = bytes.max(1);
        loop {
            // Registered before trying, so a return in between is not missed.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Ok(permit) = self.bytes.clone().try_acquire_many_owned(bytes) {
                return Reservation {
                    permit: Some(permit),
                    returned: self.returned.clone(),
                };
            }
            returned.await;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.returned.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_waiter_does_not_hold_back_small_reservations() {
        let budget = Arc::new(RequestBudget::new(100));
        let held = budget.reserve(60).await;
        let large = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(80).await }
        });
        tokio::task::yield_now().await;
        // 40 bytes are free: a small reservation fits at once although the
        // large one waits.
        let small = budget.reserve(30).await;
        drop((held, small));
        let large = large.await.unwrap();
        drop(large);
        drop(budget.reserve(100).await);
    }
}
