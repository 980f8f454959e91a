//! `steerctl watch` lines: one per plan change, except that a run of ramp
//! steps (only weights moving, a few per‰ at a time, after an undrain or
//! during a soft drain) is folded into its first step and, once the run
//! ends, one line with how many steps it took and where it ended.

use std::time::Duration;

/// How long a run of ramp steps may go quiet before it counts as ended
/// and its summary is printed (steps come every control-loop tick).
pub(crate) const RAMP_QUIET: Duration = Duration::from_secs(2);

/// The open run of ramp steps.
struct Ramp {
    first_version: u64,
    last_version: u64,
    steps: u32,
    last_diff: String,
}

pub(crate) struct WatchLines {
    /// Print every step (`--verbose`).
    verbose: bool,
    open: Option<Ramp>,
}

fn line(version: u64, text: &str) -> String {
    format!("v{version:<6} {text}")
}

impl WatchLines {
    pub(crate) fn new(verbose: bool) -> Self {
        Self {
            verbose,
            open: None,
        }
    }

    /// Whether a run of ramp steps is open (the caller ends it with
    /// [`Self::flush`] after [`RAMP_QUIET`] without an event).
    pub(crate) fn ramping(&self) -> bool {
        self.open.is_some()
    }

    /// The lines to print for one plan event.
    pub(crate) fn event(&mut self, version: u64, diff: &str, ramp_step: bool) -> Vec<String> {
        if self.verbose || !ramp_step {
            let mut out = self.flush();
            out.push(line(version, diff));
            return out;
        }
        match &mut self.open {
            Some(ramp) => {
                ramp.steps += 1;
                ramp.last_version = version;
                ramp.last_diff = diff.to_owned();
                Vec::new()
            }
            None => {
                self.open = Some(Ramp {
                    first_version: version,
                    last_version: version,
                    steps: 1,
                    last_diff: diff.to_owned(),
                });
                vec![line(
                    version,
                    &format!("{diff} (ramping: further steps folded; --verbose shows each)"),
                )]
            }
        }
    }

    /// Ends the open run: one line with its progress, unless it was a
    /// single step (already printed whole).
    pub(crate) fn flush(&mut self) -> Vec<String> {
        match self.open.take() {
            Some(r) if r.steps > 1 => vec![line(
                r.last_version,
                &format!(
                    "ramp v{}..v{} done in {} steps; last step: {}",
                    r.first_version, r.last_version, r.steps, r.last_diff
                ),
            )],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: u32) -> String {
        format!("fra1 weight {}‰ -> {}‰", n * 20, (n + 1) * 20)
    }

    /// Issue 18, item 3: one undrain printed 40-60 lines of small steps.
    #[test]
    fn a_ramp_is_two_lines_and_other_changes_are_never_folded() {
        let mut w = WatchLines::new(false);
        let mut out = w.event(7, "fra1 undrained; fra1 weight 0‰ -> 20‰", false);
        for n in 1..25 {
            out.extend(w.event(7 + u64::from(n), &step(n), true));
        }
        assert!(w.ramping());
        out.extend(w.event(32, "iad1 health up -> down", false));
        assert!(!w.ramping());
        assert_eq!(out.len(), 4, "{out:#?}");
        assert!(
            out[1].starts_with("v8 ") && out[1].contains("ramping"),
            "{out:#?}"
        );
        assert!(
            out[2].contains("ramp v8..v31 done in 24 steps")
                && out[2].ends_with("fra1 weight 480‰ -> 500‰"),
            "{out:#?}"
        );
        assert!(out[3].contains("iad1 health up -> down"), "{out:#?}");
        assert!(w.flush().is_empty());
    }

    #[test]
    fn verbose_prints_every_step() {
        let mut w = WatchLines::new(true);
        let n: usize = (1..25)
            .map(|n| w.event(u64::from(n), &step(n), true).len())
            .sum();
        assert_eq!(n, 24);
        assert!(!w.ramping());
    }

    #[test]
    fn a_lone_step_is_printed_once() {
        let mut w = WatchLines::new(false);
        assert_eq!(w.event(3, &step(1), true).len(), 1);
        assert!(w.flush().is_empty());
    }
}
