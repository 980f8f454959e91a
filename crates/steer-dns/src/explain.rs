//! "Why did this client get this answer?" — the decision trace for one
//! query, computed with the same answer function the server uses, so the
//! explanation and `dig` cannot disagree.

use std::str::FromStr;

use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, RecordType};
use ipnet::IpNet;
use steer_types::{Drain, Plan, PlanEvidence, PopPlan, explain::Explanation};

use crate::{
    answer::{ClientInfo, Question, answer},
    view::DnsView,
};

/// Explains the answer `view` gives to `name`/`qtype` for a client whose
/// subnet is `client` (treated as ECS). `plan` must be the plan `view` was
/// compiled from; `evidence` supplies the live figures (demand, probe
/// output) behind its decisions, and `drains` who asked for the drains the
/// plan names, and why (an edge without the intents passes none).
pub fn explain(
    view: &DnsView,
    plan: &Plan,
    evidence: &PlanEvidence,
    drains: &[Drain],
    name: &str,
    qtype: &str,
    client: IpNet,
) -> Result<Explanation, String> {
    let fqdn = if name.ends_with('.') {
        name.to_ascii_lowercase()
    } else {
        format!("{}.", name.to_ascii_lowercase())
    };
    let parsed = Name::from_str(&fqdn).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    let lower = LowerName::new(&parsed);
    let rtype = match qtype {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        other => return Err(format!("explain supports A and AAAA, not {other:?}")),
    };
    let info = ClientInfo {
        addr: client.network(),
        source_prefix: client.prefix_len(),
        from_ecs: true,
        // Explain shows the sticky choice; random-selection services say so.
        random: 0,
    };
    let q = Question {
        name: &lower,
        qtype: rtype,
        qclass: DNSClass::IN,
    };
    let result = answer(view, &q, &info);
    let mut steps = Vec::new();
    if plan.version != view.plan_version() {
        steps.push(format!(
            "note: DNS is serving plan {} while the control plane has {}",
            view.plan_version(),
            plan.version
        ));
    }
    let answers: Vec<String> = result
        .records(&parsed)
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            other => other.to_string(),
        })
        .collect();
    let ttl = result.answers.first().map_or(0, |r| r.ttl);

    let Some(service) = plan.service_by_fqdn(&fqdn) else {
        steps.push(format!(
            "{fqdn} is not a steered name: answered from static zone data ({})",
            result.rcode
        ));
        return Ok(Explanation {
            plan_version: view.plan_version(),
            steps,
            answers,
            ttl,
            ecs_scope: result.ecs_scope,
            region: None,
        });
    };
    steps.push(format!(
        "{fqdn} is steered service {} (TTL {}, up to {} record(s))",
        service.id, service.ttl, service.max_records
    ));
    let region = result.region.and_then(|i| view.region(i)).cloned();
    match (&region, view.client_map.get_lpm(&client.trunc())) {
        (Some(r), Some((prefix, _))) => {
            steps.push(format!("client {client} maps to region {r} via {prefix}"));
        }
        (Some(r), None) => {
            let how = view
                .geo
                .as_ref()
                .and_then(|g| g.region(client.network()))
                .map_or("", |(_, _, how)| how);
            steps.push(format!(
                "client {client} matches no client network; geo database ({how}) maps it to region {r}"
            ));
        }
        _ => steps.push(format!(
            "client {client} matches no client network: global answer set"
        )),
    }
    let mut set = service.for_region(region.as_ref());
    let figures = evidence.set(&service.id, service.index_of(region.as_ref()));
    steps.push(format!(
        "answer set: {}",
        set.reason.render(region.as_ref(), figures)
    ));
    if let Some(c) = &service.canary {
        let subnet = crate::select::subnet_key(info.addr, info.source_prefix);
        let canary_set = match service.index_of(region.as_ref()) {
            Some(i) => c.regional.get(i).and_then(Option::as_ref),
            None => c.global.as_ref(),
        };
        let share = f64::from(c.share_ppm) / 10_000.0;
        match canary_set {
            Some(cs) if crate::view::in_canary(c.share_ppm, subnet) => {
                steps.push(format!(
                    "this client subnet is in the canary of a change rolled out to {share}% of client subnets: answered from the proposed config's set"
                ));
                set = cs;
            }
            Some(_) => steps.push(format!(
                "a change is rolled out to {share}% of client subnets; this one is not among them"
            )),
            None => {}
        }
    }
    // The drain in force for this service at a PoP, with who and why.
    let drained = |p: &PopPlan| {
        let id = p.drain_for_service(&service.id)?;
        // Only a PoP-wide soft drain is known to leave traffic (usable).
        let verb = if p.usable && p.drained_by.as_deref() == Some(id) {
            "draining"
        } else {
            "drained"
        };
        Some(match drains.iter().find(|d| d.id == id) {
            Some(d) => format!("{verb} by {id} ({}, {})", d.principal, d.reason),
            None => format!("{verb} by {id}"),
        })
    };
    let describe =
        |p: &PopPlan| drained(p).unwrap_or_else(|| p.describe(evidence.pop(p.id.as_str())));
    for t in &set.targets {
        steps.push(format!(
            "candidate {} weight {}‰ ({})",
            t.pop,
            t.weight,
            plan.pop(t.pop.as_str()).map_or_else(String::new, describe)
        ));
    }
    // Budget-aware steering: why a PoP gets less than its health and
    // capacity would give it.
    for p in &plan.body.pops {
        for m in p.budget_moves.iter().filter(|m| m.service == service.id) {
            let burn = evidence
                .budget
                .iter()
                .find(|b| b.pop == p.id && b.service == m.service && b.slo == m.slo);
            steps.push(match burn {
                Some(b) => format!(
                    "budget burn {:.1}x at {} (SLO {}, {} events over {}s): up to {}% of its traffic moved to PoPs with headroom",
                    b.burn_rate,
                    p.id,
                    m.slo,
                    b.events,
                    b.window_s,
                    m.permille / 10
                ),
                None => format!(
                    "budget burn at {} (SLO {}): up to {}% of its traffic moved to PoPs with headroom",
                    p.id,
                    m.slo,
                    m.permille / 10
                ),
            });
        }
    }
    for p in &plan.body.pops {
        if set.targets.iter().any(|t| t.pop == p.id) {
            continue;
        }
        let why = if let Some(d) = drained(p) {
            d
        } else if !p.usable {
            describe(p)
        } else {
            format!("serves {} (not chosen for this region)", p.region)
        };
        steps.push(format!("excluded {}: {why}", p.id));
    }
    steps.push(format!(
        "picked {} of {} by weighted rendezvous hash of the client subnet: {}",
        answers.len(),
        set.targets.len(),
        if answers.is_empty() {
            "(no address of this family)".to_owned()
        } else {
            answers.join(", ")
        }
    ));
    let compiled = view.services.get(&lower).map(|svc| {
        result
            .region
            .and_then(|i| svc.regional.get(i))
            .unwrap_or(&svc.global)
    });
    if let Some(set) = compiled {
        let sampled = set.sample.as_ref().map_or(0, |s| s.settled().len());
        steps.push(match set.residual {
            Some(err) => format!(
                "selection calibrated on {sampled} client subnet(s) that asked: shares within {:.2} points of the weights",
                err * 100.0
            ),
            None => format!(
                "selection not calibrated ({sampled} client subnet(s) sampled; the answer does not depend on the subnet, or too few asked)"
            ),
        });
    }
    for (i, rail) in plan.body.rails.iter().enumerate() {
        if rail.concerns_set(&service.id, region.as_ref()) {
            match evidence.rail_wanted.get(i).copied().filter(|w| *w > 0) {
                Some(wanted) => steps.push(format!("rail: {rail} (wants {wanted}‰)")),
                None => steps.push(format!("rail: {rail}")),
            }
        }
    }
    steps.push(format!("ECS scope /{}", result.ecs_scope));
    Ok(Explanation {
        plan_version: view.plan_version(),
        steps,
        answers,
        ttl,
        ecs_scope: result.ecs_scope,
        region: region.map(|r| r.to_string()),
    })
}
