//! Profiles: `profiles` (image → tags), `behaviours` (one row per
//! behaviour of an image's activity tree) and `clocks` (the learning
//! clock per image and event type).

use std::collections::BTreeMap;

use rusqlite::{params, Connection};

use telltale_core::profile::lifecycle::{Clock, State};
use telltale_core::profile::{Behaviour, EventType, Observation, Profile};

use super::{decode, encode, from_sql_int, Fault, Store, StoreError};

/// Add a behaviour (merging file access bits with what is stored).
pub(super) fn add_behaviour(
    c: &Connection,
    image: &str,
    observation: &Observation,
    tag: &str,
    now_ms: i64,
) -> Result<(), Fault> {
    let (key, access) = behaviour_key(&observation.behaviour);
    let lineage = encode("behaviour lineage", &observation.lineage)?;
    let detail = encode("behaviour", &observation.behaviour)?;
    let mut stmt = c.prepare_cached(
        "INSERT INTO behaviours (image, lineage, type, key, detail, access, first_seen_ms, tag)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (image, lineage, type, key) DO UPDATE SET access = access | excluded.access",
    )?;
    stmt.execute(params![image, lineage, observation.event_type().name(), key, detail, access, now_ms, tag])?;
    Ok(())
}

/// Create a profile or replace its tags.
pub(super) fn save_tags(c: &Connection, image: &str, tags: &[String]) -> Result<(), Fault> {
    let tags = encode("profile tags", tags)?;
    let mut stmt = c.prepare_cached(
        "INSERT INTO profiles (image, tags) VALUES (?1, ?2) ON CONFLICT (image) DO UPDATE SET tags = excluded.tags",
    )?;
    stmt.execute(params![image, tags])?;
    Ok(())
}

/// Save a learning clock.
pub(super) fn save_clock(c: &Connection, image: &str, event_type: EventType, clock: &Clock) -> Result<(), Fault> {
    let mut stmt = c.prepare_cached(
        "INSERT OR REPLACE INTO clocks
         (image, type, state, started_ms, state_since_ms, last_new_ms, behaviours, lost_events)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    stmt.execute(params![
        image,
        event_type.name(),
        clock.state.name(),
        clock.started_ms,
        clock.state_since_ms,
        clock.last_new_ms,
        // Counters: saturate rather than fail (2^63 is never reached).
        i64::try_from(clock.behaviours).unwrap_or(i64::MAX),
        i64::try_from(clock.lost_events).unwrap_or(i64::MAX),
    ])?;
    Ok(())
}

/// The unique key of a behaviour within (image, lineage, type), and the
/// access bits stored beside it.
fn behaviour_key(b: &Behaviour) -> (String, i64) {
    match b {
        Behaviour::Exec => (String::new(), 0),
        Behaviour::File { pattern, access } => (pattern.clone(), i64::from(*access)),
        Behaviour::Dns { name, qtype } => (format!("{name}\t{qtype}"), 0),
        Behaviour::Connect { protocol, address, port } => (format!("{protocol} {address} {port}"), 0),
        Behaviour::ConnectRange { protocol, network, port } => (format!("{protocol} {network} {port}"), 0),
        // Stored with the exec type: the prefix keeps it apart from the exec's empty key.
        Behaviour::Mechanism { mechanism } => (format!("mechanism {mechanism}"), 0),
    }
}

/// One `clocks` row.
struct ClockRow {
    image: String,
    event_type: String,
    state: String,
    started_ms: i64,
    state_since_ms: i64,
    last_new_ms: Option<i64>,
    behaviours: i64,
    lost_events: i64,
}

fn load(c: &Connection) -> Result<Vec<Profile>, Fault> {
    let bad = |what, detail: String| Fault::BadRow { what, detail };
    let mut profiles: BTreeMap<String, Profile> = BTreeMap::new();
    let mut stmt = c.prepare("SELECT image, tags FROM profiles")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (image, tags) = row?;
        let mut p = Profile::new(&image, 0);
        let tags: Vec<String> = decode("profiles", &format!("image {image:?} tags"), &tags)?;
        p.tags.extend(tags);
        profiles.insert(image, p);
    }

    let mut stmt =
        c.prepare("SELECT image, lineage, detail, access, first_seen_ms, tag FROM behaviours ORDER BY rowid")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    for row in rows {
        let (image, lineage, detail, access, first_seen_ms, tag) = row?;
        let lineage: Vec<String> = decode("behaviours", "lineage", &lineage)?;
        let mut behaviour: Behaviour = decode("behaviours", "detail", &detail)?;
        if let Behaviour::File { access: a, .. } = &mut behaviour {
            *a = u8::try_from(access).map_err(|e| bad("behaviours", format!("access {access}: {e}")))?;
        }
        let p = profiles.entry(image.clone()).or_insert_with(|| Profile::new(&image, 0));
        p.add(&Observation { lineage, behaviour }, &tag, first_seen_ms);
    }

    let mut stmt = c.prepare(
        "SELECT image, type, state, started_ms, state_since_ms, last_new_ms, behaviours, lost_events FROM clocks",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ClockRow {
            image: r.get(0)?,
            event_type: r.get(1)?,
            state: r.get(2)?,
            started_ms: r.get(3)?,
            state_since_ms: r.get(4)?,
            last_new_ms: r.get(5)?,
            behaviours: r.get(6)?,
            lost_events: r.get(7)?,
        })
    })?;
    for row in rows {
        let row = row?;
        let event_type =
            EventType::from_name(&row.event_type).ok_or_else(|| bad("clocks", format!("type {:?}", row.event_type)))?;
        let state = State::from_name(&row.state).ok_or_else(|| bad("clocks", format!("state {:?}", row.state)))?;
        let p = profiles.entry(row.image.clone()).or_insert_with(|| Profile::new(&row.image, row.started_ms));
        p.set_clock(
            event_type,
            Clock {
                state,
                started_ms: row.started_ms,
                state_since_ms: row.state_since_ms,
                last_new_ms: row.last_new_ms,
                behaviours: from_sql_int("clocks", row.behaviours)?,
                lost_events: from_sql_int("clocks", row.lost_events)?,
            },
        );
    }
    Ok(profiles.into_values().collect())
}

impl Store {
    /// Every profile with its behaviours and clocks.
    pub fn load_profiles(&self) -> Result<Vec<Profile>, StoreError> {
        load(&self.conn).map_err(self.fail())
    }
}
