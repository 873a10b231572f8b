//! Workload identity on this host: cgroups, the pod's containers and the
//! Kubernetes API. Image references and pod-layout parsing are pure, in
//! `telltale_core::workload`.

pub mod cgroup;
pub mod discover;
pub mod kubeapi;
