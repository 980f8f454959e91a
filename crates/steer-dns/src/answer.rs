//! The answer function: question + client → response parts, from a view.
//! Pure and synchronous so it can be unit-tested and benchmarked without
//! sockets.

use std::{net::IpAddr, sync::atomic::Ordering};

use hickory_server::proto::{
    op::ResponseCode,
    rr::{DNSClass, LowerName, RecordType},
};
use ipnet::IpNet;
use steer_types::answers::ANSWER_UNIT;

use crate::{
    select::{MAX_PICK, STICKY_V4, STICKY_V6, subnet_key},
    view::{CompiledService, CompiledSet, DnsView, Rr},
};

pub struct Question<'a> {
    pub name: &'a LowerName,
    pub qtype: RecordType,
    pub qclass: DNSClass,
}

/// Who is asking: the EDNS Client Subnet if the query carried one, else the
/// resolver's own address.
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo {
    pub addr: IpAddr,
    /// ECS source prefix length, or the full length for a resolver address.
    pub source_prefix: u8,
    pub from_ecs: bool,
    /// Per-query randomness for services with `selection = "random"`.
    pub random: u64,
}

impl ClientInfo {
    pub fn resolver(addr: IpAddr) -> Self {
        let full = if addr.is_ipv4() { 32 } else { 128 };
        Self {
            addr,
            source_prefix: full,
            from_ecs: false,
            random: 0,
        }
    }
}

/// Response parts borrowed from the view.
#[derive(Debug)]
pub struct Answer<'v> {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<&'v Rr>,
    /// SOA for negative answers (RFC 2308).
    pub soa: Option<&'v Rr>,
    /// ECS scope prefix to return, when the query had ECS.
    pub ecs_scope: u8,
    /// Client region index the answer was steered for, if a GSLB answer.
    pub region: Option<usize>,
}

impl<'v> Answer<'v> {
    fn refused() -> Self {
        Self {
            rcode: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            soa: None,
            ecs_scope: 0,
            region: None,
        }
    }

    /// A steered name with no decision in the plan held (an edge before
    /// its first plan): not ours to deny, so no NXDOMAIN to be cached.
    fn servfail() -> Self {
        Self {
            rcode: ResponseCode::ServFail,
            authoritative: false,
            answers: Vec::new(),
            soa: None,
            ecs_scope: 0,
            region: None,
        }
    }

    fn negative(rcode: ResponseCode, soa: &'v Rr) -> Self {
        Self {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            soa: Some(soa),
            ecs_scope: 0,
            region: None,
        }
    }
}

/// Answers one question. Never panics on any input.
pub fn answer<'v>(view: &'v DnsView, q: &Question<'_>, client: &ClientInfo) -> Answer<'v> {
    if q.qclass != DNSClass::IN {
        return Answer::refused();
    }
    let Some(zone) = view
        .zones
        .iter()
        .filter(|z| z.origin.zone_of(q.name))
        .max_by_key(|z| z.origin.num_labels())
    else {
        return Answer::refused();
    };

    if let Some(svc) = view.services.get(q.name) {
        return steered(view, svc, q, client);
    }
    if view.unplanned.contains(q.name) {
        return Answer::servfail();
    }

    let records = zone.records.get(q.name);
    match records {
        Some(records) => {
            let mut answers: Vec<&Rr> = records
                .iter()
                .filter(|r| q.qtype == RecordType::ANY || r.record_type() == q.qtype)
                .collect();
            if q.qtype == RecordType::ANY {
                // RFC 8482: answer ANY minimally, with one RRset.
                if let Some(first) = answers.first().map(|r| r.record_type()) {
                    answers.retain(|r| r.record_type() == first);
                }
            }
            if answers.is_empty() {
                answers.extend(
                    records
                        .iter()
                        .filter(|r| r.record_type() == RecordType::CNAME),
                );
            }
            if answers.is_empty() {
                return Answer::negative(ResponseCode::NoError, &zone.soa_negative);
            }
            Answer {
                rcode: ResponseCode::NoError,
                authoritative: true,
                answers,
                soa: None,
                ecs_scope: 0,
                region: None,
            }
        }
        None if zone.names.contains(q.name) => {
            Answer::negative(ResponseCode::NoError, &zone.soa_negative)
        }
        None => Answer::negative(ResponseCode::NXDomain, &zone.soa_negative),
    }
}

/// A GSLB answer: never SERVFAIL, never an empty NOERROR for an address
/// type while the service has a fallback.
fn steered<'v>(
    view: &'v DnsView,
    svc: &'v CompiledService,
    q: &Question<'_>,
    client: &ClientInfo,
) -> Answer<'v> {
    let zone = &view.zones[svc.zone];
    svc.queries.increment(1);
    let (region, matched_len) = client_region(view, client);
    let regional = region.map_or(&svc.global, |i| &svc.regional[i]);
    let key = if svc.random {
        client.random
    } else {
        subnet_key(client.addr, client.source_prefix)
    };
    let scope = |hashed: bool| {
        let hashed = hashed && !svc.random;
        ecs_scope(svc.uniform, hashed, matched_len, client)
    };
    let positive = |answers: Vec<&'v Rr>, hashed: bool| Answer {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers,
        soa: None,
        ecs_scope: scope(hashed),
        region,
    };

    if svc.cname_style {
        // One CNAME, whatever the type asked (RFC 1034 3.6.2).
        let set = [regional, &svc.global]
            .into_iter()
            .find(|s| !s.any.is_empty());
        if let Some(set) = set {
            let mut chosen = [0; MAX_PICK];
            let n = set.any.pick(key, 1, &mut chosen);
            let answers: Vec<&Rr> = chosen[..n]
                .iter()
                .filter_map(|&i| {
                    let t = set.targets.get(i)?;
                    t.answered.increment(1);
                    t.tally.fetch_add(ANSWER_UNIT, Ordering::Relaxed);
                    t.cname.as_ref()
                })
                .collect();
            if !answers.is_empty() {
                return positive(answers, set.any.hashed(1) && !set.cname_uniform);
            }
        }
    }

    let v6 = match q.qtype {
        RecordType::A | RecordType::ANY => false,
        RecordType::AAAA => true,
        _ => return Answer::negative(ResponseCode::NoError, &zone.soa_negative),
    };
    // The client's set, else the global one, else the configured fallback.
    let family = |set: &'v CompiledSet| {
        if v6 {
            (&set.v6, &set.v6_targets)
        } else {
            (&set.v4, &set.v4_targets)
        }
    };
    let Some(set) = [regional, &svc.global]
        .into_iter()
        .find(|s| !family(s).0.is_empty())
    else {
        let fallback = if v6 {
            &svc.fallback_v6
        } else {
            &svc.fallback_v4
        };
        if fallback.is_empty() {
            return Answer::negative(ResponseCode::NoError, &zone.soa_negative);
        }
        view.metrics.fallback.increment(1);
        return positive(fallback.iter().take(svc.max_records).collect(), false);
    };
    let (keyed, idx) = family(set);
    let mut chosen = [0; MAX_PICK];
    let n = keyed.pick(key, svc.max_records, &mut chosen);
    // Clients split their traffic over the records they get.
    let share = ANSWER_UNIT / n.max(1) as u64;
    let answers = chosen[..n]
        .iter()
        .filter_map(|&i| record(set, *idx.get(i)?, v6, share))
        .collect();
    positive(answers, keyed.hashed(svc.max_records))
}

fn record(set: &CompiledSet, target: usize, v6: bool, share: u64) -> Option<&Rr> {
    let t = set.targets.get(target)?;
    t.answered.increment(1);
    t.tally.fetch_add(share, Ordering::Relaxed);
    if v6 { t.aaaa.as_ref() } else { t.a.as_ref() }
}

/// The client's region index and the prefix length of the mapping that
/// decided it.
fn client_region(view: &DnsView, client: &ClientInfo) -> (Option<usize>, u8) {
    if client.source_prefix == 0 {
        return (None, 0);
    }
    let Ok(net) = IpNet::new(client.addr, client.source_prefix) else {
        return (None, 0);
    };
    match view.client_map.get_lpm(&net.trunc()) {
        Some((prefix, &region)) => (Some(region), prefix.prefix_len()),
        None => {
            // Then geolocation, if configured; the scope is the database
            // network that decided it.
            let by_geo = view
                .geo
                .as_ref()
                .and_then(|g| g.region(net.network()))
                .and_then(|(region, prefix, _)| {
                    view.regions
                        .iter()
                        .position(|r| r == region)
                        .map(|i| (Some(i), prefix.min(client.source_prefix)))
                });
            by_geo.unwrap_or((None, client.source_prefix))
        }
    }
}

/// RFC 7871 scope: how much of the client address the answer depended on.
fn ecs_scope(uniform: bool, hashed: bool, matched_len: u8, client: &ClientInfo) -> u8 {
    if !client.from_ecs {
        return 0;
    }
    let sticky = if client.addr.is_ipv4() {
        STICKY_V4
    } else {
        STICKY_V6
    };
    let scope = match (uniform, hashed) {
        (true, false) => 0,
        (true, true) => sticky,
        (false, false) => matched_len,
        (false, true) => matched_len.max(sticky),
    };
    scope.min(client.source_prefix.max(matched_len))
}
