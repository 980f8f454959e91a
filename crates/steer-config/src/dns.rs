//! The `[dns]` table and the DNS-only keys of `[[services]]` (selection,
//! fallback, cname), validated into [`DnsSettings`]; and `[server] dns_listen`.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use ipnet::IpNet;
use steer_types::{DnsSettings, GslbSettings, RrlSettings, Selection, ServiceId, TcpLimits};
use toml::Spanned;

use crate::{
    duration::parse_duration,
    error::Reporter,
    steerd::{RawDns, RawService, fqdn},
};

pub(crate) fn dns_settings(
    r: &mut Reporter<'_>,
    raw: &RawDns,
    services: &[Spanned<RawService>],
) -> DnsSettings {
    let mut dns = DnsSettings::default();
    if let Some(p) = &raw.udp_payload {
        if (512..=4096).contains(p.get_ref()) {
            dns.udp_payload = *p.get_ref();
        } else {
            r.at(
                p.span(),
                "udp_payload must be between 512 and 4096 (1232 is the safe default)",
            );
        }
    }
    if let Some(w) = &raw.udp_workers {
        if *w.get_ref() > 256 {
            r.at(
                w.span(),
                "udp_workers must be between 0 (UDP on the runtime, no threads of its own) and 256",
            );
        }
        dns.udp_workers = Some(*w.get_ref());
    }
    if let Some(rrl) = &raw.rrl {
        let rrl = rrl.get_ref();
        let mut s = RrlSettings::default();
        if let Some(v) = &rrl.responses_per_second {
            if *v.get_ref() == 0 {
                r.at(v.span(), "responses_per_second must be at least 1");
            }
            s.responses_per_second = *v.get_ref();
        }
        if let Some(v) = &rrl.slip {
            if *v.get_ref() > 10 {
                r.at(v.span(), "slip must be between 0 (drop all) and 10");
            }
            s.slip = *v.get_ref();
        }
        for (v, max, into) in [
            (&rrl.ipv4_prefix, 32, &mut s.ipv4_prefix),
            (&rrl.ipv6_prefix, 128, &mut s.ipv6_prefix),
        ] {
            if let Some(v) = v {
                if *v.get_ref() == 0 || *v.get_ref() > max {
                    r.at(
                        v.span(),
                        format!("prefix length must be between 1 and {max}"),
                    );
                }
                *into = *v.get_ref();
            }
        }
        if let Some(v) = &rrl.window {
            match parse_duration(v.get_ref()) {
                Ok(d) if !d.is_zero() && d.as_secs() <= 60 => s.window = d,
                Ok(_) => r.at(v.span(), "window must be between 1ms and 60s"),
                Err(e) => r.at(v.span(), e),
            }
        }
        if let Some(list) = &rrl.exempt {
            s.exempt = list
                .iter()
                .filter_map(|n| match parse_net(n.get_ref()) {
                    Some(net) => Some(net),
                    None => {
                        r.at(
                            n.span(),
                            format!(
                                "{:?} is not a network such as 192.0.2.0/24 or 2001:db8::/32",
                                n.get_ref()
                            ),
                        );
                        None
                    }
                })
                .collect();
        }
        dns.rrl = rrl.enabled.then_some(s);
    }
    if let Some(v) = &raw.calibrate_every {
        match v.get_ref().as_str() {
            "off" => dns.calibrate_every = None,
            text => match parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(3600) => {
                    dns.calibrate_every = Some(d);
                }
                Ok(_) => r.at(
                    v.span(),
                    "calibrate_every must be between 1s and 3600s, or \"off\"",
                ),
                Err(e) => r.at(v.span(), e),
            },
        }
    }
    tcp_limits(r, raw, &mut dns.tcp);
    identity(r, raw, &mut dns);
    dns.services = services.iter().map(|s| gslb(r, s.get_ref())).collect();
    dns
}

/// A network, or one address as a host route.
fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// `tcp_max_connections`, `tcp_max_connections_per_client` and
/// `tcp_idle_timeout` in `[dns]`.
fn tcp_limits(r: &mut Reporter<'_>, raw: &RawDns, tcp: &mut TcpLimits) {
    for (v, into, what) in [
        (
            &raw.tcp_max_connections,
            &mut tcp.max_connections,
            "tcp_max_connections",
        ),
        (
            &raw.tcp_max_connections_per_client,
            &mut tcp.max_connections_per_client,
            "tcp_max_connections_per_client",
        ),
    ] {
        if let Some(v) = v {
            if (1..=1_000_000).contains(v.get_ref()) {
                *into = *v.get_ref();
            } else {
                r.at(v.span(), format!("{what} must be between 1 and 1000000"));
            }
        }
    }
    if tcp.max_connections_per_client > tcp.max_connections
        && let Some(v) = &raw.tcp_max_connections_per_client
    {
        r.at(
            v.span(),
            "tcp_max_connections_per_client must not exceed tcp_max_connections",
        );
    }
    if let Some(v) = &raw.tcp_idle_timeout {
        match parse_duration(v.get_ref()) {
            Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(300) => {
                tcp.idle_timeout = d;
            }
            Ok(_) => r.at(v.span(), "tcp_idle_timeout must be between 100ms and 300s"),
            Err(e) => r.at(v.span(), e),
        }
    }
}

/// `identity`, `version` and `nsid` in `[dns]`: printable text that fits
/// one TXT string (255 bytes), the NSID up to 128 bytes.
fn identity(r: &mut Reporter<'_>, raw: &RawDns, dns: &mut DnsSettings) {
    for (v, max, into, what) in [
        (&raw.identity, 255, &mut dns.identity, "identity"),
        (&raw.version, 255, &mut dns.version, "version"),
        (&raw.nsid, 128, &mut dns.nsid, "nsid"),
    ] {
        let Some(v) = v else { continue };
        let text = v.get_ref();
        if text.len() > max || !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            r.at(
                v.span(),
                format!("{what} must be printable ASCII of at most {max} bytes (\"\" hides it)"),
            );
        }
        *into = Some(text.clone());
    }
}

fn gslb(r: &mut Reporter<'_>, s: &RawService) -> GslbSettings {
    let selection = match s.selection.as_ref() {
        None => Selection::Sticky,
        Some(v) => match v.get_ref().as_str() {
            "sticky" => Selection::Sticky,
            "random" => Selection::Random,
            other => {
                r.at(
                    v.span(),
                    format!("selection must be \"sticky\" or \"random\", got {other:?}"),
                );
                Selection::Sticky
            }
        },
    };
    let fallback = s
        .fallback
        .iter()
        .filter_map(|a| match a.get_ref().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                r.at(a.span(), format!("{:?} is not an IP address", a.get_ref()));
                None
            }
        })
        .collect();
    let cname = s.cname.as_ref().map(|c| {
        let name = fqdn(r, c);
        let filled = name.replace("{region}", "r").replace("{pop}", "p");
        let labels_ok = filled
            .trim_end_matches('.')
            .split('.')
            .all(|l| !l.is_empty());
        if filled.contains(['{', '}']) || !labels_ok {
            r.at(
                c.span(),
                "cname must be a name; only {region} and {pop} may be substituted",
            );
        }
        name
    });
    GslbSettings {
        service: ServiceId::new(s.id.get_ref()),
        fqdn: s.name.get_ref().to_ascii_lowercase(),
        selection,
        fallback,
        cname,
    }
}

/// `[dns.geo]`: the database must exist and every mapping must name a
/// configured region.
pub(crate) fn geo_settings(
    r: &mut Reporter<'_>,
    raw: &crate::steerd::RawGeo,
    config_dir: &std::path::Path,
    regions: &[steer_types::Region],
) -> Option<steer_types::GeoSettings> {
    let mmdb = config_dir.join(raw.mmdb.get_ref());
    let mut ok = true;
    if !mmdb.is_file() {
        r.at(
            raw.mmdb.span(),
            format!("{} does not exist or is not a file", mmdb.display()),
        );
        ok = false;
    }
    let mut map = |table: &std::collections::BTreeMap<String, Spanned<String>>| {
        let mut out = std::collections::BTreeMap::new();
        for (code, region) in table {
            if regions.iter().any(|x| x.id.as_str() == region.get_ref()) {
                out.insert(
                    code.to_ascii_uppercase(),
                    steer_types::RegionId::new(region.get_ref()),
                );
            } else {
                r.at(
                    region.span(),
                    format!("unknown region {:?}", region.get_ref()),
                );
                ok = false;
            }
        }
        out
    };
    let countries = map(&raw.countries);
    let continents = map(&raw.continents);
    ok.then_some(steer_types::GeoSettings {
        mmdb,
        countries,
        continents,
    })
}

/// `dns_listen = "addr:port"` or `dns_listen = ["addr:port", ...]`.
pub(crate) fn dns_listen(
    r: &mut Reporter<'_>,
    raw: Option<&Spanned<toml::Value>>,
) -> Vec<SocketAddr> {
    let default = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 5353))];
    let Some(v) = raw else {
        return default;
    };
    let items: Vec<&toml::Value> = match v.get_ref() {
        toml::Value::Array(a) => a.iter().collect(),
        one => vec![one],
    };
    match parse_dns_listen(items.iter().map(|i| i.as_str())) {
        Ok(addrs) => addrs,
        Err(e) => {
            r.at(v.span(), format!("dns_listen: {e}"));
            default
        }
    }
}

/// Parses DNS listen addresses (from the file or `--dns-listen`): at least
/// one, each an address:port, no duplicates. `None` is a non-string item.
pub fn parse_dns_listen<'a>(
    items: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<Vec<SocketAddr>, String> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for item in items {
        let Some(text) = item else {
            return Err("each address must be a string such as \"[::]:53\"".into());
        };
        let addr: SocketAddr = text.trim().parse().map_err(|_| {
            format!("{text:?} is not an address:port such as 127.0.0.1:5353 or [::]:53")
        })?;
        if out.contains(&addr) {
            return Err(format!("{addr} is listed twice"));
        }
        out.push(addr);
    }
    if out.is_empty() {
        return Err("at least one address is needed".into());
    }
    Ok(out)
}
