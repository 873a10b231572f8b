//! Workload identity: cgroups, containers and images; the pod in Kubernetes.

pub mod cgroup;
pub mod discover;
pub mod image;
pub mod kubeapi;
pub mod pod;
