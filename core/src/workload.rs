//! Workload identity, pure: image references (short name, tag, digest) and
//! the pod's cgroup layout, container names and ids as the runtimes and
//! Kubernetes write them.

pub mod image;
pub mod pod;
