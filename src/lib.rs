//! scim-removals: removes members from Genesys Cloud SCIM groups safely.

pub mod config;
pub mod removal;
pub mod telemetry;
