//! The edge side of a node (`--role edge`): DNS and/or BGP serving the
//! plan the controllers publish, with no policy of its own.
//!
//! Fail static: the last plan accepted is saved atomically in
//! `[edge] state_dir` (temp file, fsync, rename, fsync of the directory)
//! and served at start when no controller answers; when every controller
//! is gone, the edge keeps serving what it holds, for as long as it runs,
//! and says how old it is (`steer_plan_age_seconds`, `/status` "edge").
//!
//! Subscriptions go to the controllers in `[edge] controllers` in turn:
//! when a stream ends or fails the next one is tried, after a jittered
//! exponential backoff that starts over once a stream carried a plan.
//! Every update is checked by [`steer_plansync::Follower`]: an older
//! version, a delta on another base or a hash mismatch is refused (logged,
//! counted in `steer_plan_updates_refused_total{reason}`) and the edge
//! resubscribes elsewhere, still serving what it held.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use prost::Message;
use serde::Serialize;
use steer_api::plan_feed::{MAX_PLAN_MESSAGE_BYTES, plan_from_pb, plan_to_pb, update_from_pb};
use steer_config::{EdgeSettings, SteerConfig};
use steer_dns::ViewPublisher;
use steer_plansync::{Applied, Follower, PlanVersion};
use steer_proto::v1::{SubscribePlanRequest, operator_client::OperatorClient};
use steer_types::{Plan, PlanBody, Timestamp, status::StatusReport};
use tokio::{net::TcpListener, sync::watch};
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use tracing::{debug, error, info, warn};

#[path = "../../steer/src/bin/shared/client_tls.rs"]
mod client_tls;

/// The saved plan inside `[edge] state_dir`.
pub const PLAN_FILE: &str = "plan.bin";

/// First and largest delay between subscription attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Where the plan being served came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanSource {
    /// Nothing yet: no saved plan, no controller answered.
    None,
    /// The saved plan, read at start.
    Saved,
    /// A controller's stream.
    Controller,
}

impl PlanSource {
    const ALL: [Self; 3] = [Self::None, Self::Saved, Self::Controller];

    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Saved => "saved",
            Self::Controller => "controller",
        }
    }
}

/// What `/status` shows under "edge"; replaced whole on every change.
#[derive(Clone, Debug, Serialize)]
struct EdgeView {
    plan_version: Option<String>,
    plan_sha256: Option<String>,
    plan_source: PlanSource,
    /// The controller streaming to us, if any.
    controller: Option<String>,
    controller_connected: bool,
    /// When the plan served was last known current (Unix ms): now while
    /// subscribed, else when the stream ended or the plan was saved.
    #[serde(skip)]
    current_at: Option<SystemTime>,
    /// Set when the saved plan could not be used at start.
    saved_plan_error: Option<String>,
}

impl EdgeView {
    fn age(&self) -> Option<Duration> {
        if self.controller_connected {
            return Some(Duration::ZERO);
        }
        self.current_at
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default())
    }

    fn document(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "plan_age_seconds".to_owned(),
                self.age()
                    .map_or(serde_json::Value::Null, |a| a.as_secs_f64().into()),
            );
        }
        v
    }
}

/// Registers the edge metrics at zero (in every role: dashboards see them).
pub(crate) fn register_metrics() {
    metrics::gauge!("steer_plan_age_seconds").set(0.0);
    metrics::gauge!("steer_edge_controller_connected").set(0.0);
    for result in ["ok", "failed"] {
        metrics::counter!("steer_edge_answer_reports_total", "result" => result).absolute(0);
    }
    for s in PlanSource::ALL {
        metrics::gauge!("steer_plan_source", "source" => s.as_str()).set(0.0);
    }
    for reason in [
        "backwards",
        "wrong_base",
        "hash_mismatch",
        "undecodable",
        "invalid",
    ] {
        metrics::counter!("steer_plan_updates_refused_total", "reason" => reason).absolute(0);
    }
    for kind in ["full", "delta"] {
        metrics::counter!("steer_plan_updates_applied_total", "kind" => kind).absolute(0);
    }
    metrics::counter!("steer_plan_save_errors_total").absolute(0);
}

fn set_source(source: PlanSource) {
    for s in PlanSource::ALL {
        metrics::gauge!("steer_plan_source", "source" => s.as_str()).set(if s == source {
            1.0
        } else {
            0.0
        });
    }
}

/// Reads and verifies the saved plan; `Err` says which file and why.
pub fn load_saved(path: &Path) -> Result<Option<(Follower, Plan, SystemTime)>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read saved plan {}: {e}", path.display())),
    };
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    let pb = steer_proto::v1::Plan::decode(bytes.as_slice()).map_err(|e| {
        format!(
            "saved plan {} is corrupt ({} bytes; not a plan: {e})",
            path.display(),
            bytes.len()
        )
    })?;
    let update =
        plan_from_pb(pb).map_err(|e| format!("saved plan {} is corrupt: {e}", path.display()))?;
    let mut follower = Follower::default();
    match follower.apply(&update).map(|_| follower.plan()) {
        Ok(Some(plan)) => Ok(Some((follower, plan, modified))),
        Ok(None) => Err(format!("saved plan {} holds no plan", path.display())),
        Err(refusal) => Err(format!(
            "saved plan {} is corrupt: {refusal}",
            path.display()
        )),
    }
}

/// Writes the plan the follower holds: temp file, fsync, rename, fsync of
/// the directory, so a crash leaves the old file or the new one, whole.
fn save(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{PLAN_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(PLAN_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

fn empty_plan() -> Plan {
    Plan {
        version: 0,
        computed_at: Timestamp::from_unix_ms(0),
        body: PlanBody {
            services: Vec::new(),
            pops: Vec::new(),
            regions: Vec::new(),
            announcements: Vec::new(),
            rails: Vec::new(),
        },
    }
}

/// What `/status` reports as the plan: its version and time; an edge holds
/// no drains or overrides of its own (they are the controllers').
fn status_of(plan: &Plan) -> StatusReport {
    StatusReport {
        plan_version: plan.version,
        plan_computed_at: plan.computed_at,
        pops: Vec::new(),
        regions: Vec::new(),
        drains: Vec::new(),
        overrides: Vec::new(),
        rails: Vec::new(),
        frozen: None,
        all_drained: Vec::new(),
        changes: Vec::new(),
        break_glass: Vec::new(),
    }
}

pub(crate) async fn run(config: SteerConfig, metrics: PrometheusHandle) -> anyhow::Result<()> {
    let Some(settings) = config.edge.clone() else {
        anyhow::bail!("--role edge needs an [edge] table");
    };
    let state_dir = settings
        .state_dir
        .clone()
        .unwrap_or_else(|| config.server.state_dir.join("edge"));
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating the edge state directory {}", state_dir.display()))?;
    let authenticator = crate::auth::start(&config);
    let plan_path = state_dir.join(PLAN_FILE);
    let mut view = EdgeView {
        plan_version: None,
        plan_sha256: None,
        plan_source: PlanSource::None,
        controller: None,
        controller_connected: false,
        current_at: None,
        saved_plan_error: None,
    };
    let (follower, initial) = match load_saved(&plan_path) {
        Ok(Some((follower, plan, saved_at))) => {
            info!(
                path = %plan_path.display(),
                version = %follower.version().unwrap_or_default(),
                "serving the saved plan until a controller answers"
            );
            view.plan_source = PlanSource::Saved;
            view.current_at = Some(saved_at);
            view.plan_version = follower.version().map(|v| v.to_string());
            view.plan_sha256 = follower.content_hash().map(|h| steer_plansync::hex(&h));
            (follower, plan)
        }
        Ok(None) => {
            info!(path = %plan_path.display(), "no saved plan; waiting for a controller");
            (Follower::default(), empty_plan())
        }
        Err(why) => {
            error!(
                error = %why,
                "the saved plan cannot be used; starting without it (steered names wait \
                 for a controller; static zones are served)"
            );
            view.saved_plan_error = Some(why);
            (Follower::default(), empty_plan())
        }
    };
    set_source(view.plan_source);
    let (plan_tx, plan_rx) = watch::channel(Arc::new(initial.clone()));
    let status = Arc::new(ArcSwap::from_pointee(status_of(&initial)));
    let view = Arc::new(ArcSwap::from_pointee(view));

    let publisher = Arc::new(ViewPublisher::new(
        crate::reload::dns_inputs(&config),
        Arc::new(initial),
    )?);
    let following = view.clone();
    crate::follow_plans_into_dns(publisher.clone(), plan_rx.clone(), move || {
        following.load().controller_connected
    });
    let dns = if config.server.dns_listen.is_empty() {
        None
    } else {
        crate::raise_nofile(&config);
        Some(crate::serve_dns(&config, &publisher))
    };
    tokio::spawn(crate::reload::edge_on_sighup(
        config.source.clone(),
        Arc::new(ArcSwap::from_pointee(config.clone())),
        publisher.clone(),
        crate::auth::AuthReload {
            live: authenticator.clone(),
            tls: None,
        },
    ));
    let http = TcpListener::bind(config.server.http_listen)
        .await
        .with_context(|| format!("HTTP listen {}", config.server.http_listen))?;

    // BGP starts once a plan is held: an empty plan would withdraw every
    // route this PoP announces.
    let bgp_status_cell: Arc<ArcSwap<Option<steer_api::BgpStatusSource>>> =
        Arc::new(ArcSwap::from_pointee(None));
    let bgp_task = config.bgp.clone().map(|settings| {
        let min_share = config.topology.policy.min_announce_share;
        let mut plans = plan_rx.clone();
        let cell = bgp_status_cell.clone();
        tokio::spawn(async move {
            if plans.wait_for(|p| p.version > 0).await.is_err() {
                return None;
            }
            info!(
                peers = settings.peers.len(),
                "plan held; starting BGP speaker"
            );
            let speaker = steer_bgp::BgpSpeaker::spawn(settings, min_share, plans);
            let h = speaker.status();
            cell.store(Arc::new(Some(
                Arc::new(move || h.snapshot()) as steer_api::BgpStatusSource
            )));
            Some(speaker)
        })
    });
    let bgp_status: Option<steer_api::BgpStatusSource> = config.bgp.as_ref().map(|_| {
        let cell = bgp_status_cell.clone();
        Arc::new(move || match cell.load().as_ref() {
            Some(f) => f(),
            None => Default::default(),
        }) as steer_api::BgpStatusSource
    });

    let edge_status: crate::http::SectionSource = {
        let view = view.clone();
        Arc::new(move || view.load().document())
    };
    let http_addr = http.local_addr()?;
    let http_server = crate::http::serve(
        http,
        metrics,
        status.clone(),
        authenticator,
        bgp_status,
        Some(("edge", edge_status)),
        None,
        None,
    );
    tokio::spawn(age_ticker(view.clone()));
    let name = format!(
        "{}:{}",
        crate::host_name(),
        config.server.http_listen.port()
    );
    tokio::spawn(report_answers(settings.clone(), name, publisher.answers()));
    let follow = tokio::spawn(follow(settings, state_dir, follower, plan_tx, status, view));
    info!(
        dns = ?config.server.dns_listen, http = %http_addr,
        "steerd edge ready"
    );
    let dns_addrs = config.server.dns_listen.clone();
    tokio::select! {
        r = http_server => r.context("HTTP server")?,
        r = async {
            match dns {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        } => r.context("DNS task")?.with_context(|| format!("DNS listen {dns_addrs:?}"))?,
        r = follow => r.context("plan follower")?,
        () = crate::shutdown_signal() => {}
    }
    if let Some(task) = bgp_task {
        task.abort();
    }
    info!("steerd edge stopped");
    Ok(())
}

/// Keeps `steer_plan_age_seconds` current between events.
async fn age_ticker(view: Arc<ArcSwap<EdgeView>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let age = view.load().age().map_or(0.0, |a| a.as_secs_f64());
        metrics::gauge!("steer_plan_age_seconds").set(age);
    }
}

fn update_view(view: &ArcSwap<EdgeView>, f: impl FnOnce(&mut EdgeView)) {
    let mut next = EdgeView::clone(&view.load());
    f(&mut next);
    view.store(Arc::new(next));
}

/// Full jitter: a delay in [base/2, base], from a cheap hash of time.
fn jittered(base: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let frac = 0.5 + f64::from(nanos % 1000) / 2000.0;
    base.mul_f64(frac)
}

/// Subscribes to the controllers in turn, forever.
async fn follow(
    settings: EdgeSettings,
    save_dir: PathBuf,
    mut follower: Follower,
    plans: watch::Sender<Arc<Plan>>,
    status: Arc<ArcSwap<StatusReport>>,
    view: Arc<ArcSwap<EdgeView>>,
) {
    let bearer: Option<MetadataValue<Ascii>> = settings.token.as_ref().and_then(|t| {
        let mut v: MetadataValue<Ascii> = format!("Bearer {}", t.expose()).parse().ok()?;
        v.set_sensitive(true);
        Some(v)
    });
    // One name per process: a resubscribe of ours ends our older stream on
    // the controller; another edge never shares it.
    let subscriber = format!(
        "edge-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() % 1_000_000_000)
    );
    let mut next = 0usize;
    let mut backoff = BACKOFF.0;
    loop {
        let Some(endpoint) = settings
            .controllers
            .get(next % settings.controllers.len().max(1))
            .cloned()
        else {
            error!("[edge] controllers is empty; serving what is held");
            std::future::pending::<()>().await;
            return;
        };
        next = next.wrapping_add(1);
        let mut carried = false;
        let ctx = Ctx {
            endpoint: &endpoint,
            settings: &settings,
            bearer: bearer.as_ref(),
            subscriber: &subscriber,
            plans: &plans,
            status: &status,
            view: &view,
            save_dir: &save_dir,
        };
        let result = subscribe_once(&ctx, &mut follower, &mut carried).await;
        let was_connected = view.load().controller_connected;
        update_view(&view, |v| {
            v.controller_connected = false;
            if was_connected {
                v.current_at = Some(SystemTime::now());
            }
        });
        metrics::gauge!("steer_edge_controller_connected").set(0.0);
        if carried {
            backoff = BACKOFF.0;
        }
        let delay = jittered(backoff);
        let held = follower.version().map(|v| v.to_string());
        match result {
            Ok(()) => warn!(
                %endpoint, retry_in = ?delay, held = ?held,
                "controller ended the plan stream; trying the next controller"
            ),
            Err(e) => warn!(
                %endpoint, error = %e, retry_in = ?delay, held = ?held,
                "plan subscription failed; serving the plan held and trying the next controller"
            ),
        }
        tokio::time::sleep(delay).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// Counters per answer report (the controller takes at most
/// `steer_health::ingest::MAX_ANSWER_COUNTERS`).
const ANSWER_COUNTERS_PER_REPORT: usize = 8_000;

/// Sends this edge's answer counters to every controller once a second,
/// so the leader (whichever it is) estimates demand from what edges
/// really answered. A controller that does not answer is skipped until
/// the next round; nothing queues.
async fn report_answers(
    settings: EdgeSettings,
    edge: String,
    tally: Arc<steer_types::answers::AnswerTally>,
) {
    use steer_proto::v1::{
        AnswerCounter, ReportAnswersRequest, health_ingest_client::HealthIngestClient,
    };
    let bearer: Option<MetadataValue<Ascii>> = settings.token.as_ref().and_then(|t| {
        let mut v: MetadataValue<Ascii> = format!("Bearer {}", t.expose()).parse().ok()?;
        v.set_sensitive(true);
        Some(v)
    });
    let instance = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    let mut clients: Vec<Option<HealthIngestClient<Channel>>> =
        vec![None; settings.controllers.len()];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let totals = tally.totals();
        let counters: Vec<AnswerCounter> = totals
            .0
            .into_iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, value)| AnswerCounter {
                service: k.service.to_string(),
                region: k.region.map(|r| r.to_string()).unwrap_or_default(),
                pop: k.pop.to_string(),
                value,
            })
            .collect();
        if counters.is_empty() {
            continue;
        }
        for (i, endpoint) in settings.controllers.iter().enumerate() {
            if clients[i].is_none() {
                let Ok(ep) = Channel::from_shared(endpoint.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|ep| client_tls::apply(ep, settings.tls.as_ref()))
                else {
                    continue;
                };
                // Lazy: connects on first use, reconnects by itself.
                let channel = ep
                    .connect_timeout(Duration::from_secs(2))
                    .timeout(Duration::from_secs(2))
                    .connect_lazy();
                clients[i] = Some(HealthIngestClient::new(channel));
            }
            let Some(client) = clients[i].as_mut() else {
                continue;
            };
            for chunk in counters.chunks(ANSWER_COUNTERS_PER_REPORT) {
                let mut request = tonic::Request::new(ReportAnswersRequest {
                    edge: edge.clone(),
                    instance,
                    counters: chunk.to_vec(),
                });
                if let Some(v) = &bearer {
                    request.metadata_mut().insert("authorization", v.clone());
                }
                match client.report_answers(request).await {
                    Ok(_) => {
                        metrics::counter!("steer_edge_answer_reports_total", "result" => "ok")
                            .increment(1);
                    }
                    Err(s) => {
                        metrics::counter!("steer_edge_answer_reports_total", "result" => "failed")
                            .increment(1);
                        debug!(%endpoint, error = %status_text(&s), "answer report not taken");
                        break;
                    }
                }
            }
        }
    }
}

struct Ctx<'a> {
    endpoint: &'a str,
    settings: &'a EdgeSettings,
    bearer: Option<&'a MetadataValue<Ascii>>,
    subscriber: &'a str,
    plans: &'a watch::Sender<Arc<Plan>>,
    status: &'a ArcSwap<StatusReport>,
    view: &'a ArcSwap<EdgeView>,
    save_dir: &'a PathBuf,
}

async fn subscribe_once(
    ctx: &Ctx<'_>,
    follower: &mut Follower,
    carried: &mut bool,
) -> Result<(), String> {
    let endpoint = Channel::from_shared(ctx.endpoint.to_owned())
        .map_err(|e| format!("bad endpoint: {e}"))
        .and_then(|ep| client_tls::apply(ep, ctx.settings.tls.as_ref()))?;
    let channel = endpoint
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {}", chain(&e)))?;
    let mut client = OperatorClient::new(channel).max_decoding_message_size(MAX_PLAN_MESSAGE_BYTES);
    let mut request = tonic::Request::new(SubscribePlanRequest {
        subscriber: ctx.subscriber.to_owned(),
    });
    if let Some(v) = ctx.bearer {
        request.metadata_mut().insert("authorization", v.clone());
    }
    let mut stream = client
        .subscribe_plan(request)
        .await
        .map_err(|s| status_text(&s))?
        .into_inner();
    info!(endpoint = %ctx.endpoint, "plan stream open");
    while let Some(msg) = stream.message().await.map_err(|s| status_text(&s))? {
        if !*carried {
            *carried = true;
            metrics::gauge!("steer_edge_controller_connected").set(1.0);
            update_view(ctx.view, |v| {
                v.controller_connected = true;
                v.controller = Some(ctx.endpoint.to_owned());
            });
        }
        let kind = if msg.full { "full" } else { "delta" };
        let update = match update_from_pb(msg) {
            Ok(u) => u,
            Err(e) => {
                metrics::counter!("steer_plan_updates_refused_total", "reason" => "invalid")
                    .increment(1);
                return Err(format!("invalid plan update: {e}"));
            }
        };
        // The plan is copied out only for a new version (a resend changes nothing).
        let applied = follower.apply(&update).map(|applied| {
            let plan = (applied == Applied::New).then(|| follower.plan()).flatten();
            (applied, plan)
        });
        match applied {
            Ok((Applied::New, Some(plan))) => {
                metrics::counter!("steer_plan_updates_applied_total", "kind" => kind).increment(1);
                let version = update.version;
                accept(ctx, follower, version, plan).await;
            }
            Ok(_) => {
                // The version held, resent: nothing changes, but it is
                // current again, and comes from a controller.
                update_view(ctx.view, |v| v.plan_source = PlanSource::Controller);
                set_source(PlanSource::Controller);
            }
            Err(refusal) => {
                metrics::counter!("steer_plan_updates_refused_total", "reason" => refusal.label())
                    .increment(1);
                error!(
                    endpoint = %ctx.endpoint, error = %refusal,
                    "plan update refused; keeping the plan held"
                );
                return Err(refusal.to_string());
            }
        }
    }
    Ok(())
}

/// Serves, shows and saves a newly accepted plan.
async fn accept(ctx: &Ctx<'_>, follower: &Follower, version: PlanVersion, plan: Plan) {
    let sha = follower.content_hash().map(|h| steer_plansync::hex(&h));
    ctx.status.store(Arc::new(status_of(&plan)));
    let computed_at = plan.computed_at;
    ctx.plans.send_replace(Arc::new(plan));
    update_view(ctx.view, |v| {
        v.plan_version = Some(version.to_string());
        v.plan_sha256 = sha;
        v.plan_source = PlanSource::Controller;
    });
    set_source(PlanSource::Controller);
    info!(%version, endpoint = %ctx.endpoint, "plan accepted");
    let Some(content) = follower.content() else {
        return;
    };
    let bytes = plan_to_pb(version, computed_at, content).encode_to_vec();
    let dir = ctx.save_dir.clone();
    let saved = tokio::task::spawn_blocking(move || save(&dir, &bytes)).await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            metrics::counter!("steer_plan_save_errors_total").increment(1);
            error!(
                path = %ctx.save_dir.join(PLAN_FILE).display(), error = %e,
                "cannot save the plan; a restart without a controller would not have it"
            );
        }
        Err(e) => error!(error = %e, "plan save task failed"),
    }
}

/// A refused subscription, with what to fix when it is the credentials.
fn status_text(s: &tonic::Status) -> String {
    let hint = match s.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            "; check [edge] token_file: the controllers' tokens file must list it (viewer role \
             is enough)"
        }
        _ => "",
    };
    format!("{:?}: {}{hint}", s.code(), s.message())
}

/// An error with every cause it wraps (tonic's says only "transport error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use steer_plansync::PlanContent;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("steer-edge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn saved_bytes(sequence: u64) -> Vec<u8> {
        let content = PlanContent::encode(&empty_plan().body);
        let version = PlanVersion { epoch: 1, sequence };
        plan_to_pb(version, Timestamp::from_unix_ms(9), &content).encode_to_vec()
    }

    #[test]
    fn a_saved_plan_is_read_back_whole() {
        let d = dir("ok");
        save(&d, &saved_bytes(4)).unwrap();
        assert!(!d.join(format!("{PLAN_FILE}.tmp")).exists());
        let (follower, plan, _) = load_saved(&d.join(PLAN_FILE)).unwrap().unwrap();
        assert_eq!(plan.version, 4);
        assert_eq!(follower.version().map(|v| v.sequence), Some(4));
    }

    #[test]
    fn no_saved_plan_is_not_an_error() {
        assert!(load_saved(&dir("none").join(PLAN_FILE)).unwrap().is_none());
    }

    #[test]
    fn a_truncated_or_tampered_plan_is_refused_naming_the_file() {
        let d = dir("bad");
        let path = d.join(PLAN_FILE);
        let bytes = saved_bytes(4);
        std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        let err = load_saved(&path).unwrap_err();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("corrupt"),
            "{err}"
        );

        // Valid protobuf, content that does not match its hash.
        let mut pb = steer_proto::v1::Plan::decode(bytes.as_slice()).unwrap();
        if let Some(e) = pb.entries.first_mut() {
            e.body = b"[]".to_vec();
        }
        std::fs::write(&path, pb.encode_to_vec()).unwrap();
        let err = load_saved(&path).unwrap_err();
        assert!(err.contains("hash mismatch"), "{err}");
    }
}
