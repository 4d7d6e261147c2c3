//! Millisecond timestamps. The domain never reads the clock; `Timestamp::now` exists only for the
//! edges (handlers, sweeper) that hand the time to the domain.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, UTC. Stored as an integer in both databases so ordering and
/// arithmetic are identical on SQLite and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The wall clock. Only the edges of the system call this.
    #[must_use]
    pub fn now() -> Self {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self(i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX))
    }

    #[must_use]
    pub fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    #[must_use]
    pub fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (for signature timestamps).
    #[must_use]
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `self + seconds`, saturating instead of overflowing on absurd inputs.
    #[must_use]
    pub fn plus_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds.saturating_mul(1000)))
    }

    /// Parses RFC 3339 (`Z`, `+00:00`) and, as CrewAI emits naive local times, a timestamp without
    /// an offset, which is read as UTC.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let dt = OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .or_else(|| OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339).ok())?;
        i64::try_from(dt.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Self)
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-12-03T16:32:03.123Z`.
    #[must_use]
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(dt) => {
                let (y, mo, d) = (dt.year(), u8::from(dt.month()), dt.day());
                let (h, mi, s, ms) = (dt.hour(), dt.minute(), dt.second(), dt.millisecond());
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
            }
            Err(_) => self.0.to_string(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 timestamp: {text}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_offsets_crewai_sends() {
        let z = Timestamp::parse_rfc3339("2025-02-16T10:58:44.965Z");
        let plus = Timestamp::parse_rfc3339("2025-02-16T10:58:44.965+00:00");
        let naive = Timestamp::parse_rfc3339("2025-02-16T10:58:44.965");
        assert_eq!(z, Some(Timestamp(1_739_703_524_965)));
        assert_eq!(z, plus);
        assert_eq!(z, naive);
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn formats_round_trip() {
        let t = Timestamp(1_739_703_524_965);
        assert_eq!(t.to_rfc3339(), "2025-02-16T10:58:44.965Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
    }
}
