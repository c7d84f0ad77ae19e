//! Maintenance windows (`spec.maintenanceWindows`, else the operator's `maintenance_windows`):
//! when a disruptive step may run now, and when the next window opens
//! (Zalando's `isInMaintenanceWindow` and `getSwitchoverScheduleAtTime`).
//!
//! Windows are `HH:MM-HH:MM` (every day) or `Ddd:HH:MM-HH:MM` (one weekday, `Mon`..`Sun`),
//! compared at minute precision with inclusive bounds. Zalando compares against the operator's
//! local clock while its docs say UTC; here it is always UTC (an operator pod's clock is UTC
//! anyway), so the check and the scheduled switchover time agree.
//!
//! What they gate here: the switchover that moves a master off a drained node (outside a window
//! it becomes a Patroni switchover scheduled for the next window start).

use chrono::{DateTime, Datelike, Duration, NaiveTime, Timelike, Utc, Weekday};

/// One window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The weekday it applies to; `None`: every day.
    pub weekday: Option<Weekday>,
    /// Its first minute (minutes after midnight, UTC).
    pub start: u32,
    /// Its last minute, inclusive.
    pub end: u32,
}

/// Why a window does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("maintenance window {window:?}: {reason}")]
pub struct Error {
    /// The window as written.
    pub window: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Whether a step gated by the windows may run now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Inside a window, or no window applies.
    Open,
    /// Outside every window; the next one opens then (UTC, whole minute).
    Closed {
        /// The start of the next window.
        next: DateTime<Utc>,
    },
}

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name {
        "Mon" => Weekday::Mon,
        "Tue" => Weekday::Tue,
        "Wed" => Weekday::Wed,
        "Thu" => Weekday::Thu,
        "Fri" => Weekday::Fri,
        "Sat" => Weekday::Sat,
        "Sun" => Weekday::Sun,
        _ => return None,
    })
}

impl Window {
    /// Parses `HH:MM-HH:MM` or `Ddd:HH:MM-HH:MM`; the end may not be before the start.
    pub fn parse(text: &str) -> Result<Window, Error> {
        let error = |reason: &str| Error {
            window: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        let (from, to) = trimmed
            .split_once('-')
            .ok_or_else(|| error("expected HH:MM-HH:MM or Ddd:HH:MM-HH:MM"))?;
        let (day, from) = match from.split(':').collect::<Vec<_>>().as_slice() {
            [d, h, m] => (
                Some(weekday(d).ok_or_else(|| error("the weekday must be one of Mon..Sun"))?),
                format!("{h}:{m}"),
            ),
            [_, _] => (None, from.to_string()),
            _ => return Err(error("expected HH:MM-HH:MM or Ddd:HH:MM-HH:MM")),
        };
        let minute = |hhmm: &str| -> Result<u32, Error> {
            let time = NaiveTime::parse_from_str(hhmm.trim(), "%H:%M")
                .map_err(|_| error("times must be HH:MM between 00:00 and 23:59"))?;
            Ok(time.hour() * 60 + time.minute())
        };
        let (start, end) = (minute(&from)?, minute(to)?);
        if end < start {
            return Err(error("it ends before it starts"));
        }
        Ok(Window {
            weekday: day,
            start,
            end,
        })
    }

    /// Whether `now` falls inside the window (minute precision, inclusive bounds).
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let minute = now.hour() * 60 + now.minute();
        self.weekday.is_none_or(|d| d == now.weekday()) && (self.start..=self.end).contains(&minute)
    }

    /// The first start of this window at or after `now` (Zalando's rule: today's start unless
    /// it has passed, else tomorrow's, or the next such weekday).
    pub fn next_start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now
            .date_naive()
            .and_hms_opt(self.start / 60, self.start % 60, 0)
            .unwrap_or_default()
            .and_utc();
        let days = match self.weekday {
            None => i64::from(now > today),
            Some(day) => {
                let ahead = (7 + i64::from(day.num_days_from_monday())
                    - i64::from(now.weekday().num_days_from_monday()))
                    % 7;
                if ahead == 0 && now > today { 7 } else { ahead }
            }
        };
        today + Duration::days(days)
    }
}

/// The windows that apply: the manifest's when it has any, else the operator's. Windows that
/// do not parse are left out and returned as errors (the webhook and the configuration checks
/// refuse them, so they only appear when those were bypassed).
pub fn effective(manifest: Option<&[String]>, operator: &[String]) -> (Vec<Window>, Vec<Error>) {
    let texts = match manifest {
        Some(windows) if !windows.is_empty() => windows,
        _ => operator,
    };
    let (mut windows, mut errors) = (Vec::new(), Vec::new());
    for text in texts {
        match Window::parse(text) {
            Ok(w) => windows.push(w),
            Err(e) => errors.push(e),
        }
    }
    (windows, errors)
}

/// Whether a gated step may run at `now`: always when `enabled` is false
/// (`enable_maintenance_windows`) or no window applies; else inside a window, or the next start.
pub fn gate(windows: &[Window], enabled: bool, now: DateTime<Utc>) -> Gate {
    if !enabled || windows.is_empty() || windows.iter().any(|w| w.contains(now)) {
        return Gate::Open;
    }
    match windows.iter().map(|w| w.next_start(now)).min() {
        Some(next) => Gate::Closed { next },
        None => Gate::Open,
    }
}

/// A time as Patroni's `scheduled_at` takes it from Zalando: `2006-01-02T15:04+00`.
pub fn patroni_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M+00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    // 2024-05-06 is a Monday.
    const MONDAY: (i32, u32, u32) = (2024, 5, 6);

    fn monday(h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        at(MONDAY.0, MONDAY.1, MONDAY.2, h, mi, s)
    }

    #[test]
    fn windows_parse_daily_and_weekly_forms() {
        assert_eq!(
            Window::parse("01:00-06:30").unwrap(),
            Window {
                weekday: None,
                start: 60,
                end: 390
            }
        );
        assert_eq!(
            Window::parse(" Sat:00:00-04:00 ").unwrap(),
            Window {
                weekday: Some(Weekday::Sat),
                start: 0,
                end: 240
            }
        );
        assert_eq!(Window::parse("1:0-2:5").unwrap().end, 125);
        for bad in ["", "01:00", "Foo:01:00-02:00", "24:00-01:00", "01:60-02:00"] {
            assert!(Window::parse(bad).is_err(), "{bad:?} parsed");
        }
        let e = Window::parse("05:00-01:00").unwrap_err();
        assert_eq!(
            e.to_string(),
            "maintenance window \"05:00-01:00\": it ends before it starts"
        );
    }

    #[test]
    fn bounds_are_inclusive_at_minute_precision() {
        let w = Window::parse("01:00-02:00").unwrap();
        assert!(w.contains(monday(1, 0, 0)));
        assert!(w.contains(monday(2, 0, 59)));
        assert!(!w.contains(monday(2, 1, 0)));
        assert!(!w.contains(monday(0, 59, 59)));
        let sat = Window::parse("Sat:01:00-02:00").unwrap();
        assert!(!sat.contains(monday(1, 30, 0)));
        assert!(sat.contains(at(2024, 5, 11, 1, 30, 0)));
    }

    #[test]
    fn no_windows_or_disabled_windows_are_always_open() {
        assert_eq!(gate(&[], true, monday(12, 0, 0)), Gate::Open);
        let w = [Window::parse("01:00-02:00").unwrap()];
        assert_eq!(gate(&w, false, monday(12, 0, 0)), Gate::Open);
        assert_eq!(gate(&w, true, monday(1, 30, 0)), Gate::Open);
    }

    #[test]
    fn outside_a_window_the_next_start_is_today_tomorrow_or_next_weekday() {
        let daily = [Window::parse("01:00-02:00").unwrap()];
        // Before today's start: today; after it: tomorrow.
        assert_eq!(
            gate(&daily, true, monday(0, 30, 0)),
            Gate::Closed {
                next: monday(1, 0, 0)
            }
        );
        assert_eq!(
            gate(&daily, true, monday(12, 0, 0)),
            Gate::Closed {
                next: at(2024, 5, 7, 1, 0, 0)
            }
        );
        // A weekly window: this week's day, or next week's once it has passed today.
        let wed = [Window::parse("Wed:03:15-04:00").unwrap()];
        assert_eq!(
            gate(&wed, true, monday(12, 0, 0)),
            Gate::Closed {
                next: at(2024, 5, 8, 3, 15, 0)
            }
        );
        let mon = [Window::parse("Mon:03:15-04:00").unwrap()];
        assert_eq!(
            gate(&mon, true, monday(12, 0, 0)),
            Gate::Closed {
                next: at(2024, 5, 13, 3, 15, 0)
            }
        );
        let sun = [Window::parse("Sun:23:00-23:59").unwrap()];
        assert_eq!(
            gate(&sun, true, monday(12, 0, 0)),
            Gate::Closed {
                next: at(2024, 5, 12, 23, 0, 0)
            }
        );
        // The earliest of several.
        let both = [wed[0], daily[0]];
        assert_eq!(
            gate(&both, true, monday(12, 0, 0)),
            Gate::Closed {
                next: at(2024, 5, 7, 1, 0, 0)
            }
        );
    }

    #[test]
    fn the_manifest_windows_replace_the_operators() {
        let op = vec!["01:00-02:00".to_string()];
        let (w, e) = effective(Some(&["Sat:00:00-01:00".to_string()]), &op);
        assert_eq!((w.len(), w[0].weekday, e.len()), (1, Some(Weekday::Sat), 0));
        let (w, _) = effective(Some(&[]), &op);
        assert_eq!(w[0].weekday, None);
        let (w, e) = effective(None, &["bad".to_string(), "03:00-04:00".to_string()]);
        assert_eq!((w.len(), e.len()), (1, 1));
    }

    #[test]
    fn patroni_gets_minute_precision_with_a_plus_00_offset() {
        assert_eq!(patroni_time(monday(1, 0, 0)), "2024-05-06T01:00+00");
    }
}
