//! Webhooks: at-least-once delivery of one event per finished removal to the
//! governance platform at `webhook.url`.
//!
//! The event is written to the store's outbox in the transaction that
//! finishes its removal ([`event_for`] builds it), so no removal finishes
//! without one, whatever happens to the process afterwards.

mod event;

pub use event::{EventType, WebhookEvent, event_for};
