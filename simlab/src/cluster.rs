//! The clustered control plane, as steerd runs it with `[cluster]`:
//! controllers share one store (etcd), every one of them gets every
//! agent report and runs the real control loop, and one, elected, leads.
//! Followers are warm standbys (`ControlLoop::new_standby`) that adopt
//! the leader's intents whenever it writes the shared state; their own
//! plans never reach an edge. Edges are served only what the leader
//! committed to the store.
//!
//! Faults act on this model, not on the plans: a dead leader stops
//! writing and a follower leads once the lease expired; with etcd's
//! quorum gone nothing commits (writes fail in the store), the leader
//! steps down when its keep-alives have failed for two thirds of the
//! lease, and a leader takes over only once quorum is back and the old
//! lease expired.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use steer_command::{ApiCommand, DrainCommand};
use steer_control::{ControlLoop, MemStore, ReplayClock};
use steer_health::ObservedReport;
use steer_store::{PersistedState, StateStore, StoreError};
use steer_types::{Plan, Topology, answers::AnswerTally, audit::AuditEntry};

/// A store shared by every controller of the run (and by a restarted
/// single controller): what etcd or the state directory holds.
#[derive(Clone, Default)]
pub(crate) struct SharedStore {
    inner: Arc<MemStore>,
    /// Set while etcd has no quorum: every read and write fails, as the
    /// etcd store's do (it requires a leader).
    no_quorum: Arc<AtomicBool>,
    /// State writes so far: followers watch the state key and hear of
    /// each one (steer-node's `follow_shared_state`).
    writes: Arc<AtomicU64>,
}

impl SharedStore {
    fn available(&self) -> Result<(), StoreError> {
        if self.no_quorum.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable {
                reason: "etcd has no quorum".into(),
            });
        }
        Ok(())
    }

    fn has_quorum(&self) -> bool {
        !self.no_quorum.load(Ordering::Relaxed)
    }
}

impl StateStore for SharedStore {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        self.available()?;
        self.inner.load()
    }
    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        self.available()?;
        self.inner.save(state)?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.available()?;
        self.inner.append_audit(entry)
    }
    fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.available()?;
        self.inner.read_audit(limit)
    }
}

/// What a controller needs to (re)start.
pub(crate) struct Wiring {
    pub(crate) topology: Arc<Topology>,
    pub(crate) clock: ReplayClock,
    pub(crate) tally: Arc<AnswerTally>,
}

impl Wiring {
    fn standby(&self, store: &SharedStore) -> Result<Box<ControlLoop>, StoreError> {
        let (mut c, _handles) = ControlLoop::new_standby(
            self.topology.clone(),
            Box::new(store.clone()),
            Box::new(self.clock.clone()),
        )?;
        c.count_answers_from(self.tally.clone());
        Ok(Box::new(c))
    }
}

enum Controller {
    Running(Box<ControlLoop>),
    /// Killed; comes back cold (a new follower reading the shared state)
    /// at `restart_at_ms`, if ever.
    Dead {
        restart_at_ms: Option<u64>,
    },
}

/// Who writes the shared state: the election's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leadership {
    /// This controller holds the leader key: its writes are fenced on its
    /// lease, and what it publishes is committed while etcd has quorum.
    Leading {
        who: usize,
        /// When its keep-alives started failing (etcd lost quorum).
        keepalive_failing_since_ms: Option<u64>,
    },
    /// Nobody leads. A campaign wins once the previous leader's lease
    /// has expired (`lease_expires_ms`) and etcd has quorum.
    Vacant { lease_expires_ms: u64 },
}

pub(crate) struct Cluster {
    wiring: Wiring,
    store: SharedStore,
    controllers: Vec<Controller>,
    /// Per controller: since when it campaigns. etcd's election is first
    /// come, first served (the oldest key wins), so a standby that has
    /// waited all along beats a controller that just restarted.
    campaigning_since_ms: Vec<u64>,
    leadership: Leadership,
    lease_ttl_ms: u64,
    /// The plan the store holds: the last one the leader committed.
    committed: Arc<Plan>,
    writes_seen: u64,
    /// Elections won, after the first.
    pub(crate) takeovers: usize,
}

/// Controllers in the simulated cluster: a leader and one warm standby.
const CONTROLLERS: usize = 2;

/// The leader lease, as `[cluster] lease_ttl` defaults it.
pub(crate) const DEFAULT_LEASE_TTL_S: u64 = 3;

impl Cluster {
    /// Every controller starts as a follower, as steerd does with
    /// `[cluster]`; the first wins the first election at once.
    pub(crate) fn new(wiring: Wiring, store: SharedStore) -> anyhow::Result<Self> {
        let mut controllers = Vec::with_capacity(CONTROLLERS);
        for _ in 0..CONTROLLERS {
            controllers.push(Controller::Running(wiring.standby(&store)?));
        }
        let committed = match &controllers[0] {
            Controller::Running(c) => c.plan(),
            Controller::Dead { .. } => anyhow::bail!("the first controller did not start"),
        };
        let mut cluster = Self {
            wiring,
            store,
            controllers,
            campaigning_since_ms: vec![0; CONTROLLERS],
            leadership: Leadership::Vacant {
                lease_expires_ms: 0,
            },
            lease_ttl_ms: DEFAULT_LEASE_TTL_S * 1000,
            committed,
            writes_seen: 0,
            takeovers: 0,
        };
        cluster.elect(0);
        if !matches!(cluster.leadership, Leadership::Leading { .. }) {
            anyhow::bail!("no controller could take the shared state over at start");
        }
        // The first election is the start, not a takeover.
        cluster.takeovers = 0;
        cluster.commit();
        Ok(cluster)
    }

    /// Every live controller ingests every report.
    pub(crate) fn step_reports(&mut self, batch: &[ObservedReport]) {
        for c in &mut self.controllers {
            if let Controller::Running(c) = c {
                c.step_reports(batch);
            }
        }
    }

    /// The leading controller dies; its lease runs out `lease_ttl_ms`
    /// later. It restarts cold `restart_after_ms` later, if given.
    pub(crate) fn leader_dies(
        &mut self,
        t_ms: u64,
        lease_ttl_ms: u64,
        restart_after_ms: Option<u64>,
    ) {
        self.lease_ttl_ms = lease_ttl_ms;
        let Leadership::Leading { who, .. } = self.leadership else {
            return;
        };
        self.controllers[who] = Controller::Dead {
            restart_at_ms: restart_after_ms.map(|d| t_ms + d),
        };
        self.leadership = Leadership::Vacant {
            lease_expires_ms: t_ms + lease_ttl_ms,
        };
    }

    /// etcd loses quorum (`lost` gives the lease TTL then) or has it.
    pub(crate) fn set_quorum(&mut self, lost: Option<u64>, t_ms: u64) {
        let has = lost.is_none();
        if has == self.store.has_quorum() {
            return;
        }
        if let Some(lease_ttl_ms) = lost {
            self.lease_ttl_ms = lease_ttl_ms;
        }
        let lease_ttl_ms = self.lease_ttl_ms;
        self.store.no_quorum.store(!has, Ordering::Relaxed);
        if has {
            // Every campaign failed while etcd had no quorum; all of them
            // start over now, none ahead of another.
            self.campaigning_since_ms.fill(t_ms);
        }
        match (&mut self.leadership, has) {
            (
                Leadership::Leading {
                    keepalive_failing_since_ms,
                    ..
                },
                false,
            ) => *keepalive_failing_since_ms = Some(t_ms),
            (
                Leadership::Leading {
                    keepalive_failing_since_ms,
                    ..
                },
                true,
            ) => *keepalive_failing_since_ms = None,
            // etcd renews every lease when it elects a raft leader again,
            // so the key of the leader that stepped down (its revoke could
            // not reach etcd) lives one more TTL before a campaign wins.
            (Leadership::Vacant { lease_expires_ms }, true) => {
                *lease_expires_ms = (*lease_expires_ms).max(t_ms + lease_ttl_ms);
            }
            (Leadership::Vacant { .. }, false) => {}
        }
    }

    /// An operator drain, sent to the leader as steerctl would (followers'
    /// write gates refuse it and name the leader).
    pub(crate) fn drain(&mut self, cmd: DrainCommand) -> Result<(), String> {
        let Leadership::Leading { who, .. } = self.leadership else {
            return Err(if self.store.has_quorum() {
                "no leader is elected yet; nothing was changed".into()
            } else {
                "no leader can take changes: etcd has no quorum; nothing was changed".into()
            });
        };
        let Controller::Running(c) = &mut self.controllers[who] else {
            return Err("the leader is not running; nothing was changed".into());
        };
        let (reply, mut rx) = tokio::sync::oneshot::channel();
        c.step_command(ApiCommand::Drain { cmd, reply });
        match rx.try_recv() {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(refused)) => Err(refused.to_string()),
            Err(_) => Err("the control loop did not answer".into()),
        }
    }

    /// One step after the reports: restarts, keep-alives, elections,
    /// ticks, followers hearing of state writes, and what commits.
    pub(crate) fn step(&mut self, t_ms: u64) -> anyhow::Result<()> {
        for i in 0..self.controllers.len() {
            if let Controller::Dead {
                restart_at_ms: Some(at),
            } = self.controllers[i]
                && t_ms >= at
                && self.store.has_quorum()
            {
                self.controllers[i] = Controller::Running(self.wiring.standby(&self.store)?);
                self.campaigning_since_ms[i] = t_ms;
            }
        }
        if let Leadership::Leading {
            who,
            keepalive_failing_since_ms: Some(since),
        } = self.leadership
            && t_ms >= since + self.lease_ttl_ms * 2 / 3
        {
            // The lease may have expired: step down (steer-node's `elect`).
            if let Controller::Running(c) = &mut self.controllers[who] {
                c.step_command(ApiCommand::Follow);
            }
            self.campaigning_since_ms[who] = t_ms;
            self.leadership = Leadership::Vacant {
                lease_expires_ms: since + self.lease_ttl_ms,
            };
        }
        if let Leadership::Vacant { lease_expires_ms } = self.leadership
            && t_ms >= lease_expires_ms
            && self.store.has_quorum()
        {
            self.elect(t_ms);
        }
        for c in &mut self.controllers {
            if let Controller::Running(c) = c {
                c.step_tick();
            }
        }
        self.tell_followers();
        self.commit();
        Ok(())
    }

    /// The running controller that has campaigned longest wins; `Lead`
    /// makes it re-read the shared state and publish. If the takeover
    /// fails it stays a follower and campaigns again.
    fn elect(&mut self, t_ms: u64) {
        let Some(who) = (0..self.controllers.len())
            .filter(|&i| matches!(self.controllers[i], Controller::Running(_)))
            .min_by_key(|&i| (self.campaigning_since_ms[i], i))
        else {
            return;
        };
        let Controller::Running(c) = &mut self.controllers[who] else {
            return;
        };
        let (reply, mut rx) = tokio::sync::oneshot::channel();
        c.step_command(ApiCommand::Lead {
            basis: Some(self.committed.clone()),
            reply,
        });
        if let Ok(Ok(_first_version)) = rx.try_recv() {
            self.leadership = Leadership::Leading {
                who,
                keepalive_failing_since_ms: None,
            };
            self.takeovers += 1;
        } else {
            c.step_command(ApiCommand::Follow);
            self.campaigning_since_ms[who] = t_ms;
        }
    }

    /// Followers (and the leader, which ignores its own writes) hear of
    /// every state write, as the watch of the state key tells them.
    fn tell_followers(&mut self) {
        let writes = self.store.writes.load(Ordering::Relaxed);
        if writes == self.writes_seen {
            return;
        }
        let Ok(Some(state)) = self.store.load() else {
            return;
        };
        self.writes_seen = writes;
        for c in &mut self.controllers {
            if let Controller::Running(c) = c {
                c.step_command(ApiCommand::AdoptState {
                    intents: state.intents.clone(),
                    plan_version: state.plan_version,
                });
            }
        }
    }

    /// The leader's plan is committed while etcd has quorum (a write that
    /// failed is retried until it lands or leadership is lost).
    fn commit(&mut self) {
        if !self.committing() {
            return;
        }
        if let Leadership::Leading { who, .. } = self.leadership
            && let Controller::Running(c) = &self.controllers[who]
        {
            self.committed = c.plan();
        }
    }

    /// Whether plans reach the store now: a leader and a quorum.
    pub(crate) fn committing(&self) -> bool {
        matches!(self.leadership, Leadership::Leading { .. }) && self.store.has_quorum()
    }

    /// The last plan the store holds (what any controller serves edges).
    pub(crate) fn committed(&self) -> Arc<Plan> {
        self.committed.clone()
    }
}
