//! When a window is open: one-off (`start`, `end`) or recurring (a cron pattern, or the
//! `every: "sat 02:00"` shorthand for one, read in a time zone, open for a `duration`).
//!
//! Cron patterns are [`croner`]'s (the Open Cron Pattern Specification, five fields) and time
//! zones [`jiff`]'s, for what they get right that is easy to get wrong by hand: a start in the
//! hour a spring-forward skips opens at the first minute after the gap, the same day; a start
//! in the hour a fall-back repeats opens once, at its first pass (croner's documented DST
//! rules, held by the tests below). A `duration` is elapsed time, not wall-clock time: a 2h
//! window that spans a clock change still lasts two hours.

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// Occurrences looked at when checking that a recurring window never overlaps itself (a year
/// of a daily window, a week of an hourly one).
const OVERLAP_CHECK: usize = 400;

/// Most occurrences one question walks through (`ended_between` over a long outage of a
/// frequent window): the summary task asks for a bounded lookback, this bounds the work.
const MAX_WALK: usize = 1_000;

/// A problem with a schedule, in words for the settings file or the API's 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Neither one-off nor recurring, or both.
    #[error(
        "give either start and end (one-off) or every/cron with duration and timezone (recurring)"
    )]
    Shape,
    /// A one-off time is not RFC 3339.
    #[error("{field}: {value:?} is not an RFC 3339 time (2026-12-05T02:00:00+08:00)")]
    Time {
        /// `start` or `end`.
        field: &'static str,
        /// What was given.
        value: String,
    },
    /// A one-off window that ends before it starts.
    #[error("end must be after start")]
    Order,
    /// `every:` is not `<days> HH:MM`.
    #[error(
        "every: {0:?} is not `<days> HH:MM` (days: daily, mon..sun, a range mon-fri or a list sat,sun)"
    )]
    Every(String),
    /// The cron pattern does not parse.
    #[error("cron: {pattern:?}: {message}")]
    Cron {
        /// What was given.
        pattern: String,
        /// croner's words.
        message: String,
    },
    /// The pattern never matches (`0 0 30 2 *`).
    #[error("cron: {0:?} never occurs")]
    Never(String),
    /// An unknown IANA time zone.
    #[error("timezone: {0:?} is not a known IANA time zone (Asia/Taipei, Europe/Berlin, UTC)")]
    TimeZone(String),
    /// `duration` missing, zero or unreadable.
    #[error("duration: {0}")]
    Duration(String),
    /// Two occurrences would overlap.
    #[error(
        "duration {duration} is longer than the {gap} between two occurrences: the window would overlap itself"
    )]
    Overlap {
        /// The duration given.
        duration: String,
        /// The shortest gap found.
        gap: String,
    },
}

/// `type Result<T, E = Error>` as in every module of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One time a window is open: `[start, end)` in epoch ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// Opens at (epoch ms).
    pub start: i64,
    /// Closes at (epoch ms), exclusive.
    pub end: i64,
}

/// A parsed schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Open once.
    Once(Occurrence),
    /// Open at each start of `cron` in `tz`, for `duration_ms`.
    Recurring {
        /// The cron pattern (from `every:` or `cron:`); boxed, it is ten times a one-off's size.
        cron: Box<croner::Cron>,
        /// The time zone the pattern is read in.
        tz: TimeZone,
        /// How long each occurrence lasts, elapsed milliseconds.
        duration_ms: i64,
    },
}

/// Parses an RFC 3339 time to epoch ms.
pub fn parse_time(field: &'static str, value: &str) -> Result<i64> {
    value
        .trim()
        .parse::<Timestamp>()
        .map(Timestamp::as_millisecond)
        .map_err(|_| Error::Time {
            field,
            value: value.to_string(),
        })
}

/// `every: "<days> HH:MM"` as the cron pattern it stands for (`sat 02:00` → `0 2 * * SAT`).
pub fn every_to_cron(every: &str) -> Result<String> {
    let bad = || Error::Every(every.to_string());
    let mut parts = every.split_whitespace();
    let (Some(days), Some(time), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (h, m) = time.split_once(':').ok_or_else(bad)?;
    let hour: u8 = h.parse::<u8>().ok().filter(|h| *h < 24).ok_or_else(bad)?;
    // Two digits for the minute (`2:05`, not `2:5`), as a clock shows it.
    let minute: u8 = (m.len() == 2)
        .then(|| m.parse::<u8>().ok())
        .flatten()
        .filter(|m| *m < 60)
        .ok_or_else(bad)?;
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let days = days.to_ascii_lowercase();
    let dow = if matches!(days.as_str(), "daily" | "day" | "*") {
        "*".to_string()
    } else {
        // Only day names, `-` and `,`: whatever else cron would accept here is a typo in
        // the shorthand, and `cron:` is there for the rest.
        let valid = days
            .split(',')
            .flat_map(|d| d.split('-'))
            .all(|d| DAYS.contains(&d));
        if !valid || days.split(',').any(|d| d.split('-').count() > 2) {
            return Err(bad());
        }
        days.to_ascii_uppercase()
    };
    Ok(format!("{minute} {hour} * * {dow}"))
}

impl Schedule {
    /// A one-off schedule from RFC 3339 `start` and `end`.
    pub fn once(start: &str, end: &str) -> Result<Schedule> {
        let start = parse_time("start", start)?;
        let end = parse_time("end", end)?;
        if end <= start {
            return Err(Error::Order);
        }
        Ok(Schedule::Once(Occurrence { start, end }))
    }

    /// A recurring schedule: `pattern` (five-field cron) in `timezone`, open `duration_ms`.
    pub fn recurring(pattern: &str, timezone: &str, duration_ms: i64) -> Result<Schedule> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|e| Error::Cron {
                pattern: pattern.to_string(),
                message: e.to_string(),
            })?;
        let tz = TimeZone::get(timezone.trim()).map_err(|_| Error::TimeZone(timezone.into()))?;
        if duration_ms <= 0 {
            return Err(Error::Duration("must be above 0s".into()));
        }
        let schedule = Schedule::Recurring {
            cron: Box::new(cron),
            tz,
            duration_ms,
        };
        schedule.check_no_overlap(pattern, duration_ms)?;
        Ok(schedule)
    }

    /// Refuses a duration longer than the shortest gap between the next occurrences: an alert
    /// would be held by two occurrences at once and counted in two summaries.
    fn check_no_overlap(&self, pattern: &str, duration_ms: i64) -> Result<()> {
        let starts = self.starts_after(Timestamp::now().as_millisecond(), OVERLAP_CHECK);
        if starts.is_empty() {
            return Err(Error::Never(pattern.to_string()));
        }
        let gap = starts.windows(2).map(|w| w[1] - w[0]).min();
        match gap {
            Some(gap) if gap < duration_ms => Err(Error::Overlap {
                duration: human_ms(duration_ms),
                gap: human_ms(gap),
            }),
            _ => Ok(()),
        }
    }

    /// Up to `n` occurrence starts strictly after `after` (epoch ms), in order.
    fn starts_after(&self, after: i64, n: usize) -> Vec<i64> {
        match self {
            Schedule::Once(o) => {
                if o.start > after {
                    vec![o.start]
                } else {
                    Vec::new()
                }
            }
            Schedule::Recurring { cron, tz, .. } => {
                let Some(from) = zoned(after, tz) else {
                    return Vec::new();
                };
                cron.as_ref()
                    .clone()
                    .iter_after(from)
                    .take(n)
                    .map(|z| z.timestamp().as_millisecond())
                    .collect()
            }
        }
    }

    fn duration_ms(&self) -> i64 {
        match self {
            Schedule::Once(o) => o.end - o.start,
            Schedule::Recurring { duration_ms, .. } => *duration_ms,
        }
    }

    /// The occurrence open at `now` (epoch ms), if any.
    pub fn active_at(&self, now: i64) -> Option<Occurrence> {
        match self {
            Schedule::Once(o) => (o.start <= now && now < o.end).then_some(*o),
            Schedule::Recurring { .. } => {
                // The one occurrence that can hold `now` is the first to start after
                // now - duration: [start, start + duration) contains now exactly when
                // start > now - duration and start <= now.
                let d = self.duration_ms();
                let start = *self.starts_after(now.saturating_sub(d), 1).first()?;
                (start <= now).then_some(Occurrence {
                    start,
                    end: start + d,
                })
            }
        }
    }

    /// The first occurrence that starts strictly after `after` (epoch ms).
    pub fn next_after(&self, after: i64) -> Option<Occurrence> {
        let d = self.duration_ms();
        let start = *self.starts_after(after, 1).first()?;
        Some(Occurrence {
            start,
            end: start + d,
        })
    }

    /// The occurrences whose end falls in `(from, to]`, oldest first.
    pub fn ended_between(&self, from: i64, to: i64) -> Vec<Occurrence> {
        let d = self.duration_ms();
        match self {
            Schedule::Once(o) => {
                if from < o.end && o.end <= to {
                    vec![*o]
                } else {
                    Vec::new()
                }
            }
            Schedule::Recurring { .. } => self
                .starts_after(from.saturating_sub(d), MAX_WALK)
                .into_iter()
                .take_while(|s| s + d <= to)
                .map(|start| Occurrence {
                    start,
                    end: start + d,
                })
                .collect(),
        }
    }
}

/// `ms` as a time in `tz`.
fn zoned(ms: i64, tz: &TimeZone) -> Option<Zoned> {
    Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_zoned(tz.clone()))
}

/// Milliseconds as `2h 30m`.
pub fn human_ms(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        parse_time("t", s).unwrap()
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn the_every_shorthand_is_the_cron_pattern_it_stands_for() {
        assert_eq!(every_to_cron("sat 02:00").unwrap(), "0 2 * * SAT");
        assert_eq!(every_to_cron("daily 23:45").unwrap(), "45 23 * * *");
        assert_eq!(every_to_cron("Mon-Fri 22:30").unwrap(), "30 22 * * MON-FRI");
        assert_eq!(every_to_cron("sat,sun 01:05").unwrap(), "5 1 * * SAT,SUN");
        for bad in [
            "sat",
            "sat 2",
            "sat 24:00",
            "sat 02:60",
            "sat 02:5",
            "caturday 02:00",
            "mon-tue-wed 01:00",
            "sat 02:00 extra",
            "*/2 01:00",
        ] {
            assert!(every_to_cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_weekly_window_in_taipei_is_open_from_saturday_two_to_four_taipei_time() {
        // Asia/Taipei is UTC+8 all year: Saturday 02:00 there is Friday 18:00 UTC.
        let s = Schedule::recurring("0 2 * * SAT", "Asia/Taipei", 2 * HOUR).unwrap();
        let open = s.active_at(t("2026-12-04T18:30:00Z")).unwrap();
        assert_eq!(open.start, t("2026-12-04T18:00:00Z"));
        assert_eq!(open.end, t("2026-12-04T20:00:00Z"));
        assert_eq!(s.active_at(t("2026-12-04T17:59:59Z")), None);
        assert_eq!(
            s.active_at(t("2026-12-04T20:00:00Z")),
            None,
            "the end is exclusive"
        );
        // Saturday 02:00 UTC is Saturday 10:00 in Taipei: closed.
        assert_eq!(s.active_at(t("2026-12-05T02:30:00Z")), None);
        let next = s.next_after(t("2026-12-04T20:00:00Z")).unwrap();
        assert_eq!(next.start, t("2026-12-11T18:00:00Z"));
    }

    #[test]
    fn a_start_in_the_skipped_spring_forward_hour_opens_right_after_the_gap() {
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist that day.
        let s = Schedule::recurring("30 2 * * *", "America/New_York", HOUR).unwrap();
        let open = s.active_at(t("2026-03-08T07:30:00Z")).unwrap();
        assert_eq!(open.start, t("2026-03-08T07:00:00Z"), "03:00 EDT");
        assert_eq!(open.end, t("2026-03-08T08:00:00Z"));
        assert_eq!(s.active_at(t("2026-03-08T06:59:00Z")), None);
        // The days around it are 02:30 local: EST (UTC-5) before, EDT (UTC-4) after.
        assert_eq!(
            s.active_at(t("2026-03-07T07:45:00Z")).unwrap().start,
            t("2026-03-07T07:30:00Z")
        );
        assert_eq!(
            s.active_at(t("2026-03-09T06:45:00Z")).unwrap().start,
            t("2026-03-09T06:30:00Z")
        );
    }

    #[test]
    fn a_start_in_the_repeated_fall_back_hour_opens_once_at_its_first_pass() {
        // New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let s = Schedule::recurring("30 1 * * *", "America/New_York", HOUR / 2).unwrap();
        let first = t("2026-11-01T05:30:00Z"); // 01:30 EDT
        let open = s.active_at(first + 60_000).unwrap();
        assert_eq!((open.start, open.end), (first, first + HOUR / 2));
        // 01:30 EST, an hour later in real time, is the same wall-clock time: not again.
        assert_eq!(s.active_at(t("2026-11-01T06:40:00Z")), None);
        assert_eq!(
            s.next_after(first).unwrap().start,
            t("2026-11-02T06:30:00Z"),
            "the next start is the next day's 01:30 EST"
        );
    }

    #[test]
    fn a_duration_is_elapsed_time_across_a_clock_change() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST. A 2h window from 01:00 CET
        // (00:00 UTC) closes two real hours later, at 04:00 CEST on the wall clock.
        let s = Schedule::recurring("0 1 * * SUN", "Europe/Berlin", 2 * HOUR).unwrap();
        let open = s.active_at(t("2026-03-29T01:30:00Z")).unwrap();
        assert_eq!(open.start, t("2026-03-29T00:00:00Z"));
        assert_eq!(open.end, t("2026-03-29T02:00:00Z"));
    }

    #[test]
    fn occurrences_that_ended_in_a_span_are_listed_oldest_first() {
        let s = Schedule::recurring("0 * * * *", "UTC", HOUR / 4).unwrap();
        let ended = s.ended_between(t("2026-12-01T00:10:00Z"), t("2026-12-01T02:15:00Z"));
        let starts: Vec<i64> = ended.iter().map(|o| o.start).collect();
        assert_eq!(
            starts,
            [
                t("2026-12-01T00:00:00Z"),
                t("2026-12-01T01:00:00Z"),
                t("2026-12-01T02:00:00Z")
            ],
            "00:00-00:15 ended at 00:15, inside the span; 02:00-02:15 ended exactly at its end"
        );
        let once = Schedule::once("2026-12-01T00:00:00Z", "2026-12-01T01:00:00Z").unwrap();
        assert_eq!(
            once.ended_between(t("2026-12-01T00:59:00Z"), t("2026-12-01T01:00:00Z"))
                .len(),
            1
        );
        assert!(
            once.ended_between(t("2026-12-01T01:00:00Z"), t("2026-12-01T02:00:00Z"))
                .is_empty()
        );
    }

    #[test]
    fn schedules_that_cannot_work_are_refused_with_the_reason() {
        assert_eq!(
            Schedule::once("2026-12-01T02:00:00Z", "2026-12-01T01:00:00Z").unwrap_err(),
            Error::Order
        );
        assert!(matches!(
            Schedule::once("tomorrow", "2026-12-01T01:00:00Z").unwrap_err(),
            Error::Time { field: "start", .. }
        ));
        assert_eq!(
            Schedule::recurring("0 2 * * SAT", "Asia/Taipe", HOUR).unwrap_err(),
            Error::TimeZone("Asia/Taipe".into())
        );
        assert!(matches!(
            Schedule::recurring("0 2 * *", "UTC", HOUR).unwrap_err(),
            Error::Cron { .. }
        ));
        assert!(matches!(
            Schedule::recurring("0 * * * *", "UTC", 2 * HOUR).unwrap_err(),
            Error::Overlap { .. }
        ));
        assert!(matches!(
            Schedule::recurring("0 2 * * *", "UTC", 0).unwrap_err(),
            Error::Duration(_)
        ));
        assert_eq!(
            Schedule::recurring("0 0 30 2 *", "UTC", HOUR).unwrap_err(),
            Error::Never("0 0 30 2 *".into()),
            "February 30th"
        );
    }
}
