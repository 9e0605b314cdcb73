//! Webhooks: at-least-once, signed delivery of one event per finished
//! removal to the governance platform at `webhook.url`.
//!
//! The event is written to the store's outbox in the transaction that
//! finishes its removal ([`event_for`] builds it), so no removal finishes
//! without one, whatever happens to the process afterwards. The
//! [`Deliverer`] task then sends it with Standard Webhooks headers
//! ([`signature`]), retries on `webhook.retry_schedule_ms` ([`schedule`]),
//! and marks it dead when the schedule runs out; operators can send it again
//! through `POST /webhooks/deliveries/{id}/redeliver`.
//!
//! Delivery is at least once: a process killed between an answer and its
//! record sends that event again after restarting. Receivers drop duplicates
//! by `webhook-id`, which is the same on every attempt of one event.

mod delivery;
mod event;
pub mod schedule;
pub mod signature;

pub use delivery::{Deliverer, MAX_IN_FLIGHT, SetupError};
pub use event::{EventType, WebhookEvent, event_for};
