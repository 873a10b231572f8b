//! What each container already reported: a bounded set that forgets the
//! oldest entry first. An anomaly that was forgotten and happens again is
//! reported again (as a repeat in its signal), never lost; memory stays
//! under [`MAX_REPORTED`] entries whatever the workload does.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use crate::profile::Observation;

/// Most (container, behaviour) pairs remembered as reported.
pub const MAX_REPORTED: usize = 50_000;

type Key = (String, Observation);

/// Reported (container id, observation) pairs, oldest first.
#[derive(Debug)]
pub(crate) struct Reported {
    set: HashSet<Arc<Key>>,
    order: VecDeque<Arc<Key>>,
    cap: usize,
    /// Pairs forgotten to stay under the bound.
    pub(crate) forgotten: u64,
}

impl Reported {
    /// An empty set holding at most `cap` pairs.
    pub(crate) fn new(cap: usize) -> Self {
        Self { set: HashSet::new(), order: VecDeque::new(), cap: cap.max(1), forgotten: 0 }
    }

    pub(crate) fn contains(&self, k: &Key) -> bool {
        self.set.contains(k)
    }

    /// Remember `k` (the oldest pair goes if the set is full). False if it
    /// was already there.
    pub(crate) fn insert(&mut self, k: Key) -> bool {
        if self.set.contains(&k) {
            return false;
        }
        while self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
                self.forgotten += 1;
            }
        }
        let k = Arc::new(k);
        self.order.push_back(Arc::clone(&k));
        self.set.insert(k);
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Behaviour;

    fn k(i: usize) -> Key {
        ("c".to_owned(), Observation { lineage: vec![format!("/bin/p{i}")], behaviour: Behaviour::Exec })
    }

    #[test]
    fn the_oldest_pair_is_forgotten_first_and_the_size_stays_bounded() {
        let mut r = Reported::new(3);
        for i in 0..5 {
            assert!(r.insert(k(i)));
        }
        assert!(!r.insert(k(4)), "already there");
        assert_eq!((r.len(), r.forgotten), (3, 2));
        assert!(!r.contains(&k(0)) && !r.contains(&k(1)));
        assert!(r.contains(&k(2)) && r.contains(&k(4)));
    }
}
