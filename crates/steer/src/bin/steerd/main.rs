//! steerd: the Steer server. Parses flags and the config, then runs a
//! [`steer_node::Node`] in its role (all, controller or edge).

#[path = "../../logging.rs"]
mod logging;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;
use steer_node::{Node, NodeOptions, Role};
use tracing::error;

/// `--role`: what this process does (see README, "Roles").
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
enum RoleArg {
    /// Everything in one process, embedded store (the quickstart).
    #[default]
    All,
    /// Ingest, policy, operator API and plan publication; no DNS, no BGP.
    Controller,
    /// DNS and/or BGP following the controllers in `[edge]`; no policy.
    Edge,
}

#[derive(Parser, Debug)]
#[command(name = "steerd", version, about = "Steer traffic steering server")]
struct Args {
    /// What this process does: all (default), controller or edge.
    #[arg(long, value_enum, default_value = "all", env = "STEER_ROLE")]
    role: RoleArg,
    /// Path to the steerd TOML config.
    #[arg(long, env = "STEER_CONFIG", required_unless_present = "replay")]
    config: Option<PathBuf>,
    /// Validate the config and exit (0 = valid, 2 = invalid).
    #[arg(long)]
    check: bool,
    /// Log format on stderr: text (coloured on a terminal) or json (one
    /// object a line).
    #[arg(long, value_enum, default_value = "text")]
    log_format: logging::LogFormat,
    /// Override `server.dns_listen`; repeat it or separate addresses with
    /// commas to listen on several.
    #[arg(long, value_delimiter = ',')]
    dns_listen: Vec<SocketAddr>,
    /// Override `server.grpc_listen`.
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// Override `server.http_listen`.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Override `server.state_dir`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Take over a state directory recorded for another deployment
    /// (another `[server] cluster`, or other regions): audited, and intents
    /// this config has no place for are dropped, each audited.
    #[arg(long)]
    adopt_state: bool,
    /// Record every plan-changing input as JSON lines to this file (appends).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Replay a recording instead of serving: re-derive every plan and check
    /// it matches bit for bit (exit 0 if all match, 1 otherwise).
    #[arg(long, conflicts_with = "check")]
    replay: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.replay {
        return replay(path);
    }
    let Some(config_path) = args.config.clone() else {
        eprintln!("steerd: --config is required");
        return ExitCode::from(2);
    };
    let mut config = match steer_config::load_steerd(&config_path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("steerd: invalid config\n{errors}");
            return ExitCode::from(2);
        }
    };
    if !args.dns_listen.is_empty() {
        let given = args
            .dns_listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>();
        match steer_config::parse_dns_listen(given.iter().map(|a| Some(a.as_str()))) {
            Ok(addrs) => config.server.dns_listen = addrs,
            Err(e) => {
                eprintln!("steerd: --dns-listen: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(a) = args.grpc_listen {
        config.server.grpc_listen = a;
    }
    if let Some(a) = args.http_listen {
        config.server.http_listen = a;
    }
    if let Some(d) = args.state_dir {
        config.server.state_dir = d;
    }
    // Before anything binds: no socket opens for a refused exposure.
    if let Err(why) = config.check_control_exposure() {
        eprintln!("steerd: refusing to start: {why}");
        return ExitCode::from(2);
    }
    if args.check {
        println!("{}: ok", config_path.display());
        return ExitCode::SUCCESS;
    }
    logging::init(
        args.log_format,
        "info,h2=warn,hyper=warn,tower=warn,hickory_server=warn,hickory_net=warn,\
         netgauze_bgp_speaker=warn",
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("steerd: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = NodeOptions {
        role: match args.role {
            RoleArg::All => Role::All,
            RoleArg::Controller => Role::Controller,
            RoleArg::Edge => Role::Edge,
        },
        record: args.record,
        adopt_state: args.adopt_state,
    };
    let node = match Node::new(config, options) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("steerd: {e:#}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(node.run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("steerd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn replay(path: &std::path::Path) -> ExitCode {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("steerd: cannot open {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match steer_control::replay(std::io::BufReader::new(file)) {
        Ok(report) if report.mismatches.is_empty() => {
            println!(
                "{}: {} events replayed, {} plans identical",
                path.display(),
                report.events,
                report.plans
            );
            ExitCode::SUCCESS
        }
        Ok(report) => {
            for (version, what) in &report.mismatches {
                eprintln!("plan {version}: {what}");
            }
            eprintln!(
                "{}: {} of {} plans differ",
                path.display(),
                report.mismatches.len(),
                report.plans
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("steerd: {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}
