//! Config reload (gRPC ReloadConfig and SIGHUP): validate the whole file
//! (zones and zone files included), then swap the DNS data and the
//! topology and the auth credentials; a bad file changes nothing and the
//! error says where. A change that needs a restart (auth mode, [tls] added
//! or removed) refuses the reload instead of being reported as applied.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;
use steer_api::{
    ApiCommand, ApiError, ChangeCommand, ConfigApply, Proposal, ProposeRequest, ReloadRequest,
};
use steer_config::SteerConfig;
use steer_dns::{ViewInputs, ViewPublisher};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::auth::AuthReload;

/// The DNS view inputs a config describes.
pub(crate) fn dns_inputs(config: &SteerConfig) -> ViewInputs {
    let mut settings = config.dns.clone();
    // Keys follow the state directory steerd runs with (`--state-dir`
    // overrides the file's), never the one a reloaded file names.
    for zone in &mut settings.dnssec {
        zone.key_dir = config.server.state_dir.join("dnssec");
    }
    ViewInputs {
        zones: config.zones.clone(),
        client_networks: config.topology.client_networks.clone(),
        settings,
    }
}

/// Registers the reload counters at zero: they are documented, and an
/// alert on refused reloads should see a series before the first reload.
pub(crate) fn register_metrics() {
    for outcome in ["applied", "refused"] {
        metrics::counter!("steer_config_reloads_total", "outcome" => outcome).absolute(0);
    }
    for result in ["ok", "error"] {
        metrics::counter!("steer_dns_reloads_total", "result" => result).absolute(0);
    }
}

/// What the reloader takes: reloads (API, SIGHUP), proposed configs
/// (change requests) and configs of changes the control loop completed.
pub(crate) struct Inbox {
    pub(crate) reloads: mpsc::Receiver<ReloadRequest>,
    pub(crate) proposals: mpsc::Receiver<ProposeRequest>,
    pub(crate) applies: mpsc::Receiver<ConfigApply>,
}

pub(crate) async fn run(
    path: PathBuf,
    live: Arc<ArcSwap<SteerConfig>>,
    publisher: Arc<ViewPublisher>,
    inbox: Inbox,
    to_control: mpsc::Sender<ApiCommand>,
    auth: AuthReload,
) {
    let Inbox {
        reloads: mut requests,
        mut proposals,
        mut applies,
    } = inbox;
    loop {
        // For a change's config: which change, told what came of it.
        let mut from_change = None;
        let req = tokio::select! {
            r = requests.recv() => r,
            a = applies.recv() => {
                let Some(a) = a else { continue };
                // A change's config: applied as a reload of that file; the
                // loop (which already moved the change) records the outcome.
                let (reply, _) = oneshot::channel();
                from_change = Some(a.change.clone());
                Some(ReloadRequest {
                    principal: format!("change:{}", a.change),
                    reason: a.reason,
                    emergency: false,
                    config: Some(a.config),
                    reply,
                })
            }
            p = proposals.recv() => {
                if let Some(p) = p {
                    let result = propose(&live, &to_control, &auth, &p).await;
                    if let Err(e) = &result {
                        warn!(error = %e, principal = %p.principal, "change not proposed");
                    }
                    let _ = p.reply.send(result);
                }
                continue;
            }
        };
        let Some(req) = req else {
            return;
        };
        let result = reload_once(&path, &live, &publisher, &to_control, &auth, &req).await;
        match &result {
            Ok(v) => info!(version = v, principal = %req.principal, "config reloaded"),
            Err(e) => warn!(error = %e, principal = %req.principal, "config reload refused"),
        }
        metrics::counter!("steer_config_reloads_total", "outcome" => if result.is_ok() { "applied" } else { "refused" }).increment(1);
        metrics::counter!("steer_dns_reloads_total", "result" => if result.is_ok() { "ok" } else { "error" }).increment(1);
        if let Some(id) = from_change {
            let outcome = ChangeCommand::Applied {
                id,
                result: result.as_ref().copied().map_err(ToString::to_string),
            };
            if to_control.send(ApiCommand::Change(outcome)).await.is_err() {
                return;
            }
        }
        let _ = req.reply.send(result);
    }
}

async fn reload_once(
    path: &Path,
    live: &Arc<ArcSwap<SteerConfig>>,
    publisher: &ViewPublisher,
    to_control: &mpsc::Sender<ApiCommand>,
    auth: &AuthReload,
    req: &ReloadRequest,
) -> Result<u64, ApiError> {
    let governed = live.load().changes.is_some();
    if governed && !req.emergency && req.config.is_none() {
        return Err(ApiError::FailedPrecondition(format!(
            "config not reloaded: [changes] in {} puts config changes through change requests \
             (steerctl change propose --config FILE --reason ...); a reload without one is a \
             break-glass step (steerctl reload --emergency --reason ..., admin)",
            live.load().source.display()
        )));
    }
    let mut next = tokio::task::spawn_blocking({
        let path = path.to_path_buf();
        let text = req.config.clone();
        move || match text {
            Some(text) => steer_config::parse_steerd(&path, &text),
            None => steer_config::load_steerd(&path),
        }
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("reload task failed: {e}")))?
    .map_err(|errors| ApiError::InvalidArgument(format!("config not reloaded:\n{errors}")))?;
    // Listeners and state dir are bound at start; keep the running ones.
    let current = live.load_full();
    // Credentials (tokens, certificate names) and TLS material reload; a
    // change of auth mode, or adding or removing [tls], refuses the reload.
    let pending = auth
        .check(&current, &next)
        .map_err(|e| ApiError::FailedPrecondition(format!("config not reloaded: {e}")))?;
    if next.server != current.server {
        warn!("listener/state_dir changes in the config take effect only after a restart");
    }
    next.server = current.server.clone();
    if next.dns.udp_workers != current.dns.udp_workers || next.dns.tcp != current.dns.tcp {
        warn!("udp_workers and tcp_* changes in [dns] take effect only after a restart");
    }
    if next.bgp != current.bgp {
        warn!("[bgp] changes take effect only after a restart; sessions keep their settings");
    }
    next.bgp = current.bgp.clone();
    // DNS data first: zones that do not compile refuse the whole reload.
    let previous_inputs = publisher.inputs();
    publisher
        .replace_inputs(dns_inputs(&next))
        .map_err(|e| ApiError::InvalidArgument(format!("config not reloaded: {e}")))?;
    let topology = Arc::new(next.topology.clone());
    let slos = Some(steer_api::SloReload {
        specs: next.slos.clone(),
        evaluate_every: next.alerting.evaluation_interval,
        resend_every: next.alerting.resend_interval,
    });
    let changes_settings = next.changes.clone();
    let config_digest = steer_change::config_digest(&next.source_text);
    // The new zones must be in place before the plan that triggers the
    // DNS view rebuild is published.
    let previous = live.swap(Arc::new(next));
    let (tx, rx) = oneshot::channel();
    let sent = to_control
        .send(ApiCommand::Reload {
            topology,
            slos,
            changes: changes_settings,
            config_digest,
            principal: req.principal.clone(),
            reason: req.reason.clone(),
            emergency: req.emergency,
            reply: tx,
        })
        .await;
    let result = match sent {
        Ok(()) => rx.await.unwrap_or_else(|_| {
            Err(ApiError::Unavailable(
                "control loop dropped the reload".into(),
            ))
        }),
        Err(_) => Err(ApiError::Unavailable("control loop is not running".into())),
    };
    if result.is_err() {
        live.store(previous);
        let _ = publisher.replace_inputs((*previous_inputs).clone());
    } else {
        auth.apply(pending);
    }
    result
}

/// Validates a proposed config file like a reload (it must load, and must
/// not need a restart), describes it against the config in force, and
/// hands it to the control loop, which records the change request.
async fn propose(
    live: &Arc<ArcSwap<SteerConfig>>,
    to_control: &mpsc::Sender<ApiCommand>,
    auth: &AuthReload,
    req: &ProposeRequest,
) -> Result<steer_change::Change, ApiError> {
    let current = live.load_full();
    let Some(settings) = current.changes.clone() else {
        return Err(ApiError::FailedPrecondition(format!(
            "change requests need a [changes] table in {}; without one, steerctl reload applies a config",
            current.source.display()
        )));
    };
    // Relative paths (zone files, tokens) resolve as for the config in
    // force: the proposal replaces that file.
    let next = tokio::task::spawn_blocking({
        let path = current.source.clone();
        let text = req.config.clone();
        move || steer_config::parse_steerd(&path, &text)
    })
    .await
    .map_err(|e| ApiError::Unavailable(format!("validation task failed: {e}")))?
    .map_err(|errors| ApiError::InvalidArgument(format!("change not proposed:\n{errors}")))?;
    auth.check(&current, &next)
        .map_err(|e| ApiError::FailedPrecondition(format!("change not proposed: {e}")))?;
    if next.source_text == current.source_text {
        return Err(ApiError::InvalidArgument(
            "change not proposed: the file is the config in force".into(),
        ));
    }
    let mut diff = steer_change::diff_topology(&current.topology, &next.topology);
    diff.extend(steer_change::diff_serialized(
        "zones",
        &current.zones,
        &next.zones,
    ));
    diff.extend(steer_change::diff_serialized(
        "dns",
        &current.dns,
        &next.dns,
    ));
    if current.slos != next.slos {
        diff.push(steer_change::DiffItem {
            kind: steer_change::DiffKind::Changed,
            subject: "slos".into(),
            fields: vec![format!(
                "{} SLO(s) -> {}",
                current.slos.len(),
                next.slos.len()
            )],
        });
    }
    if current.changes != next.changes {
        diff.push(steer_change::DiffItem {
            kind: steer_change::DiffKind::Changed,
            subject: "changes (governance)".into(),
            fields: vec!["[changes] differs".into()],
        });
    }
    let proposal = Proposal {
        config: req.config.clone(),
        topology: Arc::new(next.topology.clone()),
        settings,
        base_config: current.source_text.clone(),
        base_digest: steer_change::config_digest(&current.source_text),
        diff,
        reason: req.reason.clone(),
        principal: req.principal.clone(),
        emergency: req.emergency,
    };
    let (tx, rx) = oneshot::channel();
    to_control
        .send(ApiCommand::Change(ChangeCommand::Propose {
            proposal,
            reply: tx,
        }))
        .await
        .map_err(|_| ApiError::Unavailable("control loop is not running".into()))?;
    rx.await.unwrap_or_else(|_| {
        Err(ApiError::Unavailable(
            "control loop dropped the proposal".into(),
        ))
    })
}

/// SIGHUP asks for a reload, as `steerd` operators expect.
pub(crate) async fn on_sighup(tx: mpsc::Sender<ReloadRequest>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            error!("cannot listen for SIGHUP; reload via the API only");
            return;
        };
        while hup.recv().await.is_some() {
            let (reply, rx) = oneshot::channel();
            let req = ReloadRequest {
                principal: "signal:SIGHUP".into(),
                reason: "SIGHUP".into(),
                emergency: false,
                config: None,
                reply,
            };
            if tx.send(req).await.is_err() {
                return;
            }
            let _ = rx.await;
        }
    }
}

/// An edge's reload (SIGHUP): zones, client networks, DNS settings and
/// credentials from the file; its steering still comes from the plan. A
/// file that does not validate changes nothing. Without this handler a
/// SIGHUP would end the process.
pub(crate) async fn edge_on_sighup(
    path: PathBuf,
    live: Arc<ArcSwap<SteerConfig>>,
    publisher: Arc<ViewPublisher>,
    auth: AuthReload,
) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            error!("cannot listen for SIGHUP; an edge reloads its config only on restart");
            return;
        };
        while hup.recv().await.is_some() {
            let result = edge_reload_once(&path, &live, &publisher, &auth).await;
            match &result {
                Ok(()) => {
                    info!(path = %path.display(), "config reloaded (edge: zones, DNS settings, credentials)")
                }
                Err(e) => warn!(error = %e, "config reload refused"),
            }
            metrics::counter!("steer_config_reloads_total", "outcome" => if result.is_ok() { "applied" } else { "refused" }).increment(1);
            metrics::counter!("steer_dns_reloads_total", "result" => if result.is_ok() { "ok" } else { "error" }).increment(1);
        }
    }
}

async fn edge_reload_once(
    path: &Path,
    live: &Arc<ArcSwap<SteerConfig>>,
    publisher: &ViewPublisher,
    auth: &AuthReload,
) -> Result<(), String> {
    let next = tokio::task::spawn_blocking({
        let path = path.to_path_buf();
        move || steer_config::load_steerd(&path)
    })
    .await
    .map_err(|e| format!("reload task failed: {e}"))?
    .map_err(|errors| format!("config not reloaded:\n{errors}"))?;
    let current = live.load_full();
    let pending = auth
        .check(&current, &next)
        .map_err(|e| format!("config not reloaded: {e}"))?;
    if next.server != current.server || next.edge != current.edge || next.bgp != current.bgp {
        warn!("[server], [edge] and [bgp] changes take effect only after a restart");
    }
    publisher
        .replace_inputs(dns_inputs(&next))
        .map_err(|e| format!("config not reloaded: {e}"))?;
    live.store(Arc::new(next));
    auth.apply(pending);
    Ok(())
}
