//! Client SDK for telltale.
//!
//! The sidecar does not serve its gRPC API yet; until it does this crate only
//! re-exports the wire types ([`proto`]) so tools can decode telltale events.
//! The typed async client and `telltalectl` are added together with the API.

pub use telltale_proto::v1 as proto;
