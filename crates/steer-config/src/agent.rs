//! steer-agent's config: which PoP it speaks for, where steerd is, and what
//! to probe.

use std::{net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use crate::{
    duration::parse_duration,
    error::{ConfigErrors, Reporter},
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    pop: Spanned<String>,
    steerd: Vec<Spanned<String>>,
    report_interval: Option<Spanned<String>>,
    capacity_rps: Option<Spanned<f64>>,
    load_rps: Option<Spanned<f64>>,
    probes: Vec<Spanned<RawProbe>>,
    /// Probes of other PoPs' VIPs (gray-failure detection).
    #[serde(default)]
    peers: Vec<Spanned<RawProbe>>,
    /// A command printing `key=value` load figures (see [`LoadCommand`]).
    load_command: Option<Spanned<Vec<String>>>,
    load_interval: Option<Spanned<String>>,
    /// TLS towards steerd (https:// endpoints): CA, client certificate.
    tls: Option<crate::tls::RawClientTls>,
    /// File holding the bearer token sent to steerd (`[auth] mode = "token"`).
    token_file: Option<Spanned<String>>,
    /// Request counters read from the edge proxy's Prometheus endpoint.
    #[serde(default)]
    sli: Vec<Spanned<RawSli>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSli {
    service: Spanned<String>,
    /// `http://ip:port/metrics` of the proxy's Prometheus exporter.
    url: Spanned<String>,
    /// Selector of the total requests, e.g.
    /// `haproxy_backend_http_responses_total{proxy="app"}`.
    total: Spanned<String>,
    /// Selector of the failed requests, e.g. `...{proxy="app",code="5xx"}`.
    errors: Spanned<String>,
    /// Optional latency histogram (base name and matchers, without
    /// `_bucket`), and the bucket bound (`le`) that is fast enough.
    latency_histogram: Option<Spanned<String>>,
    latency_le: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    name: Spanned<String>,
    /// Probes: the service this probe speaks for.
    service: Option<Spanned<String>>,
    /// Peer probes: the PoP whose VIP is probed.
    pop: Option<Spanned<String>>,
    kind: Spanned<String>,
    /// tcp: host:port.
    target: Option<Spanned<String>>,
    /// http: http://host:port/path.
    url: Option<Spanned<String>>,
    expect_status: Option<Spanned<u16>>,
    body_contains: Option<String>,
    /// https: CA file to trust (else the system roots).
    ca_file: Option<Spanned<String>>,
    /// https: name to verify the certificate against (else the URL's host).
    server_name: Option<String>,
    /// https: accept any certificate. Off by default; for self-signed
    /// services only.
    insecure_skip_verify: Option<bool>,
    /// exec: argv.
    command: Option<Spanned<Vec<String>>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpProbe {
    /// host:port to connect to.
    pub addr: SocketAddr,
    /// Host header value.
    pub host: String,
    pub path: String,
    pub expect_status: u16,
    pub body_contains: Option<String>,
    /// Set for https:// URLs.
    pub tls: Option<HttpsProbe>,
}

/// TLS settings of an https:// probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpsProbe {
    /// SNI and the name the certificate must be valid for.
    pub server_name: String,
    pub ca_file: Option<std::path::PathBuf>,
    pub insecure_skip_verify: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProbeKind {
    Tcp { target: SocketAddr },
    Http(HttpProbe),
    Exec { command: Vec<String> },
}

impl ProbeKind {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Tcp { .. } => "tcp",
            Self::Http(_) => "http",
            Self::Exec { .. } => "exec",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    pub name: String,
    pub service: String,
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

/// A probe of another PoP's VIP; `probe.service` is empty.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerProbeConfig {
    pub pop: String,
    pub probe: ProbeConfig,
}

/// Load figures from a command, run every `interval`. The command prints
/// `key=value` pairs (whitespace or newline separated) with keys
/// `load_rps`, `capacity_rps`, `bandwidth_bps`, `error_ratio`,
/// `latency_p50_ms`, `latency_p99_ms`; missing keys keep the config value.

#[derive(Clone, Debug, PartialEq)]
pub struct LoadCommand {
    pub command: Vec<String>,
    pub interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    pub pop: String,
    /// gRPC endpoints, e.g. `http://127.0.0.1:50051`; the agent reports to all.
    pub steerd: Vec<String>,
    pub report_interval: Duration,
    pub capacity_rps: f64,
    pub load_rps: f64,
    pub probes: Vec<ProbeConfig>,
    pub peers: Vec<PeerProbeConfig>,
    pub load_command: Option<LoadCommand>,
    pub tls: Option<crate::tls::ClientTls>,
    /// Sent as `authorization: Bearer <token>` on every report stream.
    pub token: Option<crate::auth::BearerToken>,
    /// `[[sli]]`: one per service at most.
    pub sli: Vec<SliSource>,
}

/// Where one service's request counters come from: the edge proxy's
/// Prometheus endpoint, read every report interval. Selectors are kept as
/// written (validated; `steer_slo::promtext::Selector::parse` accepts them).
#[derive(Clone, Debug, PartialEq)]
pub struct SliSource {
    pub service: String,
    pub addr: SocketAddr,
    /// Host header value.
    pub host: String,
    pub path: String,
    pub total: String,
    pub errors: String,
    /// `(histogram selector, le)`: slow = `_count` − `_bucket{le}`.
    pub latency: Option<(String, String)>,
    pub timeout: Duration,
}

pub(crate) fn parse(path: &Path, src: &str) -> Result<AgentConfig, ConfigErrors> {
    let mut r = Reporter::new(path.display().to_string(), src);
    let Some(raw) = r.deserialize::<RawAgent>() else {
        return Err(r.into_errors());
    };
    if raw.pop.get_ref().is_empty() {
        r.at(raw.pop.span(), "pop must not be empty");
    }
    if raw.steerd.is_empty() {
        r.at(raw.pop.span(), "`steerd` needs at least one endpoint");
    }
    for ep in &raw.steerd {
        let e = ep.get_ref();
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            r.at(
                ep.span(),
                format!("{e:?} must start with http:// or https://"),
            );
        }
    }
    let report_interval = duration(&mut r, &raw.report_interval, Duration::from_secs(1));
    let positive = |r: &mut Reporter<'_>, v: &Option<Spanned<f64>>| -> f64 {
        match v {
            None => 0.0,
            Some(v) if v.get_ref().is_finite() && *v.get_ref() >= 0.0 => *v.get_ref(),
            Some(v) => {
                r.at(v.span(), "must be a non-negative number");
                0.0
            }
        }
    };
    let capacity_rps = positive(&mut r, &raw.capacity_rps);
    let load_rps = positive(&mut r, &raw.load_rps);
    if raw.probes.is_empty() {
        r.at(raw.pop.span(), "at least one [[probes]] entry is required");
    }
    let probes: Vec<ProbeConfig> = raw
        .probes
        .iter()
        .filter_map(|p| {
            let p = p.get_ref();
            if let Some(pop) = &p.pop {
                r.at(
                    pop.span(),
                    "`pop` belongs in [[peers]]; a probe names its `service`",
                );
            }
            let Some(service) = &p.service else {
                r.at(p.name.span(), "a probe needs `service`");
                return None;
            };
            let mut c = probe(&mut r, p)?;
            c.service = service.get_ref().clone();
            Some(c)
        })
        .collect();
    let peers = raw
        .peers
        .iter()
        .filter_map(|p| peer(&mut r, p.get_ref()))
        .collect();
    let load_command = raw.load_command.as_ref().and_then(|c| {
        if c.get_ref().is_empty() {
            r.at(c.span(), "load_command must name a program");
            return None;
        }
        Some(LoadCommand {
            command: c.get_ref().clone(),
            interval: duration(&mut r, &raw.load_interval, report_interval),
        })
    });

    let tls = raw
        .tls
        .as_ref()
        .map(|t| crate::tls::client_tls(&mut r, path, t));
    let token = raw.token_file.as_ref().and_then(|f| {
        let path = path
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(f.get_ref());
        crate::auth::read_bearer_token(&path)
            .map_err(|e| r.at(f.span(), e))
            .ok()
    });
    let sli = sli_sources(&mut r, &raw.sli, report_interval);
    for (raw_sli, source) in raw.sli.iter().zip(&sli) {
        if !probes
            .iter()
            .any(|p: &ProbeConfig| p.service == source.service)
        {
            r.at(
                raw_sli.get_ref().service.span(),
                format!(
                    "no [[probes]] entry for service {:?}: request counters ride on its health",
                    source.service
                ),
            );
        }
    }
    r.finish(AgentConfig {
        sli,
        pop: raw.pop.get_ref().clone(),
        steerd: raw.steerd.iter().map(|s| s.get_ref().clone()).collect(),
        report_interval,
        capacity_rps,
        load_rps,
        probes,
        peers,
        load_command,
        tls,
        token,
    })
}

fn sli_sources(
    r: &mut Reporter<'_>,
    raw: &[Spanned<RawSli>],
    report_interval: Duration,
) -> Vec<SliSource> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for s in raw {
        let s = s.get_ref();
        let service = s.service.get_ref();
        if service.is_empty() {
            r.at(s.service.span(), "must name a service");
        } else if !seen.insert(service.clone()) {
            r.at(
                s.service.span(),
                format!("service {service:?} already has an [[sli]] source"),
            );
        }
        let url = match parse_http_url(s.url.get_ref()) {
            Ok(u) if s.url.get_ref().starts_with("http://") => Some(u),
            Ok(_) => {
                r.at(s.url.span(), "only http:// metrics endpoints are read");
                None
            }
            Err(e) => {
                r.at(s.url.span(), e);
                None
            }
        };
        let mut selector =
            |v: &Spanned<String>| match steer_slo::promtext::Selector::parse(v.get_ref()) {
                Ok(_) => true,
                Err(e) => {
                    r.at(v.span(), e);
                    false
                }
            };
        let ok = selector(&s.total) & selector(&s.errors);
        let latency = match (&s.latency_histogram, &s.latency_le) {
            (Some(h), Some(le)) => {
                let hist_ok = selector(h);
                if le.get_ref().parse::<f64>().is_err() && le.get_ref() != "+Inf" {
                    r.at(
                        le.span(),
                        "must be a bucket bound as the histogram writes it, e.g. \"0.3\"",
                    );
                }
                hist_ok.then(|| (h.get_ref().clone(), le.get_ref().clone()))
            }
            (Some(h), None) => {
                r.at(
                    h.span(),
                    "a latency histogram needs `latency_le` (the fast-enough bucket)",
                );
                None
            }
            (None, Some(le)) => {
                r.at(le.span(), "`latency_le` needs `latency_histogram`");
                None
            }
            (None, None) => None,
        };
        let timeout = duration(r, &s.timeout, report_interval.min(Duration::from_secs(2)));
        if let (Some((addr, host, path)), true) = (url, ok) {
            out.push(SliSource {
                service: service.clone(),
                addr,
                host,
                path,
                total: s.total.get_ref().clone(),
                errors: s.errors.get_ref().clone(),
                latency,
                timeout,
            });
        }
    }
    out
}

fn peer(r: &mut Reporter<'_>, p: &RawProbe) -> Option<PeerProbeConfig> {
    if let Some(s) = &p.service {
        r.at(
            s.span(),
            "a peer probe names the `pop` it probes, not a `service`",
        );
    }
    let Some(pop) = &p.pop else {
        r.at(
            p.name.span(),
            "a peer probe needs `pop` (the PoP it probes)",
        );
        return None;
    };
    if p.kind.get_ref() == "exec" {
        r.at(p.kind.span(), "peer probes are tcp or http");
        return None;
    }
    Some(PeerProbeConfig {
        pop: pop.get_ref().clone(),
        probe: probe(r, p)?,
    })
}

fn duration(r: &mut Reporter<'_>, v: &Option<Spanned<String>>, default: Duration) -> Duration {
    match v {
        None => default,
        Some(v) => match parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                r.at(v.span(), "must be greater than zero");
                default
            }
            Err(e) => {
                r.at(v.span(), e);
                default
            }
        },
    }
}

fn probe(r: &mut Reporter<'_>, p: &RawProbe) -> Option<ProbeConfig> {
    let require = |r: &mut Reporter<'_>, what: &str| {
        r.at(
            p.kind.span(),
            format!("a {} probe needs `{what}`", p.kind.get_ref()),
        );
    };
    let kind = match p.kind.get_ref().as_str() {
        "tcp" => {
            let Some(t) = &p.target else {
                require(r, "target");
                return None;
            };
            match t.get_ref().parse() {
                Ok(target) => ProbeKind::Tcp { target },
                Err(_) => {
                    r.at(t.span(), format!("{:?} is not an ip:port", t.get_ref()));
                    return None;
                }
            }
        }
        "http" => {
            let Some(u) = &p.url else {
                require(r, "url");
                return None;
            };
            match parse_http_url(u.get_ref()) {
                Ok((addr, host, path)) => ProbeKind::Http(HttpProbe {
                    addr,
                    tls: u.get_ref().starts_with("https://").then(|| HttpsProbe {
                        server_name: p
                            .server_name
                            .clone()
                            .unwrap_or_else(|| addr.ip().to_string()),
                        ca_file: p.ca_file.as_ref().map(|f| relative_file(r, f)),
                        insecure_skip_verify: p.insecure_skip_verify.unwrap_or(false),
                    }),
                    host,
                    path,
                    expect_status: p.expect_status.as_ref().map_or(200, |s| *s.get_ref()),
                    body_contains: p.body_contains.clone(),
                }),
                Err(e) => {
                    r.at(u.span(), e);
                    return None;
                }
            }
        }
        "exec" => {
            let Some(c) = &p.command else {
                require(r, "command");
                return None;
            };
            if c.get_ref().is_empty() {
                r.at(c.span(), "command must name a program");
                return None;
            }
            ProbeKind::Exec {
                command: c.get_ref().clone(),
            }
        }
        other => {
            r.at(
                p.kind.span(),
                format!("unknown probe kind {other:?} (tcp, http or exec)"),
            );
            return None;
        }
    };
    let interval = duration(r, &p.interval, Duration::from_secs(1));
    let timeout = duration(r, &p.timeout, Duration::from_millis(500));
    if timeout > interval
        && let Some(t) = &p.timeout
    {
        r.at(t.span(), "timeout must not exceed interval");
    }
    let count = |r: &mut Reporter<'_>, v: &Option<Spanned<u32>>| match v {
        None => 1,
        Some(v) if (1..=100).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            r.at(v.span(), "must be between 1 and 100");
            1
        }
    };
    Some(ProbeConfig {
        name: p.name.get_ref().clone(),
        service: String::new(),
        kind,
        interval,
        timeout,
        rise: count(r, &p.rise),
        fall: count(r, &p.fall),
    })
}

/// A path relative to the config file, which must be readable.
fn relative_file(r: &mut Reporter<'_>, f: &Spanned<String>) -> std::path::PathBuf {
    let path = r
        .path()
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(f.get_ref());
    if let Err(e) = std::fs::metadata(&path) {
        r.at(f.span(), format!("cannot read {}: {e}", path.display()));
    }
    path
}

/// `http://ip:port/path` → (addr, host header, path). Probes target a local
/// IP so that a DNS failure never looks like a service failure.
fn parse_http_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let (rest, default_port) = match url.strip_prefix("https://") {
        Some(rest) => (rest, 443),
        None => (
            url.strip_prefix("http://")
                .ok_or_else(|| format!("{url:?}: only http:// and https:// URLs are supported"))?,
            80,
        ),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .or_else(|_| format!("{authority}:{default_port}").parse())
        .map_err(|_| format!("{url:?}: host must be an IP address with optional :port"))?;
    Ok((addr, authority.to_owned(), path.to_owned()))
}
