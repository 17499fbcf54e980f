//! Why a group operation was refused, in Kafka's words. The coordinator
//! returns these and never a raw error code: the protocol edge
//! (`protocol::errors::group_error_code`) turns each into its Kafka code, so
//! the domain logic cannot forget an error by writing a `0`.

use thiserror::Error;

/// A refused group operation. `Clone`, because one group-level refusal
/// answers every partition of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum GroupError {
    /// An empty group id.
    #[error("the group id is empty")]
    InvalidGroupId,
    /// A group id longer than `group_id_bytes_max`.
    #[error("the group id is {bytes} bytes, above {bytes_max} (groups.group_id_bytes_max)")]
    GroupIdTooLong { bytes: usize, bytes_max: usize },
    /// A member's subscription metadata or assignment over
    /// `member_metadata_bytes_max`.
    #[error("{bytes} bytes of member metadata or assignment is above {bytes_max} (groups.member_metadata_bytes_max)")]
    MemberMetadataTooLarge { bytes: usize, bytes_max: usize },
    /// The groups together already hold `group_metadata_bytes_max` of
    /// member metadata and assignments.
    #[error("no room for {bytes} more bytes of member metadata: the groups hold their limit of {bytes_max} (groups.group_metadata_bytes_max)")]
    MetadataBudgetExhausted { bytes: usize, bytes_max: usize },
    /// The session timeout is outside `[session_timeout_min_ms, session_timeout_max_ms]`.
    #[error("session timeout {session_timeout_ms} ms is outside [{min_ms}, {max_ms}] ms")]
    InvalidSessionTimeout {
        session_timeout_ms: i32,
        min_ms: i32,
        max_ms: i32,
    },
    /// No protocol type or assignor in common with the group's members.
    #[error("the member's protocol type or assignors match none of the group's")]
    InconsistentGroupProtocol,
    /// The coordinator already holds `groups_max` groups.
    #[error("the coordinator holds its limit of {groups_max} groups (groups.groups_max)")]
    CoordinatorNotAvailable { groups_max: usize },
    /// The group already has `members_max` members.
    #[error("the group has its limit of {members_max} members (groups.members_max)")]
    GroupMaxSizeReached { members_max: usize },
    /// A new member must rejoin with the id it was just given (JoinGroup v4+).
    #[error("rejoin with member id {member_id}")]
    MemberIdRequired { member_id: String },
    /// A static member's instance id belongs to another member id.
    #[error("the static instance id is in use by another member")]
    FencedInstanceId,
    /// The member is not (or no longer) in the group.
    #[error("unknown member of the group")]
    UnknownMemberId,
    /// The request carries a generation other than the group's.
    #[error("generation {generation} is not the group's current {current}")]
    IllegalGeneration { generation: i32, current: i32 },
    /// The group is rebalancing; the member must rejoin.
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    /// Commit metadata over `offset_metadata_bytes_max`.
    #[error(
        "commit metadata of {bytes} bytes exceeds {bytes_max} (groups.offset_metadata_bytes_max)"
    )]
    OffsetMetadataTooLarge { bytes: usize, bytes_max: usize },
    /// Neither members nor committed offsets: nothing to delete.
    #[error("no such group")]
    GroupIdNotFound,
    /// Deletion refused while members are in the group.
    #[error("the group has {members} member(s); only a group without members can be deleted")]
    NonEmptyGroup { members: usize },
    /// Writing or syncing the committed-offsets log failed.
    #[error("the committed-offsets log failed: {reason}")]
    Storage { reason: String },
}
