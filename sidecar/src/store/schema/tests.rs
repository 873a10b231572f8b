use super::super::tests::{action, anomalies_batch, anomaly, tmp};
use super::super::{Batch, Sequences, Store, DB_FILE};
use super::*;
use telltale_core::audit::{Outcome, Verb};
use telltale_core::event::EventKind;
use telltale_core::notify::{Message, Target};
use telltale_core::profile::lifecycle::State;
use telltale_core::profile::{Behaviour, EventType, Observation};

/// Today's schema (version 1, before migrations) and rows of every table.
const V1_FIXTURE: &str = include_str!("v1_fixture.sql");

/// A data directory holding the version 1 fixture, as the old build left it.
fn v1_dir(tag: &str) -> PathBuf {
    let dir = tmp(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
    c.execute_batch(V1_FIXTURE).unwrap();
    dir
}

fn schema_of(dir: &Path) -> Vec<(String, String, Option<String>)> {
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    let mut stmt = c.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

fn user_version(dir: &Path) -> i64 {
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
}

#[test]
fn a_version_1_database_upgrades_in_place_with_every_row_readable() {
    let dir = v1_dir("v1-upgrade");
    // The old build's file is readable as it is (`telltale status` before
    // the daemon ran once).
    let old = Store::open_read_only(&dir).unwrap();
    assert_eq!(old.load_profiles().unwrap().len(), 1);
    drop(old);
    assert_eq!(user_version(&dir), 0);

    let mut store = Store::open(&dir).unwrap();
    assert_eq!(user_version(&dir), SCHEMA_VERSION);
    assert_eq!(super::super::meta::get(&store.conn, "schema_version").unwrap().as_deref(), Some("2"));

    // meta
    let learning = store.learning_config().unwrap().unwrap();
    assert_eq!(learning.min_duration, std::time::Duration::from_secs(10));
    let counters = store.meta_json("sensor_counters").unwrap().unwrap();
    assert_eq!(counters["updated_ms"], 21_000);
    // profiles, clocks, behaviours
    let profiles = store.load_profiles().unwrap();
    assert_eq!(profiles.len(), 1);
    let p = &profiles[0];
    assert_eq!(p.image, "web");
    assert_eq!(p.tags.iter().collect::<Vec<_>>(), ["v1"]);
    let lineage = vec!["/bin/sh".to_owned(), "/bin/app".to_owned()];
    for pattern in ["/etc/app.conf", "/proc/{pid}/status"] {
        let o =
            Observation { lineage: lineage.clone(), behaviour: Behaviour::File { pattern: pattern.into(), access: 1 } };
        assert!(p.contains(&o), "{pattern}");
    }
    assert_eq!(p.behaviour_count(), 3, "the process node and its two files");
    for t in EventType::ALL {
        assert_eq!(p.clock(t).state, State::Stable, "{t:?}");
        assert_eq!(p.clock(t).lost_events, 2, "{t:?}");
    }
    assert_eq!(p.clock(EventType::File).behaviours, 2);
    // anomalies
    let anomalies = store.anomalies_after(0, 10).unwrap();
    assert_eq!(anomalies.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2]);
    let paths: Vec<String> = anomalies
        .iter()
        .map(|(_, a)| match &a.event.kind {
            EventKind::File { file } => file.path.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(paths, ["/etc/shadow", "/root/.ssh/id_rsa"]);
    assert_eq!(anomalies[0].1.container.pod, "web-7d4b9c");
    assert_eq!(store.reported().unwrap().len(), 2);
    // signals, signal changes
    let signals = store.signals().unwrap();
    assert_eq!(signals.len(), 1);
    assert_eq!((signals[0].id.as_str(), signals[0].entries.len()), ("sig-c1-1", 2));
    let changes = store.signal_changes_after(0, 10).unwrap();
    assert_eq!(changes.iter().map(|(s, c)| (*s, c.created)).collect::<Vec<_>>(), [(1, true), (2, false)]);
    // rules (with their secret), suppressions
    let rules = store.rules().unwrap();
    assert_eq!(rules.len(), 1);
    assert!(matches!(&rules[0].targets[0], Target::Webhook { secret: Some(s), .. } if s == "s3cret"));
    let sups = store.suppressions().unwrap();
    assert_eq!((sups[0].id.as_str(), sups[0].detail.as_str()), ("sup-1", "*.internal"));
    // outbox (the pending message, its failed attempt), notified
    let due = store.due(i64::MAX, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].id, due[0].version, due[0].target, due[0].attempts), (1, 1, 0, 1));
    assert!(matches!(&due[0].message, Ok(Message::Http { body }) if body.contains("signal.created")), "{due:?}");
    assert!(store.due(22_999, 10).unwrap().is_empty(), "its retry time is kept");
    assert!(store.was_notified("rule-1", 1, "sig-c1-1").unwrap());
    assert!(!store.was_notified("rule-1", 0, "sig-c1-1").unwrap());
    // audit
    let audit = store.audit_records().unwrap();
    assert_eq!(telltale_core::audit::verify(&audit), Ok(3));
    assert_eq!(audit[2].action.principal, "anonymous");
    // sequences continue after the old ones
    assert_eq!(store.sequences().unwrap(), Sequences { anomaly: 2, signal_change: 2 });

    // And the migrated store takes new batches: the chain goes on.
    let records = store
        .commit(&Batch {
            audit: vec![action("alice", Verb::Update, Outcome::Success)],
            ..anomalies_batch(&[(3, anomaly("a-3", 30_000, "/etc/passwd"))], 30_000)
        })
        .unwrap();
    assert_eq!(records[0].seq, 4);
    assert_eq!(telltale_core::audit::verify(&store.audit_records().unwrap()), Ok(4));
    drop(store);

    // Opening again migrates nothing and loses nothing.
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.anomalies_after(0, 10).unwrap().len(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_migrated_database_has_the_schema_of_a_new_one() {
    let migrated = v1_dir("v1-schema");
    drop(Store::open(&migrated).unwrap());
    let fresh = tmp("fresh-schema");
    drop(Store::open(&fresh).unwrap());
    assert_eq!(schema_of(&migrated), schema_of(&fresh));
    assert_eq!(user_version(&fresh), SCHEMA_VERSION);
    std::fs::remove_dir_all(&migrated).unwrap();
    std::fs::remove_dir_all(&fresh).unwrap();
}

#[test]
fn version_1_high_water_marks_survive_the_migration_of_a_pruned_database() {
    let dir = v1_dir("v1-pruned");
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    // Retention removed everything; SQLite still remembers the numbers.
    c.execute_batch("DELETE FROM anomalies; DELETE FROM signal_changes;").unwrap();
    drop(c);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.sequences().unwrap(), Sequences { anomaly: 2, signal_change: 2 });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_and_newer_databases_are_clear_errors_and_left_untouched() {
    let dir = tmp("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    let text = b"this is not a database, just text that is long enough".repeat(100);
    std::fs::write(dir.join(DB_FILE), &text).unwrap();
    for e in [Store::open(&dir).unwrap_err(), Store::open_read_only(&dir).unwrap_err()] {
        assert!(matches!(e, StoreError::NotSqlite { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(DB_FILE) && msg.contains("not an SQLite database") && msg.contains("corrupt"), "{msg}");
    }
    assert_eq!(std::fs::read(dir.join(DB_FILE)).unwrap(), text);
    std::fs::remove_file(dir.join(DB_FILE)).unwrap();

    let s = Store::open(&dir).unwrap();
    s.conn.pragma_update(None, "user_version", 99).unwrap();
    s.conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", []).unwrap();
    drop(s);
    for e in [Store::open(&dir).unwrap_err(), Store::open_read_only(&dir).unwrap_err()] {
        assert!(matches!(e, StoreError::NewerSchema { found: 99, supported: SCHEMA_VERSION, .. }), "{e:?}");
        assert!(e.to_string().contains("schema version 99"));
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let e = Store::open_read_only(&tmp("missing")).unwrap_err();
    assert!(matches!(e, StoreError::Missing(_)));
}

#[test]
fn a_failed_integrity_check_names_its_first_problem() {
    let dir = tmp("integrity");
    drop(Store::open(&dir).unwrap());
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    // A NULL where the schema (edited behind SQLite's back) says NOT NULL.
    c.execute_batch(
        "CREATE TABLE scratch (x TEXT); INSERT INTO scratch VALUES (NULL);
         PRAGMA writable_schema = ON;
         UPDATE sqlite_master SET sql = 'CREATE TABLE scratch (x TEXT NOT NULL)' WHERE name = 'scratch';
         PRAGMA writable_schema = OFF;",
    )
    .unwrap();
    drop(c);
    let before = std::fs::read(dir.join(DB_FILE)).unwrap();
    let e = Store::open(&dir).unwrap_err();
    let StoreError::Damaged { first, problems, .. } = &e else { panic!("{e:?}") };
    assert!(first.contains("scratch.x"), "{first}");
    assert_eq!(*problems, 1);
    let msg = e.to_string();
    assert!(msg.contains("failed SQLite's integrity check") && msg.contains("scratch.x"), "{msg}");
    assert!(!msg.contains("Query is not read-only"), "{msg}");
    assert_eq!(std::fs::read(dir.join(DB_FILE)).unwrap(), before, "left untouched");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_table_is_named_and_never_recreated() {
    let dir = tmp("missing-table");
    let mut s = Store::open(&dir).unwrap();
    s.commit(&anomalies_batch(&[(1, anomaly("a-1", 1, "/etc/shadow"))], 1)).unwrap();
    s.conn.execute_batch("DROP TABLE behaviours;").unwrap();
    drop(s);
    let before = std::fs::read(dir.join(DB_FILE)).unwrap();
    for e in [Store::open(&dir).unwrap_err(), Store::open_read_only(&dir).unwrap_err()] {
        assert!(matches!(e, StoreError::MissingTable { table: "behaviours", version: 2, .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("telltale database of schema version 2 but its table `behaviours` is missing"), "{msg}");
    }
    assert_eq!(std::fs::read(dir.join(DB_FILE)).unwrap(), before, "not a byte written");
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    let n: i64 = c.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'behaviours'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0, "not recreated");
    let n: i64 = c.query_row("SELECT count(*) FROM anomalies", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "the rest is kept");
    drop(c);
    std::fs::remove_dir_all(&dir).unwrap();

    // A version 1 database missing a table is not migrated either.
    let dir = v1_dir("v1-missing-table");
    Connection::open(dir.join(DB_FILE)).unwrap().execute_batch("DROP TABLE clocks;").unwrap();
    let e = Store::open(&dir).unwrap_err();
    assert!(matches!(e, StoreError::MissingTable { table: "clocks", version: 1, .. }), "{e:?}");
    assert_eq!(user_version(&dir), 0, "nothing migrated");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn another_applications_database_is_refused_and_left_untouched() {
    let dir = tmp("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    let c = Connection::open(dir.join(DB_FILE)).unwrap();
    c.execute_batch(
        "CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('alice');
         CREATE TABLE meta (key TEXT, value TEXT); INSERT INTO meta VALUES ('owner', 'crm');",
    )
    .unwrap();
    drop(c);
    let before = std::fs::read(dir.join(DB_FILE)).unwrap();
    let mode = std::fs::metadata(dir.join(DB_FILE)).unwrap().permissions();
    for e in [Store::open(&dir).unwrap_err(), Store::open_read_only(&dir).unwrap_err()] {
        let StoreError::NotTelltale { tables, .. } = &e else { panic!("{e:?}") };
        assert_eq!(tables, "meta, users");
        assert!(e.to_string().contains("is not a telltale database"), "{e}");
    }
    assert_eq!(std::fs::read(dir.join(DB_FILE)).unwrap(), before, "not a byte written");
    assert_eq!(std::fs::metadata(dir.join(DB_FILE)).unwrap().permissions(), mode, "nor its mode changed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn only_a_brand_new_empty_file_gets_the_schema() {
    let dir = tmp("empty-file");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(DB_FILE), b"").unwrap();
    assert!(matches!(Store::open_read_only(&dir).unwrap_err(), StoreError::Missing(_)));
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.sequences().unwrap(), Sequences::default());
    drop(store);
    assert_eq!(user_version(&dir), SCHEMA_VERSION);
    std::fs::remove_dir_all(&dir).unwrap();
}
