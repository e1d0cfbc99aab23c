//! Five-field cron expressions (`minute hour day-of-month month day-of-week`, as crontab(5)):
//! `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`; day-of-week 0–7 with 0 and
//! 7 both Sunday; when both day fields are restricted, either may match (as Vixie cron).
//! Occurrences are found in a time zone with jiff (already in the tree for Kubernetes' times): a
//! start time that does not exist that day (clocks spring forward) is skipped, one that exists
//! twice (clocks fall back) happens once, at the first.
//!
//! Hand-written because the maintained cron crates work on chrono, and jiff's time zones are
//! what the rest of infergate uses.

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// One field: the set of values (bit i = value i) and whether it was `*`.
fn field(text: &str, min: u32, max: u32, name: &str) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: bad step {s:?}"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a, min, max, name)?, num(b, min, max, name)?)
        } else {
            let v = num(range, min, max, name)?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo > hi {
            return Err(format!("{name}: range {lo}-{hi} runs backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, text == "*"))
}

fn num(text: &str, min: u32, max: u32, name: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| format!("{name}: {text:?} is not a number {min}–{max}"))
}

impl std::str::FromStr for Cron {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields.as_slice() else {
            return Err(format!(
                "needs 5 fields (minute hour day-of-month month day-of-week), got {}",
                fields.len()
            ));
        };
        let (minutes, _) = field(m, 0, 59, "minute")?;
        let (hours, _) = field(h, 0, 23, "hour")?;
        let (days, any_day) = field(dom, 1, 31, "day of month")?;
        let (months, _) = field(mon, 1, 12, "month")?;
        let (mut weekdays, any_weekday) = field(dow, 0, 7, "day of week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            days_restricted: !any_day,
            weekdays_restricted: !any_weekday,
        })
    }
}

impl Cron {
    fn date_matches(&self, d: Date) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let day = self.days & (1 << d.day()) != 0;
        let weekday = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        }
    }

    /// The first occurrence at or after `after` in `tz`, within about a year and a day.
    pub fn next_at_or_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after);
        let mut date = start.date();
        for _ in 0..=367 {
            if self.date_matches(date) {
                for hour in 0..24i8 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in 0..60i8 {
                        if self.minutes & (1 << minute) == 0 {
                            continue;
                        }
                        let civil =
                            DateTime::from_parts(date, jiff::civil::time(hour, minute, 0, 0));
                        let ambiguous = tz.to_ambiguous_timestamp(civil);
                        let at = match ambiguous.offset() {
                            AmbiguousOffset::Gap { .. } => continue, // skipped by the clocks
                            _ => match ambiguous.earlier() {
                                Ok(t) => t,
                                Err(_) => continue,
                            },
                        };
                        if at >= after {
                            return Some(at);
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// A time zone by IANA name (`Europe/Berlin`, `UTC`), from the system's tz database.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|e| format!("unknown time zone {name:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_crontab_forms_and_names_what_is_wrong() {
        for good in [
            "0 9 * * 1-5",
            "*/15 8-18 * * *",
            "30 7 1,15 * *",
            "0 0 * * 7",
            "5 4 * 1-12/2 0",
        ] {
            assert!(good.parse::<Cron>().is_ok(), "{good}");
        }
        assert_eq!(
            "0 9 * *".parse::<Cron>().unwrap_err(),
            "needs 5 fields (minute hour day-of-month month day-of-week), got 4"
        );
        assert_eq!(
            "61 9 * * *".parse::<Cron>().unwrap_err(),
            "minute: \"61\" is not a number 0–59"
        );
        assert_eq!(
            "0 9 * * 5-1".parse::<Cron>().unwrap_err(),
            "day of week: range 5-1 runs backwards"
        );
        assert!("0 9 * * */0".parse::<Cron>().is_err());
    }

    #[test]
    fn weekday_mornings_in_berlin_skip_the_weekend() {
        let cron: Cron = "0 9 * * 1-5".parse().unwrap();
        let berlin = time_zone("Europe/Berlin").unwrap();
        // Friday 2026-11-27 10:00 UTC → Monday 2026-11-30 09:00 CET = 08:00 UTC.
        assert_eq!(
            cron.next_at_or_after(at("2026-11-27T10:00:00Z"), &berlin),
            Some(at("2026-11-30T08:00:00Z"))
        );
    }

    #[test]
    fn across_dst_the_local_time_holds_a_missing_start_is_skipped_and_a_doubled_one_happens_once() {
        let ny = time_zone("America/New_York").unwrap();
        let nine: Cron = "0 9 * * *".parse().unwrap();
        // 9:00 EDT (13:00 UTC) on Saturday 2026-10-31, 9:00 EST (14:00 UTC) on Monday 2026-11-02.
        assert_eq!(
            nine.next_at_or_after(at("2026-10-31T12:00:00Z"), &ny),
            Some(at("2026-10-31T13:00:00Z"))
        );
        assert_eq!(
            nine.next_at_or_after(at("2026-11-02T00:00:00Z"), &ny),
            Some(at("2026-11-02T14:00:00Z"))
        );
        // 02:30 does not exist on 2026-03-08 (spring forward): the next is on the 9th.
        let half_two: Cron = "30 2 * * *".parse().unwrap();
        assert_eq!(
            half_two.next_at_or_after(at("2026-03-08T05:00:00Z"), &ny),
            Some(at("2026-03-09T06:30:00Z"))
        );
        // 01:30 happens twice on 2026-11-01 (fall back): once, at the first (EDT, 05:30 UTC).
        let half_one: Cron = "30 1 * * *".parse().unwrap();
        let first = half_one
            .next_at_or_after(at("2026-11-01T04:00:00Z"), &ny)
            .unwrap();
        assert_eq!(first, at("2026-11-01T05:30:00Z"));
        let next = half_one.next_at_or_after(first + jiff::SignedDuration::from_secs(60), &ny);
        assert_eq!(next, Some(at("2026-11-02T06:30:00Z")));
    }
}
