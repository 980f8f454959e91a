//! State and audit on a full disk, through the real steerd and steerctl:
//! a drain that cannot be stored is refused with a clear error and nothing
//! half-applied, steerd starts and serves DNS on the full disk, and the
//! same drain goes through once there is room again.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use common::*;

const EU: &str = "10.1.0.0/24";

/// A small tmpfs mounted on `dir`, unmounted on drop (needs root, which
/// CI has; elsewhere the test says so and passes over).
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes a filler file until the disk refuses more.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).and_then(|()| f.sync_all()).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn drained(s: &Steerd) -> bool {
    let (_, body) = http_get(s.http, "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["pops"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["pop"] == "fra1" && !p["drained_by"].is_null())
}

#[test]
fn a_full_disk_refuses_a_drain_cleanly_and_steerd_still_starts_and_serves() {
    let dir = temp_dir("durability-full-disk");
    let state = dir.join("state");
    let Some(disk) = SmallDisk::mount(&state, "512k") else {
        eprintln!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    };
    let s = Steerd::start_with(quickstart(), state.clone());
    s.wait_answers(EU, &["192.0.2.11", "192.0.2.12"], Duration::from_secs(5))
        .unwrap();
    let audit_before = std::fs::read_to_string(state.join("audit.jsonl")).unwrap_or_default();

    disk.fill();
    let out = s.steerctl(&["drain", "pop", "fra1", "--reason", "disk full test"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("nothing was changed") && err.contains("No space left"),
        "{err}"
    );
    // Nothing half-applied: not in the plan, not in DNS, not in the audit.
    assert!(!drained(&s));
    assert_eq!(
        s.answers("app.example.test", "A", EU),
        ["192.0.2.11", "192.0.2.12"]
    );
    let audit_after = std::fs::read_to_string(state.join("audit.jsonl")).unwrap_or_default();
    assert!(
        !audit_after[audit_before.len()..].contains("\"applied\""),
        "an applied entry for a refused drain:\n{audit_after}"
    );

    // kill -9 and start again on the full disk: it starts and serves.
    let s = s.restart_after_kill9();
    assert_eq!(
        s.answers("app.example.test", "A", EU),
        ["192.0.2.11", "192.0.2.12"]
    );
    assert!(
        s.proc.log_text().contains("could not save state at start"),
        "{}",
        s.proc.log_text()
    );

    // Room again: the same drain goes through, durably and audited once.
    disk.free();
    let out = s.steerctl(&["drain", "pop", "fra1", "--reason", "disk full test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.wait_answers(EU, &["192.0.2.12"], Duration::from_secs(2))
        .unwrap();
    let s = s.restart_after_kill9();
    assert!(drained(&s), "the drain did not survive a restart");
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert_eq!(
        audit
            .lines()
            .filter(|l| l.contains("disk full test") && l.contains("\"applied\""))
            .count(),
        1,
        "{audit}"
    );
    drop(s);
}
