//! Embedded store: a state directory with `state.json` (replaced by
//! write-fsync-rename) and `audit.jsonl` (appended and fsynced).

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use crate::{AuditEntry, PersistedState, StateStore, StoreError};

pub struct FileStore {
    dir: PathBuf,
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::Io { op, path, source }
}

impl FileStore {
    /// Opens (creating if needed) the state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io("create state directory", &dir))?;
        Ok(Self { dir })
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }
}

impl StateStore for FileStore {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        let path = self.state_path();
        let tmp = self.dir.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        {
            let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
            f.write_all(&bytes).map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("fsync", &tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        // Make the rename itself durable.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", &self.dir))?;
        Ok(())
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let path = self.audit_path();
        let mut line = serde_json::to_vec(entry).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("open", &path))?;
        f.write_all(&line).map_err(io("append", &path))?;
        f.sync_data().map_err(io("fsync", &path))
    }

    fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let path = self.audit_path();
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("open", &path)(e)),
        };
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
            let line = line.map_err(io("read", &path))?;
            // A torn last line after a crash is skipped, not fatal.
            if let Ok(entry) = serde_json::from_str::<AuditEntry>(&line) {
                out.push(entry);
            }
        }
        let skip = out.len().saturating_sub(limit);
        Ok(out.split_off(skip))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use steer_types::{Drain, DrainMode, DrainScope, PopId, Timestamp};

    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("steer-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn save_load_roundtrip_and_audit() {
        let dir = tempdir("roundtrip");
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(store.load().unwrap(), None);
        let mut state = PersistedState::default();
        state.intents.drains.push(Drain {
            id: "drain-1".into(),
            scope: DrainScope::Pop {
                pop: PopId::new("fra1"),
            },
            mode: DrainMode::Soft,
            ramp: std::time::Duration::from_secs(150),
            reason: "maintenance".into(),
            principal: "alice".into(),
            created: Timestamp(5),
            expires: Some(Timestamp(99)),
            forced: true,
        });
        state.plan_version = 7;
        store.save(&state).unwrap();
        assert_eq!(FileStore::open(&dir).unwrap().load().unwrap(), Some(state));

        for i in 0..3 {
            store
                .append_audit(&AuditEntry {
                    at: Timestamp(i),
                    principal: "alice".into(),
                    action: "drain".into(),
                    scope: "pop fra1".into(),
                    reason: "r".into(),
                    intent_id: None,
                    plan_version: 1,
                    dry_run: false,
                    forced: false,
                    outcome: "applied".into(),
                })
                .unwrap();
        }
        // A torn write at the end is ignored.
        OpenOptions::new()
            .append(true)
            .open(dir.join("audit.jsonl"))
            .unwrap()
            .write_all(b"{\"at\":")
            .unwrap();
        let tail = store.read_audit(2).unwrap();
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[1].at, Timestamp(2));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_state_is_reported() {
        let dir = tempdir("corrupt");
        let store = FileStore::open(&dir).unwrap();
        fs::write(dir.join("state.json"), b"not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
