//! Embedded store: a state directory with `state.json` (replaced by
//! write-fsync-rename) and `audit.jsonl` (appended and fsynced).

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use crate::{AuditEntry, PersistedState, StateStore, StoreError};

#[derive(Clone)]
pub struct FileStore {
    dir: PathBuf,
}

/// How much of the log a backward read takes at a time.
const CHUNK: u64 = 64 * 1024;

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::Io { op, path, source }
}

impl FileStore {
    /// Opens (creating if needed) the state directory, and repairs a torn
    /// last audit line (a crash mid-append) so later entries are not glued
    /// to it.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io("create state directory", &dir))?;
        let store = Self { dir };
        store.repair_audit_tail()?;
        Ok(store)
    }

    /// Bytes cut from a torn last audit line by the last [`open`](Self::open)
    /// (0 when the log ended cleanly).
    fn repair_audit_tail(&self) -> Result<u64, StoreError> {
        let path = self.audit_path();
        let mut f = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io("open", &path)(e)),
        };
        let len = f.metadata().map_err(io("stat", &path))?.len();
        if len == 0 {
            return Ok(0);
        }
        let keep = last_newline_end(&mut f, len).map_err(io("read", &path))?;
        if keep == len {
            return Ok(0);
        }
        // Truncating needs no free space, so this works on a full disk.
        f.set_len(keep).map_err(io("truncate", &path))?;
        f.sync_all().map_err(io("fsync", &path))?;
        Ok(len - keep)
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    fn document_path(&self, name: &str) -> Result<PathBuf, StoreError> {
        if !crate::valid_document_name(name) {
            return Err(StoreError::Corrupt {
                path: name.to_owned(),
                reason: "not a document name".into(),
            });
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Writes `bytes` to `path` so that a crash leaves the old or the new
    /// content, never a mix: temp file, fsync, rename, fsync the directory.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        {
            let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
            f.write_all(bytes).map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("fsync", &tmp))?;
        }
        fs::rename(&tmp, path).map_err(io("rename", path))?;
        // Make the rename itself durable.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", &self.dir))?;
        Ok(())
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
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.write_atomic(&path, &bytes)
    }

    fn save_document(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.document_path(name)?;
        self.write_atomic(&path, bytes)
    }

    fn load_document(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.document_path(name)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let path = self.audit_path();
        let mut line = serde_json::to_vec(entry).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        let created = !path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("open", &path))?;
        // One write per entry: concurrent appenders (the control loop and
        // the denied-attempt writer) never interleave inside a line.
        if let Err(e) = f.write_all(&line) {
            // Leave no partial line behind for the next entry to glue onto.
            drop(f);
            let _ = self.repair_audit_tail();
            return Err(io("append", &path)(e));
        }
        f.sync_data().map_err(io("fsync", &path))?;
        if created {
            // Make the new file's directory entry durable too.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync", &self.dir))?;
        }
        Ok(())
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

    /// Reads the log backwards a chunk at a time and stops once `limit`
    /// entries matched: the cost follows what was asked, not the log size.
    fn read_audit_matching(
        &self,
        limit: usize,
        keep: &dyn Fn(&AuditEntry) -> bool,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let path = self.audit_path();
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("open", &path)(e)),
        };
        let mut end = f.metadata().map_err(io("stat", &path))?.len();
        let mut out = Vec::new();
        // Bytes of a line that started before the chunk read so far.
        let mut carry: Vec<u8> = Vec::new();
        while end > 0 && out.len() < limit {
            let start = end.saturating_sub(CHUNK);
            let mut buf = vec![0u8; (end - start) as usize];
            f.seek(SeekFrom::Start(start)).map_err(io("seek", &path))?;
            f.read_exact(&mut buf).map_err(io("read", &path))?;
            buf.extend_from_slice(&carry);
            let mut lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
            // The first piece may continue in the previous chunk.
            carry = if start > 0 {
                lines.remove(0).to_vec()
            } else {
                Vec::new()
            };
            for line in lines.into_iter().rev() {
                if out.len() >= limit {
                    break;
                }
                // A torn line is skipped, not fatal.
                if let Ok(entry) = serde_json::from_slice::<AuditEntry>(line)
                    && keep(&entry)
                {
                    out.push(entry);
                }
            }
            end = start;
        }
        out.reverse();
        Ok(out)
    }
}

/// Length of `f` up to and including its last newline (0 if none).
fn last_newline_end(f: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf)?;
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
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
                    detail: String::new(),
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

    fn entry(i: i64, reason: &str) -> AuditEntry {
        AuditEntry {
            at: Timestamp(i),
            principal: "alice".into(),
            action: "drain".into(),
            scope: "pop fra1".into(),
            reason: reason.into(),
            intent_id: Some(format!("drain-{i}")),
            plan_version: 1,
            dry_run: false,
            forced: false,
            detail: String::new(),
            outcome: "applied".into(),
        }
    }

    #[test]
    fn a_torn_last_line_is_repaired_on_open_and_no_later_entry_is_lost() {
        let dir = tempdir("torn");
        let store = FileStore::open(&dir).unwrap();
        store.append_audit(&entry(1, "first")).unwrap();
        // A crash mid-append leaves half a line without its newline.
        OpenOptions::new()
            .append(true)
            .open(dir.join("audit.jsonl"))
            .unwrap()
            .write_all(b"{\"at\":2,\"principal\":\"al")
            .unwrap();
        let store = FileStore::open(&dir).unwrap();
        store.append_audit(&entry(3, "after the crash")).unwrap();
        let all = store.read_audit(usize::MAX).unwrap();
        assert_eq!(all, vec![entry(1, "first"), entry(3, "after the crash")]);
        let text = fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_reads_cross_chunks_and_match_a_full_read() {
        let dir = tempdir("tail");
        let store = FileStore::open(&dir).unwrap();
        // ~300 bytes a line: several 64 KiB chunks.
        let pad = "x".repeat(200);
        for i in 0..1000 {
            store.append_audit(&entry(i, &pad)).unwrap();
        }
        let even = |e: &AuditEntry| e.at.0 % 2 == 0;
        let all: Vec<AuditEntry> = store
            .read_audit(usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|e| even(e))
            .collect();
        for limit in [1, 7, 300, 499, 500, 10_000] {
            let tail = store.read_audit_matching(limit, &even).unwrap();
            let skip = all.len().saturating_sub(limit);
            assert_eq!(tail, all[skip..].to_vec(), "limit {limit}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn documents_are_saved_atomically_and_names_checked() {
        let dir = tempdir("documents");
        let store = FileStore::open(&dir).unwrap();
        assert_eq!(store.load_document("slo").unwrap(), None);
        store.save_document("slo", b"one").unwrap();
        store.save_document("slo", b"two").unwrap();
        assert_eq!(
            store.load_document("slo").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert!(!dir.join("slo.json.tmp").exists());
        for bad in ["", "../state", "a/b", "state.json"] {
            assert!(store.save_document(bad, b"x").is_err(), "{bad:?}");
        }
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
