//! Audit of refused callers and dry runs, off the control loop.
//!
//! Anyone who can reach the port can be refused, as often as they like, so
//! refusals are counted in metrics always, and audited one by one only up
//! to a rate (a token bucket); the rest are summed into one entry when the
//! bucket refills. Entries are size-capped before they are queued, the
//! queue is bounded, and one writer thread appends them: a flood of denied
//! calls can neither fill the disk nor delay a real drain behind it.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{SyncSender, TrySendError, sync_channel},
    },
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use steer_types::{Timestamp, audit::AuditEntry};
use tracing::{error, warn};

/// Appends one entry to the audit log durably (the store's `append_audit`).
pub type AuditSink = Arc<dyn Fn(&AuditEntry) -> Result<(), String> + Send + Sync>;

/// Reads the most recent `limit` entries that match, oldest first (the
/// store's `read_audit_matching`), for `GetAudit` off the control loop.
pub type AuditReader = Arc<
    dyn Fn(usize, &(dyn Fn(&AuditEntry) -> bool + Sync)) -> Result<Vec<AuditEntry>, String>
        + Send
        + Sync,
>;

/// Denied attempts audited one by one per second, sustained.
const RATE_PER_S: f64 = 5.0;
/// And in a burst.
const BURST: f64 = 20.0;
/// Entries waiting for the writer; more are counted, not queued.
const QUEUE: usize = 64;

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct DeniedAudit {
    tx: SyncSender<AuditEntry>,
    /// For entries written on the caller's (blocking) thread.
    sink: AuditSink,
    bucket: Mutex<Bucket>,
    /// Refusals not audited one by one since the last summary.
    unaudited: AtomicU64,
}

fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp::from_unix_ms(ms)
}

impl DeniedAudit {
    /// Starts the writer thread; it ends when the auditor is dropped.
    pub fn spawn(sink: AuditSink) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = sync_channel::<AuditEntry>(QUEUE);
        let writer = sink.clone();
        std::thread::Builder::new()
            .name("denied-audit".into())
            .spawn(move || {
                for entry in rx {
                    if let Err(e) = writer(&entry) {
                        metrics::counter!("steer_audit_write_errors_total").increment(1);
                        error!(error = %e, "could not audit a denied attempt");
                    }
                }
            })?;
        metrics::counter!("steer_audit_denied_unaudited_total").increment(0);
        Ok(Arc::new(Self {
            tx,
            sink,
            bucket: Mutex::new(Bucket {
                tokens: BURST,
                at: Instant::now(),
            }),
            unaudited: AtomicU64::new(0),
        }))
    }

    fn take_token(&self) -> bool {
        let Ok(mut b) = self.bucket.lock() else {
            return false;
        };
        let t = Instant::now();
        let refill = t.duration_since(b.at).as_secs_f64() * RATE_PER_S;
        b.tokens = (b.tokens + refill).min(BURST);
        b.at = t;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Audits a refusal if the rate allows, else counts it. Never blocks.
    pub fn record(&self, principal: &str, action: &str, scope: &str, why: &str, plan_version: u64) {
        if !self.take_token() {
            self.skip();
            return;
        }
        let at = now();
        let skipped = self.unaudited.swap(0, Ordering::Relaxed);
        if skipped > 0 {
            let summary = AuditEntry {
                at,
                principal: "steerd".into(),
                action: "denied-unaudited".into(),
                scope: String::new(),
                reason: format!(
                    "{skipped} more denied attempt(s) not audited one by one \
                     (over {RATE_PER_S}/s); steer_api_denied_total counts them all"
                ),
                intent_id: None,
                plan_version,
                dry_run: false,
                forced: false,
                detail: String::new(),
                outcome: "denied".into(),
            };
            self.enqueue(summary, skipped);
        }
        let entry = AuditEntry {
            at,
            principal: principal.to_owned(),
            action: action.to_owned(),
            scope: scope.to_owned(),
            reason: why.to_owned(),
            intent_id: None,
            plan_version,
            dry_run: false,
            forced: false,
            detail: String::new(),
            outcome: "denied".into(),
        }
        .capped();
        self.enqueue(entry, 1);
    }

    /// Audits an attempt that changed nothing (a dry run) at the same
    /// bounded rate, stamped now, on the calling thread (a blocking one):
    /// the caller answers after its entry is in the log.
    pub fn record_entry_blocking(&self, entry: AuditEntry) {
        if !self.take_token() {
            self.skip();
            return;
        }
        let entry = AuditEntry {
            at: now(),
            ..entry.capped()
        };
        if let Err(e) = (self.sink)(&entry) {
            metrics::counter!("steer_audit_write_errors_total").increment(1);
            error!(error = %e, "could not audit a dry run");
        }
    }

    fn skip(&self) {
        self.unaudited.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("steer_audit_denied_unaudited_total").increment(1);
    }

    fn enqueue(&self, entry: AuditEntry, weight: u64) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.unaudited.fetch_add(weight, Ordering::Relaxed);
                metrics::counter!("steer_audit_denied_unaudited_total").increment(weight);
            }
            Err(TrySendError::Disconnected(_)) => {
                warn!("denied-attempt audit writer is gone");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_flood_is_audited_at_the_rate_and_summed_with_capped_fields() {
        let log: Arc<Mutex<Vec<AuditEntry>>> = Arc::default();
        let sink_log = log.clone();
        let audit = DeniedAudit::spawn(Arc::new(move |e: &AuditEntry| {
            sink_log.lock().unwrap().push(e.clone());
            Ok(())
        }))
        .unwrap();
        let huge = "x".repeat(1 << 20);
        for _ in 0..10_000 {
            audit.record("anonymous@127.0.0.1", "drain", &huge, &huge, 1);
        }
        // Let the bucket refill a little, so the next one carries a summary.
        std::thread::sleep(Duration::from_millis(400));
        audit.record("anonymous@127.0.0.1", "drain", "pop fra1", "no token", 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        let entries = loop {
            let entries = log.lock().unwrap().clone();
            if entries.iter().any(|e| e.action == "denied-unaudited") || Instant::now() > deadline {
                break entries;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(entries.len() <= BURST as usize + 5, "{}", entries.len());
        let bytes: usize = entries
            .iter()
            .map(|e| e.principal.len() + e.action.len() + e.scope.len() + e.reason.len())
            .sum();
        assert!(bytes < 64 * 1024, "{bytes} bytes for a flood");
        let summary = entries
            .iter()
            .find(|e| e.action == "denied-unaudited")
            .unwrap();
        assert!(summary.reason.starts_with("99"), "{}", summary.reason);
        assert!(entries.iter().all(|e| e.outcome == "denied"));
    }
}
