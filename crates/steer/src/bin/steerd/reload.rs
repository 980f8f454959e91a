//! Reloading the DNS data (zones and zone files, client map) from the config
//! file without a restart. The whole candidate is validated first; on any
//! error the running view is untouched and every error is reported. SIGHUP
//! calls [`reload_dns`]; the operator API can call it the same way.

use std::path::Path;

use steer_config::SteerConfig;
use steer_dns::{ViewInputs, ViewPublisher};
use tracing::{error, info, warn};

/// The DNS view inputs a config describes.
pub(crate) fn dns_inputs(config: &SteerConfig) -> ViewInputs {
    ViewInputs {
        zones: config.zones.clone(),
        client_networks: config.topology.client_networks.clone(),
        settings: config.dns.clone(),
    }
}

/// Re-reads `path` and swaps the DNS view to its zones. Returns a one-line
/// summary, or every error (file:line) with the old zones still serving.
pub(crate) fn reload_dns(
    path: &Path,
    running: &SteerConfig,
    publisher: &ViewPublisher,
) -> Result<String, String> {
    let candidate = steer_config::load_steerd(path).map_err(|e| e.to_string())?;
    if candidate.topology.regions != running.topology.regions
        || candidate.topology.pops != running.topology.pops
        || candidate.topology.services != running.topology.services
    {
        warn!("regions, PoPs and services changed in the config; they apply after a restart");
    }
    let inputs = dns_inputs(&candidate);
    if inputs == *publisher.inputs() {
        return Ok("DNS data unchanged".into());
    }
    publisher
        .replace_inputs(inputs)
        .map_err(|e| e.to_string())?;
    let zones: Vec<String> = candidate
        .zones
        .iter()
        .map(|z| format!("{} (serial {})", z.origin, z.soa.serial))
        .collect();
    Ok(format!("DNS data reloaded: {}", zones.join(", ")))
}

/// Reloads on every SIGHUP until the process ends.
pub(crate) async fn reload_on_sighup(
    path: std::path::PathBuf,
    running: SteerConfig,
    publisher: std::sync::Arc<ViewPublisher>,
) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP; reload is unavailable");
        return;
    };
    while hup.recv().await.is_some() {
        match reload_dns(&path, &running, &publisher) {
            Ok(summary) => {
                metrics::counter!("steer_dns_reloads_total", "result" => "ok").increment(1);
                info!("{summary}");
            }
            Err(errors) => {
                metrics::counter!("steer_dns_reloads_total", "result" => "error").increment(1);
                error!("reload refused, the running zones keep serving:\n{errors}");
            }
        }
    }
}
