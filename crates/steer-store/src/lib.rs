//! Durable control-plane state.
//!
//! [`StateStore`] is the seam between the control loop and storage: the
//! embedded [`FileStore`] is the default, and a clustered backend (etcd) can
//! implement the same trait. Stores are synchronous; callers run them off
//! the async executor's hot paths.

mod file;

use serde::{Deserialize, Serialize};
use steer_types::Intents;
pub use steer_types::audit::AuditEntry;

pub use file::FileStore;

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
}

/// What must survive a restart (including `kill -9`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    pub intents: Intents,
    /// Last published plan version, so versions keep increasing across restarts.
    pub plan_version: u64,
}

pub trait StateStore: Send + Sync {
    /// The last saved state, or `None` on first start.
    fn load(&self) -> Result<Option<PersistedState>, StoreError>;
    /// Replaces the saved state atomically: after a crash either the old or
    /// the new state is read back, never a mix.
    fn save(&self, state: &PersistedState) -> Result<(), StoreError>;
    /// Appends to the audit log durably.
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The most recent `limit` audit entries, oldest first.
    fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}
