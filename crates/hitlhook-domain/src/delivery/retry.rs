//! When to try a failed delivery again: a base schedule, bounded jitter, a `Retry-After` that can
//! only push a retry later (and only up to a cap), and a maximum number of attempts after which
//! the delivery is a dead letter. Pure: the caller passes the random unit and the clock.

use std::time::Duration;

use crate::time::Timestamp;

/// The production schedule: the waits after attempt 1, 2, ... (the first attempt is immediate).
/// Early retries are quick because a person may be waiting on a notification; later ones spread
/// over about two days so a receiver that is down for a night still gets everything.
pub const DEFAULT_SCHEDULE: &str = "2s,10s,1m,5m,30m,2h,6h,12h,24h";
/// Attempts in total, the first included: one immediate try plus the nine waits above.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// Jitter as a fraction of the base delay, both ways (±20 %, as Svix).
pub const DEFAULT_JITTER: f64 = 0.2;
/// The longest `Retry-After` honoured; a receiver asking for more is retried after this.
pub const DEFAULT_RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// How retries are spaced and when they stop.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Wait after attempt `n` is `schedule[n - 1]`; past the end the last entry repeats.
    pub schedule: Vec<Duration>,
    /// Attempts in total, the first included. 1 means never retry.
    pub max_attempts: u32,
    /// Fraction of the base delay added or removed at random (0 disables jitter).
    pub jitter: f64,
    /// Upper bound on an honoured `Retry-After`.
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            schedule: parse_schedule(DEFAULT_SCHEDULE).unwrap_or_default(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            jitter: DEFAULT_JITTER,
            retry_after_max: DEFAULT_RETRY_AFTER_MAX,
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts_made` attempts have failed, or `None`
    /// when the delivery is exhausted (a dead letter). `unit` is a random number in `[0, 1)`;
    /// `retry_after` is what the receiver asked for (429/503), if anything.
    #[must_use]
    pub fn next_delay(
        &self,
        attempts_made: u32,
        max_attempts: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        if attempts_made >= max_attempts || self.schedule.is_empty() {
            return None;
        }
        let index = (attempts_made.max(1) as usize - 1).min(self.schedule.len() - 1);
        let base = self.schedule[index];
        let jitter = self.jitter.clamp(0.0, 1.0);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        // factor in [1 - jitter, 1 + jitter]: never negative, never more than double.
        let factor = 1.0 - jitter + 2.0 * jitter * unit;
        let jittered = duration_mul(base, factor);
        Some(match retry_after {
            // Retry-After may push the retry later, never earlier, and never past the cap.
            Some(asked) => jittered.max(asked.min(self.retry_after_max)),
            None => jittered,
        })
    }

    /// When the next attempt is due, as a timestamp.
    #[must_use]
    pub fn next_at(
        &self,
        now: Timestamp,
        attempts_made: u32,
        max_attempts: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Timestamp> {
        self.next_delay(attempts_made, max_attempts, retry_after, unit)
            .map(|d| {
                let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                Timestamp(now.millis().saturating_add(ms))
            })
    }

    /// The longest time the whole schedule can take (without jitter or Retry-After), to document.
    #[must_use]
    pub fn span(&self, max_attempts: u32) -> Duration {
        (1..max_attempts)
            .filter_map(|n| self.next_delay(n, max_attempts, None, 0.5))
            .sum()
    }
}

fn duration_mul(d: Duration, factor: f64) -> Duration {
    let ms = d.as_secs_f64() * 1000.0 * factor;
    if !ms.is_finite() || ms <= 0.0 {
        return Duration::ZERO;
    }
    // Saturate instead of panicking on absurd schedules.
    Duration::from_millis(if ms >= u64::MAX as f64 {
        u64::MAX
    } else {
        ms as u64
    })
}

/// Parses `150ms`, `2s`, `5m`, `2h` or `1d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with a unit, e.g. 30s"))?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: unit must be ms, s, m, h or d")),
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?}: too large"))
}

/// Parses a comma-separated schedule such as `2s,10s,1m`.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.iter().all(|p| p.is_empty()) {
        return Err("the schedule must list at least one delay".to_owned());
    }
    parts.into_iter().map(parse_duration).collect()
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). Dates in the
/// past mean "now"; anything unreadable is ignored.
#[must_use]
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let at_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?;
    let wait = at_ms.saturating_sub(now.millis()).max(0);
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy(schedule: &str, jitter: f64) -> RetryPolicy {
        RetryPolicy {
            schedule: parse_schedule(schedule).expect("schedule"),
            max_attempts: 5,
            jitter,
            retry_after_max: Duration::from_secs(60),
        }
    }

    #[test]
    fn schedule_table_without_jitter() {
        let p = policy("1s,10s,100s", 0.0);
        // (attempts made, max, retry-after, expected)
        let cases: Vec<(u32, u32, Option<Duration>, Option<Duration>)> = vec![
            (1, 5, None, Some(ms(1000))),
            (2, 5, None, Some(ms(10_000))),
            (3, 5, None, Some(ms(100_000))),
            (4, 5, None, Some(ms(100_000))), // past the end: the last step repeats
            (5, 5, None, None),              // exhausted: dead letter
            (9, 5, None, None),
            (1, 1, None, None),                         // max 1: never retried
            (0, 5, None, Some(ms(1000))),               // defensive: treated as the first
            (1, 5, Some(ms(30_000)), Some(ms(30_000))), // Retry-After pushes later
            (2, 5, Some(ms(1)), Some(ms(10_000))),      // ... never earlier
            (1, 5, Some(Duration::from_secs(7200)), Some(ms(60_000))), // ... and capped
            (5, 5, Some(ms(1)), None), // Retry-After does not revive an exhausted delivery
        ];
        for (made, max, ra, want) in cases {
            assert_eq!(
                p.next_delay(made, max, ra, 0.9),
                want,
                "after {made} of {max}, retry-after {ra:?}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let p = policy("10s", 0.2);
        assert_eq!(p.next_delay(1, 5, None, 0.0), Some(ms(8000)));
        assert_eq!(p.next_delay(1, 5, None, 0.5), Some(ms(10_000)));
        assert_eq!(p.next_delay(1, 5, None, 1.0), Some(ms(12_000)));
        for i in 0..=100 {
            let d = p
                .next_delay(1, 5, None, f64::from(i) / 100.0)
                .expect("delay");
            assert!(d >= ms(8000) && d <= ms(12_000), "{d:?}");
        }
        // Out-of-range randomness and absurd jitter settings are clamped, never negative.
        assert_eq!(p.next_delay(1, 5, None, 7.0), Some(ms(12_000)));
        assert_eq!(p.next_delay(1, 5, None, f64::NAN), Some(ms(10_000)));
        let wild = policy("10s", 5.0);
        assert_eq!(wild.next_delay(1, 5, None, 0.0), Some(Duration::ZERO));
        assert_eq!(wild.next_delay(1, 5, None, 1.0), Some(ms(20_000)));
    }

    #[test]
    fn huge_schedules_saturate() {
        let p = RetryPolicy {
            schedule: vec![Duration::from_secs(u64::MAX / 2)],
            ..policy("1s", 0.2)
        };
        assert!(p.next_delay(1, 5, None, 1.0).is_some());
        let at = p.next_at(Timestamp(i64::MAX - 5), 1, 5, None, 1.0);
        assert_eq!(at, Some(Timestamp(i64::MAX)));
    }

    #[test]
    fn the_production_default_is_documented() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts, 10);
        assert_eq!(p.schedule.len(), 9);
        assert_eq!(p.schedule[0], Duration::from_secs(2));
        // 2s + 10s + 1m + 5m + 30m + 2h + 6h + 12h + 24h
        assert_eq!(
            p.span(10),
            Duration::from_secs(2 + 10 + 60 + 300 + 1800 + 7200 + 21_600 + 43_200 + 86_400)
        );
    }

    #[test]
    fn durations_and_schedules_parse() {
        assert_eq!(parse_duration("150ms"), Ok(ms(150)));
        assert_eq!(parse_duration(" 2s"), Ok(ms(2000)));
        assert_eq!(parse_duration("5m"), Ok(ms(300_000)));
        assert_eq!(parse_duration("1d"), Ok(ms(86_400_000)));
        for bad in ["", "s", "10", "10x", "-1s", "1.5s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_schedule("10ms, 20ms"), Ok(vec![ms(10), ms(20)]));
        assert!(parse_schedule("").is_err());
        assert!(parse_schedule("1s,,2s").is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = Timestamp::parse_rfc3339("2015-10-21T07:28:00Z").expect("time");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        for bad in ["", "soon", "-5", "1.5", "Wed, 99 Oct 2015"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
