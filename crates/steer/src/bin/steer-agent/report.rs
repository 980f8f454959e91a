//! One report stream per steerd endpoint, reconnecting forever with
//! jittered exponential backoff.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use steer_config::AgentConfig;
use steer_proto::v1::{
    HealthReport, PeerObservation, ProbeResult, ReportAck, ServiceHealth, ServiceStatus,
    health_ingest_client::HealthIngestClient,
};
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tonic::{
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use tracing::{error, info, warn};

use crate::{
    client_tls, endpoint_hint,
    load::{self, SharedLoad},
    probe::Board,
};

/// Everything a report is built from.
#[derive(Clone)]
pub(crate) struct Sources {
    pub(crate) probes: Board,
    pub(crate) peers: Board,
    pub(crate) load: SharedLoad,
    pub(crate) sli: crate::sli::SharedReadings,
}

/// Peer probe results that have settled.
fn peer_observations(peers: &Board) -> Vec<PeerObservation> {
    peers
        .snapshot()
        .into_iter()
        .filter_map(|p| {
            let reachable = p.state.is_up()?;
            Some(PeerObservation {
                pop: p.service,
                name: p.name,
                kind: p.kind.to_owned(),
                reachable,
                detail: p.detail,
                latency_ms: u32::try_from(p.latency.as_millis()).unwrap_or(u32::MAX),
            })
        })
        .collect()
}

/// One per process: a restart is a new instance, which resets sequences.
fn instance_id() -> u64 {
    std::sync::LazyLock::force(&STARTED_UNIX_MS);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// When this process started reporting (ms since the epoch): steerd prefers
/// the instance that started last, so an old agent left running is ignored.
static STARTED_UNIX_MS: std::sync::LazyLock<i64> = std::sync::LazyLock::new(now_ms);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Builds a report from the board. A service is up only if every probe of
/// it is up; services whose probes have not run yet are left out.
fn build_report(config: &AgentConfig, sources: &Sources, instance: u64) -> HealthReport {
    let mut services: BTreeMap<String, ServiceHealth> = BTreeMap::new();
    for p in sources.probes.snapshot() {
        let Some(up) = p.state.is_up() else { continue };
        let entry = services
            .entry(p.service.clone())
            .or_insert_with(|| ServiceHealth {
                service: p.service.clone(),
                status: ServiceStatus::Up.into(),
                ..Default::default()
            });
        if !up {
            entry.status = ServiceStatus::Down.into();
        }
        entry.probes.push(ProbeResult {
            name: p.name,
            kind: p.kind.to_owned(),
            ok: up,
            detail: p.detail,
            latency_ms: u32::try_from(p.latency.as_millis()).unwrap_or(u32::MAX),
        });
    }
    for (service, r) in crate::sli::current(&sources.sli) {
        if let Some(entry) = services.get_mut(&service) {
            entry.sli_present = true;
            entry.requests_total = r.total;
            entry.requests_failed = r.failed;
            entry.slow_present = r.slow.is_some();
            entry.requests_slow = r.slow.unwrap_or(0);
        }
    }
    let figures = load::current(&sources.load);
    // Counters `load_command` printed, for services no [[sli]] source
    // reads.
    for (service, c) in &figures.sli {
        if let Some(entry) = services.get_mut(service)
            && !entry.sli_present
        {
            entry.sli_present = true;
            entry.requests_total = c.total;
            entry.requests_failed = c.failed;
            entry.slow_present = c.slow.is_some();
            entry.requests_slow = c.slow.unwrap_or(0);
        }
    }
    HealthReport {
        pop: config.pop.clone(),
        sequence: SEQUENCE.fetch_add(1, Ordering::Relaxed) + 1,
        agent_time_unix_ms: now_ms(),
        services: services.into_values().collect(),
        capacity_rps: figures.capacity_rps,
        load_rps: figures.load_rps,
        agent_instance: instance,
        agent_started_unix_ms: *STARTED_UNIX_MS,
        bandwidth_bps: figures.bandwidth_bps,
        error_ratio: figures.error_ratio,
        latency_p50_ms: figures.latency_p50_ms,
        latency_p99_ms: figures.latency_p99_ms,
        peers: peer_observations(&sources.peers),
        region_load_rps: figures.region_load.into_iter().collect(),
        ack_interval_ms: ACK_INTERVAL_MS,
    }
}

/// Cumulative acks: steerd acknowledges accepted reports at most this often
/// (refusals, ignored reports and desired-state changes at once), which
/// saves it a socket write per report.
const ACK_INTERVAL_MS: u32 = 5_000;

/// Full jitter: a random delay in [base/2, base], from a cheap hash of time.
fn jittered(base: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let frac = 0.5 + f64::from(nanos % 1000) / 2000.0;
    base.mul_f64(frac)
}

/// Why a report stream ended with an error.
enum StreamError {
    /// steerd refused our credentials (or their scope): retrying will not
    /// help until the token or steerd's tokens file changes.
    Refused(String),
    /// steerd does not know this agent's PoP (or finds its reports
    /// malformed): a configuration error, retried slowly and said once per
    /// attempt, not a transport hiccup.
    Misconfigured(String),
    Failed(String),
}

impl From<String> for StreamError {
    fn from(e: String) -> Self {
        Self::Failed(e)
    }
}

impl From<tonic::Status> for StreamError {
    fn from(s: tonic::Status) -> Self {
        let mut text = format!("{}: {}", s.code(), s.message());
        // A transport failure arrives as a status whose message is only
        // "transport error"; what failed is in its sources.
        add_causes(&mut text, std::error::Error::source(&s));
        match s.code() {
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Self::Refused(text),
            tonic::Code::NotFound | tonic::Code::InvalidArgument => Self::Misconfigured(text),
            _ => Self::Failed(text),
        }
    }
}

/// An error with every cause it wraps: tonic's connect error alone says
/// only "transport error"; its sources say what failed (connection
/// refused, a TLS name mismatch, a peer that is not HTTP/2).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    add_causes(&mut text, e.source());
    text
}

/// Appends each cause not already said.
fn add_causes(text: &mut String, mut cause: Option<&dyn std::error::Error>) {
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
}

/// First and largest delay between attempts for a misconfigured or
/// refused agent: a person has to act, so retrying fast only fills logs.
const CONFIG_BACKOFF: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(60));
/// The same for transport failures (steerd restarting, a network blip).
const TRANSPORT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(5));

/// The `authorization` header value for the configured token, if any.
fn bearer(config: &AgentConfig) -> Option<MetadataValue<Ascii>> {
    let token = config.token.as_ref()?;
    // The config accepts only visible ASCII tokens, which always parse.
    let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.expose()).parse().ok()?;
    value.set_sensitive(true);
    Some(value)
}

pub(crate) async fn stream_forever(endpoint: String, config: Arc<AgentConfig>, sources: Sources) {
    let instance = instance_id();
    let bearer = bearer(&config);
    sources.probes.first_results().await;
    let mut backoff = TRANSPORT_BACKOFF.0;
    loop {
        // Set once steerd accepted a report: the stream worked.
        let mut accepted = false;
        let result = stream_once(
            &endpoint,
            &config,
            &sources,
            instance,
            bearer.as_ref(),
            &mut accepted,
        )
        .await;
        // A transport failure against a web server is a wrong port: say so,
        // and treat it as the configuration error it is.
        let result = match result {
            Err(StreamError::Failed(e)) => match endpoint_hint::http1_port(&endpoint).await {
                Some(hint) => Err(StreamError::Misconfigured(format!("{e}; {hint}"))),
                None => Err(StreamError::Failed(e)),
            },
            other => other,
        };
        // A stream that carried reports starts the backoff over; a
        // configuration error waits longer each time, however far it got.
        let config_error = matches!(
            result,
            Err(StreamError::Refused(_) | StreamError::Misconfigured(_))
        );
        let (first, max) = if config_error {
            CONFIG_BACKOFF
        } else {
            TRANSPORT_BACKOFF
        };
        if accepted && !config_error {
            backoff = first;
        }
        backoff = backoff.clamp(first, max);
        let delay = jittered(backoff);
        match result {
            Ok(()) => {
                warn!(%endpoint, retry_in = ?delay, "steerd closed the report stream; reconnecting")
            }
            Err(StreamError::Failed(e)) => warn!(
                %endpoint,
                error = %e,
                retry_in = ?delay,
                "report stream failed; reconnecting"
            ),
            Err(StreamError::Misconfigured(e)) => error!(
                %endpoint,
                pop = %config.pop,
                error = %e,
                retry_in = ?delay,
                "reports cannot flow: a configuration error, see `error` (fix the agent config \
                 or steerd's); retrying with a growing delay"
            ),
            Err(StreamError::Refused(e)) => error!(
                %endpoint,
                pop = %config.pop,
                token_sent = bearer.is_some(),
                error = %e,
                retry_in = ?delay,
                "steerd refused this agent's reports: check `token_file` in the agent config \
                 and that steerd's tokens file lists that token with pop = {:?}; retrying",
                config.pop
            ),
        }
        tokio::time::sleep(delay).await;
        backoff = (backoff * 2).min(max);
    }
}

/// Why steerd stopped taking our reports: the error it sent on the ack
/// stream (an unknown PoP, a refusal), rather than "channel closed".
async fn why_closed(acks: &mut tonic::Streaming<ReportAck>) -> StreamError {
    match tokio::time::timeout(Duration::from_secs(2), acks.next()).await {
        Ok(Some(Err(status))) => status.into(),
        _ => StreamError::Failed("steerd closed the report stream".to_owned()),
    }
}

async fn stream_once(
    endpoint: &str,
    config: &AgentConfig,
    sources: &Sources,
    instance: u64,
    bearer: Option<&MetadataValue<Ascii>>,
    accepted: &mut bool,
) -> Result<(), StreamError> {
    let channel = Channel::from_shared(endpoint.to_owned())
        .map_err(|e| e.to_string())
        .and_then(|ep| client_tls::apply(ep, config.tls.as_ref()))?
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {endpoint}: {}", chain(&e)))?;
    let mut client = HealthIngestClient::new(channel);
    let (tx, rx) = mpsc::channel::<HealthReport>(8);
    // Send the first report before opening the call so steerd hears from us
    // at once.
    tx.send(build_report(config, sources, instance))
        .await
        .map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(value) = bearer {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
    }
    let mut acks = client.report(request).await?.into_inner();
    info!(%endpoint, "report stream open");

    let mut changed = sources.probes.changed.clone();
    let mut peers_changed = sources.peers.changed.clone();
    // A board whose probes have all ended (an agent with no `[[peers]]` has
    // none at all) never changes again: stop watching it, and keep the
    // stream, instead of tearing the stream down in a tight loop.
    let (mut probes_open, mut peers_open) = (true, true);
    let mut ticker = tokio::time::interval(config.report_interval);
    ticker.tick().await;
    let mut last_drained = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if tx.send(build_report(config, sources, instance)).await.is_err() {
                    return Err(why_closed(&mut acks).await);
                }
            }
            r = changed.changed(), if probes_open => {
                probes_open = r.is_ok();
                if probes_open && tx.send(build_report(config, sources, instance)).await.is_err() {
                    return Err(why_closed(&mut acks).await);
                }
            }
            r = peers_changed.changed(), if peers_open => {
                peers_open = r.is_ok();
                if peers_open && tx.send(build_report(config, sources, instance)).await.is_err() {
                    return Err(why_closed(&mut acks).await);
                }
            }
            ack = acks.next() => match ack {
                None => return Ok(()),
                Some(Err(s)) => return Err(s.into()),
                Some(Ok(ack)) => {
                    *accepted |= ack.accepted;
                    if let Some(d) = ack.desired
                        && last_drained != Some(d.drained)
                    {
                            info!(drained = d.drained, weight_permille = d.weight_permille, plan_version = d.plan_version, "desired state from steerd");
                            last_drained = Some(d.drained);
                    }
                }
            },
        }
    }
}
