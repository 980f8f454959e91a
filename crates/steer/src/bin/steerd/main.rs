//! steerd: the Steer server. Health ingest, control loop, authoritative DNS,
//! operator API and the HTTP status/metrics endpoint, all in one process.

mod http;
mod reload;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Parser;
use steer_api::OperatorService;
use steer_config::{AuthMode, SteerConfig};
use steer_control::{ControlLoop, SystemClock};
use steer_dns::{DnsHandler, ViewPublisher};
use steer_health::ingest::IngestService;
use steer_proto::v1::{health_ingest_server::HealthIngestServer, operator_server::OperatorServer};
use steer_store::FileStore;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(name = "steerd", version, about = "Steer traffic steering server")]
struct Args {
    /// Path to the steerd TOML config.
    #[arg(long, env = "STEER_CONFIG")]
    config: PathBuf,
    /// Validate the config and exit (0 = valid, 2 = invalid).
    #[arg(long)]
    check: bool,
    /// Override `server.dns_listen`.
    #[arg(long)]
    dns_listen: Option<SocketAddr>,
    /// Override `server.grpc_listen`.
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// Override `server.http_listen`.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Override `server.state_dir`.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match steer_config::load_steerd(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("steerd: invalid config\n{errors}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    if let Some(a) = args.dns_listen {
        config.server.dns_listen = a;
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,h2=warn,hyper=warn,tower=warn,hickory_server=warn".into()
            }),
        )
        .init();
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
    match runtime.block_on(run(config, args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("steerd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: SteerConfig, config_path: PathBuf) -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("steer_dns_latency_seconds".into()),
            &[1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3, 1e-2],
        )
        .context("DNS latency buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    match config.auth {
        AuthMode::None => warn!(
            "AUTH IS OFF (auth.mode = \"none\"): anyone who can reach the gRPC listener \
             can drain PoPs and report health; keep it on loopback"
        ),
    }

    let store = FileStore::open(&config.server.state_dir).with_context(|| {
        format!(
            "opening state directory {}",
            config.server.state_dir.display()
        )
    })?;
    let topology = Arc::new(config.topology.clone());
    let (control, handles) = ControlLoop::new(topology, Box::new(store), Box::new(SystemClock))
        .context("restoring state")?;

    // Bind everything before serving, so a busy port fails startup clearly.
    let dns_addr = config.server.dns_listen;
    let grpc = TcpListener::bind(config.server.grpc_listen)
        .await
        .with_context(|| format!("gRPC listen {}", config.server.grpc_listen))?;
    let http = TcpListener::bind(config.server.http_listen)
        .await
        .with_context(|| format!("HTTP listen {}", config.server.http_listen))?;

    // DNS answers from a view recompiled on every plan publication and on
    // every successful reload (SIGHUP).
    let publisher = Arc::new(ViewPublisher::new(
        reload::dns_inputs(&config),
        handles.plan.load_full(),
    )?);
    let view = publisher.view();
    let mut plan_watch = handles.plan_watch.clone();
    {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            while plan_watch.changed().await.is_ok() {
                let plan = plan_watch.borrow_and_update().clone();
                let version = plan.version;
                match publisher.publish_plan(plan) {
                    Ok(()) => metrics::gauge!("steer_dns_plan_version").set(version as f64),
                    // Keep serving the last good view.
                    Err(e) => error!(error = %e, version, "cannot compile DNS view"),
                }
            }
        });
    }
    tokio::spawn(reload::reload_on_sighup(
        config_path,
        config.clone(),
        publisher.clone(),
    ));
    let dns = tokio::spawn(steer_dns::serve(
        dns_addr,
        DnsHandler::new(view).with_rrl(config.dns.rrl.clone()),
        config.dns.udp_workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            usize::from,
        ),
    ));

    let control_task = tokio::spawn(control.run(Duration::from_millis(200)));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<OperatorServer<OperatorService>>()
        .await;
    health_reporter
        .set_serving::<HealthIngestServer<IngestService>>()
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
    let ingest = IngestService::new(handles.plan.clone(), handles.health_tx.clone());
    let operator = OperatorService::new(handles.api_tx.clone());
    let grpc_addr = grpc.local_addr()?;
    let grpc_server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(HealthIngestServer::new(ingest))
        .add_service(OperatorServer::new(operator))
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), shutdown_signal());

    let http_addr = http.local_addr()?;
    let http_server = http::serve(http, metrics, handles.api_tx.clone());

    info!(
        dns = %dns_addr, grpc = %grpc_addr, http = %http_addr,
        plan_version = handles.plan.load().version, "steerd ready"
    );

    tokio::select! {
        r = grpc_server => r.context("gRPC server")?,
        r = http_server => r.context("HTTP server")?,
        r = dns => r.context("DNS task")?.with_context(|| format!("DNS listen {dns_addr}"))?,
        r = control_task => r.context("control loop")?,
    }
    info!("steerd stopped");
    Ok(())
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
