use telltale_core::profile::{Behaviour, Observation};

use super::*;

fn pending(image: &str, hash: &str, seen: i64) -> Pending {
    Pending {
        image: image.to_owned(),
        hash: hash.to_owned(),
        behaviour: StoredBehaviour {
            observation: Observation { lineage: vec!["/bin/app".to_owned()], behaviour: Behaviour::Exec },
            tag: "v1".to_owned(),
            first_seen_ms: seen,
            writer: "pod-a".to_owned(),
            manual: false,
        },
    }
}

#[test]
fn rows_keep_their_order_ignore_duplicates_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    {
        let q = Queue::open(&path, "/telltale/v1/default/").unwrap();
        assert_eq!(q.push(&[pending("web", "a1", 1), pending("web", "a2", 2)]).unwrap(), 2);
        assert_eq!(q.push(&[pending("web", "a1", 9), pending("db", "a1", 3)]).unwrap(), 1, "web/a1 is queued");
        // Dropped without anything else: the rows are committed.
    }
    let q = Queue::open(&path, "/telltale/v1/default/").unwrap();
    let rows = q.peek(10).unwrap();
    let got: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| (r.pending.image.as_str(), r.pending.hash.as_str(), r.pending.behaviour.first_seen_ms))
        .collect();
    assert_eq!(got, vec![("web", "a1", 1), ("web", "a2", 2), ("db", "a1", 3)]);
    assert_eq!(q.peek(1).unwrap().len(), 1);
    q.remove(&[rows[0].id, rows[2].id]).unwrap();
    let left: Vec<(String, String)> = q.keys().unwrap();
    assert_eq!(left, vec![("web".to_owned(), "a2".to_owned())]);
    assert_eq!(q.peek(10).unwrap()[0].pending, pending("web", "a2", 2));
}

#[test]
fn fleets_sharing_a_file_do_not_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let prod = Queue::open(&path, "/telltale/v1/prod/").unwrap();
    let staging = Queue::open(&path, "/telltale/v1/staging/").unwrap();
    prod.push(&[pending("web", "a1", 1)]).unwrap();
    assert!(staging.peek(10).unwrap().is_empty());
    assert_eq!(staging.push(&[pending("web", "a1", 1)]).unwrap(), 1, "same key, other fleet");
    assert_eq!(prod.keys().unwrap().len(), 1);
}

#[test]
fn an_undecodable_row_is_dropped_not_stuck() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let q = Queue::open(&path, "s/").unwrap();
    q.push(&[pending("web", "a1", 1), pending("web", "a2", 2)]).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE fleet_queue SET value = 'not json' WHERE hash = 'a1'", [])
        .unwrap();
    let rows = q.peek(10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].pending.hash, "a2");
    assert_eq!(q.keys().unwrap().len(), 1, "the bad row is gone");
}

#[test]
fn a_bad_path_names_the_file() {
    let e = Queue::open(std::path::Path::new("/nonexistent-dir/q.db"), "s/").unwrap_err();
    assert!(e.to_string().contains("/nonexistent-dir/q.db"), "{e}");
}
