//! Notification delivery: the persisted outbox sent to its targets with
//! retries. Rule matching and rendering are pure, in `telltale_core::notify`.

pub mod deliver;
