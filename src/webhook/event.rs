//! The event a finished removal produces, and its body on the wire.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::removal::{Removal, Status};
use crate::store::NewDelivery;

/// What happened, as the event's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The removal succeeded.
    MembershipDeleted,
    /// A rule stopped the removal; nothing was removed.
    RemovalRejected,
    /// Genesys Cloud could not be brought to carry the removal out.
    RemovalFailed,
}

impl EventType {
    /// The event type of a finished removal's status, if that status is
    /// reported at all: queued, running, planned (dry runs) and cancelled
    /// removals send no event.
    pub fn of(status: Status) -> Option<EventType> {
        match status {
            Status::Succeeded => Some(EventType::MembershipDeleted),
            Status::Rejected => Some(EventType::RemovalRejected),
            Status::Failed => Some(EventType::RemovalFailed),
            Status::Queued | Status::Running | Status::Planned | Status::Cancelled => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::MembershipDeleted => "scim.group.membership.deleted",
            EventType::RemovalRejected => "scim.group.membership.removal_rejected",
            EventType::RemovalFailed => "scim.group.membership.removal_failed",
        }
    }
}

/// The body of every webhook request. Events carry no ordering promise:
/// receivers order them by `data.completed_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEvent {
    /// `scim.group.membership.deleted`, `scim.group.membership.removal_rejected`
    /// or `scim.group.membership.removal_failed`.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// When the removal finished.
    pub timestamp: DateTime<Utc>,
    /// The finished removal, as `GET /removals/{id}` answers it.
    pub data: Removal,
}

/// The outbox row for a finished removal, or `None` when it sends no event
/// (a dry run, a cancelled or unfinished removal).
///
/// # Errors
/// Only if the removal cannot be serialised, which would be a bug.
pub fn event_for(removal: &Removal) -> Result<Option<NewDelivery>, serde_json::Error> {
    let Some(event_type) = EventType::of(removal.status).filter(|_| !removal.dry_run) else {
        return Ok(None);
    };
    let timestamp = removal.completed_at.unwrap_or(removal.updated_at);
    let event = WebhookEvent {
        event_type: event_type.as_str(),
        timestamp,
        data: removal.clone(),
    };

    let id = Uuid::now_v7();
    Ok(Some(NewDelivery {
        id,
        webhook_id: format!("msg_{}", id.simple()),
        removal_id: removal.id,
        event_type: event_type.as_str().to_string(),
        payload: serde_json::to_string(&event)?,
        created_at: timestamp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::removal::{GroupId, MemberId, Mode, RemovalRequest};

    fn finished(status: Status, dry_run: bool) -> Removal {
        let request = RemovalRequest {
            group_id: GroupId::parse("0a7e4a10-5c1d-4e2f-8b3a-9c8d7e6f5a01").unwrap(),
            members: vec![MemberId::parse("6f1c2a8e-0b7d-4c39-9a51-1d2e3f4a5b01").unwrap()],
            mode: Mode::AllOrNothing,
            dry_run,
            client: "governance".into(),
            requested_by: None,
            reason: None,
        };
        let mut removal = Removal::new(request, Utc::now());
        removal.status = status;
        removal.completed_at = Some(Utc::now());
        removal
    }

    #[test]
    fn each_final_status_of_a_real_run_has_its_event_type() {
        let cases = [
            (Status::Succeeded, "scim.group.membership.deleted"),
            (Status::Rejected, "scim.group.membership.removal_rejected"),
            (Status::Failed, "scim.group.membership.removal_failed"),
        ];
        for (status, expected) in cases {
            let event = event_for(&finished(status, false)).unwrap().unwrap();
            assert_eq!(event.event_type, expected);
        }
    }

    #[test]
    fn dry_runs_cancelled_and_unfinished_removals_have_no_event() {
        for status in [Status::Planned, Status::Rejected, Status::Failed] {
            assert!(event_for(&finished(status, true)).unwrap().is_none());
        }
        for status in [Status::Cancelled, Status::Queued, Status::Running] {
            assert!(event_for(&finished(status, false)).unwrap().is_none());
        }
    }

    #[test]
    fn the_payload_is_type_timestamp_and_the_removal_itself() {
        let removal = finished(Status::Succeeded, false);
        let event = event_for(&removal).unwrap().unwrap();
        let body: serde_json::Value = serde_json::from_str(&event.payload).unwrap();

        assert_eq!(body["type"], "scim.group.membership.deleted");
        assert_eq!(body["data"], serde_json::to_value(&removal).unwrap());
        let stamp: DateTime<Utc> = serde_json::from_value(body["timestamp"].clone()).unwrap();
        assert_eq!(Some(stamp), removal.completed_at);
        assert_eq!(body.as_object().unwrap().len(), 3);
        assert_eq!(event.removal_id, removal.id);
        assert_eq!(event.webhook_id, format!("msg_{}", event.id.simple()));
    }
}
