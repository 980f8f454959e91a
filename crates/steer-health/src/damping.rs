//! RFC 2439-style flap damping of one PoP.
//!
//! Every flip of a PoP's settled state (a "flap") adds a fixed penalty; the
//! penalty decays exponentially with a half-life. Above the suppress limit
//! the PoP is held down (the RFC's "suppressed route") until the penalty has
//! decayed below the reuse limit. Time is an argument: decay is computed on
//! demand, so a suppressed PoP is released by the clock alone.

use steer_types::{Timestamp, health_guard::DampingSettings};

/// Figure-of-merit state of one PoP (RFC 2439 section 4.8 names in comments).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Damping {
    /// No flap on record.
    Clear,
    /// Penalty `penalty` as of `at`; the PoP is usable ("damped, not suppressed").
    Charged { penalty: f64, at: Timestamp },
    /// Penalty crossed the suppress limit ("suppressed"): the PoP is held down
    /// until the decayed penalty is below the reuse limit ("reuse").
    Suppressed { penalty: f64, at: Timestamp },
}

fn decay(penalty: f64, at: Timestamp, now: Timestamp, s: &DampingSettings) -> f64 {
    let half = s.half_life.as_secs_f64();
    if half <= 0.0 {
        return 0.0;
    }
    penalty * 0.5f64.powf(now.since(at).as_secs_f64() / half)
}

impl Damping {
    /// The decayed penalty at `now`.
    pub fn penalty(self, now: Timestamp, s: &DampingSettings) -> f64 {
        match self {
            Self::Clear => 0.0,
            Self::Charged { penalty, at } | Self::Suppressed { penalty, at } => {
                decay(penalty, at, now, s)
            }
        }
    }

    /// Whether the PoP is held down at `now`.
    pub fn suppressed(self, now: Timestamp, s: &DampingSettings) -> bool {
        s.enabled && matches!(self, Self::Suppressed { .. }) && self.penalty(now, s) >= s.reuse
    }

    /// Event: the settled state flipped ("route flap").
    #[must_use]
    pub fn flap(self, now: Timestamp, s: &DampingSettings) -> Self {
        if !s.enabled {
            return Self::Clear;
        }
        let penalty = (self.penalty(now, s) + s.penalty).min(s.max_penalty);
        if self.suppressed(now, s) || penalty > s.suppress {
            Self::Suppressed { penalty, at: now }
        } else {
            Self::Charged { penalty, at: now }
        }
    }

    /// One line for `/status`.
    pub fn describe(self, now: Timestamp, s: &DampingSettings) -> String {
        match self {
            Self::Clear => "no flaps".into(),
            _ if self.suppressed(now, s) => format!(
                "suppressed for flapping: penalty {:.0} > reuse {:.0} (half-life {}s)",
                self.penalty(now, s),
                s.reuse,
                s.half_life.as_secs()
            ),
            _ => format!("flap penalty {:.0}", self.penalty(now, s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn four_quick_flaps_suppress_two_do_not() {
        let s = DampingSettings::default();
        let mut d = Damping::Clear;
        d = d.flap(Timestamp(0), &s).flap(Timestamp(1000), &s);
        assert!(
            !d.suppressed(Timestamp(1000), &s),
            "fail + recover is not a flap storm"
        );
        d = d.flap(Timestamp(2000), &s).flap(Timestamp(3000), &s);
        assert!(d.suppressed(Timestamp(3000), &s));
        // Released by decay alone: 2 half-lives take ~3900 below 1000.
        assert!(d.suppressed(Timestamp(60_000), &s));
        assert!(!d.suppressed(Timestamp(240_000), &s));
    }

    #[test]
    fn penalty_halves_per_half_life() {
        let s = DampingSettings {
            half_life: Duration::from_secs(10),
            ..DampingSettings::default()
        };
        let d = Damping::Clear.flap(Timestamp(0), &s);
        let p = d.penalty(Timestamp(10_000), &s);
        assert!((p - 500.0).abs() < 1e-6, "{p}");
    }
}
