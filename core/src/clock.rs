//! Wall-clock time as the daemon keeps it: Unix milliseconds.

/// Milliseconds since the Unix epoch of `t` (0 before 1970 or past i64).
pub fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    unix_ms(time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_of_known_instants() {
        assert_eq!(unix_ms(time::OffsetDateTime::UNIX_EPOCH), 0);
        let t = time::macros::datetime!(2026-12-02 17:00:00.123 UTC);
        assert_eq!(unix_ms(t), 1_796_230_800_123);
        assert_eq!(unix_ms(time::macros::datetime!(1969-12-31 23:59:59 UTC)), -1000);
    }
}
