//! Durable control-plane state.
//!
//! [`StateStore`] is the seam between the control loop and storage: the
//! embedded [`FileStore`] is the default, and a clustered backend (etcd) can
//! implement the same trait. Stores are synchronous; callers run them off
//! the async executor's hot paths.

#[cfg(feature = "etcd")]
pub mod etcd;

/// Whether `name` may name a document: a short ASCII word (it becomes a
/// file name or a key).
pub fn valid_document_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
mod file;
mod identity;

use serde::{Deserialize, Serialize};
use steer_types::Intents;
pub use steer_types::audit::AuditEntry;

pub use file::FileStore;
pub use identity::{Claim, ClaimError, StateIdentity, claim};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}; move it aside to start from empty state")]
    Corrupt { path: String, reason: String },
    /// The clustered store cannot be reached (etcd lost its quorum, or no
    /// member answers); nothing was written.
    #[error("state store unavailable: {reason}")]
    Unavailable { reason: String },
    /// This controller may not write (it is not, or no longer, the leader);
    /// nothing was written.
    #[error("not the leader: {reason}")]
    Fenced { reason: String },
}

/// What must survive a restart (including `kill -9`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    pub intents: Intents,
    /// Last published plan version, so versions keep increasing across restarts.
    pub plan_version: u64,
    /// Audit entries of changes this state already holds that may not be in
    /// the audit log yet. They are saved atomically with the change, then
    /// appended to the log; whatever a crash or a full disk kept out of the
    /// log is appended on the next write or start, so no change goes
    /// unaudited and no entry claims a change the state does not hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_audit: Vec<AuditEntry>,
    /// The deployment this state belongs to (see [`claim`]); `None` in
    /// state written before identities were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<StateIdentity>,
}

pub trait StateStore: Send + Sync {
    /// The last saved state, or `None` on first start.
    fn load(&self) -> Result<Option<PersistedState>, StoreError>;
    /// Replaces the saved state atomically: after a crash either the old or
    /// the new state is read back, never a mix.
    fn save(&self, state: &PersistedState) -> Result<(), StoreError>;
    /// Appends to the audit log durably.
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Appends an entry recording an attempt that changed no shared state
    /// (a refusal, a dry run). A clustered store lets any controller write
    /// these; entries of changes go through [`append_audit`](Self::append_audit).
    fn append_attempt_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.append_audit(entry)
    }
    /// The most recent `limit` audit entries, oldest first.
    fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Saves a named document (e.g. `slo`: the SLO histories) atomically,
    /// beside the state. Names are short ASCII words. Stores that keep no
    /// documents accept and drop them.
    fn save_document(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let _ = (name, bytes);
        Ok(())
    }
    /// The named document last saved, if any.
    fn load_document(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = name;
        Ok(None)
    }
    /// The most recent `limit` entries for which `keep` holds, oldest first.
    /// Backends that can read from the end override this so a request for
    /// the last few entries does not read the whole log.
    fn read_audit_matching(
        &self,
        limit: usize,
        keep: &dyn Fn(&AuditEntry) -> bool,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut hits: Vec<AuditEntry> = self
            .read_audit(usize::MAX)?
            .into_iter()
            .filter(|e| keep(e))
            .collect();
        let skip = hits.len().saturating_sub(limit);
        Ok(hits.split_off(skip))
    }
}
