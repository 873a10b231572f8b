//! The telltale domain, pure and synchronous: typed events, workload
//! identity, security profiles (generalization, learning lifecycle),
//! detection, signals, suppressions, the facet query language, audit
//! records, notification rule matching and rendering, and the learning
//! status model. No I/O runtime, database, RPC or eBPF crate is a
//! dependency (CI checks the tree); the daemon in `telltale-sidecar` is the
//! shell around it.

pub mod audit;
pub mod clock;
pub mod contract;
pub mod detect;
pub mod event;
pub mod field;
pub mod notify;
pub mod profile;
pub mod query;
pub mod signal;
pub mod status;
pub mod suppress;
pub mod text;
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
