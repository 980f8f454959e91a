//! Change governance, pure: what a change request is and the steps it may
//! take ([`Change`]), the rules it is held to ([`ChangeSettings`]: approvals,
//! stages, release windows), and what it changes ([`diff`]).
//!
//! Nothing here reads a clock or a file: the control loop owns the changes,
//! passes the time in, and persists [`ChangeBook`] as one document.

mod book;
mod change;
mod diff;
mod intent;
mod settings;
mod stage;
mod window;

pub use book::ChangeBook;

/// FNV-1a 64 of a config file, hex: which file a change was proposed
/// against and which one is in force (identity, not security; the same
/// in every build, so it can be persisted).
pub fn config_digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
pub use change::{Approval, Change, ChangeError, ChangeEvent, ChangeState, Draft};
pub use diff::{DiffItem, DiffKind, diff_serialized, diff_topology, diff_values};
pub use intent::{IntentKind, IntentSpec};
pub use settings::{ChangeSettings, Judgement, RegionScope, StageScope, StageSpec};
pub use stage::{Events, Evidence, Verdict, judge, merge_stage, split_events};
pub use window::{Window, WindowKind, WindowTime, WindowVerdict, minute_of_week, parse_weekly};
