//! End-to-end tests of the fleet store against real etcd processes
//! (Debian's `etcd`, started on free loopback ports, killed on drop). A
//! missing `etcd` binary fails them.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: failing loudly is the point

mod failover;
mod lifecycle;
mod measure;
mod offline;
mod publish;
mod secure;
mod support;
mod watch;
