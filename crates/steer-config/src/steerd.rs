//! steerd's config: listeners, storage, health settings, zones and the world.

use std::{
    collections::{BTreeMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::Deserialize;
use steer_types::auth::Identity;
use steer_types::{
    ClientNetwork, DnsSettings, DnssecZone, HealthSettings, PolicySettings, Pop, PopId, RecordData,
    Region, RegionId, RegionLatency, Service, ServiceId, Soa, StaticRecord, Topology,
    UnknownHealth, Zone,
};
use toml::Spanned;

use crate::{
    duration::parse_duration,
    error::{ConfigErrors, Reporter},
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    auth: Spanned<RawAuth>,
    tls: Option<crate::tls::RawServerTls>,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    zones: Vec<Spanned<RawZone>>,
    regions: Vec<Spanned<RawRegion>>,
    pops: Vec<Spanned<RawPop>>,
    #[serde(default)]
    services: Vec<Spanned<RawService>>,
    bgp: Option<Spanned<crate::bgp::RawBgp>>,
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    slos: Vec<Spanned<crate::slo::RawSlo>>,
    /// OpenSLO v1 YAML files whose SLO documents are imported.
    #[serde(default)]
    openslo: Vec<Spanned<String>>,
    alerting: Option<crate::slo::RawAlerting>,
    cluster: Option<Spanned<crate::slo::RawCluster>>,
    /// Only read by `steerd --role edge`.
    edge: Option<Spanned<crate::edge::RawEdge>>,
    changes: Option<Spanned<crate::changes::RawChanges>>,
    notify: Option<Spanned<crate::notify::RawNotify>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub(crate) udp_payload: Option<Spanned<u16>>,
    pub(crate) udp_workers: Option<Spanned<u16>>,
    pub(crate) rrl: Option<Spanned<RawRrl>>,
    pub(crate) geo: Option<Spanned<RawGeo>>,
    pub(crate) tcp_max_connections: Option<Spanned<u32>>,
    pub(crate) tcp_max_connections_per_client: Option<Spanned<u32>>,
    pub(crate) tcp_idle_timeout: Option<Spanned<String>>,
    /// "30s" (the default), or "off".
    pub(crate) calibrate_every: Option<Spanned<String>>,
    /// CHAOS `id.server`; "" hides it.
    pub(crate) identity: Option<Spanned<String>>,
    /// CHAOS `version.bind`; "" hides it.
    pub(crate) version: Option<Spanned<String>>,
    /// EDNS NSID sent when asked.
    pub(crate) nsid: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGeo {
    /// Relative to the config file.
    pub(crate) mmdb: Spanned<String>,
    #[serde(default)]
    pub(crate) countries: std::collections::BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub(crate) continents: std::collections::BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRrl {
    #[serde(default = "default_true")]
    pub(crate) enabled: bool,
    pub(crate) responses_per_second: Option<Spanned<u32>>,
    pub(crate) slip: Option<Spanned<u32>>,
    pub(crate) ipv4_prefix: Option<Spanned<u8>>,
    pub(crate) ipv6_prefix: Option<Spanned<u8>>,
    pub(crate) window: Option<Spanned<String>>,
    /// Client networks never limited (default: loopback).
    pub(crate) exempt: Option<Vec<Spanned<String>>>,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    /// One address or a list of them.
    dns_listen: Option<Spanned<toml::Value>>,
    grpc_listen: Option<Spanned<String>>,
    http_listen: Option<Spanned<String>>,
    state_dir: Option<String>,
    cluster: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    mode: Spanned<String>,
    /// For mode = "token": path of the tokens file, relative to this config.
    tokens_file: Option<Spanned<String>>,
    /// With mode = "none": allow gRPC/HTTP listeners off loopback.
    #[serde(default)]
    allow_unauthenticated_remote: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    unknown_health: Option<Spanned<String>>,
    stale_after: Option<Spanned<String>>,
    max_stale: Option<Spanned<String>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
    damping: Option<crate::guards::RawDamping>,
    correlated_failure: Option<crate::guards::RawCorrelation>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    min_announce_share: Option<Spanned<f64>>,
    prepend_count: Option<Spanned<u8>>,
    target_utilisation: Option<Spanned<f64>>,
    panic_threshold: Option<Spanned<f64>>,
    max_weight_step_per_s: Option<Spanned<u32>>,
    #[serde(default)]
    latency: Vec<Spanned<RawLatency>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    from: Spanned<String>,
    to: Spanned<String>,
    ms: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    origin: Spanned<String>,
    /// An RFC 1035 master file (relative to the config file) instead of
    /// `ns`, `soa` and `records`.
    file: Option<Spanned<String>>,
    #[serde(default = "default_zone_ttl")]
    ttl: u32,
    #[serde(default)]
    ns: Vec<Spanned<String>>,
    soa: Option<RawSoa>,
    #[serde(default)]
    records: Vec<Spanned<RawRecord>>,
    /// `dnssec = true`, or `[zones.dnssec]` with `algorithm`.
    dnssec: Option<Spanned<RawDnssec>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDnssec {
    On(bool),
    Table(RawDnssecTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDnssecTable {
    #[serde(default = "default_true")]
    enabled: bool,
    // Not `Spanned`: spans do not survive an untagged enum.
    algorithm: Option<String>,
}

fn default_zone_ttl() -> u32 {
    3600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoa {
    mname: Spanned<String>,
    rname: Spanned<String>,
    serial: u32,
    #[serde(default = "default_refresh")]
    refresh: i32,
    #[serde(default = "default_retry")]
    retry: i32,
    #[serde(default = "default_expire")]
    expire: i32,
    #[serde(default = "default_minimum")]
    minimum: u32,
}

fn default_refresh() -> i32 {
    3600
}
fn default_retry() -> i32 {
    600
}
fn default_expire() -> i32 {
    604_800
}
fn default_minimum() -> u32 {
    60
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    name: Spanned<String>,
    #[serde(rename = "type")]
    rtype: Spanned<String>,
    value: Spanned<String>,
    ttl: Option<u32>,
    /// MX preference.
    preference: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    id: Spanned<String>,
    #[serde(default)]
    networks: Vec<Spanned<String>>,
    #[serde(default)]
    fallback: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPop {
    id: Spanned<String>,
    region: Spanned<String>,
    ipv4: Option<Spanned<String>>,
    ipv6: Option<Spanned<String>>,
    capacity_rps: Spanned<f64>,
    /// Where the PoP is, for the status page's map (degrees, WGS 84).
    lat: Option<Spanned<f64>>,
    lon: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) id: Spanned<String>,
    pub(crate) name: Spanned<String>,
    pub(crate) ttl: Spanned<u32>,
    #[serde(default = "default_max_records")]
    pub(crate) max_records: Spanned<u32>,
    pub(crate) pops: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) anycast: Vec<Spanned<String>>,
    /// "sticky" (default) or "random".
    pub(crate) selection: Option<Spanned<String>>,
    /// Addresses answered when every candidate is out.
    #[serde(default)]
    pub(crate) fallback: Vec<Spanned<String>>,
    /// CNAME-style service: target name template with {region} / {pop}.
    pub(crate) cname: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) priority: u8,
    /// Estimated demand per client region id (and `global`), rps.
    #[serde(default)]
    pub(crate) demand_rps: std::collections::BTreeMap<String, Spanned<f64>>,
}

fn default_max_records() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}

/// How callers of the gRPC APIs are authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication; only for loopback setups like the quickstart.
    None,
    /// Bearer tokens from a file: token → identity.
    Tokens(Vec<(String, Identity)>),
    /// Client certificates (`[tls] client_ca_file`) named in the tokens
    /// file by `cert_name`; bearer tokens listed there are accepted too.
    Mtls(crate::tokens::Credentials),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerSettings {
    /// UDP and TCP on each; `[::]` serves IPv4 too (dual-stack) unless
    /// `0.0.0.0` on the same port is listed as well.
    pub dns_listen: Vec<SocketAddr>,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub state_dir: PathBuf,
    /// Names this deployment; recorded in the state directory, whose
    /// state steerd refuses if it was recorded for another one.
    pub cluster: Option<String>,
}

/// A fully validated steerd config.
#[derive(Clone, Debug, PartialEq)]
pub struct SteerConfig {
    pub source: PathBuf,
    /// The file as read (what a change request is proposed against).
    pub source_text: String,
    pub server: ServerSettings,
    pub auth: AuthMode,
    /// `[auth] allow_unauthenticated_remote`: mode = "none" off loopback.
    pub allow_unauthenticated_remote: bool,
    pub topology: Topology,
    pub zones: Vec<Zone>,
    /// TLS on the gRPC listener (`[tls]`).
    pub tls: Option<crate::tls::ServerTls>,
    /// The anycast speaker; `None` when the file has no `[bgp]` table.
    pub bgp: Option<steer_types::bgp::BgpSettings>,
    pub dns: DnsSettings,
    /// `[[slos]]`.
    pub slos: Vec<steer_slo::SloSpec>,
    /// `[alerting]` (defaults when absent: no Alertmanager).
    pub alerting: crate::slo::AlertingSettings,
    /// `[cluster]`: controllers on etcd; `None` for the embedded store.
    pub cluster: Option<crate::slo::ClusterSettings>,
    /// `[edge]`: what `--role edge` follows; `None` without the table.
    pub edge: Option<crate::edge::EdgeSettings>,
    /// `[changes]`: config changes go through change requests; `None`
    /// without the table (`steerctl reload` applies them at once).
    pub changes: Option<steer_change::ChangeSettings>,
    /// `[[notify.webhooks]]`: where timeline events are posted.
    pub notify: Vec<crate::notify::WebhookSettings>,
    /// `lat`/`lon` of the `[[pops]]` that give them (the status page's map).
    pub pop_locations: BTreeMap<PopId, PopLocation>,
}

/// A PoP's place on the map, in degrees (WGS 84).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PopLocation {
    pub lat: f64,
    pub lon: f64,
}

/// Each PoP's `lat`/`lon`: both or neither, within -90..=90 and -180..=180.
fn pop_locations(r: &mut Reporter<'_>, raw: &RawConfig) -> BTreeMap<PopId, PopLocation> {
    let mut out = BTreeMap::new();
    for p in &raw.pops {
        let p = p.get_ref();
        let in_range = |r: &mut Reporter<'_>, v: &Spanned<f64>, key: &str, max: f64| {
            let x = *v.get_ref();
            if x.is_finite() && x.abs() <= max {
                Some(x)
            } else {
                r.at(
                    v.span(),
                    format!("{key} must be a number of degrees from -{max} to {max}"),
                );
                None
            }
        };
        match (&p.lat, &p.lon) {
            (None, None) => {}
            (Some(lat), None) => r.at(lat.span(), "`lat` needs `lon` too"),
            (None, Some(lon)) => r.at(lon.span(), "`lon` needs `lat` too"),
            (Some(lat), Some(lon)) => {
                let lat = in_range(r, lat, "lat", 90.0);
                let lon = in_range(r, lon, "lon", 180.0);
                if let (Some(lat), Some(lon)) = (lat, lon) {
                    out.insert(PopId::new(p.id.get_ref()), PopLocation { lat, lon });
                }
            }
        }
    }
    out
}

pub(crate) fn parse(path: &Path, src: &str) -> Result<SteerConfig, ConfigErrors> {
    let mut r = Reporter::new(path.display().to_string(), src);
    let Some(raw) = r.deserialize::<RawConfig>() else {
        return Err(r.into_errors());
    };
    let server = server_settings(&mut r, &raw.server);
    let auth = auth_mode(&mut r, path, raw.auth.get_ref());
    let tls = raw
        .tls
        .as_ref()
        .map(|t| crate::tls::server_tls(&mut r, path, t));
    let auth = mtls_auth(&mut r, path, &raw.auth, tls.as_ref()).unwrap_or(auth);
    let allow_unauthenticated_remote = raw.auth.get_ref().allow_unauthenticated_remote;
    let listen_spans =
        [&raw.server.grpc_listen, &raw.server.http_listen].map(|v| v.as_ref().map(Spanned::span));
    crate::auth::refuse_open_remote(
        &mut r,
        &server,
        &auth,
        allow_unauthenticated_remote,
        listen_spans,
    );
    let mut health = health_settings(&mut r, &raw.health);
    health.guards = crate::guards::health_guards(
        &mut r,
        raw.health.damping.as_ref(),
        raw.health.correlated_failure.as_ref(),
    );
    let policy = policy_settings(&mut r, &raw.policy);
    let zones = zones(&mut r, &raw.zones, path.parent().unwrap_or(Path::new(".")));
    let mut topology = topology(&mut r, &raw, &zones, health);
    let region_ids: HashSet<String> = topology.regions.iter().map(|x| x.id.to_string()).collect();
    topology.policy = PolicySettings {
        latency_ms: latency_matrix(&mut r, &raw.policy, &region_ids),
        ..policy
    };
    let bgp = raw
        .bgp
        .as_ref()
        .map(|b| crate::bgp::bgp_settings(&mut r, b, &topology));
    let mut dns = crate::dns::dns_settings(&mut r, &raw.dns, &raw.services);
    dns.geo = raw.dns.geo.as_ref().and_then(|g| {
        crate::dns::geo_settings(
            &mut r,
            g.get_ref(),
            path.parent().unwrap_or(Path::new(".")),
            &topology.regions,
        )
    });
    dns.dnssec = dnssec_zones(&mut r, &raw.zones, &zones, &server.state_dir);
    let mut slos = crate::slo::slos(&mut r, &raw.slos, &topology);
    let files: Vec<(String, std::ops::Range<usize>)> = raw
        .openslo
        .iter()
        .map(|f| (f.get_ref().clone(), f.span()))
        .collect();
    let imported =
        crate::openslo::import(&files, path.parent().unwrap_or(Path::new(".")), &topology);
    for (span, why) in imported.unreadable {
        r.at(span, why);
    }
    for e in imported.errors {
        r.push(e);
    }
    for slo in imported.slos {
        if slos.iter().any(|s| s.name == slo.name) {
            if let Some(f) = raw.openslo.first() {
                r.at(
                    f.span(),
                    format!("SLO {:?} is defined twice ([[slos]] and OpenSLO)", slo.name),
                );
            }
        } else {
            slos.push(slo);
        }
    }
    let alerting = crate::slo::alerting(&mut r, raw.alerting.as_ref());
    let cluster = raw.cluster.as_ref().map(|c| crate::slo::cluster(&mut r, c));
    let edge = raw
        .edge
        .as_ref()
        .map(|e| crate::edge::edge_settings(&mut r, path, e));
    let changes = raw
        .changes
        .as_ref()
        .map(|c| crate::changes::changes(&mut r, c, &topology));
    let config_dir = path.parent().unwrap_or_else(|| Path::new("."));
    let notify = raw
        .notify
        .as_ref()
        .map(|n| crate::notify::notify(&mut r, config_dir, n))
        .unwrap_or_default();
    let pop_locations = pop_locations(&mut r, &raw);
    r.finish(SteerConfig {
        pop_locations,
        edge,
        changes,
        notify,
        source: path.to_path_buf(),
        source_text: src.to_owned(),
        server,
        auth,
        allow_unauthenticated_remote,
        topology,
        zones,
        tls,
        bgp,
        dns,
        slos,
        alerting,
        cluster,
    })
}

/// `mode = "mtls"`: needs `[tls]` with `client_ca_file` and a tokens file
/// naming identities by `cert_name`. `None` for the other modes.
fn mtls_auth(
    r: &mut Reporter<'_>,
    config_path: &Path,
    raw: &Spanned<RawAuth>,
    tls: Option<&crate::tls::ServerTls>,
) -> Option<AuthMode> {
    let raw_auth = raw.get_ref();
    if raw_auth.mode.get_ref() != "mtls" {
        return None;
    }
    if tls.is_none_or(|t| t.client_ca_file.is_none()) {
        r.at(
            raw_auth.mode.span(),
            "mode = \"mtls\" needs a [tls] table with `client_ca_file`",
        );
    }
    let Some(f) = &raw_auth.tokens_file else {
        r.at(
            raw_auth.mode.span(),
            "mode = \"mtls\" needs `tokens_file` (identities by `cert_name`)",
        );
        return Some(AuthMode::None);
    };
    let path = config_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(f.get_ref());
    match crate::tokens::load_credentials(&path) {
        Ok(c) => Some(AuthMode::Mtls(c)),
        Err(errors) => {
            r.at(f.span(), format!("tokens file is invalid:\n{errors}"));
            Some(AuthMode::None)
        }
    }
}

fn auth_mode(r: &mut Reporter<'_>, config_path: &Path, raw: &RawAuth) -> AuthMode {
    match raw.mode.get_ref().as_str() {
        "none" => {
            if let Some(f) = &raw.tokens_file {
                r.at(f.span(), "tokens_file is only used with mode = \"token\"");
            }
            AuthMode::None
        }
        "token" => {
            let Some(f) = &raw.tokens_file else {
                r.at(raw.mode.span(), "mode = \"token\" needs `tokens_file`");
                return AuthMode::None;
            };
            let path = config_path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(f.get_ref());
            match crate::tokens::load(&path) {
                Ok(tokens) => AuthMode::Tokens(tokens),
                Err(errors) => {
                    let text = errors.to_string();
                    r.at(f.span(), format!("tokens file is invalid:\n{text}"));
                    AuthMode::None
                }
            }
        }
        // Validated with [tls] by `mtls_auth`.
        "mtls" => AuthMode::None,
        other => {
            r.at(
                raw.mode.span(),
                format!("unknown auth mode {other:?} (\"none\", \"token\" or \"mtls\")"),
            );
            AuthMode::None
        }
    }
}

fn server_settings(r: &mut Reporter<'_>, raw: &RawServer) -> ServerSettings {
    let mut addr = |v: &Option<Spanned<String>>, default: u16| match v {
        None => SocketAddr::from((Ipv4Addr::LOCALHOST, default)),
        Some(s) => s.get_ref().parse().unwrap_or_else(|_| {
            r.at(
                s.span(),
                format!(
                    "{:?} is not an address:port such as 127.0.0.1:5353",
                    s.get_ref()
                ),
            );
            SocketAddr::from((Ipv4Addr::LOCALHOST, default))
        }),
    };
    let grpc_listen = addr(&raw.grpc_listen, 50051);
    let http_listen = addr(&raw.http_listen, 9100);
    ServerSettings {
        dns_listen: crate::dns::dns_listen(r, raw.dns_listen.as_ref()),
        grpc_listen,
        http_listen,
        state_dir: PathBuf::from(raw.state_dir.as_deref().unwrap_or(".steer-state")),
        cluster: raw.cluster.as_ref().and_then(|c| {
            let name = c.get_ref().trim();
            if name.is_empty() {
                r.at(
                    c.span(),
                    "cluster must not be empty (leave it out to go by the regions)",
                );
                None
            } else {
                Some(name.to_owned())
            }
        }),
    }
}

fn health_settings(r: &mut Reporter<'_>, raw: &RawHealth) -> HealthSettings {
    let mut s = HealthSettings::default();
    if let Some(u) = &raw.unknown_health {
        s.unknown_health = match u.get_ref().as_str() {
            "assume-up" => UnknownHealth::AssumeUp,
            "assume-down" => UnknownHealth::AssumeDown,
            other => {
                r.at(
                    u.span(),
                    format!(
                        "unknown_health must be \"assume-up\" or \"assume-down\", got {other:?}"
                    ),
                );
                s.unknown_health
            }
        };
    }
    let mut dur = |v: &Option<Spanned<String>>, into: &mut Duration| {
        if let Some(v) = v {
            match parse_duration(v.get_ref()) {
                Ok(d) if !d.is_zero() => *into = d,
                Ok(_) => r.at(v.span(), "must be greater than zero"),
                Err(e) => r.at(v.span(), e),
            }
        }
    };
    dur(&raw.stale_after, &mut s.stale_after);
    dur(&raw.max_stale, &mut s.max_stale);
    for (v, into) in [(&raw.rise, &mut s.rise), (&raw.fall, &mut s.fall)] {
        if let Some(v) = v {
            if *v.get_ref() == 0 || *v.get_ref() > 100 {
                r.at(v.span(), "must be between 1 and 100");
            } else {
                *into = *v.get_ref();
            }
        }
    }
    s
}

fn policy_settings(r: &mut Reporter<'_>, raw: &RawPolicy) -> PolicySettings {
    let mut p = PolicySettings::default();
    if let Some(v) = &raw.min_announce_share {
        if (0.0..=1.0).contains(v.get_ref()) {
            p.min_announce_share = *v.get_ref();
        } else {
            r.at(v.span(), "min_announce_share must be between 0 and 1");
        }
    }
    if let Some(v) = &raw.prepend_count {
        if (1..=10).contains(v.get_ref()) {
            p.prepend_count = *v.get_ref();
        } else {
            r.at(v.span(), "prepend_count must be between 1 and 10");
        }
    }
    if let Some(v) = &raw.target_utilisation {
        if (0.05..=1.0).contains(v.get_ref()) {
            p.target_utilisation = *v.get_ref();
        } else {
            r.at(v.span(), "target_utilisation must be between 0.05 and 1");
        }
    }
    if let Some(v) = &raw.panic_threshold {
        if (0.0..=1.0).contains(v.get_ref()) {
            p.panic_threshold = *v.get_ref();
        } else {
            r.at(
                v.span(),
                "panic_threshold must be between 0 and 1 (0 disables panic mode)",
            );
        }
    }
    if let Some(v) = &raw.max_weight_step_per_s {
        if *v.get_ref() <= 1000 {
            p.max_weight_step_per_s = *v.get_ref();
        } else {
            r.at(
                v.span(),
                "max_weight_step_per_s is per-mille per second: 0 (off) to 1000",
            );
        }
    }
    p
}

/// Latency entries need the regions, so they are checked with the topology.
fn latency_matrix(
    r: &mut Reporter<'_>,
    raw: &RawPolicy,
    regions: &HashSet<String>,
) -> Vec<RegionLatency> {
    raw.latency
        .iter()
        .filter_map(|l| {
            let l = l.get_ref();
            let mut ok = true;
            for end in [&l.from, &l.to] {
                if !regions.contains(end.get_ref()) {
                    r.at(end.span(), format!("unknown region {:?}", end.get_ref()));
                    ok = false;
                }
            }
            ok.then(|| RegionLatency {
                from: RegionId::new(l.from.get_ref()),
                to: RegionId::new(l.to.get_ref()),
                ms: l.ms,
            })
        })
        .collect()
}

/// Lower-cases and checks a fully-qualified name (trailing dot required).
pub(crate) fn fqdn(r: &mut Reporter<'_>, name: &Spanned<String>) -> String {
    let n = name.get_ref().to_ascii_lowercase();
    if !n.ends_with('.') {
        r.at(
            name.span(),
            format!(
                "{:?} must be fully qualified (end with a dot)",
                name.get_ref()
            ),
        );
    }
    if n.split('.').any(|l| l.len() > 63) || n.len() > 254 {
        r.at(name.span(), "name or label too long");
    }
    n
}

fn zones(r: &mut Reporter<'_>, raw: &[Spanned<RawZone>], dir: &Path) -> Vec<Zone> {
    let mut seen = HashSet::new();
    raw.iter()
        .filter_map(|z| {
            let span = z.span();
            let z = z.get_ref();
            let origin = fqdn(r, &z.origin);
            if !seen.insert(origin.clone()) {
                r.at(z.origin.span(), format!("zone {origin} is defined twice"));
            }
            match &z.file {
                Some(file) => zone_from_file(r, z, &origin, file, dir),
                None => inline_zone(r, z, origin, span),
            }
        })
        .collect()
}

/// The zones that opted in to online signing. Keys live under the state
/// directory (`dnssec/`); steerd points them at its final state directory.
fn dnssec_zones(
    r: &mut Reporter<'_>,
    raw: &[Spanned<RawZone>],
    zones: &[Zone],
    state_dir: &Path,
) -> Vec<DnssecZone> {
    let mut out = Vec::new();
    for z in raw {
        let z = z.get_ref();
        let Some(d) = &z.dnssec else { continue };
        let on = match d.get_ref() {
            RawDnssec::On(on) => *on,
            RawDnssec::Table(t) => {
                if let Some(a) = &t.algorithm
                    && !a.eq_ignore_ascii_case("ecdsap256sha256")
                {
                    r.at(
                        d.span(),
                        format!(
                            "DNSSEC algorithm {a:?} is not supported; use \"ecdsap256sha256\" (13)"
                        ),
                    );
                }
                t.enabled
            }
        };
        let origin = z.origin.get_ref().to_ascii_lowercase();
        let origin = if origin.ends_with('.') {
            origin
        } else {
            format!("{origin}.")
        };
        if on && zones.iter().any(|zone| zone.origin == origin) {
            out.push(DnssecZone {
                origin,
                key_dir: state_dir.join("dnssec"),
            });
        }
    }
    out
}

fn zone_from_file(
    r: &mut Reporter<'_>,
    z: &RawZone,
    origin: &str,
    file: &Spanned<String>,
    dir: &Path,
) -> Option<Zone> {
    if !z.ns.is_empty() || z.soa.is_some() || !z.records.is_empty() {
        r.at(
            file.span(),
            "a zone with `file` takes its SOA, NS and records from the file; \
             remove `ns`, `soa` and `records`",
        );
    }
    let path = dir.join(file.get_ref());
    match crate::zonefile::load(&path, origin) {
        Ok(zone) => Some(zone),
        Err(errors) => {
            r.at(
                file.span(),
                format!("zone file {} for {origin} is invalid", path.display()),
            );
            for e in errors {
                r.push(e);
            }
            None
        }
    }
}

fn inline_zone(
    r: &mut Reporter<'_>,
    z: &RawZone,
    origin: String,
    span: std::ops::Range<usize>,
) -> Option<Zone> {
    if z.ns.is_empty() {
        r.at(
            z.origin.span(),
            "a zone needs at least one `ns` (or a `file`)",
        );
    }
    let Some(raw_soa) = &z.soa else {
        r.at(span, "a zone needs a `soa` (or a `file`)");
        return None;
    };
    let ns = z.ns.iter().map(|n| fqdn(r, n)).collect();
    let soa = Soa {
        mname: fqdn(r, &raw_soa.mname),
        rname: fqdn(r, &raw_soa.rname),
        serial: raw_soa.serial,
        refresh: raw_soa.refresh,
        retry: raw_soa.retry,
        expire: raw_soa.expire,
        minimum: raw_soa.minimum,
    };
    let records: Vec<StaticRecord> = z
        .records
        .iter()
        .filter_map(|rec| record(r, &origin, z.ttl, rec))
        .collect();
    // RFC 6672 2.3: nothing below a DNAME (it would never be served).
    for raw in &z.records {
        let name = absolute(&origin, raw.get_ref().name.get_ref());
        if let Some(owner) = crate::zonefile::dname_above(&records, &name) {
            r.at(
                raw.get_ref().name.span(),
                format!("{name} is below the DNAME at {owner}: names there are redirected, never served (RFC 6672 2.3)"),
            );
        }
    }
    Some(Zone {
        origin,
        soa,
        soa_ttl: z.ttl,
        ns,
        ns_ttl: z.ttl,
        records,
    })
}

fn absolute(origin: &str, name: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name == "@" {
        origin.to_owned()
    } else if name.ends_with('.') {
        name
    } else {
        format!("{name}.{origin}")
    }
}

fn record(
    r: &mut Reporter<'_>,
    origin: &str,
    zone_ttl: u32,
    raw: &Spanned<RawRecord>,
) -> Option<StaticRecord> {
    let rec = raw.get_ref();
    let name = absolute(origin, rec.name.get_ref());
    if !(name == origin || name.ends_with(&format!(".{origin}"))) {
        r.at(rec.name.span(), format!("{name} is outside zone {origin}"));
        return None;
    }
    let value = rec.value.get_ref();
    let bad = |r: &mut Reporter<'_>, what: &str| {
        r.at(rec.value.span(), format!("{value:?} is not a valid {what}"));
    };
    let data = match rec.rtype.get_ref().to_ascii_uppercase().as_str() {
        "A" => match value.parse::<Ipv4Addr>() {
            Ok(a) => RecordData::A(a),
            Err(_) => {
                bad(r, "IPv4 address");
                return None;
            }
        },
        "AAAA" => match value.parse::<Ipv6Addr>() {
            Ok(a) => RecordData::Aaaa(a),
            Err(_) => {
                bad(r, "IPv6 address");
                return None;
            }
        },
        "CNAME" => RecordData::Cname(absolute(origin, value)),
        "DNAME" => RecordData::Dname(absolute(origin, value)),
        "NS" => RecordData::Ns(absolute(origin, value)),
        "TXT" => RecordData::Txt(value.clone()),
        "MX" => RecordData::Mx {
            preference: rec.preference.unwrap_or(10),
            exchange: absolute(origin, value),
        },
        other => {
            r.at(
                rec.rtype.span(),
                format!(
                    "record type {other:?} is not supported here (A, AAAA, CNAME, NS, MX, TXT)"
                ),
            );
            return None;
        }
    };
    Some(StaticRecord {
        name,
        ttl: rec.ttl.unwrap_or(zone_ttl),
        data,
    })
}

fn topology(
    r: &mut Reporter<'_>,
    raw: &RawConfig,
    zones: &[Zone],
    health: HealthSettings,
) -> Topology {
    let mut region_ids = HashSet::new();
    for reg in &raw.regions {
        let id = reg.get_ref().id.get_ref();
        if !valid_id(id) {
            r.at(
                reg.get_ref().id.span(),
                format!("region id {id:?} must be [a-z0-9-]+"),
            );
        }
        if !region_ids.insert(id.clone()) {
            r.at(
                reg.get_ref().id.span(),
                format!("region {id} is defined twice"),
            );
        }
    }
    if raw.regions.is_empty() {
        r.at(0..0, "at least one [[regions]] entry is required");
    }
    let mut client_networks = Vec::new();
    let mut seen_nets = HashSet::new();
    let regions = raw
        .regions
        .iter()
        .map(|reg| {
            let reg = reg.get_ref();
            let id = RegionId::new(reg.id.get_ref());
            for net in &reg.networks {
                match net.get_ref().parse::<IpNet>() {
                    Ok(n) if n.trunc() != n => r.at(
                        net.span(),
                        format!("{n} has host bits set; did you mean {}?", n.trunc()),
                    ),
                    Ok(n) => {
                        if !seen_nets.insert(n) {
                            r.at(net.span(), format!("network {n} is mapped twice"));
                        }
                        client_networks.push(ClientNetwork {
                            prefix: n,
                            region: id.clone(),
                        });
                    }
                    Err(_) => r.at(
                        net.span(),
                        format!(
                            "{:?} is not a CIDR prefix such as 10.1.0.0/16",
                            net.get_ref()
                        ),
                    ),
                }
            }
            let fallback = reg
                .fallback
                .iter()
                .filter_map(|f| {
                    if !region_ids.contains(f.get_ref()) {
                        r.at(f.span(), format!("unknown region {:?}", f.get_ref()));
                        None
                    } else if f.get_ref() == reg.id.get_ref() {
                        r.at(f.span(), "a region cannot fall back to itself");
                        None
                    } else {
                        Some(RegionId::new(f.get_ref()))
                    }
                })
                .collect();
            Region { id, fallback }
        })
        .collect();

    let mut pop_ids = HashSet::new();
    let pops: Vec<Pop> = raw
        .pops
        .iter()
        .map(|p| {
            let p = p.get_ref();
            let id = p.id.get_ref();
            if !valid_id(id) {
                r.at(p.id.span(), format!("pop id {id:?} must be [a-z0-9-]+"));
            }
            if !pop_ids.insert(id.clone()) {
                r.at(p.id.span(), format!("pop {id} is defined twice"));
            }
            if !region_ids.contains(p.region.get_ref()) {
                r.at(
                    p.region.span(),
                    format!("unknown region {:?}", p.region.get_ref()),
                );
            }
            let ipv4 = p
                .ipv4
                .as_ref()
                .and_then(|a| match a.get_ref().parse::<IpAddr>() {
                    Ok(IpAddr::V4(v4)) => Some(v4),
                    _ => {
                        r.at(
                            a.span(),
                            format!("{:?} is not an IPv4 address", a.get_ref()),
                        );
                        None
                    }
                });
            let ipv6 = p
                .ipv6
                .as_ref()
                .and_then(|a| match a.get_ref().parse::<IpAddr>() {
                    Ok(IpAddr::V6(v6)) => Some(v6),
                    _ => {
                        r.at(
                            a.span(),
                            format!("{:?} is not an IPv6 address", a.get_ref()),
                        );
                        None
                    }
                });
            if p.ipv4.is_none() && p.ipv6.is_none() {
                r.at(p.id.span(), "a pop needs `ipv4`, `ipv6` or both");
            }
            let cap = *p.capacity_rps.get_ref();
            if !cap.is_finite() || cap <= 0.0 {
                r.at(
                    p.capacity_rps.span(),
                    "capacity_rps must be a positive number",
                );
            }
            Pop {
                id: PopId::new(id),
                region: RegionId::new(p.region.get_ref()),
                ipv4,
                ipv6,
                capacity_rps: cap,
            }
        })
        .collect();
    if raw.pops.is_empty() {
        r.at(0..0, "at least one [[pops]] entry is required");
    }

    let mut service_ids = HashSet::new();
    let mut service_names = HashSet::new();
    let services = raw
        .services
        .iter()
        .map(|s| {
            let s = s.get_ref();
            let id = s.id.get_ref();
            if !valid_id(id) {
                r.at(s.id.span(), format!("service id {id:?} must be [a-z0-9-]+"));
            }
            if !service_ids.insert(id.clone()) {
                r.at(s.id.span(), format!("service {id} is defined twice"));
            }
            let name = fqdn(r, &s.name);
            if !service_names.insert(name.clone()) {
                r.at(
                    s.name.span(),
                    format!("{name} is already served by another service"),
                );
            }
            if !zones
                .iter()
                .any(|z| name == z.origin || name.ends_with(&format!(".{}", z.origin)))
            {
                r.at(
                    s.name.span(),
                    format!("{name} is not inside any configured zone"),
                );
            }
            if let Some(owner) = zones.iter().find_map(|z| crate::zonefile::dname_above(&z.records, &name)) {
                r.at(
                    s.name.span(),
                    format!("{name} is below the DNAME at {owner}: names there are redirected (RFC 6672)"),
                );
            }
            if let Some(z) = zones
                .iter()
                .find(|z| z.records.iter().any(|rec| rec.name == name))
            {
                r.at(
                    s.name.span(),
                    format!(
                        "{name} also has static records in zone {}; pick one",
                        z.origin
                    ),
                );
            }
            let max_records = *s.max_records.get_ref();
            if max_records == 0 || max_records > 16 {
                r.at(s.max_records.span(), "max_records must be between 1 and 16");
            }
            if *s.ttl.get_ref() > 86_400 {
                r.at(s.ttl.span(), "ttl above one day defeats steering");
            }
            if s.pops.is_empty() {
                r.at(s.id.span(), "a service needs at least one pop");
            }
            let pops = s
                .pops
                .iter()
                .filter_map(|p| {
                    if pop_ids.contains(p.get_ref()) {
                        Some(PopId::new(p.get_ref()))
                    } else {
                        r.at(p.span(), format!("unknown pop {:?}", p.get_ref()));
                        None
                    }
                })
                .collect();
            let anycast = s
                .anycast
                .iter()
                .filter_map(|a| match a.get_ref().parse::<IpNet>() {
                    Ok(n) if n.trunc() == n => Some(n),
                    Ok(n) => {
                        r.at(
                            a.span(),
                            format!("{n} has host bits set; did you mean {}?", n.trunc()),
                        );
                        None
                    }
                    Err(_) => {
                        r.at(a.span(), format!("{:?} is not a CIDR prefix", a.get_ref()));
                        None
                    }
                })
                .collect();
            let mut demand_estimate = std::collections::BTreeMap::new();
            for (region, rps) in &s.demand_rps {
                if region != "global" && !region_ids.contains(region) {
                    r.at(
                        rps.span(),
                        format!("demand_rps: unknown region {region:?} (region ids or \"global\")"),
                    );
                } else if !rps.get_ref().is_finite() || *rps.get_ref() < 0.0 {
                    r.at(rps.span(), "demand_rps values must be non-negative numbers");
                } else {
                    demand_estimate.insert(region.clone(), *rps.get_ref());
                }
            }
            Service {
                id: ServiceId::new(id),
                fqdn: name,
                ttl: *s.ttl.get_ref(),
                // A CNAME-style service answers one CNAME per query, so
                // the policy plans for one record per answer.
                max_records: if s.cname.is_some() {
                    1
                } else {
                    max_records as usize
                },
                pops,
                anycast,
                priority: s.priority,
                demand_estimate,
            }
        })
        .collect();

    Topology {
        regions,
        pops,
        services,
        client_networks,
        health,
        policy: PolicySettings::default(),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
