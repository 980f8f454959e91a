//! Record and replay.
//!
//! With a recorder attached, the control loop writes every input that can
//! change a plan — report batches, intent changes, topology swaps, ticks
//! that published — as JSON lines, plus a digest of every plan it
//! publishes. [`replay`] feeds those inputs through a fresh control loop on
//! a replayed clock and checks that it publishes the same versions with
//! byte-identical bodies: the basis for simlab and for postmortems.

use std::{
    io::{BufRead, Write},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

use serde::{Deserialize, Serialize};
use steer_health::ObservedReport;
use steer_store::{PersistedState, StateStore, StoreError};
use steer_types::{Intents, Plan, Timestamp, Topology, answers::AnswerTotals, audit::AuditEntry};

use crate::{Clock, ControlLoop};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Recorded {
    /// The state the loop started from.
    Start {
        at: Timestamp,
        topology: Topology,
        intents: Intents,
        /// The plan in force when recording began.
        plan: Plan,
    },
    /// Reports observed together at one instant.
    Reports {
        at: Timestamp,
        reports: Vec<ObservedReport>,
    },
    /// A tick that moved health state or led to a publication (staleness,
    /// damping, ramps, expiry).
    Tick { at: Timestamp },
    /// An operator confirmed a correlated failure (unfreezes health).
    ConfirmFailure { at: Timestamp },
    /// The intents after an accepted change.
    Intents { at: Timestamp, intents: Intents },
    /// A config reload's new topology (its intents follow).
    Topology { at: Timestamp, topology: Topology },
    /// A sample of the DNS answer counters (the demand estimate's input).
    Answers { at: Timestamp, totals: AnswerTotals },
    /// A published plan: version and FNV-1a digest of its JSON body.
    Published { version: u64, digest: u64 },
}

/// FNV-1a over the plan body's JSON bytes.
pub fn digest(plan: &Plan) -> u64 {
    let bytes = serde_json::to_vec(&plan.body).unwrap_or_default();
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes events as JSON lines; a failed write disables recording loudly
/// rather than stalling the loop.
pub struct Recorder {
    out: Option<Box<dyn Write + Send>>,
}

impl Recorder {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out: Some(out) }
    }

    pub(crate) fn write(&mut self, event: &Recorded) {
        let Some(out) = self.out.as_mut() else { return };
        let ok = serde_json::to_writer(&mut *out, event).is_ok()
            && out.write_all(b"\n").is_ok()
            && out.flush().is_ok();
        if !ok {
            tracing::error!("recording failed; recording disabled");
            self.out = None;
        }
    }
}

/// A clock that says what the recording says.
#[derive(Clone, Default)]
pub struct ReplayClock(Arc<AtomicI64>);

impl ReplayClock {
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.unix_ms(), Ordering::SeqCst);
    }
}

impl Clock for ReplayClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// A store that keeps everything in memory (replay, tests).
#[derive(Default)]
pub struct MemStore {
    state: Mutex<Option<PersistedState>>,
    audit: Mutex<Vec<AuditEntry>>,
    documents: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
}

impl MemStore {
    pub fn with_state(state: PersistedState) -> Self {
        Self {
            state: Mutex::new(Some(state)),
            ..Self::default()
        }
    }
}

impl StateStore for MemStore {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        Ok(self.state.lock().map(|s| s.clone()).unwrap_or_default())
    }

    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        if let Ok(mut s) = self.state.lock() {
            *s = Some(state.clone());
        }
        Ok(())
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        if let Ok(mut a) = self.audit.lock() {
            a.push(entry.clone());
        }
        Ok(())
    }

    fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let all = self.audit.lock().map(|a| a.clone()).unwrap_or_default();
        let skip = all.len().saturating_sub(limit);
        Ok(all[skip..].to_vec())
    }

    fn save_document(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if let Ok(mut d) = self.documents.lock() {
            d.insert(name.to_owned(), bytes.to_vec());
        }
        Ok(())
    }

    fn load_document(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .documents
            .lock()
            .ok()
            .and_then(|d| d.get(name).cloned()))
    }
}

/// What a replay found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub events: usize,
    pub plans: usize,
    /// (version, what differed)
    pub mismatches: Vec<(u64, String)>,
    /// The last line was incomplete (the recorder was killed mid-write).
    pub torn_tail: bool,
}

/// Replays a recording; every published plan must match version and digest.
pub fn replay(input: impl BufRead) -> Result<ReplayReport, String> {
    let mut report = ReplayReport::default();
    let clock = ReplayClock::default();
    let mut control: Option<ControlLoop> = None;
    let lines: Vec<String> = input
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("read: {e}"))?;
    let last = lines.len().saturating_sub(1);
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: Recorded = match serde_json::from_str(line) {
            Ok(e) => e,
            // A torn final line is what a crash mid-write leaves behind.
            Err(_) if n == last => {
                report.torn_tail = true;
                break;
            }
            Err(e) => return Err(format!("line {}: {e}", n + 1)),
        };
        report.events += 1;
        match event {
            Recorded::Start {
                at,
                topology,
                intents,
                plan,
            } => {
                clock.set(at);
                let store = MemStore::with_state(PersistedState {
                    intents,
                    plan_version: plan.version.saturating_sub(1),
                    pending_audit: Vec::new(),
                    identity: None,
                });
                let (c, _handles) =
                    ControlLoop::new(Arc::new(topology), Box::new(store), Box::new(clock.clone()))
                        .map_err(|e| e.to_string())?;
                c.plan.store(Arc::new(plan));
                control = Some(c);
            }
            other => {
                let c = control
                    .as_mut()
                    .ok_or_else(|| format!("line {}: event before start", n + 1))?;
                match other {
                    Recorded::Reports { at, reports } => {
                        clock.set(at);
                        c.observe_batch(&reports, at);
                    }
                    Recorded::Tick { at } => {
                        clock.set(at);
                        c.recompute_and_publish_at(false, at);
                    }
                    Recorded::Intents { at, intents } => {
                        clock.set(at);
                        c.intents = intents;
                        c.recompute_and_publish_at(true, at);
                    }
                    Recorded::Answers { at, totals } => {
                        clock.set(at);
                        let topology = c.topology.clone();
                        c.answers.push(&topology, at, totals);
                    }
                    Recorded::ConfirmFailure { at } => {
                        clock.set(at);
                        c.aggregator.confirm_failure();
                    }
                    Recorded::Topology { at, topology } => {
                        clock.set(at);
                        c.swap_topology(Arc::new(topology));
                    }
                    Recorded::Published {
                        version,
                        digest: want,
                    } => {
                        report.plans += 1;
                        let plan = c.current();
                        if plan.version != version {
                            report
                                .mismatches
                                .push((version, format!("replay is at version {}", plan.version)));
                        } else if digest(&plan) != want {
                            report
                                .mismatches
                                .push((version, "plan body differs".to_owned()));
                        }
                    }
                    Recorded::Start { .. } => {}
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use steer_command::{ApiCommand, DrainCommand};
    use steer_types::{DrainMode, DrainScope, PopId};

    use super::*;
    use crate::test_world::{report, topology};

    /// A shared in-memory sink for the recorder.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A store whose writes fail while `failing` is set (a full disk).
    #[derive(Clone, Default)]
    struct FlakyStore {
        inner: Arc<MemStore>,
        failing: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FlakyStore {
        fn check(&self) -> Result<(), StoreError> {
            if self.failing.load(Ordering::SeqCst) {
                Err(StoreError::Io {
                    op: "write",
                    path: "mem".into(),
                    source: std::io::Error::other("disk full"),
                })
            } else {
                Ok(())
            }
        }
    }

    impl StateStore for FlakyStore {
        fn load(&self) -> Result<Option<PersistedState>, StoreError> {
            self.inner.load()
        }
        fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
            self.check()?;
            self.inner.save(state)
        }
        fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
            self.check()?;
            self.inner.append_audit(entry)
        }
        fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
            self.inner.read_audit(limit)
        }
    }

    #[test]
    fn a_confirmation_that_was_not_stored_is_not_recorded() {
        let clock = ReplayClock::default();
        clock.set(Timestamp(1_000_000));
        let store = FlakyStore::default();
        let (mut c, _h) = ControlLoop::new(
            Arc::new(topology()),
            Box::new(store.clone()),
            Box::new(clock.clone()),
        )
        .unwrap();
        let sink = Sink::default();
        c.record_to(Recorder::new(Box::new(sink.clone())));
        // All up, then half the PoPs down at once: the guard freezes.
        let mut t = 1_000_000;
        for i in 0..4 {
            t += 500;
            clock.set(Timestamp(t));
            let batch: Vec<_> = ["fra1", "ams1", "iad1", "ord1"]
                .iter()
                .map(|p| report(p, i < 2 || p.starts_with('i') || p.starts_with('o'), 100.0))
                .collect();
            c.record(&Recorded::Reports {
                at: Timestamp(t),
                reports: batch.clone(),
            });
            c.observe_batch(&batch, Timestamp(t));
        }
        assert!(c.aggregator.frozen().is_some(), "the guard did not freeze");

        let confirm = |c: &mut ControlLoop| {
            let (tx, mut rx) = tokio::sync::oneshot::channel();
            c.handle(ApiCommand::ConfirmFailure {
                reason: "real outage".into(),
                principal: "t".into(),
                reply: tx,
            });
            rx.try_recv().unwrap()
        };
        store.failing.store(true, Ordering::SeqCst);
        t += 500;
        clock.set(Timestamp(t));
        assert!(confirm(&mut c).is_err());
        assert!(
            c.aggregator.frozen().is_some(),
            "a refused confirmation unfroze"
        );
        store.failing.store(false, Ordering::SeqCst);
        t += 500;
        clock.set(Timestamp(t));
        assert!(confirm(&mut c).is_ok());
        assert!(c.aggregator.frozen().is_none());

        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let confirmations = text
            .lines()
            .filter(|l| l.contains("\"confirm_failure\""))
            .count();
        assert_eq!(confirmations, 1, "{text}");
        let report = replay(text.as_bytes()).unwrap();
        assert_eq!(report.mismatches, vec![]);
    }

    #[test]
    fn replay_reproduces_every_published_plan() {
        let clock = ReplayClock::default();
        clock.set(Timestamp(1_000_000));
        let (mut c, _h) = ControlLoop::new(
            Arc::new(topology()),
            Box::new(MemStore::default()),
            Box::new(clock.clone()),
        )
        .unwrap();
        let sink = Sink::default();
        c.record_to(Recorder::new(Box::new(sink.clone())));

        let mut t = 1_000_000;
        let mut step = |_: &mut ControlLoop, ms: i64| {
            t += ms;
            clock.set(Timestamp(t));
            Timestamp(t)
        };
        // Loads arrive, fra1 flaps, a soft drain ramps, time passes.
        for i in 0..20 {
            let now = step(&mut c, 700);
            let batch = vec![
                report("fra1", i % 7 != 3, 3000.0 + f64::from(i) * 100.0),
                report("ams1", true, 4000.0),
                report("iad1", true, 6000.0),
                report("ord1", i < 15, 6000.0),
            ];
            c.record(&Recorded::Reports {
                at: now,
                reports: batch.clone(),
            });
            c.observe_batch(&batch, now);
            if i == 5 {
                let (tx, _rx) = tokio::sync::oneshot::channel();
                c.handle(ApiCommand::Drain {
                    cmd: DrainCommand {
                        scope: DrainScope::Pop {
                            pop: PopId::new("ams1"),
                        },
                        mode: DrainMode::Soft,
                        ramp: Duration::from_secs(5),
                        expires_in: Some(Duration::from_secs(9)),
                        reason: "test".into(),
                        principal: "t".into(),
                        dry_run: false,
                        force: true,
                        emergency: false,
                    },
                    reply: tx,
                });
            }
            step(&mut c, 200);
            c.expire_intents();
            c.tick();
        }
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let published = text.lines().filter(|l| l.contains("\"published\"")).count();
        assert!(
            published >= 10,
            "too few plans to mean anything: {published}\n{text}"
        );
        let report = replay(text.as_bytes()).unwrap();
        assert_eq!(report.mismatches, vec![]);
        assert_eq!(report.plans, published);

        // A tampered recording is caught.
        let tampered = text.replacen("\"load_rps\":6000.0", "\"load_rps\":9000.0", 1);
        let report = replay(tampered.as_bytes()).unwrap();
        assert!(!report.mismatches.is_empty());
    }
    /// Demand estimated from DNS answer counts replays too: the samples
    /// are recorded before the reports they explain.
    #[test]
    fn replay_reproduces_plans_driven_by_answer_counts() {
        use steer_types::{
            DemandSource, RegionId, ServiceId,
            answers::{ANSWER_UNIT, AnswerKey, AnswerTally},
        };
        let clock = ReplayClock::default();
        clock.set(Timestamp(1_000_000));
        let (mut c, _h) = ControlLoop::new(
            Arc::new(topology()),
            Box::new(MemStore::default()),
            Box::new(clock.clone()),
        )
        .unwrap();
        let tally = Arc::new(AnswerTally::default());
        c.count_answers_from(tally.clone());
        let sink = Sink::default();
        c.record_to(Recorder::new(Box::new(sink.clone())));
        let cell = |region: &str, pop: &str| {
            tally.cell(AnswerKey {
                service: ServiceId::new("app"),
                region: Some(RegionId::new(region)),
                pop: PopId::new(pop),
            })
        };
        let mut t = 1_000_000;
        for i in 0..40u64 {
            t += 1000;
            let now = Timestamp(t);
            clock.set(now);
            // EU clients hold fra1 and ams1, US clients iad1 and ord1; EU
            // grows while fra1 fails half way.
            let eu = 10 + i;
            cell("eu-west", "fra1").fetch_add(eu * ANSWER_UNIT / 2, Ordering::Relaxed);
            cell("eu-west", "ams1").fetch_add(eu * ANSWER_UNIT / 2, Ordering::Relaxed);
            cell("us-east", "iad1").fetch_add(10 * ANSWER_UNIT / 2, Ordering::Relaxed);
            cell("us-east", "ord1").fetch_add(10 * ANSWER_UNIT / 2, Ordering::Relaxed);
            let eu_load = 100.0 * eu as f64;
            let batch = vec![
                report("fra1", i < 20, eu_load),
                report("ams1", true, eu_load),
                report("iad1", true, 1000.0),
                report("ord1", true, 1000.0),
            ];
            c.sample_answers(now);
            c.record(&Recorded::Reports {
                at: now,
                reports: batch.clone(),
            });
            c.observe_batch(&batch, now);
            c.expire_intents();
            c.tick();
        }
        let d = &c.demand[&ServiceId::new("app")];
        assert!(
            matches!(
                d.sources.get(&RegionId::new("eu-west")),
                Some(DemandSource::Answers { .. })
            ),
            "{d:?}"
        );
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(text.lines().any(|l| l.contains("\"answers\"")), "{text}");
        let published = text.lines().filter(|l| l.contains("\"published\"")).count();
        assert!(published >= 3, "{published}\n{text}");
        let report = replay(text.as_bytes()).unwrap();
        assert_eq!(report.mismatches, vec![]);
        assert_eq!(report.plans, published);
    }
}
