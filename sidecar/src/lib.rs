//! The telltale daemon as a library: sensors, events, workload identity and
//! the commands built on them. `main.rs` only parses arguments and calls in.

pub mod api;
pub mod audit;
pub mod config;
pub mod detect;
pub mod event;
pub mod notify;
pub mod profile;
pub mod query;
pub mod run;
pub mod sensor;
pub mod signal;
pub mod status;
pub mod store;
pub mod suppress;
pub mod telemetry;
pub mod trace;
pub mod workload;

/// An error and its sources, joined with `: ` (for one-line messages).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
