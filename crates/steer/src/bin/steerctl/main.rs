//! steerctl: the operator CLI for steerd's gRPC API.
//!
//! Exit codes: 0 success, 1 refused or failed (the server said no, or could
//! not be reached), 2 usage error.

mod render;

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};
use steer_proto::v1::{
    DrainRequest, GetStatusRequest, Scope, ScopeKind, UndrainRequest,
    operator_client::OperatorClient,
};
use tonic::{Code, transport::Channel};

#[derive(Parser, Debug)]
#[command(name = "steerctl", version, about = "Operate a Steer control plane")]
struct Cli {
    /// steerd gRPC endpoint.
    #[arg(
        long,
        global = true,
        env = "STEER_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Give up on a call after this many seconds.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Take a PoP or a region out of answers.
    Drain {
        #[arg(value_enum)]
        kind: ScopeArg,
        /// PoP or region id, e.g. fra1 or eu-west.
        id: String,
        /// Why: recorded in the audit log with your identity.
        #[arg(long)]
        reason: String,
    },
    /// Lift a drain on a PoP or a region.
    Undrain {
        #[arg(value_enum)]
        kind: ScopeArg,
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show plan version, per-PoP health, weight and drains.
    Status {
        /// Show the BGP speaker instead: sessions (state, uptime, flaps,
        /// prefixes sent, last error) and what each PoP announces.
        #[arg(long)]
        bgp: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScopeArg {
    Pop,
    Region,
}

impl ScopeArg {
    fn label(self) -> &'static str {
        match self {
            Self::Pop => "pop",
            Self::Region => "region",
        }
    }

    fn scope(self, id: &str) -> Scope {
        let kind = match self {
            Self::Pop => ScopeKind::Pop,
            Self::Region => ScopeKind::Region,
        };
        Scope {
            kind: kind.into(),
            id: id.to_owned(),
            service: String::new(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("steerctl: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("steerctl: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(cli: &Cli) -> Result<OperatorClient<Channel>, String> {
    let endpoint = Channel::from_shared(cli.endpoint.clone())
        .map_err(|e| format!("invalid --endpoint {:?}: {e}", cli.endpoint))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(cli.timeout));
    let channel = endpoint.connect().await.map_err(|e| {
        let mut cause = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        format!(
            "cannot reach steerd at {}: {cause} (is steerd running? set --endpoint or STEER_ENDPOINT)",
            cli.endpoint
        )
    })?;
    Ok(OperatorClient::new(channel))
}

fn describe(status: &tonic::Status) -> String {
    let what = match status.code() {
        Code::NotFound => "not found",
        Code::InvalidArgument => "invalid request",
        Code::FailedPrecondition => "refused",
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "not authenticated",
        Code::Unavailable => "unavailable",
        _ => "failed",
    };
    format!("{what}: {}", status.message())
}

async fn run(cli: &Cli) -> Result<(), String> {
    let mut client = connect(cli).await?;
    match &cli.command {
        Command::Drain { kind, id, reason } => {
            let resp = client
                .drain(DrainRequest {
                    scope: Some(kind.scope(id)),
                    reason: reason.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            match cli.output {
                Output::Json => render::json(&serde_json::json!({
                    "intent_id": resp.intent_id,
                    "plan_version": resp.plan_version,
                })),
                Output::Table => println!(
                    "drained {} {id} ({}); plan version {}",
                    kind.label(),
                    resp.intent_id,
                    resp.plan_version
                ),
            }
        }
        Command::Undrain { kind, id, reason } => {
            let resp = client
                .undrain(UndrainRequest {
                    scope: Some(kind.scope(id)),
                    reason: reason.clone(),
                })
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            match cli.output {
                Output::Json => render::json(&serde_json::json!({
                    "lifted": resp.lifted,
                    "plan_version": resp.plan_version,
                })),
                Output::Table if resp.lifted == 0 => {
                    println!(
                        "{} {id} had no drain of its own; nothing lifted",
                        kind.label()
                    )
                }
                Output::Table => println!(
                    "undrained {} {id} ({} drain(s) lifted); plan version {}",
                    kind.label(),
                    resp.lifted,
                    resp.plan_version
                ),
            }
        }
        Command::Status { bgp } => {
            let resp = client
                .get_status(GetStatusRequest {})
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            match (cli.output, bgp) {
                (Output::Json, false) => render::json(&render::status_json(&resp)),
                (Output::Table, false) => print!("{}", render::status_table(&resp)),
                (Output::Json, true) => render::json(&render::bgp_json(&resp)),
                (Output::Table, true) => print!("{}", render::bgp_table(&resp)),
            }
        }
    }
    Ok(())
}
