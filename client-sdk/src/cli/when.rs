//! Times on the command line: a duration before now (`30s`, `15m`, `1h`,
//! `2d`, `1h30m`; humantime) or an RFC 3339 time (`2025-01-31T12:00:00Z`).

use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

/// A time as given, resolved against "now" when the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// This long before now.
    Ago(Duration),
    /// This time.
    At(OffsetDateTime),
}

impl When {
    /// The time meant, `now` being now. A duration reaching before the
    /// earliest representable time means that time.
    pub fn resolve(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            When::At(t) => t,
            When::Ago(d) => time::Duration::try_from(d)
                .ok()
                .and_then(|d| now.checked_sub(d))
                .unwrap_or(PrimitiveDateTime::MIN.assume_utc()),
        }
    }
}

/// Parse a `--since`/`--until` value (clap value parser).
pub fn parse(s: &str) -> Result<When, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(When::At(t));
    }
    humantime::parse_duration(s).map(When::Ago).map_err(|e| {
        format!("{s:?} is neither a duration before now (30s, 15m, 1h, 2d) nor an RFC 3339 time (2025-01-31T12:00:00Z): {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations_count_back_from_now() {
        let now = datetime!(2025-01-31 12:00:00 UTC);
        assert_eq!(parse("1h").map(|w| w.resolve(now)), Ok(datetime!(2025-01-31 11:00:00 UTC)));
        assert_eq!(parse("90s").map(|w| w.resolve(now)), Ok(datetime!(2025-01-31 11:58:30 UTC)));
        assert_eq!(parse("1h30m").map(|w| w.resolve(now)), Ok(datetime!(2025-01-31 10:30:00 UTC)));
        assert_eq!(parse("2d").map(|w| w.resolve(now)), Ok(datetime!(2025-01-29 12:00:00 UTC)));
        assert_eq!(parse("0s").map(|w| w.resolve(now)), Ok(now));
    }

    #[test]
    fn rfc3339_times_are_taken_as_given() {
        let now = datetime!(2025-01-31 12:00:00 UTC);
        assert_eq!(parse("2024-12-24T18:30:00Z").map(|w| w.resolve(now)), Ok(datetime!(2024-12-24 18:30:00 UTC)));
        assert_eq!(
            parse("2024-12-24T18:30:00.250+01:00").map(|w| w.resolve(now)),
            Ok(datetime!(2024-12-24 17:30:00.25 UTC))
        );
    }

    #[test]
    fn a_duration_past_the_earliest_time_is_the_earliest_time() {
        let now = datetime!(2025-01-31 12:00:00 UTC);
        let w = When::Ago(Duration::from_secs(u64::MAX));
        assert_eq!(w.resolve(now), PrimitiveDateTime::MIN.assume_utc());
        let w = parse("20000years").expect("a long duration");
        assert_eq!(w.resolve(now), PrimitiveDateTime::MIN.assume_utc());
    }

    #[test]
    fn anything_else_is_an_error_saying_what_is_accepted() {
        for bad in ["", "yesterday", "1x", "1700000000000", "2025-01-31", "2025-01-31 12:00:00"] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains("RFC 3339") && e.contains("1h"), "{bad}: {e}");
        }
    }
}
