//! The telltale daemon as a library: the I/O shell around `telltale-core` —
//! sensors, workload discovery, store, API, notification delivery,
//! telemetry and the commands built on them. `main.rs` only parses
//! arguments and calls in.

pub mod api;
pub mod bus;
pub mod config;
pub mod daemon;
pub mod notify;
pub mod run;
pub mod sensor;
pub mod store;
pub mod telemetry;
pub mod trace;
pub mod workload;

pub use telltale_core::error_chain;
