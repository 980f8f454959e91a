//! Every change steerd knows, persisted as one document: the changes still
//! open and the most recent finished ones, bounded.

use serde::{Deserialize, Serialize};
use steer_types::status::BreakGlass;

use crate::change::Change;

/// Finished changes (rejected, aborted, rolled back, completed) kept for
/// `change list` and `change show`; older ones are in the audit log.
pub(crate) const KEEP_FINISHED: usize = 200;

/// Break-glass steps kept (newest); all of them are in the audit log too.
pub(crate) const KEEP_BREAK_GLASS: usize = 20;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeBook {
    /// The number of the next change id (`c<n>`); never reused.
    pub next: u64,
    pub changes: Vec<Change>,
    /// Emergency reloads and changes, oldest first, bounded.
    #[serde(default)]
    pub break_glass: Vec<BreakGlass>,
}

impl ChangeBook {
    /// A fresh id.
    pub fn next_id(&mut self) -> String {
        self.next += 1;
        format!("c{}", self.next)
    }

    pub fn get(&self, id: &str) -> Option<&Change> {
        self.changes.iter().find(|c| c.id == id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Change> {
        self.changes.iter_mut().find(|c| c.id == id)
    }

    /// The change being rolled out, if any (at most one at a time).
    pub fn in_flight(&self) -> Option<&Change> {
        self.changes.iter().find(|c| c.state.in_flight())
    }

    /// Changes not finished (proposed, approved, rolling, paused).
    pub fn open(&self) -> usize {
        self.changes.iter().filter(|c| c.state.is_open()).count()
    }

    /// Adds a change, then forgets the oldest finished ones past the bound
    /// and the config files no step can use any more: those of rejected,
    /// aborted and rolled-back changes, and of completed ones but the
    /// latest (the one change a rollback can still take back).
    pub fn add(&mut self, change: Change) {
        self.changes.push(change);
        self.compact();
    }

    /// See [`ChangeBook::add`]; also after a change moved.
    pub fn compact(&mut self) {
        let latest_completed = self
            .changes
            .iter()
            .rposition(|c| c.state == crate::ChangeState::Completed);
        for (i, c) in self.changes.iter_mut().enumerate() {
            let completed = c.state == crate::ChangeState::Completed;
            if c.state.is_final() || (completed && Some(i) != latest_completed) {
                c.config.clear();
                c.base_config.clear();
                c.base_topology = None;
                c.new_topology = None;
            }
        }
        let finished = |c: &Change| c.state.is_final() || c.state == crate::ChangeState::Completed;
        let mut excess = self
            .changes
            .iter()
            .filter(|c| finished(c))
            .count()
            .saturating_sub(KEEP_FINISHED);
        self.changes.retain(|c| {
            if excess > 0 && finished(c) {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }

    /// Records a break-glass step, forgetting the oldest past the bound.
    pub fn note_break_glass(&mut self, step: BreakGlass) {
        self.break_glass.push(step);
        let excess = self.break_glass.len().saturating_sub(KEEP_BREAK_GLASS);
        self.break_glass.drain(..excess);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("changes document: {e}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use steer_types::Timestamp;

    use super::*;
    use crate::ChangeState;

    fn change(book: &mut ChangeBook) -> Change {
        Change::propose(
            crate::Draft {
                id: book.next_id(),
                author: "alice".into(),
                reason: "why".into(),
                config: "cfg".into(),
                base_config: "old".into(),
                required_approvals: 1,
                ..crate::Draft::default()
            },
            Timestamp(1),
        )
    }

    #[test]
    fn ids_are_never_reused_and_finished_changes_are_bounded() {
        let mut book = ChangeBook::default();
        for _ in 0..KEEP_FINISHED + 10 {
            let mut c = change(&mut book);
            c.reject("bob", "no", Timestamp(2)).unwrap();
            book.add(c);
        }
        let open = change(&mut book);
        let open_id = open.id.clone();
        book.add(open);
        assert_eq!(book.changes.len(), KEEP_FINISHED + 1);
        assert!(book.get("c1").is_none(), "the oldest finished ones go");
        assert_eq!(book.get(&open_id).unwrap().state, ChangeState::Proposed);
        assert_eq!(open_id, format!("c{}", KEEP_FINISHED + 11));
        let back = ChangeBook::from_bytes(&book.to_bytes()).unwrap();
        assert_eq!(back, book);
        assert!(ChangeBook::from_bytes(b"{").is_err());
        // Finished changes keep their story, not their config files.
        let rejected = &book.changes[0];
        assert!(rejected.config.is_empty() && rejected.base_config.is_empty());
        assert_eq!(book.get(&open_id).unwrap().config, "cfg");
        assert_eq!(book.open(), 1);
    }

    #[test]
    fn break_glass_steps_are_bounded_newest_kept() {
        let mut book = ChangeBook::default();
        for i in 0..KEEP_BREAK_GLASS + 5 {
            book.note_break_glass(BreakGlass {
                at: Timestamp(i as i64),
                principal: "root".into(),
                reason: "fire".into(),
                what: "reload".into(),
            });
        }
        assert_eq!(book.break_glass.len(), KEEP_BREAK_GLASS);
        assert_eq!(book.break_glass[0].at, Timestamp(5));
        // A book saved before break-glass steps were kept still loads.
        let old = br#"{"next":3,"changes":[]}"#;
        assert!(ChangeBook::from_bytes(old).unwrap().break_glass.is_empty());
    }
}
