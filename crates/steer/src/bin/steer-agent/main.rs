//! steer-agent: runs at a PoP, probes local services and streams health to
//! every configured steerd. It never exits because a probe or a steerd
//! failed: probes report down, streams reconnect with jittered backoff.

#[path = "../shared/client_tls.rs"]
mod client_tls;
#[path = "../shared/endpoint_hint.rs"]
mod endpoint_hint;
mod exec;
mod https;
mod load;
#[path = "../../logging.rs"]
mod logging;
mod probe;
mod report;
mod sli;

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::Parser;
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(name = "steer-agent", version, about = "Steer PoP health agent")]
struct Args {
    /// Path to the agent TOML config.
    #[arg(long, env = "STEER_AGENT_CONFIG")]
    config: PathBuf,
    /// Validate the config and exit (0 = valid, 2 = invalid).
    #[arg(long)]
    check: bool,
    /// Log format on stderr: text (coloured on a terminal) or json (one
    /// object a line).
    #[arg(long, value_enum, default_value = "text")]
    log_format: logging::LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match steer_config::load_agent(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("steer-agent: invalid config\n{errors}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    logging::init(
        args.log_format,
        "info,h2=warn,hyper=warn,tower=warn,hickory_server=warn,hickory_net=warn",
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("steer-agent: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let config = Arc::new(config);
        let sources = report::Sources {
            probes: probe::start(&config),
            peers: probe::start_peers(&config),
            load: load::start(&config),
            sli: sli::start(&config),
        };
        warn_if_root_runs_commands(&config);
        info!(pop = %config.pop, probes = config.probes.len(), peers = config.peers.len(), steerd = ?config.steerd, "steer-agent started");
        let mut streams = Vec::new();
        for endpoint in &config.steerd {
            streams.push(tokio::spawn(report::stream_forever(
                endpoint.clone(),
                config.clone(),
                sources.clone(),
            )));
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("shutting down"),
            _ = futures::future::join_all(streams) => error!("all report streams ended"),
        }
    });
    ExitCode::SUCCESS
}

/// Exec probes and `load_command` run with the agent's privileges; as root a
/// mistake in one (or in a script it calls) owns the host.
fn warn_if_root_runs_commands(config: &steer_config::AgentConfig) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let exec_probes: Vec<&str> = config
        .probes
        .iter()
        .filter(|p| matches!(p.kind, steer_config::ProbeKind::Exec { .. }))
        .map(|p| p.name.as_str())
        .collect();
    if !exec_probes.is_empty() || config.load_command.is_some() {
        warn!(
            ?exec_probes,
            load_command = config.load_command.is_some(),
            "steer-agent runs as root, and so will its exec probes and load_command; \
             run it as an unprivileged user (it needs no privileges to probe or report)"
        );
    }
}
