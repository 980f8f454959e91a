//! Anycast over BGP: announce, de-prefer and withdraw per PoP from the Plan.
//!
//! Pure core: [`routes`] turns Plan announcements into per-peer route tables
//! (graceful-shutdown phase, the speaker's own min-announce rail) and diffs
//! them; [`update`] builds the UPDATE messages. IO shell: one [`session`]
//! task per peer and one speaker task that follows the plan watch channel.
//! A plan that stops arriving changes nothing (fail static).

pub mod routes;
mod session;
pub mod update;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use steer_types::{
    Plan, PopHealth,
    bgp::{BgpPeerStatus, BgpSettings, BgpStatus},
};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tracing::{info, warn};

use crate::{
    routes::{RouteTable, Routes},
    session::{Session, SharedStatus},
};

struct Shared {
    peers: Vec<SharedStatus>,
    /// (plan version applied, refusal, routes).
    routes: Mutex<BgpStatus>,
}

/// Reads the speaker's status; cheap to clone.
#[derive(Clone)]
pub struct BgpStatusHandle(Arc<Shared>);

impl BgpStatusHandle {
    pub fn snapshot(&self) -> BgpStatus {
        let mut out = self.0.routes.lock().map(|g| g.clone()).unwrap_or_default();
        out.peers = self
            .0
            .peers
            .iter()
            .filter_map(|p| {
                p.lock().ok().map(|g| {
                    let (s, since) = &*g;
                    let mut s = s.clone();
                    s.uptime_secs = since.map(|t| t.elapsed().as_secs());
                    s.state = if since.is_some() {
                        "established".to_owned()
                    } else {
                        s.state
                    };
                    s
                })
            })
            .collect();
        out
    }
}

/// The running speaker.
pub struct BgpSpeaker {
    status: BgpStatusHandle,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl BgpSpeaker {
    /// Starts one session per peer and follows `plans`. `min_announce_share`
    /// is the policy's rail, enforced again here.
    pub fn spawn(
        settings: BgpSettings,
        min_announce_share: f64,
        mut plans: watch::Receiver<Arc<Plan>>,
    ) -> Self {
        let settings = Arc::new(settings);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let hold = settings.startup_hold;
        let (ready_tx, ready_rx) = watch::channel(hold.is_zero());
        let mut tables = Vec::new();
        let mut peers = Vec::new();
        let mut tasks = Vec::new();
        // The first plan is applied before any session starts: a session
        // that came up with an empty table would send End-of-RIB for
        // nothing and make a graceful-restart helper flush our routes.
        let start = Instant::now();
        let mut routes = Routes::default();
        let linger = settings.graceful_shutdown;
        let mut plan = plans.borrow_and_update().clone();
        let first = routes.apply(
            &plan.body.announcements,
            min_announce_share,
            linger,
            Duration::ZERO,
        );
        if let Err(why) = &first {
            warn!(version = plan.version, %why, "BGP speaker refuses the first plan; announcing nothing yet");
        }
        register_metrics(&settings, !hold.is_zero());
        for peer in &settings.peers {
            let (tx, rx) = watch::channel(Arc::new(routes.table_for(peer, &settings)));
            let status: SharedStatus = Arc::new(Mutex::new((
                BgpPeerStatus {
                    pop: peer.pop.clone(),
                    peer: SocketAddr::new(peer.address, peer.port).to_string(),
                    peer_as: peer.peer_as,
                    state: "idle".to_owned(),
                    uptime_secs: None,
                    flaps: 0,
                    prefixes_sent: 0,
                    updates_sent: 0,
                    last_error: None,
                },
                None,
            )));
            peers.push(status.clone());
            tables.push((peer.clone(), tx));
            let session = Session {
                peer: peer.clone(),
                settings: settings.clone(),
                table: rx,
                shutdown: shutdown_rx.clone(),
                ready: ready_rx.clone(),
                status,
            };
            tasks.push(tokio::spawn(supervise(session)));
        }
        let shared = Arc::new(Shared {
            peers,
            routes: Mutex::new(BgpStatus::default()),
        });
        let status = BgpStatusHandle(shared.clone());
        let mut stop = shutdown_rx;
        let mut holding = !hold.is_zero();
        tasks.push(tokio::spawn(async move {
            loop {
                if holding {
                    holding = still_holding(&plan, hold, start.elapsed());
                    if !holding {
                        let _ = ready_tx.send(true);
                    }
                    if let Ok(mut g) = shared.routes.lock() {
                        g.holding = holding.then(|| hold_reason(&plan, hold));
                    }
                    metrics::gauge!("steer_bgp_startup_hold").set(if holding { 1.0 } else { 0.0 });
                }
                let now = start.elapsed();
                match routes.apply(&plan.body.announcements, min_announce_share, linger, now) {
                    Ok(()) => {
                        publish(&settings, &routes, &tables);
                        if let Ok(mut g) = shared.routes.lock() {
                            g.plan_version = Some(plan.version);
                            g.refused_plan = None;
                            g.routes = routes.status();
                        }
                        metrics::gauge!("steer_bgp_plan_version").set(plan.version as f64);
                        metrics::gauge!("steer_bgp_plan_refused").set(0.0);
                    }
                    Err(why) => {
                        warn!(version = plan.version, %why, "BGP speaker refuses plan");
                        metrics::gauge!("steer_bgp_plan_refused").set(1.0);
                        if let Ok(mut g) = shared.routes.lock() {
                            g.refused_plan = Some(format!("plan {}: {why}", plan.version));
                        }
                    }
                }
                let next = match (routes.next_deadline(), holding) {
                    (Some(d), true) => Some(d.min(hold)),
                    (None, true) => Some(hold),
                    (d, false) => d,
                };
                let timer = async {
                    match next {
                        Some(d) => tokio::time::sleep_until(start + d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    changed = plans.changed() => {
                        if changed.is_err() {
                            // Control plane gone: keep announcing what we
                            // have (fail static) until shutdown.
                            info!("plan channel closed; BGP announcements stay as they are");
                            let _ = stop.changed().await;
                            return;
                        }
                        plan = plans.borrow_and_update().clone();
                    }
                    _ = timer => {
                        routes.tick(linger, start.elapsed());
                    }
                    _ = stop.changed() => return,
                }
            }
        }));
        Self {
            status,
            shutdown,
            tasks,
        }
    }

    pub fn status(&self) -> BgpStatusHandle {
        self.status.clone()
    }

    /// Stops every session per `on_shutdown` and waits up to `within`.
    pub async fn shutdown(self, within: Duration) {
        let _ = self.shutdown.send(true);
        let all = futures_join(self.tasks);
        let _ = tokio::time::timeout(within, all).await;
    }
}

/// Registers every speaker series at zero, per configured peer and PoP, so
/// dashboards and alerts see them before the first session attempt (which
/// the startup hold may delay).
fn register_metrics(settings: &BgpSettings, holding: bool) {
    metrics::gauge!("steer_bgp_startup_hold").set(if holding { 1.0 } else { 0.0 });
    metrics::gauge!("steer_bgp_plan_version").set(0.0);
    metrics::gauge!("steer_bgp_plan_refused").set(0.0);
    metrics::counter!("steer_bgp_session_panics_total").absolute(0);
    for peer in &settings.peers {
        let addr = SocketAddr::new(peer.address, peer.port).to_string();
        let labels = [("peer", addr.clone()), ("pop", peer.pop.to_string())];
        metrics::gauge!("steer_bgp_session_established", &labels).set(0.0);
        metrics::gauge!("steer_bgp_prefixes_sent", &labels).set(0.0);
        for name in [
            "steer_bgp_connect_attempts_total",
            "steer_bgp_sessions_established_total",
            "steer_bgp_updates_sent_total",
            "steer_bgp_session_flaps_total",
        ] {
            metrics::counter!(name, "peer" => addr.clone()).absolute(0);
        }
        metrics::gauge!("steer_bgp_routes_announced", "pop" => peer.pop.to_string()).set(0.0);
    }
}

/// Runs a session and starts it again if it panics (a decoder bug on some
/// peer's input must not silence that peer for good).
async fn supervise(session: Session) {
    loop {
        match tokio::spawn(session.clone().run()).await {
            Err(e) if e.is_panic() => {
                warn!(pop = %session.peer.pop, peer = %session.peer.address, "BGP session task panicked; restarting it");
                metrics::counter!("steer_bgp_session_panics_total").increment(1);
                if let Ok(mut g) = session.status.lock() {
                    g.0.last_error = Some("session task panicked; restarted".to_owned());
                    g.1 = None;
                }
                tokio::time::sleep(session.settings.reconnect_min).await;
                if *session.shutdown.borrow() {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// Whether the first table is still held back: some PoP has not reported
/// since start and the hold has time left. Logs the release.
fn still_holding(plan: &Plan, hold: Duration, elapsed: Duration) -> bool {
    let unknown = unknown_pops(plan);
    if unknown.is_empty() {
        info!(after = ?elapsed, "every PoP has reported: BGP sessions start");
        return false;
    }
    if elapsed >= hold {
        warn!(
            after = ?elapsed,
            silent = %unknown.join(","),
            "startup hold over with PoPs that never reported: BGP sessions start, those PoPs follow unknown_health"
        );
        return false;
    }
    true
}

fn hold_reason(plan: &Plan, hold: Duration) -> String {
    format!(
        "startup hold: the first table waits for {} to report (at most {:?} after start)",
        unknown_pops(plan).join(", "),
        hold
    )
}

fn unknown_pops(plan: &Plan) -> Vec<&str> {
    plan.body
        .pops
        .iter()
        .filter(|p| p.health == PopHealth::Unknown)
        .map(|p| p.id.as_str())
        .collect()
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

fn publish(
    settings: &BgpSettings,
    routes: &Routes,
    tables: &[(
        steer_types::bgp::BgpPeerConfig,
        watch::Sender<Arc<RouteTable>>,
    )],
) {
    let mut per_pop: BTreeMap<String, usize> = BTreeMap::new();
    for (peer, tx) in tables {
        let table = routes.table_for(peer, settings);
        *per_pop.entry(peer.pop.to_string()).or_default() = table.len();
        tx.send_if_modified(|cur| {
            if **cur == table {
                false
            } else {
                *cur = Arc::new(table);
                true
            }
        });
    }
    for (pop, n) in per_pop {
        metrics::gauge!("steer_bgp_routes_announced", "pop" => pop).set(n as f64);
    }
}
