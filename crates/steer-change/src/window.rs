//! Release windows (`[[changes.windows]]`): weekly or dated spans in UTC
//! that allow or block changes. A block window always wins; when any allow
//! window exists, changes are made only inside one.

use serde::{Deserialize, Serialize};
use steer_types::Timestamp;

const MINUTES_PER_WEEK: u32 = 7 * 24 * 60;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub name: String,
    pub kind: WindowKind,
    pub time: WindowTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WindowKind {
    Allow,
    Block,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WindowTime {
    /// Minutes since Monday 00:00 UTC; `start > end` wraps over the week's
    /// end (`Fri 16:00 - Mon 08:00`).
    Weekly { start: u32, end: u32 },
    /// From `from` until `until` (exclusive).
    Dates { from: Timestamp, until: Timestamp },
}

impl WindowTime {
    pub fn contains(&self, now: Timestamp) -> bool {
        match *self {
            Self::Weekly { start, end } => {
                let m = minute_of_week(now);
                if start <= end {
                    (start..end).contains(&m)
                } else {
                    m >= start || m < end
                }
            }
            Self::Dates { from, until } => from <= now && now < until,
        }
    }

    pub fn describe(&self) -> String {
        let at = |m: u32| {
            let day = DAYS.get((m / 1440) as usize).copied().unwrap_or("?");
            let mut d = day.to_owned();
            if let Some(first) = d.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            format!("{d} {:02}:{:02}", m % 1440 / 60, m % 60)
        };
        match *self {
            Self::Weekly { start, end } => format!("{} - {} UTC, weekly", at(start), at(end)),
            Self::Dates { from, until } => format!("{} - {}", from.rfc3339(), until.rfc3339()),
        }
    }
}

/// Minutes since Monday 00:00 UTC of the week `now` falls in.
pub fn minute_of_week(now: Timestamp) -> u32 {
    let minutes = now.unix_ms().div_euclid(60_000);
    // 1970-01-01 was a Thursday: three days after a Monday.
    (minutes + 3 * 1440).rem_euclid(i64::from(MINUTES_PER_WEEK)) as u32
}

/// `Fri 16:00 - Mon 08:00` (a hyphen or an en dash; day names in English,
/// three letters or full; 24-hour UTC times) as a weekly span.
pub fn parse_weekly(text: &str) -> Result<WindowTime, String> {
    let normalised = text.replace('\u{2013}', "-");
    let Some((a, b)) = normalised.split_once('-') else {
        return Err(format!(
            "{text:?}: expected `<day> HH:MM - <day> HH:MM`, e.g. \"Fri 16:00 - Mon 08:00\""
        ));
    };
    let point = |s: &str| -> Result<u32, String> {
        let mut parts = s.split_whitespace();
        let (Some(day), Some(time), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{s:?}: expected `<day> HH:MM`"));
        };
        let lower = day.to_ascii_lowercase();
        let d = DAYS
            .iter()
            .position(|n| lower.get(..3).is_some_and(|p| n.starts_with(p)) && day_name_ok(&lower))
            .ok_or_else(|| format!("{day:?} is not a day of the week (Mon..Sun)"))?;
        let (h, m) = time
            .split_once(':')
            .and_then(|(h, m)| Some((h.parse::<u32>().ok()?, m.parse::<u32>().ok()?)))
            .filter(|&(h, m)| h < 24 && m < 60 && time.len() == 5)
            .ok_or_else(|| format!("{time:?} is not a time HH:MM (00:00 to 23:59)"))?;
        Ok(d as u32 * 1440 + h * 60 + m)
    };
    let (start, end) = (point(a.trim())?, point(b.trim())?);
    if start == end {
        return Err(format!("{text:?} starts where it ends"));
    }
    Ok(WindowTime::Weekly { start, end })
}

fn day_name_ok(lower: &str) -> bool {
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    lower.len() == 3 || FULL.contains(&lower)
}

/// Whether a change may be made at a moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WindowVerdict {
    Open,
    Blocked { why: String },
}

impl Window {
    /// The verdict of `windows` at `now`.
    pub fn verdict(windows: &[Window], now: Timestamp) -> WindowVerdict {
        if let Some(w) = windows
            .iter()
            .find(|w| w.kind == WindowKind::Block && w.time.contains(now))
        {
            return WindowVerdict::Blocked {
                why: format!("inside block window {:?} ({})", w.name, w.time.describe()),
            };
        }
        let allows: Vec<&Window> = windows
            .iter()
            .filter(|w| w.kind == WindowKind::Allow)
            .collect();
        if !allows.is_empty() && !allows.iter().any(|w| w.time.contains(now)) {
            let names: Vec<String> = allows
                .iter()
                .map(|w| format!("{:?} ({})", w.name, w.time.describe()))
                .collect();
            return WindowVerdict::Blocked {
                why: format!("outside every allow window: {}", names.join(", ")),
            };
        }
        WindowVerdict::Open
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn window(kind: WindowKind, time: WindowTime) -> Window {
        Window {
            name: "w".into(),
            kind,
            time,
        }
    }

    #[test]
    fn minutes_count_from_monday_utc() {
        // 2026-11-30 was a Monday.
        assert_eq!(minute_of_week(at("2026-11-30T00:00:00Z")), 0);
        assert_eq!(minute_of_week(at("2026-12-04T16:00:00Z")), 4 * 1440 + 960);
        assert_eq!(minute_of_week(at("2026-12-06T23:59:00Z")), 7 * 1440 - 1);
        assert_eq!(minute_of_week(at("1969-12-29T00:00:00Z")), 0);
    }

    #[test]
    fn a_weekend_freeze_wraps_over_the_end_of_the_week() {
        let freeze = parse_weekly("Fri 16:00 \u{2013} Mon 08:00").unwrap();
        let w = [window(WindowKind::Block, freeze)];
        for blocked in [
            "2026-12-04T16:00:00Z",
            "2026-12-05T12:00:00Z",
            "2026-12-06T23:59:59Z",
            "2026-12-07T07:59:59Z",
        ] {
            assert!(
                matches!(
                    Window::verdict(&w, at(blocked)),
                    WindowVerdict::Blocked { .. }
                ),
                "{blocked}"
            );
        }
        for open in [
            "2026-12-04T15:59:59Z",
            "2026-12-07T08:00:00Z",
            "2026-12-02T12:00:00Z",
        ] {
            assert_eq!(Window::verdict(&w, at(open)), WindowVerdict::Open, "{open}");
        }
    }

    #[test]
    fn allow_windows_close_the_rest_of_the_week_and_blocks_win() {
        let office = parse_weekly("Mon 09:00 - Thu 17:00").unwrap();
        let xmas = WindowTime::Dates {
            from: at("2026-12-21T00:00:00Z"),
            until: at("2026-12-28T00:00:00Z"),
        };
        let w = [
            window(WindowKind::Allow, office),
            window(WindowKind::Block, xmas),
        ];
        assert_eq!(
            Window::verdict(&w, at("2026-12-01T10:00:00Z")),
            WindowVerdict::Open
        );
        let WindowVerdict::Blocked { why } = Window::verdict(&w, at("2026-12-04T10:00:00Z")) else {
            panic!("Friday is outside the allow window");
        };
        assert!(why.contains("outside every allow window"), "{why}");
        let WindowVerdict::Blocked { why } = Window::verdict(&w, at("2026-12-22T10:00:00Z")) else {
            panic!("the dated block wins");
        };
        assert!(why.contains("block window"), "{why}");
        assert_eq!(
            Window::verdict(&[], at("2026-12-22T10:00:00Z")),
            WindowVerdict::Open
        );
    }

    #[test]
    fn bad_weekly_spans_say_what_is_wrong() {
        for (text, says) in [
            ("Fri 16:00", "expected"),
            ("Fry 16:00 - Mon 08:00", "day of the week"),
            ("Fri 24:00 - Mon 08:00", "HH:MM"),
            ("Fri 4:00 - Mon 08:00", "HH:MM"),
            ("Fri 16:00 - Fri 16:00", "starts where it ends"),
        ] {
            let e = parse_weekly(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert_eq!(
            parse_weekly("friday 16:00 - monday 08:00").unwrap(),
            parse_weekly("Fri 16:00 - Mon 08:00").unwrap()
        );
    }
}
