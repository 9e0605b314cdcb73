//! scim-removals: removes members from Genesys Cloud SCIM groups safely.

pub mod app;
pub mod config;
pub mod genesys;
pub mod http;
pub mod removal;
pub mod sandbox;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod webhook;
pub mod worker;
