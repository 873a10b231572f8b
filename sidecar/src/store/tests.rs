use super::*;
use std::time::Duration;
use telltale_core::detect::{Container, Detector};
use telltale_core::event::{fixtures, Event, EventKind};
use telltale_core::workload::image::ImageRef;

fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("telltale-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn open(path: &str) -> Event {
    fixtures::read(5, fixtures::process("/bin/app", &["/bin/sh"]), path)
}

fn cfg() -> LearningConfig {
    LearningConfig {
        min_duration: Duration::from_secs(10),
        stable_period: Duration::from_secs(5),
        max_duration: Duration::from_secs(60),
        warmup: Duration::ZERO,
    }
}

#[test]
fn profiles_clocks_and_anomalies_round_trip() {
    let dir = tmp("roundtrip");
    let mut store = Store::open(&dir).unwrap();
    let mut d = Detector::new(cfg(), vec![], vec![]);
    let c = Container::new("c1", "web", &ImageRef::parse("web:v1").unwrap(), 5, 0);
    store.apply(&d.add_container(c.clone(), 0)).unwrap();
    store.apply(&d.on_event(&open("/etc/app.conf"), 1_000).changes).unwrap();
    store.apply(&d.on_event(&open("/proc/77/status"), 1_000).changes).unwrap();
    store.apply(&d.tick(20_000, 2).into_iter().collect::<Vec<_>>()).unwrap();
    let anomaly = d.on_event(&open("/etc/shadow"), 21_000);
    store.apply(&anomaly.changes).unwrap();
    drop(store);

    let store = Store::open_read_only(&dir).unwrap();
    let profiles = store.load_profiles().unwrap();
    assert_eq!(profiles.len(), 1);
    let p = &profiles[0];
    let original = d.profile("web").unwrap();
    assert_eq!(p.nodes(), original.nodes());
    for t in EventType::ALL {
        assert_eq!(p.clock(t), original.clock(t), "{t:?}");
    }
    assert_eq!(p.tags, original.tags);
    let reported = store.reported().unwrap();
    assert_eq!(reported.len(), 1);
    let stored = store.anomalies().unwrap();
    assert!(matches!(&stored[0].event.kind, EventKind::File { file } if file.path == "/etc/shadow"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_and_newer_databases_are_clear_errors() {
    let dir = tmp("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(DB_FILE), b"this is not a database, just text that is long enough").unwrap();
    let e = Store::open(&dir).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains(DB_FILE), "{e}");
    std::fs::remove_file(dir.join(DB_FILE)).unwrap();

    let s = Store::open(&dir).unwrap();
    s.conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'", []).unwrap();
    drop(s);
    let e = Store::open(&dir).unwrap_err();
    assert!(matches!(e, StoreError::NewerSchema { found: 99, .. }), "{e:?}");
    assert!(e.to_string().contains("schema version 99"));
    std::fs::remove_dir_all(&dir).unwrap();

    let e = Store::open_read_only(&tmp("missing")).unwrap_err();
    assert!(matches!(e, StoreError::Missing(_)));
}

#[test]
fn file_access_bits_merge() {
    let dir = tmp("merge");
    let mut store = Store::open(&dir).unwrap();
    let o = |access| Observation {
        lineage: vec!["/bin/app".into()],
        behaviour: Behaviour::File { pattern: "/data/x".into(), access },
    };
    let ch = |access| Change::Behaviour { image: "web".into(), observation: o(access), tag: "v1".into(), now_ms: 1 };
    store.apply(&[ch(1), ch(2)]).unwrap();
    let p = store.load_profiles().unwrap();
    assert!(p[0].contains(&o(3)));
    std::fs::remove_dir_all(&dir).unwrap();
}
