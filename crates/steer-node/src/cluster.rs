//! Controllers on etcd (`[cluster]`, `--role controller`).
//!
//! Every controller ingests every agent's reports and runs the control
//! loop; one of them, elected through etcd, leads:
//!
//! - **Leading** (after [`ApiCommand::Lead`] took the shared state over):
//!   the loop writes intents and audit entries (every write fenced on the
//!   leader key's revision), and each plan it publishes is written to etcd
//!   (`plan/e/*` entries, then `plan/head`), fenced the same way.
//! - **Following**: the loop is a warm standby (see steer-control's
//!   `cluster`); changes are answered UNAVAILABLE naming the leader.
//! - **Every controller** serves edges the plans etcd holds (a watch of
//!   `plan/`), never its own loop's: an edge sees a plan only once it is
//!   committed, and a deposed leader's plans (refused by the fence) reach
//!   no edge. The plans' epoch is the leader's term.
//!
//! Leadership ends when the lease may have expired (keep-alives failing
//! for two thirds of the TTL) or a fenced write is refused; the controller
//! then follows and campaigns again. With etcd's quorum gone nothing
//! changes: no leader can write, edges keep the last plan, changes are
//! refused; when etcd is back a leader is elected without anyone acting.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use arc_swap::ArcSwap;
use prost::Message;
use serde::Serialize;
use steer_api::{
    ApiCommand, LEADER_METADATA, WriteGate,
    plan_feed::{Published, to_pb, update_from_pb},
};
use steer_config::{ClusterSettings, SteerConfig};
use steer_plansync::{Follower, PlanContent, PlanVersion, Update};
use steer_proto::v1 as pb;
use steer_store::{
    PersistedState, StoreError,
    etcd::{
        Elector, EtcdOptions, EtcdStore, LeaderInfo, Leadership, PLAN_ENTRY, PLAN_HEAD, WatchEvent,
        watch_prefix,
    },
};
use steer_types::Plan;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Status;
use tracing::{error, info, warn};

/// This controller's place in the cluster, for `/status` and the write gate.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct ClusterStatus {
    pub node: String,
    /// `leader`, `follower`, or `candidate` (won, taking over).
    pub role: &'static str,
    /// The term this controller leads in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderView>,
    /// The plan edges get from this controller (`epoch.sequence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_version: Option<String>,
    /// Why etcd last failed, while it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etcd_error: Option<String>,
    pub etcd: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct LeaderView {
    pub node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub term: u64,
}

impl From<LeaderInfo> for LeaderView {
    fn from(l: LeaderInfo) -> Self {
        Self {
            node: l.node,
            url: l.url,
            term: l.term,
        }
    }
}

/// What the rest of the controller uses.
pub(crate) struct ClusterHandles {
    /// The shared plans (what SubscribePlan serves).
    pub published: watch::Receiver<Option<Published>>,
    pub gate: WriteGate,
    pub status: Arc<ArcSwap<ClusterStatus>>,
}

pub(crate) fn register_metrics() {
    metrics::gauge!("steer_cluster_leader").set(0.0);
    metrics::gauge!("steer_cluster_term").set(0.0);
    metrics::counter!("steer_cluster_leadership_gained_total").absolute(0);
    metrics::counter!("steer_cluster_leadership_lost_total").absolute(0);
    for result in ["ok", "fenced", "unavailable"] {
        metrics::counter!("steer_cluster_plan_writes_total", "result" => result).absolute(0);
    }
    metrics::counter!("steer_cluster_etcd_errors_total").absolute(0);
    metrics::counter!("steer_cluster_plans_refused_total").absolute(0);
}

/// etcd options of this controller from its config.
pub(crate) fn options(config: &SteerConfig, settings: &ClusterSettings) -> EtcdOptions {
    let node = settings
        .node_id
        .clone()
        .unwrap_or_else(|| default_node_id(config.server.grpc_listen.port()));
    let deployment = config
        .server
        .cluster
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut o = EtcdOptions::new(settings.etcd.clone(), &deployment, &node);
    o.advertise = Some(settings.advertise.clone().unwrap_or_else(|| {
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", config.server.grpc_listen)
    }));
    o
}

/// `<host name>:<gRPC port>` when `[cluster] node_id` is not set: unique
/// even with several controllers on one host.
fn default_node_id(port: u16) -> String {
    format!("{}:{port}", crate::host_name())
}

/// Connects the store (before the loop is built: it reads the state).
/// Waits for etcd as long as it takes (a controller may start before etcd
/// has formed), saying so in the log.
pub(crate) async fn connect_store(options: &EtcdOptions) -> Arc<EtcdStore> {
    let mut pause = Duration::from_millis(200);
    loop {
        let attempt = options.clone();
        match tokio::task::spawn_blocking(move || EtcdStore::connect(attempt)).await {
            Ok(Ok(store)) => return Arc::new(store),
            Ok(Err(e)) => {
                warn!(error = %e, "cannot reach etcd for the [cluster] store yet; retrying")
            }
            Err(e) => warn!(error = %e, "etcd connect task failed; retrying"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Starts the election, the plan publisher, and the watches of the shared
/// state and plan.
pub(crate) fn start(
    options: EtcdOptions,
    lease_ttl: Duration,
    store: Arc<EtcdStore>,
    to_loop: mpsc::Sender<ApiCommand>,
    local_plans: watch::Receiver<Arc<Plan>>,
) -> ClusterHandles {
    register_metrics();
    let status = Arc::new(ArcSwap::from_pointee(ClusterStatus {
        node: options.node_id.clone(),
        role: "follower",
        etcd: options.endpoints.clone(),
        ..ClusterStatus::default()
    }));
    let (published_tx, published) = watch::channel(None);
    tokio::spawn(follow_shared_plan(
        options.clone(),
        published_tx,
        status.clone(),
    ));
    tokio::spawn(follow_shared_state(options.clone(), to_loop.clone()));
    tokio::spawn(elect(
        options,
        lease_ttl,
        store,
        to_loop,
        local_plans,
        published.clone(),
        status.clone(),
    ));
    let gate_status = status.clone();
    let gate: WriteGate = Arc::new(move || refuse_unless_leading(&gate_status.load()));
    ClusterHandles {
        published,
        gate,
        status,
    }
}

/// Ok on the leader; UNAVAILABLE saying where to go everywhere else.
fn refuse_unless_leading(s: &ClusterStatus) -> Result<(), Status> {
    if s.role == "leader" {
        return Ok(());
    }
    let mut status = match (&s.leader, &s.etcd_error) {
        (Some(l), _) if l.node != s.node => Status::unavailable(format!(
            "controller {} follows; changes are made by the leader {}{} (term {}); nothing was \
             changed",
            s.node,
            l.node,
            l.url
                .as_deref()
                .map(|u| format!(" at {u}"))
                .unwrap_or_default(),
            l.term
        )),
        (_, Some(e)) => Status::unavailable(format!(
            "no leader can take changes: {e}; nothing was changed (edges keep serving the last \
             plan; this recovers by itself when etcd answers again)"
        )),
        _ => Status::unavailable(format!(
            "controller {} is not the leader and no leader is elected yet; nothing was changed, \
             try again in a few seconds",
            s.node
        )),
    };
    if let Some(url) = s.leader.as_ref().and_then(|l| l.url.as_deref())
        && s.leader.as_ref().is_some_and(|l| l.node != s.node)
        && let Ok(v) = url.parse()
    {
        status.metadata_mut().insert(LEADER_METADATA, v);
    }
    Err(status)
}

fn update_status(status: &ArcSwap<ClusterStatus>, f: impl Fn(&mut ClusterStatus)) {
    status.rcu(|s| {
        let mut next = (**s).clone();
        f(&mut next);
        next
    });
}

/// Campaigns, leads until leadership is lost, follows, campaigns again.
async fn elect(
    options: EtcdOptions,
    lease_ttl: Duration,
    store: Arc<EtcdStore>,
    to_loop: mpsc::Sender<ApiCommand>,
    local_plans: watch::Receiver<Arc<Plan>>,
    shared: watch::Receiver<Option<Published>>,
    status: Arc<ArcSwap<ClusterStatus>>,
) {
    let mut pause = Duration::from_millis(200);
    let elector = loop {
        match Elector::connect(options.clone(), lease_ttl).await {
            Ok(e) => break Arc::new(e),
            Err(e) => {
                etcd_failed(&status, &e);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    };
    // Who leads, for the write gate and /status, while this one follows.
    let watcher = tokio::spawn(watch_leader(elector.clone(), status.clone()));
    loop {
        let leadership = match elector.campaign().await {
            Ok(l) => l,
            Err(e) => {
                etcd_failed(&status, &e);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let term = leadership.epoch();
        update_status(&status, |s| {
            s.role = "candidate";
            s.term = Some(term);
        });
        store.set_fence(Some(leadership.fence().clone()));
        let (reply, first) = oneshot::channel();
        let basis = shared.borrow().as_ref().map(|p| p.plan.clone());
        if to_loop
            .send(ApiCommand::Lead { basis, reply })
            .await
            .is_err()
        {
            break;
        }
        let first = match first.await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                warn!(error = %e, term, "won the election but could not take over; resigning");
                step_down(&store, &to_loop, &status).await;
                leadership.resign().await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => break,
        };
        info!(term, first_version = first, node = %options.node_id, "leading");
        metrics::counter!("steer_cluster_leadership_gained_total").increment(1);
        metrics::gauge!("steer_cluster_leader").set(1.0);
        metrics::gauge!("steer_cluster_term").set(term as f64);
        update_status(&status, |s| {
            s.role = "leader";
            s.etcd_error = None;
            s.leader = Some(LeaderView {
                node: s.node.clone(),
                url: options.advertise.clone(),
                term,
            });
        });
        let mut leadership = leadership;
        let why = publish_while_leading(&store, &mut leadership, local_plans.clone(), first).await;
        warn!(term, why = %why, "leadership lost; following");
        metrics::counter!("steer_cluster_leadership_lost_total").increment(1);
        step_down(&store, &to_loop, &status).await;
        leadership.resign().await;
        // Tell callers who leads now, without waiting for the next poll.
        if let Ok(leader) = elector.leader_info().await {
            update_status(&status, |s| s.leader = leader.clone().map(LeaderView::from));
        }
    }
    watcher.abort();
}

async fn step_down(
    store: &EtcdStore,
    to_loop: &mpsc::Sender<ApiCommand>,
    status: &ArcSwap<ClusterStatus>,
) {
    store.set_fence(None);
    let _ = to_loop.send(ApiCommand::Follow).await;
    metrics::gauge!("steer_cluster_leader").set(0.0);
    update_status(status, |s| {
        s.role = "follower";
        s.term = None;
        if s.leader.as_ref().is_some_and(|l| l.node == s.node) {
            s.leader = None;
        }
    });
}

fn etcd_failed(status: &ArcSwap<ClusterStatus>, e: &StoreError) {
    metrics::counter!("steer_cluster_etcd_errors_total").increment(1);
    let text = e.to_string();
    update_status(status, |s| s.etcd_error = Some(text.clone()));
}

/// Polls who leads (once a second) for the gate and `/status`.
async fn watch_leader(elector: Arc<Elector>, status: Arc<ArcSwap<ClusterStatus>>) {
    loop {
        match elector.leader_info().await {
            Ok(leader) => update_status(&status, |s| {
                if s.role != "leader" {
                    s.leader = leader.clone().map(LeaderView::from);
                }
                s.etcd_error = None;
            }),
            Err(e) => {
                etcd_failed(&status, &e);
                update_status(&status, |s| {
                    if s.role != "leader" {
                        s.leader = None;
                    }
                });
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Writes every plan the loop publishes (from `first` on) to etcd until
/// leadership is lost; returns why it ended.
async fn publish_while_leading(
    store: &Arc<EtcdStore>,
    leadership: &mut Leadership,
    mut plans: watch::Receiver<Arc<Plan>>,
    first: u64,
) -> String {
    let epoch = leadership.epoch();
    // What etcd holds now: deltas are written against it.
    let mut base: Option<PlanContent> = None;
    let mut pending = true;
    loop {
        if !pending {
            tokio::select! {
                () = leadership.lost() => return "the lease could not be kept alive".into(),
                changed = plans.changed() => if changed.is_err() {
                    return "the control loop stopped".into();
                },
            }
        }
        if leadership.is_lost() {
            return "the lease could not be kept alive".into();
        }
        let plan = plans.borrow_and_update().clone();
        if plan.version < first {
            pending = false;
            continue;
        }
        let content = PlanContent::encode(&plan.body);
        let version = PlanVersion {
            epoch,
            sequence: plan.version,
        };
        let store2 = store.clone();
        let held = base.take();
        let result = tokio::task::spawn_blocking(move || {
            let held = match held {
                Some(h) => h,
                None => read_entries(&store2)?,
            };
            write_plan(&store2, version, plan.computed_at, &held, &content)?;
            Ok::<_, StoreError>(content)
        })
        .await;
        match result {
            Ok(Ok(content)) => {
                metrics::counter!("steer_cluster_plan_writes_total", "result" => "ok").increment(1);
                base = Some(content);
                pending = false;
            }
            Ok(Err(StoreError::Fenced { reason })) => {
                metrics::counter!("steer_cluster_plan_writes_total", "result" => "fenced")
                    .increment(1);
                return format!("plan {version} refused by the fence: {reason}");
            }
            Ok(Err(e)) => {
                metrics::counter!("steer_cluster_plan_writes_total", "result" => "unavailable")
                    .increment(1);
                error!(error = %e, %version, "could not write the plan to etcd; retrying");
                // What etcd holds is unknown after a failed batch: read it
                // again before the next delta.
                pending = true;
                tokio::select! {
                    () = leadership.lost() => return "the lease could not be kept alive".into(),
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            Err(e) => return format!("the plan writer failed: {e}"),
        }
    }
}

/// The plan entries etcd holds now.
fn read_entries(store: &EtcdStore) -> Result<PlanContent, StoreError> {
    let snapshot = store.read_prefix(PLAN_ENTRY)?;
    let mut content = PlanContent::default();
    for (key, value) in snapshot.kvs {
        if let Some(k) = key.strip_prefix(PLAN_ENTRY) {
            content.entries.insert(k.to_owned(), Arc::from(value));
        }
    }
    Ok(content)
}

fn write_plan(
    store: &EtcdStore,
    version: PlanVersion,
    computed_at: steer_types::Timestamp,
    held: &PlanContent,
    content: &PlanContent,
) -> Result<(), StoreError> {
    let delta = held.delta_to(content);
    let head = head_message(version, computed_at, content).encode_to_vec();
    store.write_plan(
        delta
            .changed
            .into_iter()
            .map(|(k, v)| (k, v.to_vec()))
            .collect(),
        delta.removed,
        head,
    )
}

/// The head: a full update without entries (the entries are the keys).
fn head_message(
    version: PlanVersion,
    computed_at: steer_types::Timestamp,
    content: &PlanContent,
) -> pb::PlanUpdate {
    pb::PlanUpdate {
        version: Some(to_pb(version)),
        computed_unix_ms: computed_at.unix_ms(),
        full: true,
        base: None,
        entries: Vec::new(),
        removed: Vec::new(),
        content_sha256: content.sha256().to_vec(),
    }
}

/// Mirrors `plan/` from etcd and turns every head into a verified plan
/// for the feed. Keeps the last plan through any etcd outage.
async fn follow_shared_plan(
    options: EtcdOptions,
    published: watch::Sender<Option<Published>>,
    status: Arc<ArcSwap<ClusterStatus>>,
) {
    let mut events = watch_prefix(options, "plan/");
    let mut mirror = PlanMirror::default();
    while let Some(event) = events.recv().await {
        let head = match event {
            WatchEvent::Snapshot(s) => {
                mirror.reset();
                let mut head = None;
                for (key, value) in s.kvs {
                    if key == PLAN_HEAD {
                        head = Some(value);
                    } else if let Some(k) = key.strip_prefix(PLAN_ENTRY) {
                        mirror.put(k, value);
                    }
                }
                head
            }
            WatchEvent::Put { key, value, .. } => {
                if key == PLAN_HEAD {
                    Some(value)
                } else {
                    if let Some(k) = key.strip_prefix(PLAN_ENTRY) {
                        mirror.put(k, value);
                    }
                    None
                }
            }
            WatchEvent::Delete { key, .. } => {
                if let Some(k) = key.strip_prefix(PLAN_ENTRY) {
                    mirror.delete(k);
                }
                None
            }
            WatchEvent::Lost { reason } => {
                metrics::counter!("steer_cluster_etcd_errors_total").increment(1);
                warn!(%reason, "plan watch lost; edges keep the last plan");
                None
            }
        };
        let Some(head) = head else { continue };
        match mirror.at_head(&head) {
            Ok(Some(p)) => {
                let shown = p.version.to_string();
                info!(version = %shown, "shared plan");
                update_status(&status, |s| s.plan_version = Some(shown.clone()));
                published.send_replace(Some(p));
            }
            Ok(None) => {}
            Err(why) => {
                metrics::counter!("steer_cluster_plans_refused_total").increment(1);
                error!(%why, "shared plan refused");
            }
        }
    }
}

/// The plan entries as etcd holds them, and what changed since the last
/// head.
#[derive(Default)]
struct PlanMirror {
    entries: BTreeMap<String, Arc<[u8]>>,
    changed: BTreeSet<String>,
    removed: BTreeSet<String>,
    follower: Follower,
}

impl PlanMirror {
    fn reset(&mut self) {
        self.entries.clear();
        self.changed.clear();
        self.removed.clear();
    }

    fn put(&mut self, key: &str, value: Vec<u8>) {
        self.entries.insert(key.to_owned(), Arc::from(value));
        self.removed.remove(key);
        self.changed.insert(key.to_owned());
    }

    fn delete(&mut self, key: &str) {
        self.entries.remove(key);
        self.changed.remove(key);
        self.removed.insert(key.to_owned());
    }

    /// The plan `head` describes, over the entries as of now: `None` when
    /// it is the one held already.
    fn at_head(&mut self, head: &[u8]) -> Result<Option<Published>, String> {
        let head =
            pb::PlanUpdate::decode(head).map_err(|e| format!("head does not decode: {e}"))?;
        let head = update_from_pb(head)?;
        let delta = self.follower.version().map(|base| Update {
            base: Some(base),
            changed: self
                .changed
                .iter()
                .filter_map(|k| self.entries.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
            removed: self.removed.iter().cloned().collect(),
            ..head.clone()
        });
        let full = Update {
            base: None,
            changed: self
                .entries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            removed: Vec::new(),
            ..head
        };
        self.changed.clear();
        self.removed.clear();
        let applied = match delta.map(|d| self.follower.apply(&d)) {
            Some(Ok(done)) => Ok(done),
            // After a reconnect (or a leader that died mid-write) the
            // changes since the last head are not known: take it whole.
            Some(Err(_)) | None => self.follower.apply(&full),
        };
        match applied {
            Ok(steer_plansync::Applied::New) => match self.follower.plan() {
                Some(plan) => Ok(Some(Published {
                    version: full.version,
                    plan: Arc::new(plan),
                })),
                None => Ok(None),
            },
            Ok(_) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Tells the loop whenever the leader writes the shared state.
async fn follow_shared_state(options: EtcdOptions, to_loop: mpsc::Sender<ApiCommand>) {
    let mut events = watch_prefix(options, "state");
    while let Some(event) = events.recv().await {
        let value = match event {
            WatchEvent::Snapshot(s) => s
                .kvs
                .into_iter()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v),
            WatchEvent::Put { key, value, .. } if key == "state" => Some(value),
            _ => None,
        };
        let Some(value) = value else { continue };
        match serde_json::from_slice::<PersistedState>(&value) {
            Ok(state) => {
                let cmd = ApiCommand::AdoptState {
                    intents: state.intents,
                    plan_version: state.plan_version,
                };
                if to_loop.send(cmd).await.is_err() {
                    return;
                }
            }
            Err(e) => error!(error = %e, "the shared state in etcd does not decode"),
        }
    }
}
