//! The controller side of a node (`--role controller`, and with the data
//! planes `--role all`): ingest, the control loop, the operator API and plan
//! publication to edges (`SubscribePlan`). DNS listeners and the BGP speaker
//! start only with `data_planes` (role all).

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use steer_api::{ApiError, Explainer, OperatorService, interceptor};
use steer_config::SteerConfig;
use steer_control::{ControlLoop, SystemClock};
use steer_dns::ViewPublisher;
use steer_health::ingest::IngestService;
use steer_proto::v1::operator_server::OperatorServer;
use steer_store::{FileStore, StateStore};
use tokio::{net::TcpListener, sync::mpsc};
use tonic::{service::interceptor::InterceptedService, transport::server::TcpIncoming};
use tracing::{info, warn};

use crate::{
    NodeOptions, TCP_KEEPALIVE, TCP_KEEPALIVE_INTERVAL, TCP_KEEPALIVE_RETRIES, auth, http, reload,
    shutdown_signal, tls,
};

pub(crate) async fn run(
    config: SteerConfig,
    options: NodeOptions,
    metrics: PrometheusHandle,
    data_planes: bool,
) -> anyhow::Result<()> {
    let NodeOptions {
        record,
        adopt_state,
        ..
    } = options;
    steer_api::register_metrics();
    reload::register_metrics();
    steer_health::ingest::register_metrics(config.topology.pops.iter().map(|p| &p.id));
    let authenticator = auth::start(&config);
    // TLS is terminated here, with a config reload can replace.
    let tls_config: Option<tls::SharedTlsConfig> = match &config.tls {
        None => None,
        Some(t) => {
            let material = auth::TlsMaterial::read(t)?;
            let rustls = tls::server_config(&material).context("TLS on the gRPC listener")?;
            info!(
                mtls = t.client_ca_file.is_some(),
                "gRPC listener speaks TLS"
            );
            Some(Arc::new(ArcSwap::new(rustls)))
        }
    };
    let config_path = config.source.clone();

    let topology = Arc::new(config.topology.clone());
    let shared = shared_store(&config, data_planes).await?;
    // The API writes refusals and reads the audit log itself, never
    // through the control loop (appends are one write per line each).
    let (api_store, adopted, mut control, handles): (Arc<dyn StateStore>, _, _, _) = match &shared {
        #[cfg(feature = "etcd")]
        Some(shared) => {
            // etcd may still be forming (or out of quorum) when a
            // controller starts: wait for it rather than exit.
            let mut pause = Duration::from_millis(200);
            let (control, handles) = loop {
                match ControlLoop::new_standby(
                    topology.clone(),
                    Box::new(shared.store.clone()),
                    Box::new(SystemClock),
                ) {
                    Ok(built) => break built,
                    Err(steer_store::StoreError::Unavailable { reason }) => {
                        warn!(%reason, "cannot read the shared state yet; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => {
                        return Err(e).context("reading the shared state from etcd");
                    }
                }
            };
            (Arc::new(shared.store.clone()), None, control, handles)
        }
        _ => {
            let store = FileStore::open(&config.server.state_dir).with_context(|| {
                format!(
                    "opening state directory {}",
                    config.server.state_dir.display()
                )
            })?;
            let adopted = claim_state(&store, &config, adopt_state)?;
            let (control, handles) =
                ControlLoop::new(topology, Box::new(store.clone()), Box::new(SystemClock))
                    .context("restoring state")?;
            (Arc::new(store), adopted, control, handles)
        }
    };
    if let Some((identity, previous)) = adopted {
        let dir = config.server.state_dir.display().to_string();
        control
            .adopt_state(identity, &previous, &dir)
            .context("recording the adopted state directory")?;
        warn!(state_dir = %dir, %previous, "state directory adopted (--adopt-state)");
    }
    if let Some(path) = record {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening recording {}", path.display()))?;
        control.record_to(steer_control::Recorder::new(Box::new(
            std::io::BufWriter::new(file),
        )));
        info!(path = %path.display(), "recording control-loop inputs");
    }

    // Bind everything before serving, so a busy port fails startup clearly.
    let dns_addrs = if data_planes {
        config.server.dns_listen.clone()
    } else {
        Vec::new()
    };
    if data_planes {
        crate::raise_nofile(&config);
    }
    let grpc = TcpListener::bind(config.server.grpc_listen)
        .await
        .with_context(|| format!("gRPC listen {}", config.server.grpc_listen))?;
    let http = TcpListener::bind(config.server.http_listen)
        .await
        .with_context(|| format!("HTTP listen {}", config.server.http_listen))?;

    // DNS answers from a view recompiled on every plan publication and on
    // every successful reload (API or SIGHUP).
    let live_config = Arc::new(ArcSwap::from_pointee(config.clone()));
    let publisher = Arc::new(ViewPublisher::new(
        reload::dns_inputs(&config),
        handles.plan.load_full(),
    )?);
    // Demand per region is estimated from the answers served: this
    // node's DNS (role all) and every edge's, reported (ReportAnswers).
    let edge_answers = Arc::new(std::sync::Mutex::new(
        steer_types::answers::MergedAnswers::default(),
    ));
    {
        let local = publisher.answers();
        let edges = edge_answers.clone();
        control.count_answers_with(Arc::new(move || {
            let merged = edges.lock().map(|m| m.totals()).unwrap_or_default();
            local.totals().plus(&merged)
        }));
    }
    let answer_sink = answer_sink(edge_answers, live_config.clone());
    crate::follow_plans_into_dns(publisher.clone(), handles.plan_watch.clone(), || true);
    let publisher_for_ds = publisher.clone();
    let explainer = Arc::new(DnsExplainer {
        publisher: publisher.clone(),
        evidence: handles.evidence.clone(),
        status: handles.status.clone(),
    });
    // A controller keeps the view (explain answers from what an edge's DNS
    // would do) but opens no DNS listener.
    let dns = data_planes.then(|| crate::serve_dns(&config, &publisher));
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let (propose_tx, propose_rx) = mpsc::channel(4);
    let (apply_tx, apply_rx) = mpsc::channel(4);
    control.configure_changes(
        config.changes.clone(),
        steer_change::config_digest(&config.source_text),
    );
    control.apply_configs_with(apply_tx);
    tokio::spawn(reload::run(
        config_path,
        live_config.clone(),
        publisher,
        reload::Inbox {
            reloads: reload_rx,
            proposals: propose_rx,
            applies: apply_rx,
        },
        handles.api_tx.clone(),
        auth::AuthReload {
            live: authenticator.clone(),
            tls: tls_config.clone(),
        },
    ));
    tokio::spawn(reload::on_sighup(reload_tx.clone()));

    // SLOs: judged by the loop, alerts posted by a task of their own.
    control.configure_slos(
        config.slos.clone(),
        config.alerting.evaluation_interval,
        config.alerting.resend_interval,
    );
    if !config.slos.is_empty() && !config.alerting.alertmanagers.is_empty() {
        let link = format!("http://{}/status", http.local_addr()?);
        let alerts = control.slo_alerts(link);
        tokio::spawn(steer_control::run_alertmanager_sender(
            alerts,
            config.alerting.alertmanagers.clone(),
        ));
    }
    let control_task = tokio::spawn(control.run(Duration::from_millis(200)));
    #[cfg(feature = "etcd")]
    let cluster = shared.map(|s| {
        crate::cluster::start(
            s.options,
            s.lease_ttl,
            s.store,
            handles.api_tx.clone(),
            handles.plan_watch.clone(),
        )
    });
    #[cfg(not(feature = "etcd"))]
    let _ = shared;

    // Anycast: the BGP speaker follows the same plan watch as DNS.
    let bgp = config.bgp.clone().filter(|_| data_planes).map(|settings| {
        info!(peers = settings.peers.len(), "starting BGP speaker");
        steer_bgp::BgpSpeaker::spawn(
            settings,
            config.topology.policy.min_announce_share,
            handles.plan_watch.clone(),
        )
    });
    let bgp_status: Option<steer_api::BgpStatusSource> = bgp.as_ref().map(|b| {
        let h = b.status();
        Arc::new(move || h.snapshot()) as steer_api::BgpStatusSource
    });

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("steer.v1.Operator", tonic_health::ServingStatus::Serving)
        .await;
    health_reporter
        .set_service_status(
            "steer.v1.HealthIngest",
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(steer_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection v1")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(steer_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building gRPC reflection v1alpha")?;
    let ingest = IngestService::new(handles.plan.clone(), handles.health_tx.clone())
        .with_answer_sink(answer_sink);
    let mut operator = OperatorService::new(
        handles.api_tx.clone(),
        handles.plan_watch.clone(),
        explainer,
        Some(reload_tx),
    )
    .with_proposals(propose_tx);
    if let Some(b) = &bgp_status {
        tokio::spawn(crate::timeline::watch_bgp(
            b.clone(),
            handles.timeline.clone(),
        ));
        operator = operator.with_bgp_status(b.clone());
    }
    operator = operator.with_status_snapshot(handles.status.clone());
    operator = operator.with_timeline(handles.timeline.clone());
    operator = operator.with_dnssec(dnssec_source(publisher_for_ds));
    operator = {
        let slos = handles.slo.clone();
        operator.with_slos(Arc::new(move || crate::slo::slo_response(&slos.load())))
    };
    #[cfg(feature = "etcd")]
    let mut cluster_section: Option<(&'static str, http::SectionSource)> = None;
    #[cfg(not(feature = "etcd"))]
    let cluster_section: Option<(&'static str, http::SectionSource)> = None;
    // Webhooks for timeline events: the leader sends (a follower's gate
    // refuses writes).
    #[cfg_attr(not(feature = "etcd"), allow(unused_mut))]
    let mut sends: crate::notify::Active = Arc::new(|| true);
    #[cfg(feature = "etcd")]
    if let Some(c) = &cluster {
        let gate = c.gate.clone();
        sends = Arc::new(move || gate().is_ok());
    }
    crate::notify::spawn(config.notify.clone(), handles.timeline.clone(), sends);
    #[cfg(feature = "etcd")]
    if let Some(c) = &cluster {
        operator = operator
            .with_plan_source(steer_api::plan_feed::PlanSource::Shared(
                c.published.clone(),
            ))
            .with_write_gate(c.gate.clone());
        let status = c.status.clone();
        cluster_section = Some((
            "cluster",
            Arc::new(move || serde_json::to_value(&**status.load()).unwrap_or_default()),
        ));
    }
    operator = {
        let writer = api_store.clone();
        let denied = steer_api::DeniedAudit::spawn(Arc::new(move |e| {
            writer.append_attempt_audit(e).map_err(|e| e.to_string())
        }))
        .context("starting the denied-attempt audit writer")?;
        let reader: steer_api::AuditReader = Arc::new(move |limit, keep| {
            api_store
                .read_audit_matching(limit, &|e| keep(e))
                .map_err(|e| e.to_string())
        });
        operator
            .with_audit(denied, reader)
            .with_dry_run(handles.projector.clone())
    };
    // One service for gRPC and the status page: a drain from the page is
    // an operator call like any other (auth, dry run, review, audit).
    let operator = Arc::new(operator);
    let ui = http::UiSources::new(operator.clone(), handles.timeline.clone(), live_config);
    let grpc_addr = grpc.local_addr()?;
    // Limits on what one peer can hold (README, "Control surfaces under
    // abuse"). No whole-request timeout here: it would cut WatchPlan and
    // health-report streams; unary calls are bounded in the service.
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(GRPC_MAX_STREAMS_PER_CONNECTION)
        .concurrency_limit_per_connection(GRPC_CONCURRENCY_PER_CONNECTION)
        .http2_keepalive_interval(Some(GRPC_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(GRPC_KEEPALIVE_TIMEOUT))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            steer_health::ingest_route::HealthIngestRoutes::new(ingest, MAX_REPORT_BYTES),
            interceptor(authenticator.clone()),
        ))
        .add_service(InterceptedService::new(
            OperatorServer::from_arc(operator)
                .max_decoding_message_size(MAX_OPERATOR_REQUEST_BYTES)
                .max_encoding_message_size(steer_api::plan_feed::MAX_PLAN_MESSAGE_BYTES),
            interceptor(authenticator.clone()),
        ));
    // Builder socket options apply only to `serve`; with our own listener,
    // TCP_NODELAY is set here (and by the TLS acceptor), so small acks are
    // not held back by Nagle.
    let grpc_server: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>,
    > = match tls_config {
        Some(tls_config) => Box::pin(
            router.serve_with_incoming_shutdown(tls::incoming(grpc, tls_config), shutdown_signal()),
        ),
        None => Box::pin(
            router.serve_with_incoming_shutdown(
                TcpIncoming::from(grpc)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(TCP_KEEPALIVE))
                    .with_keepalive_interval(Some(TCP_KEEPALIVE_INTERVAL))
                    .with_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES)),
                shutdown_signal(),
            ),
        ),
    };

    let http_addr = http.local_addr()?;
    let http_server = http::serve(
        http,
        metrics,
        handles.status.clone(),
        authenticator,
        bgp_status,
        cluster_section,
        Some(handles.slo.clone()),
        Some(ui),
    );

    info!(
        dns = ?dns_addrs, grpc = %grpc_addr, http = %http_addr,
        plan_version = handles.plan.load().version, "steerd ready"
    );

    tokio::select! {
        r = grpc_server => r.context("gRPC server")?,
        r = http_server => r.context("HTTP server")?,
        r = async {
            match dns {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        } => r.context("DNS task")?.with_context(|| format!("DNS listen {dns_addrs:?}"))?,
        r = control_task => r.context("control loop")?,
    }
    if let Some(bgp) = bgp {
        bgp.shutdown(Duration::from_secs(3)).await;
    }
    info!("steerd stopped");
    Ok(())
}

/// Largest operator request steerd decodes: names, a reason and a few
/// numbers fit many times over; anything larger is refused
/// (RESOURCE_EXHAUSTED) before it is decoded or authorised.
const MAX_OPERATOR_REQUEST_BYTES: usize = 64 * 1024;
/// HTTP/2 streams one gRPC connection may have open (WatchPlan, report
/// streams and calls in flight); more are refused by the h2 layer.
const GRPC_MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// Requests one gRPC connection may have being handled at once; more
/// wait their turn (streams count only until their headers are sent).
const GRPC_CONCURRENCY_PER_CONNECTION: usize = 32;
/// An HTTP/2 PING every 20 s; no answer within 10 s closes the connection,
/// ending the streams of an agent that vanished without a FIN.
const GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest health report (with its peers' observations and evidence).
const MAX_REPORT_BYTES: usize = 1024 * 1024;

/// A clustered controller's store and election settings.
#[cfg(feature = "etcd")]
struct Shared {
    options: steer_store::etcd::EtcdOptions,
    lease_ttl: Duration,
    store: Arc<steer_store::etcd::EtcdStore>,
}
#[cfg(not(feature = "etcd"))]
enum Shared {}

/// The etcd store when `[cluster]` is configured (controllers only).
async fn shared_store(config: &SteerConfig, data_planes: bool) -> anyhow::Result<Option<Shared>> {
    let Some(settings) = &config.cluster else {
        return Ok(None);
    };
    if data_planes {
        anyhow::bail!(
            "{}: [cluster] is for controllers: start them with --role controller (and edges \
             with --role edge); --role all keeps its state in its own directory",
            config.source.display()
        );
    }
    #[cfg(feature = "etcd")]
    {
        let options = crate::cluster::options(config, settings);
        info!(
            etcd = %options.endpoints.join(","),
            node = %options.node_id,
            prefix = %options.prefix,
            "state in etcd; following until elected"
        );
        let store = crate::cluster::connect_store(&options).await;
        Ok(Some(Shared {
            options,
            lease_ttl: settings.lease_ttl,
            store,
        }))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = settings;
        anyhow::bail!(
            "{}: [cluster] needs a steerd built with etcd support \
             (cargo build --release --features steer/etcd)",
            config.source.display()
        )
    }
}

/// Refuses a state directory recorded for another deployment unless
/// `adopt` (see `steer_store::claim`). Returns (this deployment's identity,
/// the one it adopts) for the control loop to record and audit.
fn claim_state(
    store: &FileStore,
    config: &SteerConfig,
    adopt: bool,
) -> anyhow::Result<Option<(steer_store::StateIdentity, steer_store::StateIdentity)>> {
    let wanted = steer_store::StateIdentity::new(
        config.server.cluster.clone(),
        config.topology.regions.iter().map(|r| r.id.clone()),
    );
    let dir = config.server.state_dir.display().to_string();
    Ok(match steer_store::claim(store, &dir, &wanted, adopt)? {
        steer_store::Claim::Recorded => {
            info!(state_dir = %dir, identity = %wanted, "state directory recorded for this deployment");
            None
        }
        steer_store::Claim::Adopted { previous } => Some((wanted, previous)),
        _ => None,
    })
}

/// Most edges one controller keeps answer counters for.
const MAX_ANSWER_EDGES: usize = 10_000;

/// Takes edges' answer counters into `merged`, refusing keys the config
/// does not know (so a peer cannot grow the map with names of its own).
fn answer_sink(
    merged: Arc<std::sync::Mutex<steer_types::answers::MergedAnswers>>,
    config: Arc<ArcSwap<SteerConfig>>,
) -> steer_health::ingest::AnswerSink {
    metrics::gauge!("steer_answer_reporting_edges").set(0.0);
    Arc::new(move |edge, instance, counters| {
        let config = config.load();
        let t = &config.topology;
        if let Some((k, _)) = counters.iter().find(|(k, _)| {
            t.service(k.service.as_str()).is_none()
                || t.pop(k.pop.as_str()).is_none()
                || k.region
                    .as_ref()
                    .is_some_and(|r| t.region(r.as_str()).is_none())
        }) {
            return Err(format!(
                "unknown service, region or PoP in counter {}/{}/{} (is the edge's config the \
                 controllers'?)",
                k.service,
                k.region.as_ref().map_or("-", |r| r.as_str()),
                k.pop
            ));
        }
        let mut m = merged
            .lock()
            .map_err(|_| "answer counters unavailable".to_owned())?;
        if m.edges() >= MAX_ANSWER_EDGES && !m.knows(edge) {
            return Err(format!("answers from {MAX_ANSWER_EDGES} edges already"));
        }
        if m.apply(edge, instance, counters) {
            info!(edge, "answer counts from a new edge");
            metrics::gauge!("steer_answer_reporting_edges").set(m.edges() as f64);
        }
        Ok(())
    })
}

/// GetDnssecDs from the keys the DNS view signs with.
fn dnssec_source(publisher: Arc<ViewPublisher>) -> steer_api::DnssecSource {
    Arc::new(move |zone: &str| match publisher.dnssec_ds(zone) {
        steer_dns::DsLookup::Signed(ds) => Ok(ds),
        steer_dns::DsLookup::NotSigned => Err(ApiError::NotFound(format!(
            "zone {zone} is served unsigned (set `dnssec = true` on its [[zones]] entry)"
        ))),
        _ => Err(ApiError::NotFound(format!(
            "zone {zone} is not served here"
        ))),
    })
}

/// Explains from the view DNS is serving and the plan it was built from.
struct DnsExplainer {
    publisher: Arc<ViewPublisher>,
    /// Live figures behind the plan (demand, probe output).
    evidence: Arc<arc_swap::ArcSwap<steer_types::PlanEvidence>>,
    /// The published status, for who asked for each drain and why.
    status: Arc<arc_swap::ArcSwap<steer_types::status::StatusReport>>,
}

impl Explainer for DnsExplainer {
    fn explain(
        &self,
        name: &str,
        qtype: &str,
        client: ipnet::IpNet,
    ) -> Result<steer_types::explain::Explanation, ApiError> {
        let (view, plan) = self.publisher.snapshot();
        let evidence = self.evidence.load();
        let status = self.status.load();
        steer_dns::explain(&view, &plan, &evidence, &status.drains, name, qtype, client)
            .map_err(ApiError::InvalidArgument)
    }
}
