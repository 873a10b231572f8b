//! The first run of a process node added by hand with nothing it does
//! (`AddToProfile` / `telltalectl profile add --exec` of an exec alone):
//! what that run does is learned, as a new container's start-up is, so a
//! hand-added process is as quiet as one marked benign (whose folded
//! library and locale loads are added with it).
//!
//! The allowance is bounded, never a blanket allow:
//! - only the node's own behaviour (files, DNS, endpoints): a program it
//!   starts is a new process node and is still judged;
//! - only one run: the first process (container and pid) of that node seen
//!   after the add; any later run is judged against the profile;
//! - at most [`WINDOW_MS`] from that run's first event, and at most
//!   [`MAX_LEARNED`] behaviours;
//! - at most [`MAX_WAITING`] nodes wait for their first run (the oldest is
//!   dropped first), in memory only: after a restart a waiting node is
//!   judged as any other (noisier, never quieter).

use std::collections::{HashMap, VecDeque};

/// How long the first run of a hand-added process node is learned (ms).
pub const WINDOW_MS: i64 = 10_000;

/// Most behaviours learned from that run.
pub const MAX_LEARNED: u32 = 256;

/// Most hand-added nodes waiting for (or in) their first run.
pub const MAX_WAITING: usize = 1024;

/// The one run whose behaviour is learned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    container: String,
    pid: u32,
    start_ms: i64,
    learned: u32,
}

/// (image, lineage) → its first run once it started.
type Key = (String, Vec<String>);

/// Hand-added process nodes waiting for, or in, their first run.
#[derive(Debug, Default)]
pub(crate) struct FirstRuns {
    nodes: HashMap<String, HashMap<Vec<String>, Option<Run>>>,
    order: VecDeque<Key>,
}

impl FirstRuns {
    /// The node `lineage` of `image` was added by hand with nothing it
    /// does: its next run is learned.
    pub(crate) fn arm(&mut self, image: &str, lineage: &[String]) {
        let nodes = self.nodes.entry(image.to_owned()).or_default();
        if nodes.insert(lineage.to_vec(), None).is_some() {
            return;
        }
        self.order.push_back((image.to_owned(), lineage.to_vec()));
        while self.order.len() > MAX_WAITING {
            if let Some((image, lineage)) = self.order.pop_front() {
                self.forget(&image, &lineage);
            }
        }
    }

    fn forget(&mut self, image: &str, lineage: &[String]) {
        if let Some(nodes) = self.nodes.get_mut(image) {
            nodes.remove(lineage);
            if nodes.is_empty() {
                self.nodes.remove(image);
            }
        }
    }

    /// An event of process `pid` of node `lineage` in `container` (of
    /// `image`): the first one after the add starts the node's first run.
    pub(crate) fn seen(&mut self, image: &str, container: &str, lineage: &[String], pid: u32, now_ms: i64) {
        // Called for every observation: nothing to look up in the usual case.
        if self.nodes.is_empty() {
            return;
        }
        let Some(run) = self.nodes.get_mut(image).and_then(|n| n.get_mut(lineage)) else {
            return;
        };
        match run {
            None => {
                *run = Some(Run { container: container.to_owned(), pid, start_ms: now_ms, learned: 0 });
            }
            Some(r) if now_ms - r.start_ms > WINDOW_MS => {
                self.order.retain(|(i, l)| !(i == image && l.as_slice() == lineage));
                self.forget(image, lineage);
            }
            Some(_) => {}
        }
    }

    /// Is this new behaviour of process `pid` of node `lineage` in
    /// `container` part of the node's first run (and within its bounds)?
    /// Counted if so.
    pub(crate) fn learns(&mut self, image: &str, container: &str, lineage: &[String], pid: u32, now_ms: i64) -> bool {
        let Some(Some(run)) = self.nodes.get_mut(image).and_then(|n| n.get_mut(lineage)) else {
            return false;
        };
        if run.container != container || run.pid != pid || now_ms - run.start_ms > WINDOW_MS {
            return false;
        }
        run.learned += 1;
        if run.learned >= MAX_LEARNED {
            self.order.retain(|(i, l)| !(i == image && l.as_slice() == lineage));
            self.forget(image, lineage);
        }
        true
    }

    /// Nodes waiting for, or in, their first run.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(p: &str) -> Vec<String> {
        vec!["/bin/sh".to_owned(), p.to_owned()]
    }

    #[test]
    fn only_the_first_run_within_its_window_and_count() {
        let mut f = FirstRuns::default();
        let cat = l("/usr/bin/cat");
        assert!(!f.learns("web", "c1", &cat, 7, 0), "not armed");
        f.arm("web", &cat);
        assert!(!f.learns("web", "c1", &cat, 7, 0), "armed, not running yet");
        f.seen("web", "c1", &cat, 7, 1_000);
        assert!(f.learns("web", "c1", &cat, 7, 1_000));
        assert!(!f.learns("web", "c1", &cat, 8, 1_000), "another process of the node");
        assert!(!f.learns("web", "c2", &cat, 7, 1_000), "another container");
        assert!(!f.learns("db", "c1", &cat, 7, 1_000), "another image");
        assert!(!f.learns("web", "c1", &l("/usr/bin/tac"), 7, 1_000), "another node");
        assert!(f.learns("web", "c1", &cat, 7, 1_000 + WINDOW_MS));
        assert!(!f.learns("web", "c1", &cat, 7, 1_001 + WINDOW_MS), "past the window");
        f.seen("web", "c1", &cat, 9, 2_000 + WINDOW_MS);
        assert_eq!(f.len(), 0, "forgotten once past its window");
        f.seen("web", "c1", &cat, 9, 3_000 + WINDOW_MS);
        assert!(!f.learns("web", "c1", &cat, 9, 3_000 + WINDOW_MS), "no second run");

        f.arm("web", &cat);
        f.seen("web", "c1", &cat, 10, 0);
        for _ in 0..MAX_LEARNED {
            assert!(f.learns("web", "c1", &cat, 10, 0));
        }
        assert!(!f.learns("web", "c1", &cat, 10, 0), "count bound");
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn waiting_nodes_are_bounded_oldest_first() {
        let mut f = FirstRuns::default();
        for i in 0..=MAX_WAITING {
            f.arm("web", &l(&format!("/bin/p{i}")));
        }
        f.arm("web", &l("/bin/p5"));
        assert_eq!(f.len(), MAX_WAITING);
        f.seen("web", "c", &l("/bin/p0"), 1, 0);
        assert!(!f.learns("web", "c", &l("/bin/p0"), 1, 0), "the oldest was dropped");
        f.seen("web", "c", &l("/bin/p1"), 1, 0);
        assert!(f.learns("web", "c", &l("/bin/p1"), 1, 0));
    }
}
