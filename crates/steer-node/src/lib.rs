//! A steerd node, wired from its config and its [`Role`].
//!
//! - [`Role::All`]: one process with the embedded store: ingest, control
//!   loop, operator API, DNS, BGP (the quickstart).
//! - [`Role::Controller`]: ingest, control loop, operator API and plan
//!   publication (`SubscribePlan`); no DNS listener, no BGP speaker.
//! - [`Role::Edge`]: DNS and/or BGP for its PoP, following plans from the
//!   controllers in `[edge]` (see [`edge`]); no policy, no operator API.
//!
//! steerd's main parses flags and calls [`Node::run`]; everything that
//! binds a socket or spawns a task is here.

mod auth;
#[cfg(feature = "etcd")]
mod cluster;
mod controller;
pub mod edge;
mod http;
mod notify;
mod reload;
mod slo;
mod timeline;
mod tls;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use steer_config::SteerConfig;
use steer_dns::{DnsHandler, ViewPublisher};
use steer_types::Plan;
use tokio::{sync::watch, task::JoinHandle};
use tracing::{error, info, warn};

/// What a node does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// Everything in one process (the default; the quickstart).
    #[default]
    All,
    /// Ingest, policy, operator API, plan publication; no DNS, no BGP.
    Controller,
    /// DNS and/or BGP following the controllers' plans; no policy.
    Edge,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Controller => "controller",
            Self::Edge => "edge",
        }
    }
}

/// Flags that shape a node beyond its config file.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    pub role: Role,
    /// Record every plan-changing input as JSON lines (controller roles).
    pub record: Option<PathBuf>,
    /// Take over a state directory recorded for another deployment.
    pub adopt_state: bool,
}

/// A configured node, ready to bind and serve.
pub struct Node {
    config: SteerConfig,
    options: NodeOptions,
}

impl Node {
    /// Checks that the config has what the role needs (an edge needs an
    /// `[edge]` table) before anything binds.
    pub fn new(config: SteerConfig, options: NodeOptions) -> anyhow::Result<Self> {
        if options.role == Role::Edge && config.edge.is_none() {
            anyhow::bail!(
                "{}: --role edge needs an [edge] table with `controllers = [\"http://…\"]`",
                config.source.display()
            );
        }
        if options.role == Role::Edge && options.record.is_some() {
            anyhow::bail!("--record records control-loop inputs; an edge runs no control loop");
        }
        Ok(Self { config, options })
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("steer_dns_latency_seconds".into()),
                &[1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3, 1e-2],
            )
            .context("DNS latency buckets")?
            .install_recorder()
            .context("installing the metrics recorder")?;
        http::register_metrics();
        edge::register_metrics();
        info!(role = self.options.role.as_str(), "starting steerd");
        match self.options.role {
            Role::All => controller::run(self.config, self.options, metrics, true).await,
            Role::Controller => controller::run(self.config, self.options, metrics, false).await,
            Role::Edge => edge::run(self.config, metrics).await,
        }
    }
}

/// This host's name (for node and edge names), `steerd` if unreadable.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.contains('/') && !h.contains(' '))
        .unwrap_or_else(|| "steerd".to_owned())
}

/// Raises the open-file limit: descriptors, not the DNS TCP cap, must never
/// be what runs out (at EMFILE every listener stops accepting).
fn raise_nofile(config: &SteerConfig) {
    match steer_dns::raise_nofile_limit() {
        Ok(limit) => {
            info!(limit, "open-file limit raised to the hard limit");
            let wanted = u64::from(config.dns.tcp.max_connections) + 256;
            if limit != 0 && limit < wanted {
                warn!(
                    limit,
                    tcp_max_connections = config.dns.tcp.max_connections,
                    "the open-file limit leaves little room above dns.tcp_max_connections; \
                     raise the hard limit (LimitNOFILE=) or lower the cap"
                );
            }
        }
        Err(e) => warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// The DNS view follows `plans`: recompiled on every publication (and on
/// every reload, through the publisher), and every `[dns] calibrate_every`
/// when the sampled client population changed, while `live` says the plan
/// source is there: an edge cut off from its controllers keeps answering
/// exactly as it did (fail static), calibration included.
fn follow_plans_into_dns(
    publisher: Arc<ViewPublisher>,
    mut plans: watch::Receiver<Arc<Plan>>,
    live: impl Fn() -> bool + Send + 'static,
) {
    follow_dnssec_keys(publisher.clone());
    let recalibrating = publisher.clone();
    tokio::spawn(async move {
        // The interval is read every second, so a reload changes it.
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        let mut round = 0u32;
        loop {
            tick.tick().await;
            let Some(every) = recalibrating.inputs().settings.calibrate_every else {
                continue;
            };
            if last.elapsed() < every || !live() {
                continue;
            }
            last = tokio::time::Instant::now();
            round = round.wrapping_add(1);
            let rotate = round.is_multiple_of(steer_dns::ROUNDS_PER_GENERATION);
            let publisher = recalibrating.clone();
            // Compiling a large view takes a while: off the runtime's threads.
            let done = tokio::task::spawn_blocking(move || publisher.recalibrate(rotate)).await;
            match done {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => error!(error = %e, "cannot recalibrate the DNS view"),
                Err(e) => error!(error = %e, "DNS recalibration panicked"),
            }
        }
    });
    tokio::spawn(async move {
        while plans.changed().await.is_ok() {
            let plan = plans.borrow_and_update().clone();
            let version = plan.version;
            match publisher.publish_plan(plan) {
                Ok(()) => metrics::gauge!("steer_dns_plan_version").set(version as f64),
                // Keep serving the last good view.
                Err(e) => error!(error = %e, version, "cannot compile DNS view"),
            }
        }
    });
}

/// Every second, for signed zones: re-reads their key directories and
/// applies key timing (a key published, activated, retired or deleted), so
/// a rollover happens at the times in the key files and a key dropped into
/// the directory is picked up without a reload. An error is logged when it
/// first appears (and counted in `steer_dnssec_key_errors_total`); the
/// view in service keeps signing with the keys it has.
fn follow_dnssec_keys(publisher: Arc<ViewPublisher>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<String> = None;
        loop {
            tick.tick().await;
            if publisher.inputs().settings.dnssec.is_empty() {
                continue;
            }
            let p = publisher.clone();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            match tokio::task::spawn_blocking(move || p.refresh_keys(now)).await {
                Ok(Ok(changed)) => {
                    if changed {
                        info!("DNSSEC keys changed: view recompiled");
                    }
                    last_error = None;
                }
                Ok(Err(e)) => {
                    let text = e.to_string();
                    if last_error.as_ref() != Some(&text) {
                        error!(error = %text, "cannot apply DNSSEC keys; signing with the previous ones");
                        last_error = Some(text);
                    }
                }
                Err(e) => error!(error = %e, "DNSSEC key refresh panicked"),
            }
        }
    });
}

/// Starts the authoritative DNS listeners over `publisher`'s view.
fn serve_dns(
    config: &SteerConfig,
    publisher: &ViewPublisher,
) -> JoinHandle<Result<(), std::io::Error>> {
    tokio::spawn(steer_dns::serve(
        config.server.dns_listen.clone(),
        DnsHandler::new(publisher.view()),
        config.dns.udp_workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            usize::from,
        ),
        config.dns.tcp.clone(),
    ))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutdown requested");
}

/// TCP keepalive on gRPC sockets: probes after 60 s idle, every 10 s, and
/// the kernel gives up after 3 unanswered ones.
pub(crate) const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
pub(crate) const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const TCP_KEEPALIVE_RETRIES: u32 = 3;
