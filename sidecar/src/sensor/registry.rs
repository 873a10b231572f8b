//! The node set's registry as logic, apart from the maps it lives in: which
//! registrations are stale, which slot is free, which cgroup depths the
//! programs must look at. Pure functions over plain values.

use std::collections::BTreeSet;

use telltale_ebpf::abi;

/// One slot of the registry, as read from the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Its index.
    pub index: u32,
    /// Its value.
    pub registration: abi::Registration,
}

/// Is this registration held by no one, or by a sidecar that stopped
/// renewing its lease `timeout_ns` ago or more (killed, frozen)?
pub fn is_stale(r: &abi::Registration, now_ns: u64, timeout_ns: u64) -> bool {
    r.owner != 0 && now_ns.saturating_sub(r.lease_ns) >= timeout_ns
}

/// The distinct depths of `levels`, deepest first, as the programs read
/// them; `None` when there are more than the programs can look at.
pub fn node_state(levels: impl IntoIterator<Item = u32>) -> Option<abi::NodeState> {
    let distinct: BTreeSet<u32> = levels.into_iter().collect();
    if distinct.len() > abi::MAX_LEVELS {
        return None;
    }
    let mut state = abi::NodeState::default();
    for (i, level) in distinct.iter().rev().enumerate() {
        state.levels[i] = *level;
    }
    state.nlevels = u32::try_from(distinct.len()).unwrap_or(0);
    Some(state)
}

/// A registration's name field from a (pod) name: at most 63 bytes, cut at
/// a character boundary, NUL-terminated.
pub fn name_field(name: &str) -> [u8; 64] {
    let mut out = [0u8; 64];
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&name.as_bytes()[..end]);
    out
}

/// The name a registration carries.
pub fn name_of(r: &abi::Registration) -> String {
    let end = r.name.iter().position(|&b| b == 0).unwrap_or(r.name.len());
    String::from_utf8_lossy(&r.name[..end]).into_owned()
}

/// The cgroup ids a registration holds in the scopes map.
pub fn cgroups_of(r: &abi::Registration) -> &[u64] {
    let n = usize::try_from(r.nscopes).unwrap_or(0).min(r.cgroups.len());
    &r.cgroups[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(owner: u64, lease_ns: u64) -> abi::Registration {
        abi::Registration { owner, lease_ns, ..Default::default() }
    }

    #[test]
    fn a_lease_expires_after_the_timeout_and_a_free_slot_is_never_stale() {
        assert!(!is_stale(&reg(7, 100), 105, 10));
        assert!(is_stale(&reg(7, 100), 110, 10));
        assert!(!is_stale(&reg(0, 0), u64::MAX, 10));
        // A lease renewed "in the future" (clock read races) is live.
        assert!(!is_stale(&reg(7, 200), 100, 10));
    }

    #[test]
    fn levels_are_distinct_deepest_first_and_bounded() {
        let s = node_state([3, 2, 3, 5]).expect("fits");
        assert_eq!(s.nlevels, 3);
        assert_eq!(&s.levels[..3], &[5, 3, 2]);
        assert_eq!(node_state([]).expect("empty").nlevels, 0);
        assert!(node_state(0..=abi::MAX_LEVELS as u32).is_none());
    }

    #[test]
    fn names_are_cut_at_a_character_boundary() {
        let long = "é".repeat(40);
        let field = name_field(&long);
        let back = name_of(&abi::Registration { name: field, ..Default::default() });
        assert_eq!(back, "é".repeat(31));
        assert_eq!(name_of(&abi::Registration { name: name_field("pod-a"), ..Default::default() }), "pod-a");
    }

    #[test]
    fn cgroups_are_bounded_by_the_array() {
        let r = abi::Registration { nscopes: 99, ..Default::default() };
        assert_eq!(cgroups_of(&r).len(), abi::MAX_SCOPES as usize);
    }
}
