//! Snapshot-level diagnosis: derives `join_type` and the current `failure` (DESIGN §4).
//!
//! SKELETON: the public API below is fixed; the rules are being filled in.

use crate::{EventRecord, ExecutionContext, Failure, JoinType, Snapshot};

/// Derives the join type from Device State (and User State for Entra registered).
pub fn join_type(_snapshot: &Snapshot) -> JoinType {
    JoinType::Unspecified
}

/// Derives the current failure, or `None` when the device looks healthy.
pub fn failure(
    _snapshot: &Snapshot,
    _events: &[EventRecord],
    _context: ExecutionContext,
) -> Option<Failure> {
    None
}

/// Sets `snapshot.join_type` and `snapshot.failure` from the snapshot and the events.
pub fn apply(snapshot: &mut Snapshot, events: &[EventRecord], context: ExecutionContext) {
    snapshot.join_type = join_type(snapshot) as i32;
    snapshot.failure = failure(snapshot, events, context);
}
