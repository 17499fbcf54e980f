//! Consumer groups, classic protocol: the coordinator's state machine
//! (join, sync, heartbeat, leave, session and rebalance timeouts, static
//! membership, generation fencing) and durable committed offsets.
//!
//! The broker only relays assignments: the group leader (a client) runs the
//! range/round-robin/cooperative-sticky assignor and sends the result in
//! SyncGroup, as in Kafka.

mod coordinator;
pub mod offsets;

pub use coordinator::{
    Describe, GroupConfig, GroupCoordinator, GroupState, JoinOutcome, JoinParams,
    MemberDescription, SyncOutcome,
};
