//! Workload identity: cgroups (and, later, containers and images).

pub mod cgroup;
pub mod image;
pub mod pod;
