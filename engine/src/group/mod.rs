//! Consumer groups, classic protocol: the coordinator's state machine
//! (join, sync, heartbeat, leave, session and rebalance timeouts, static
//! membership, generation fencing) and durable committed offsets.
//!
//! The broker only relays assignments: the group leader (a client) runs the
//! range/round-robin/cooperative-sticky assignor and sends the result in
//! SyncGroup, as in Kafka. Refusals are typed (`GroupError`); the Kafka
//! handlers turn them into error codes (`protocol::errors`).

mod commit;
mod coordinator;
mod describe;
mod error;
mod join;
mod membership;
pub(crate) mod offsets;
mod state;
mod sync;
#[cfg(test)]
mod tests;

pub(crate) use commit::OffsetCommit;
pub(crate) use coordinator::GroupConfig;
pub(crate) use coordinator::GroupCoordinator;
pub(crate) use describe::MemberDescription;
pub(crate) use error::GroupError;
pub(crate) use join::JoinParams;
pub(crate) use membership::LeavingMember;
pub(crate) use state::{Joined, Protocol};
pub(crate) use sync::Assignment;
