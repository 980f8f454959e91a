//! steerctl: the operator CLI for steerd's gRPC API.
//!
//! Exit codes: 0 success, 1 refused or failed (the server said no, or could
//! not be reached), 2 usage error.

mod change;
#[path = "../shared/client_tls.rs"]
mod client_tls;
mod edge;
#[path = "../shared/endpoint_hint.rs"]
mod endpoint_hint;
mod output;
mod render;
mod table;
mod timeline;
mod watch;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use output::{out, outln};

use clap::{Parser, Subcommand, ValueEnum};
use prost::Message;
use steer_proto::v1::{
    self as pb, DrainRequest, GetStatusRequest, Scope, ScopeKind, UndrainRequest,
    operator_client::OperatorClient,
};
use tokio_stream::StreamExt;
use tonic::{
    Code, Request, Status,
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

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
    /// File holding a bearer token (when steerd has auth on).
    #[arg(long, global = true, env = "STEER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed steerd's certificate (https:// endpoints).
    #[arg(long, global = true, env = "STEER_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM) to present for mTLS; with --key-file.
    #[arg(long, global = true, env = "STEER_CERT_FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// Private key (PEM) of --cert-file.
    #[arg(long, global = true, env = "STEER_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// Name to verify steerd's certificate against (default: the endpoint host).
    #[arg(long, global = true, env = "STEER_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
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
    /// `timeline` and `handoff`; a table elsewhere.
    Markdown,
}

fn duration(text: &str) -> Result<Duration, String> {
    steer_config::parse_duration(text)
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Take a PoP, a region, or one service at a PoP out of traffic.
    Drain {
        #[arg(value_enum)]
        kind: ScopeArg,
        /// PoP or region id (for `service`: the service id, with --pop).
        id: String,
        /// For `drain service <id>`: the PoP.
        #[arg(long)]
        pop: Option<String>,
        /// Why: recorded in the audit log with your identity.
        #[arg(long)]
        reason: String,
        /// hard: out of answers at once; soft: ramp DNS weight down over
        /// --ramp, then prepend, then withdraw anycast.
        #[arg(long, value_enum, default_value_t = ModeArg::Hard)]
        mode: ModeArg,
        /// Soft-drain ramp, e.g. 2m (default: 5 x the service TTL).
        #[arg(long, value_parser = duration)]
        ramp: Option<Duration>,
        /// Lift the drain by itself after this long, e.g. 1h.
        #[arg(long, value_parser = duration)]
        expires: Option<Duration>,
        /// Show the projected load and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply even if the capacity projection says no (audited).
        #[arg(long)]
        force: bool,
        /// Break glass (admin): apply at once where `[changes]
        /// reviewed_intents` makes this drain a change request.
        #[arg(long)]
        emergency: bool,
    },
    /// Lift a drain.
    Undrain {
        #[arg(value_enum)]
        kind: ScopeArg,
        id: String,
        #[arg(long)]
        pop: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List live drains and overrides.
    Intents,
    /// Pin or release a PoP's weight.
    Override {
        #[command(subcommand)]
        action: OverrideAction,
    },
    /// Plan version, per-PoP health, weight, drains and announcements.
    Status {
        /// Show one PoP in detail.
        #[arg(long)]
        pop: Option<String>,
        /// Show the BGP speaker: sessions (state, uptime, flaps, prefixes
        /// sent, last error) and what each PoP announces, and why.
        #[arg(long, conflicts_with = "pop")]
        bgp: bool,
        /// An edge's HTTP listener (http://host:port): its plan version,
        /// source and age, from its /status (edges run no operator API).
        #[arg(long, conflicts_with_all = ["pop", "bgp"])]
        edge: Option<String>,
    },
    /// Why does a client get the answer it gets?
    Explain {
        /// e.g. app.example.test
        name: String,
        /// Client address or prefix, e.g. 10.1.2.3 or 10.1.2.0/24.
        #[arg(long)]
        client: String,
        /// A or AAAA.
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// Refuse unless DNS still serves this plan version.
        #[arg(long, default_value_t = 0)]
        plan_version: u64,
    },
    /// Stream plan changes, one line each; a ramp (weights stepping after
    /// an undrain or during a soft drain) is folded into two lines.
    Watch {
        /// Print every ramp step too.
        #[arg(long)]
        verbose: bool,
    },
    /// Read the audit log.
    Audit {
        /// Only entries newer than this, e.g. 1h.
        #[arg(long, value_parser = duration)]
        since: Option<Duration>,
        #[arg(long)]
        principal: Option<String>,
        /// Substring of the scope, e.g. fra1.
        #[arg(long)]
        scope: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Confirm a failure the correlated-failure guard froze (admin):
    /// live health applies again.
    ConfirmFailure {
        /// Why: recorded in the audit log with your identity.
        #[arg(long)]
        reason: String,
    },
    /// SLOs: Prometheus rules equivalent to steerd's own judgement.
    /// SLOs: objective, SLI, budget left, burn rate per window, alerts
    /// (no subcommand); `correct` excludes maintenance; `rules` prints
    /// Prometheus rules.
    Slo {
        #[command(subcommand)]
        action: Option<SloAction>,
    },
    /// DNSSEC: `ds <zone>` prints the DS records for the zone's parent
    /// (one per published KSK/CSK, SHA-256), from the keys steerd signs
    /// with.
    Dnssec {
        #[command(subcommand)]
        action: DnssecAction,
    },
    /// Validate and apply steerd's config file. With `[changes]` in the
    /// config, changes go through `steerctl change propose`; a reload is
    /// then a break-glass step (--emergency, admin, with a reason).
    Reload {
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        emergency: bool,
    },
    /// Change requests: propose a config file, review it, roll it out.
    Change {
        #[command(subcommand)]
        action: change::ChangeAction,
    },
    /// The incident timeline, oldest first: health transitions with their
    /// evidence, plan decisions, drains and overrides, BGP sessions,
    /// freezes, reloads, SLO alerts and change steps. `--output markdown`
    /// for a postmortem.
    Timeline {
        /// How far back, e.g. 2h.
        #[arg(long, value_parser = duration, default_value = "1h")]
        since: Duration,
        /// Only events about this PoP, region, service, change or SLO.
        #[arg(long)]
        scope: Option<String>,
        /// Only these kinds (health, freeze, plan, intent, bgp, reload,
        /// slo, change, operator); repeatable.
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// The newest this many.
        #[arg(long, default_value_t = 500)]
        limit: u32,
    },
    /// What the next on-call must know, in Markdown: drains and overrides
    /// with owners and expiry, frozen health, degraded regions, BGP
    /// sessions down, SLO alerts, changes in flight, break-glass steps and
    /// the shift's notable events.
    Handoff {
        /// The shift, e.g. 8h.
        #[arg(long, value_parser = duration, default_value = "8h")]
        since: Duration,
    },
}

#[derive(Subcommand, Debug)]
enum DnssecAction {
    /// The zone's DS records in zone-file form, each with its key's state
    /// (published, active, inactive) as a comment.
    Ds { zone: String },
}

#[derive(Subcommand, Debug)]
enum SloAction {
    /// Every SLO as steerd last evaluated it (the default).
    Status,
    /// Exclude a time range from an SLO's budget (planned maintenance);
    /// audited. Times: RFC 3339 (2026-12-01T06:00:00Z), `now`, or `-2h`
    /// (that long ago).
    Correct {
        slo: String,
        #[arg(long, allow_hyphen_values = true)]
        from: String,
        #[arg(long, default_value = "now", allow_hyphen_values = true)]
        to: String,
        #[arg(long)]
        reason: String,
    },
    /// Print Prometheus recording and alerting rules for the config's
    /// [[slos]] (offline: reads the file, talks to no steerd). Check them
    /// with `promtool check rules`.
    Rules {
        /// steerd's config file.
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum OverrideAction {
    /// Pin a PoP's share (per-mille, 0-1000) in every answer set it is in.
    Set {
        pop: String,
        weight: u32,
        #[arg(long)]
        reason: String,
        #[arg(long, value_parser = duration)]
        expires: Option<Duration>,
        /// Break glass (admin): apply at once where `[changes]
        /// reviewed_intents` makes overrides change requests.
        #[arg(long)]
        emergency: bool,
    },
    /// Release a pinned weight.
    Clear {
        pop: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScopeArg {
    Pop,
    Region,
    Service,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Soft,
    Hard,
}

fn scope(kind: ScopeArg, id: &str, pop: Option<&str>) -> Result<Scope, String> {
    Ok(match kind {
        ScopeArg::Pop => Scope {
            kind: ScopeKind::Pop.into(),
            id: id.to_owned(),
            service: String::new(),
        },
        ScopeArg::Region => Scope {
            kind: ScopeKind::Region.into(),
            id: id.to_owned(),
            service: String::new(),
        },
        ScopeArg::Service => Scope {
            kind: ScopeKind::ServicePop.into(),
            id: pop.ok_or("`service` scope needs --pop <pop>")?.to_owned(),
            service: id.to_owned(),
        },
    })
}

/// Exit 1 for refusals and failures, 2 for usage.
enum Failure {
    Refused(String),
    /// The call did not get a gRPC answer: steerd is down, or the
    /// endpoint is not steerd's gRPC port.
    Unreachable(String),
    Usage(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Self::Refused(s)
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
        Err(Failure::Refused(msg)) => {
            eprintln!("steerctl: {msg}");
            ExitCode::FAILURE
        }
        Err(Failure::Unreachable(msg)) => {
            eprintln!("steerctl: {msg}");
            if let Some(hint) = runtime.block_on(endpoint_hint::http1_port(&cli.endpoint)) {
                eprintln!("steerctl: hint: {hint}; set --endpoint or STEER_ENDPOINT");
            }
            ExitCode::FAILURE
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("steerctl: {msg}");
            ExitCode::from(2)
        }
    }
}

#[derive(Clone)]
struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Client = OperatorClient<InterceptedService<Channel, Bearer>>;

/// TLS settings from the flags; `None` when none was given.
fn client_tls_settings(cli: &Cli) -> Option<steer_config::ClientTls> {
    let tls = steer_config::ClientTls {
        ca_file: cli.ca_file.clone(),
        cert_file: cli.cert_file.clone(),
        key_file: cli.key_file.clone(),
        server_name: cli.tls_server_name.clone(),
    };
    (tls != steer_config::ClientTls::default()).then_some(tls)
}

async fn connect(cli: &Cli) -> Result<Client, Failure> {
    connect_to(cli, &cli.endpoint).await
}

/// Makes a change; when a clustered follower answers with where the
/// leader is, makes it once more there (the follower changed nothing).
async fn change<T, R, F, Fut>(
    cli: &Cli,
    client: &Client,
    request: R,
    call: F,
) -> Result<tonic::Response<T>, Status>
where
    R: Clone,
    F: Fn(Client, R) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let first = call(client.clone(), request.clone()).await;
    let Err(status) = &first else {
        return first;
    };
    let leader = (status.code() == Code::Unavailable)
        .then(|| status.metadata().get(steer_api::LEADER_METADATA))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(leader) = leader else {
        return first;
    };
    eprintln!(
        "steerctl: {} follows; sending to the leader at {leader}",
        cli.endpoint
    );
    match connect_to(cli, &leader).await {
        Ok(c) => call(c, request).await,
        Err(_) => first,
    }
}

async fn connect_to(cli: &Cli, endpoint: &str) -> Result<Client, Failure> {
    let token = match &cli.token_file {
        None => None,
        Some(path) => {
            // Private, one visible-ASCII token: the same rules as the agent's.
            let token = steer_config::read_bearer_token(path)
                .map_err(|e| Failure::Usage(format!("--token-file: {e}")))?;
            let value =
                MetadataValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                    Failure::Usage(format!("{} does not hold a valid token", path.display()))
                })?;
            Some(value)
        }
    };
    if let Some(key) = &cli.key_file {
        steer_config::check_private_file(key, "private key (--key-file)")
            .map_err(Failure::Usage)?;
    }
    if !endpoint.contains("://") {
        return Err(Failure::Usage(format!(
            "--endpoint {0:?} has no scheme: write http://{0} (or https://{0} when steerd \
             has [tls])",
            endpoint
        )));
    }
    let target = endpoint;
    let endpoint = Channel::from_shared(target.to_owned())
        .map_err(|e| Failure::Usage(format!("invalid --endpoint {target:?}: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(cli.timeout));
    let endpoint =
        client_tls::apply(endpoint, client_tls_settings(cli).as_ref()).map_err(Failure::Usage)?;
    let channel = endpoint.connect().await.map_err(|e| {
        let mut cause = e.to_string();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(s) = src {
            cause = s.to_string();
            src = s.source();
        }
        Failure::Unreachable(format!(
            "cannot reach steerd at {target}: {cause} (is steerd running? set --endpoint or STEER_ENDPOINT)"
        ))
    })?;
    Ok(OperatorClient::with_interceptor(channel, Bearer(token)))
}

fn describe(status: &Status) -> String {
    let what = match status.code() {
        Code::NotFound => "not found",
        Code::InvalidArgument => "invalid request",
        Code::FailedPrecondition => "refused",
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "not authenticated",
        Code::Unavailable => "unavailable",
        _ => "failed",
    };
    let mut out = format!("{what}: {}", status.message());
    if status.code() == Code::FailedPrecondition
        && !status.details().is_empty()
        && let Ok(p) = pb::Projection::decode(status.details())
    {
        out.push('\n');
        out.push_str(&render::projection_table(&p));
    }
    out
}

/// A call's reply, or the server's refusal worded for an operator.
trait Answer<T> {
    fn answer(self) -> Result<T, Failure>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, Status> {
    fn answer(self) -> Result<T, Failure> {
        self.map(tonic::Response::into_inner).map_err(|s| {
            if matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Internal) {
                // What failed is in the sources of a transport error.
                let mut text = describe(&s);
                let mut cause = std::error::Error::source(&s);
                while let Some(c) = cause {
                    let part = c.to_string();
                    if !text.contains(&part) {
                        text.push_str(": ");
                        text.push_str(&part);
                    }
                    cause = c.source();
                }
                Failure::Unreachable(text)
            } else {
                Failure::Refused(describe(&s))
            }
        })
    }
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let json = cli.output == Output::Json;
    if let Command::Slo {
        action: Some(SloAction::Rules { config }),
    } = &cli.command
    {
        let c = steer_config::load_steerd(config)
            .map_err(|e| Failure::Usage(format!("invalid config\n{e}")))?;
        if c.slos.is_empty() {
            return Err(Failure::Usage(format!(
                "{} has no [[slos]]",
                config.display()
            )));
        }
        out!("{}", steer_slo::rules::prometheus_rules(&c.slos));
        return Ok(());
    }
    if let Command::Status {
        edge: Some(url), ..
    } = &cli.command
    {
        let token = match &cli.token_file {
            None => None,
            Some(path) => Some(
                steer_config::read_bearer_token(path)
                    .map_err(|e| Failure::Usage(format!("--token-file: {e}")))?,
            ),
        };
        let edge = edge::fetch(url, token.as_ref().map(|t| t.expose())).await?;
        if json {
            render::json(&edge);
        } else {
            out!("{}", edge::render(url, &edge));
        }
        return Ok(());
    }
    let mut client = connect(cli).await?;
    match &cli.command {
        Command::Drain {
            kind,
            id,
            pop,
            reason,
            mode,
            ramp,
            expires,
            dry_run,
            force,
            emergency,
        } => {
            let request = DrainRequest {
                scope: Some(scope(*kind, id, pop.as_deref()).map_err(Failure::Usage)?),
                reason: reason.clone(),
                mode: match mode {
                    ModeArg::Soft => pb::DrainMode::Soft,
                    ModeArg::Hard => pb::DrainMode::Hard,
                }
                .into(),
                ramp_ms: ms(*ramp),
                expires_in_ms: ms(*expires),
                dry_run: *dry_run,
                force: *force,
                emergency: *emergency,
            };
            let resp = change(
                cli,
                &client,
                request,
                |mut c, r| async move { c.drain(r).await },
            )
            .await
            .answer()?;
            if json {
                render::json(&render::drain_json(&resp));
            } else {
                out!("{}", render::drain_text(&resp));
            }
        }
        Command::Undrain {
            kind,
            id,
            pop,
            reason,
        } => {
            let request = UndrainRequest {
                scope: Some(scope(*kind, id, pop.as_deref()).map_err(Failure::Usage)?),
                reason: reason.clone(),
            };
            let resp = change(cli, &client, request, |mut c, r| async move {
                c.undrain(r).await
            })
            .await
            .answer()?;
            if json {
                render::json(&serde_json::json!({
                    "lifted": resp.lifted,
                    "plan_version": resp.plan_version,
                    "still_covered_by": resp.still_covered_by,
                }));
            } else {
                if resp.lifted == 0 {
                    outln!("no drain of that exact scope; nothing lifted");
                } else {
                    outln!(
                        "lifted {} drain(s); plan version {}",
                        resp.lifted,
                        resp.plan_version
                    );
                }
                for line in &resp.still_covered_by {
                    outln!("still drained by {line}");
                }
            }
        }
        Command::Intents => {
            let resp = client
                .list_intents(pb::ListIntentsRequest {})
                .await
                .answer()?;
            if json {
                render::json(&render::intents_json(&resp.intents));
            } else {
                out!("{}", render::intents_table(&resp.intents));
            }
        }
        Command::Override { action } => match action {
            OverrideAction::Set {
                pop,
                weight,
                reason,
                expires,
                emergency,
            } => {
                let request = pb::SetWeightOverrideRequest {
                    pop: pop.clone(),
                    weight_permille: *weight,
                    reason: reason.clone(),
                    expires_in_ms: ms(*expires),
                    emergency: *emergency,
                };
                let resp = change(cli, &client, request, |mut c, r| async move {
                    c.set_weight_override(r).await
                })
                .await
                .answer()?;
                if json {
                    render::json(&serde_json::json!({
                        "intent_id": resp.intent_id,
                        "plan_version": resp.plan_version,
                        "change_id": (!resp.change_id.is_empty()).then_some(&resp.change_id),
                    }));
                } else if !resp.change_id.is_empty() {
                    out!("{}", render::proposed_text("override", &resp.change_id));
                } else {
                    outln!(
                        "pinned {pop} at {weight}‰ ({}); plan version {}",
                        resp.intent_id,
                        resp.plan_version
                    );
                }
            }
            OverrideAction::Clear { pop, reason } => {
                let request = pb::ClearOverrideRequest {
                    pop: pop.clone(),
                    reason: reason.clone(),
                };
                let resp = change(cli, &client, request, |mut c, r| async move {
                    c.clear_override(r).await
                })
                .await
                .answer()?;
                if json {
                    render::json(&serde_json::json!({
                        "cleared": resp.cleared,
                        "plan_version": resp.plan_version,
                    }));
                } else {
                    outln!(
                        "cleared {} override(s) on {pop}; plan version {}",
                        resp.cleared,
                        resp.plan_version
                    );
                }
            }
        },
        Command::Status { pop, bgp: true, .. } => {
            let _ = pop;
            let resp = client.get_status(GetStatusRequest {}).await.answer()?;
            if json {
                render::json(&render::bgp_json(&resp));
            } else {
                out!("{}", render::bgp_table(&resp));
            }
        }
        Command::Status {
            pop, bgp: false, ..
        } => {
            let resp = client.get_status(GetStatusRequest {}).await.answer()?;
            match (json, pop) {
                (true, _) => render::json(&render::status_json(&resp)),
                (false, Some(p)) => out!(
                    "{}",
                    render::pop_detail(&resp, p)
                        .ok_or_else(|| Failure::Refused(format!("not found: pop {p}")))?
                ),
                (false, None) => out!("{}", render::status_table(&resp)),
            }
        }
        Command::Explain {
            name,
            client: who,
            qtype,
            plan_version,
        } => {
            let resp = client
                .explain(pb::ExplainRequest {
                    name: name.clone(),
                    qtype: qtype.clone(),
                    client: who.clone(),
                    plan_version: *plan_version,
                })
                .await
                .answer()?;
            if json {
                render::json(&serde_json::json!({
                    "plan_version": resp.plan_version,
                    "region": resp.region,
                    "answers": resp.answers,
                    "ttl": resp.ttl,
                    "ecs_scope": resp.ecs_scope,
                    "steps": resp.steps,
                }));
            } else {
                outln!("plan version {}", resp.plan_version);
                for (i, step) in resp.steps.iter().enumerate() {
                    outln!("{:>2}. {step}", i + 1);
                }
                outln!(
                    "answer: {} (TTL {}, ECS scope /{})",
                    resp.answers.join(" "),
                    resp.ttl,
                    resp.ecs_scope
                );
            }
        }
        Command::Watch { verbose } => {
            let mut stream = client.watch_plan(pb::WatchPlanRequest {}).await.answer()?;
            let mut lines = watch::WatchLines::new(*verbose || json);
            loop {
                let next = if lines.ramping() {
                    match tokio::time::timeout(watch::RAMP_QUIET, stream.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            for line in lines.flush() {
                                outln!("{line}");
                            }
                            continue;
                        }
                    }
                } else {
                    stream.next().await
                };
                let Some(event) = next else { break };
                let e = event.map_err(|s| describe(&s))?;
                if json {
                    render::json_line(&serde_json::json!({
                        "plan_version": e.plan_version,
                        "computed_unix_ms": e.computed_unix_ms,
                        "diff": e.diff,
                        "changes": e.changes,
                        "ramp_step": e.ramp_step,
                    }));
                } else {
                    for line in lines.event(e.plan_version, &e.diff, e.ramp_step) {
                        outln!("{line}");
                    }
                }
            }
            for line in lines.flush() {
                outln!("{line}");
            }
        }
        Command::Audit {
            since,
            principal,
            scope,
            limit,
        } => {
            let since_unix_ms = since.map_or(0, |d| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                i64::try_from(now.saturating_sub(d).as_millis()).unwrap_or(0)
            });
            let resp = client
                .get_audit(pb::GetAuditRequest {
                    since_unix_ms,
                    until_unix_ms: 0,
                    principal: principal.clone().unwrap_or_default(),
                    scope: scope.clone().unwrap_or_default(),
                    limit: *limit,
                })
                .await
                .answer()?;
            if json {
                render::json(&render::audit_json(&resp.entries));
            } else {
                out!("{}", render::audit_table(&resp.entries));
            }
        }
        Command::Slo {
            action: None | Some(SloAction::Status),
        } => {
            let resp = client.get_slos(pb::GetSlosRequest {}).await.answer()?;
            if json {
                render::json(&steer_api::slo_document(&resp));
            } else {
                out!("{}", render::slo_table(&resp));
            }
        }
        Command::Slo {
            action:
                Some(SloAction::Correct {
                    slo,
                    from,
                    to,
                    reason,
                }),
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let start = render::parse_time(from, now)
                .map_err(|e| Failure::Usage(format!("--from: {e}")))?;
            let end =
                render::parse_time(to, now).map_err(|e| Failure::Usage(format!("--to: {e}")))?;
            let request = pb::CorrectSloRequest {
                slo: slo.clone(),
                start_unix_ms: start,
                end_unix_ms: end,
                reason: reason.clone(),
            };
            change(cli, &client, request, |mut c, r| async move {
                c.correct_slo(r).await
            })
            .await
            .answer()?;
            if json {
                render::json(&serde_json::json!({
                    "slo": slo,
                    "start_unix_ms": start,
                    "end_unix_ms": end,
                }));
            } else {
                outln!(
                    "{slo}: {} to {} excluded from the budget",
                    steer_types::Timestamp(start).rfc3339(),
                    steer_types::Timestamp(end).rfc3339()
                );
            }
        }
        Command::ConfirmFailure { reason } => {
            let request = pb::ConfirmFailureRequest {
                reason: reason.clone(),
            };
            let resp = change(cli, &client, request, |mut c, r| async move {
                c.confirm_failure(r).await
            })
            .await
            .answer()?;
            if json {
                render::json(&serde_json::json!({
                    "pops": resp.pops,
                    "plan_version": resp.plan_version,
                }));
            } else {
                outln!(
                    "failure confirmed; live health applies to {}; plan version {}",
                    resp.pops.join(", "),
                    resp.plan_version
                );
            }
        }
        Command::Dnssec {
            action: DnssecAction::Ds { zone },
        } => {
            let resp = client
                .get_dnssec_ds(pb::GetDnssecDsRequest { zone: zone.clone() })
                .await
                .answer()?;
            if json {
                render::json(&render::dnssec_ds_json(&resp));
            } else {
                out!("{}", render::dnssec_ds_lines(&resp));
            }
        }
        // Handled before connecting.
        Command::Slo { .. } => {}
        Command::Change { action } => change::run(&mut client, action, json).await?,
        Command::Timeline {
            since,
            scope,
            kinds,
            limit,
        } => {
            let args = timeline::TimelineArgs {
                since: *since,
                scope: scope.as_deref(),
                kinds,
                limit: *limit,
            };
            timeline::run_timeline(&mut client, args, cli.output).await?;
        }
        Command::Handoff { since } => {
            timeline::run_handoff(&mut client, *since, cli.output).await?;
        }
        Command::Reload { reason, emergency } => {
            let resp = client
                .reload_config(pb::ReloadConfigRequest {
                    reason: reason.clone(),
                    emergency: *emergency,
                })
                .await
                .answer()?;
            outln!("{}; plan version {}", resp.detail, resp.plan_version);
        }
    }
    Ok(())
}
