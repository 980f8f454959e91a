//! Key timing for rollovers, as BIND keeps it (`dnssec-keygen -P/-A/-I/-D`,
//! `dnssec-settime`): when a key enters the DNSKEY RRset, starts signing,
//! stops signing and leaves. A ZSK pre-publish rollover (RFC 6781 4.1.1.1)
//! and a CSK double-signature-free switch are both sequences of these
//! instants on two keys; steerd only evaluates them at `now`.
//!
//! Invariant: the state is a function of the timing and `now` alone; the
//! publisher re-evaluates it every second and recompiles on a change.

/// A key's timing metadata (Unix seconds); `None` is "not set".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyTiming {
    pub(crate) created: Option<i64>,
    pub(crate) publish: Option<i64>,
    pub(crate) activate: Option<i64>,
    pub(crate) inactive: Option<i64>,
    pub(crate) delete: Option<i64>,
}

pub(crate) use steer_types::DnssecKeyState as KeyState;

impl KeyTiming {
    /// Created, published and active from `now` (what a key steerd makes
    /// gets, as `dnssec-keygen` does by default).
    pub(crate) fn from_now(now: i64) -> Self {
        Self {
            created: Some(now),
            publish: Some(now),
            activate: Some(now),
            inactive: None,
            delete: None,
        }
    }

    /// The state at `now`. A key with no Publish and no Activate (an old
    /// BIND key, or one written by hand) is published and active; one
    /// with Activate but no Publish is published when it activates.
    pub(crate) fn state_at(&self, now: i64) -> KeyState {
        let reached = |t: Option<i64>| t.is_some_and(|t| t <= now);
        if reached(self.delete) {
            return KeyState::Removed;
        }
        if reached(self.inactive) {
            return KeyState::Retired;
        }
        let (publish, activate) = match (self.publish, self.activate) {
            (None, None) => return KeyState::Active,
            (p, a) => (p.or(a), a),
        };
        if reached(activate) {
            KeyState::Active
        } else if reached(publish) {
            KeyState::Published
        } else {
            KeyState::Generated
        }
    }

    /// Reads BIND's timing lines: `Publish: 20260101000000` in a
    /// `.private` file, `; Publish: 20260101000000 (...)` in a `.key`
    /// file. Lines it does not know are skipped; a known field with a
    /// malformed time is an error naming it.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut t = Self::default();
        for line in text.lines() {
            let line = line.trim_start_matches(';').trim();
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            let slot = match field.trim() {
                "Created" => &mut t.created,
                "Publish" => &mut t.publish,
                "Activate" => &mut t.activate,
                "Inactive" => &mut t.inactive,
                "Delete" => &mut t.delete,
                _ => continue,
            };
            let stamp = value.split_whitespace().next().unwrap_or_default();
            *slot = Some(parse_time(stamp).ok_or_else(|| {
                format!("{}: {stamp:?} is not a YYYYMMDDHHMMSS time", field.trim())
            })?);
        }
        Ok(t)
    }

    /// The `.private` lines for this timing (BIND's v1.3 format).
    pub(crate) fn private_lines(&self) -> String {
        self.fields()
            .map(|(f, t)| format!("{f}: {}\n", format_time(t)))
            .collect()
    }

    /// The `.key` comment lines for this timing.
    pub(crate) fn key_comments(&self) -> String {
        self.fields()
            .map(|(f, t)| format!("; {f}: {}\n", format_time(t)))
            .collect()
    }

    fn fields(&self) -> impl Iterator<Item = (&'static str, i64)> {
        [
            ("Created", self.created),
            ("Publish", self.publish),
            ("Activate", self.activate),
            ("Inactive", self.inactive),
            ("Delete", self.delete),
        ]
        .into_iter()
        .filter_map(|(f, t)| Some((f, t?)))
    }
}

/// `YYYYMMDDHHMMSS` (UTC) as Unix seconds.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (h, mi, se) = (n(8..10)?, n(10..12)?, n(12..14)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Unix seconds as `YYYYMMDDHHMMSS` (UTC).
pub(crate) fn format_time(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400
/// years, each 146097 days, with March as the first month so the leap day
/// ends the year).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bind_times_round_trip() {
        assert_eq!(parse_time("19700101000000"), Some(0));
        assert_eq!(parse_time("20000229123456"), Some(951_827_696));
        assert_eq!(format_time(951_827_696), "20000229123456");
        for t in [0, 86_399, 1_700_000_000, 4_102_444_800, 1_000_000_007] {
            assert_eq!(parse_time(&format_time(t)), Some(t));
        }
        for bad in ["2026010100000", "2026130100000x", "20261301000000", "abc"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_key_moves_through_its_states_at_its_times() {
        let t = KeyTiming {
            created: Some(0),
            publish: Some(100),
            activate: Some(200),
            inactive: Some(300),
            delete: Some(400),
        };
        let at = |now| t.state_at(now);
        assert_eq!(at(99), KeyState::Generated);
        assert_eq!(at(100), KeyState::Published);
        assert_eq!(at(200), KeyState::Active);
        assert_eq!(at(300), KeyState::Retired);
        assert_eq!(at(400), KeyState::Removed);
        assert_eq!(KeyTiming::default().state_at(0), KeyState::Active);
        let activate_only = KeyTiming {
            activate: Some(10),
            ..KeyTiming::default()
        };
        assert_eq!(activate_only.state_at(5), KeyState::Generated);
        assert_eq!(activate_only.state_at(10), KeyState::Active);
    }

    #[test]
    fn timing_is_read_from_private_and_key_files() {
        let private = "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n\
                       PrivateKey: AAAA\nCreated: 20260101000000\nPublish: 20260101000000\n\
                       Activate: 20260102000000\nInactive: 20260201000000\n";
        let t = KeyTiming::parse(private).unwrap();
        assert_eq!(t.activate, parse_time("20260102000000"));
        assert_eq!(t.delete, None);
        let key = "; This is a zone-signing key, keyid 1, for example.test.\n\
                   ; Created: 20260101000000 (Thu Jan  1 00:00:00 2026)\n\
                   ; Delete: 20260301000000 (Sun Mar  1 00:00:00 2026)\n\
                   example.test. IN DNSKEY 256 3 13 AAAA\n";
        let t = KeyTiming::parse(key).unwrap();
        assert_eq!(t.delete, parse_time("20260301000000"));
        assert_eq!(KeyTiming::parse(&t.private_lines()).unwrap(), t);
        assert_eq!(KeyTiming::parse(&t.key_comments()).unwrap(), t);
        let err = KeyTiming::parse("Activate: tomorrow\n").unwrap_err();
        assert!(err.contains("Activate"), "{err}");
    }
}
