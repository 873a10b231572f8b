//! The telltale daemon as a library: sensors, events, workload identity and
//! the commands built on them. `main.rs` only parses arguments and calls in.

pub mod api;
pub mod config;
pub mod detect;
pub mod event;
pub mod profile;
pub mod run;
pub mod sensor;
pub mod status;
pub mod store;
pub mod trace;
pub mod workload;
