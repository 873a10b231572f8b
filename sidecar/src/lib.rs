//! The telltale daemon as a library: sensors, events, workload identity and
//! the commands built on them. `main.rs` only parses arguments and calls in.

pub mod detect;
pub mod event;
pub mod profile;
pub mod sensor;
pub mod store;
pub mod trace;
pub mod workload;
