//! Anycast announcement state per (PoP, prefix).
//!
//! Wish per PoP: announce while usable; a soft drain goes DNS ramp (still
//! announced) → prepend for one more ramp → withdraw; a hard drain or a
//! down PoP withdraws. Then the min-announce rail: if fewer than
//! `min_announce_share` of a prefix's PoPs would announce, the best
//! withdrawn ones are kept announcing, prepended, and say why. A correlated
//! failure must never take a prefix off the Internet.

use steer_types::{
    AnnounceReason, AnnounceState, Announcement, DrainMode, Intents, Pop, RailFired, Service,
    SoftDrainPhase, Timestamp, Topology, UnknownHealth,
    health::{PopHealthReport, StaleLast, TargetState},
};

use crate::{drain_progress, pop_health, strictest_drain};

/// Why a PoP would withdraw, ordered by how willing we are to override it
/// with the rail (drained first: the PoP can still serve).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum WithdrawCause {
    Drained,
    Unhealthy,
}

pub(crate) fn plan<'a>(
    topology: &'a Topology,
    intents: &Intents,
    report: &impl Fn(&Pop) -> &'a PopHealthReport,
    now: Timestamp,
    rails: &mut Vec<RailFired>,
) -> Vec<Announcement> {
    let mut out = Vec::new();
    let index: std::collections::HashMap<&str, &Pop> =
        topology.pops.iter().map(|p| (p.id.as_str(), p)).collect();
    for service in &topology.services {
        if service.anycast.is_empty() {
            continue;
        }
        let pops: Vec<&Pop> = service
            .pops
            .iter()
            .filter_map(|id| index.get(id.as_str()).copied())
            .collect();
        for prefix in &service.anycast {
            let mut wishes: Vec<(Announcement, Option<WithdrawCause>)> = pops
                .iter()
                .map(|pop| wish(topology, service, pop, intents, report(pop), now))
                .zip(&pops)
                .map(|((state, cause, reason), pop)| {
                    (
                        Announcement {
                            pop: pop.id.clone(),
                            prefix: *prefix,
                            state,
                            reason,
                        },
                        cause,
                    )
                })
                .collect();
            min_announce_rail(topology, &mut wishes, rails);
            out.extend(wishes.into_iter().map(|(a, _)| a));
        }
    }
    out
}

fn wish(
    topology: &Topology,
    service: &Service,
    pop: &Pop,
    intents: &Intents,
    health: &PopHealthReport,
    now: Timestamp,
) -> (AnnounceState, Option<WithdrawCause>, AnnounceReason) {
    let prepend = AnnounceState::Prepend {
        count: topology.policy.prepend_count,
    };
    if let Some(d) = strictest_drain(service, pop, intents, now) {
        return match d.mode {
            DrainMode::Hard => (
                AnnounceState::Withdraw,
                Some(WithdrawCause::Drained),
                AnnounceReason::HardDrain {
                    intent: d.id.clone(),
                },
            ),
            DrainMode::Soft => {
                let progress = drain_progress(d, service, now);
                let (state, cause, phase) = if progress < 1.0 {
                    (AnnounceState::Announce, None, SoftDrainPhase::DnsRamp)
                } else if progress < 2.0 {
                    (prepend, None, SoftDrainPhase::Prepend)
                } else {
                    (
                        AnnounceState::Withdraw,
                        Some(WithdrawCause::Drained),
                        SoftDrainPhase::Withdrawn,
                    )
                };
                (
                    state,
                    cause,
                    AnnounceReason::SoftDrain {
                        intent: d.id.clone(),
                        phase,
                    },
                )
            }
        };
    }
    let state = health.service_state(&service.id);
    let up = match state {
        TargetState::Up
        | TargetState::Stale {
            last: StaleLast::Up,
        } => true,
        TargetState::Unknown => topology.health.unknown_health == UnknownHealth::AssumeUp,
        _ => false,
    };
    if up {
        (AnnounceState::Announce, None, AnnounceReason::Healthy)
    } else {
        (
            AnnounceState::Withdraw,
            Some(WithdrawCause::Unhealthy),
            AnnounceReason::Unhealthy {
                health: pop_health(state),
            },
        )
    }
}

fn min_announce_rail(
    topology: &Topology,
    wishes: &mut [(Announcement, Option<WithdrawCause>)],
    rails: &mut Vec<RailFired>,
) {
    let n = wishes.len();
    if n == 0 {
        return;
    }
    let share = topology.policy.min_announce_share.clamp(0.0, 1.0);
    let min = ((share * n as f64).ceil() as usize).clamp(1, n);
    let announcing = wishes
        .iter()
        .filter(|(a, _)| a.state != AnnounceState::Withdraw)
        .count();
    if announcing >= min {
        return;
    }
    let mut candidates: Vec<usize> = (0..n)
        .filter(|&i| wishes[i].0.state == AnnounceState::Withdraw)
        .collect();
    // Drained before unhealthy; config order breaks ties (deterministic).
    candidates.sort_by_key(|&i| (wishes[i].1, i));
    for &i in candidates.iter().take(min - announcing) {
        let (a, _) = &mut wishes[i];
        a.state = AnnounceState::Prepend {
            count: topology.policy.prepend_count,
        };
        let wished = std::mem::replace(&mut a.reason, AnnounceReason::Healthy);
        a.reason = AnnounceReason::MinAnnounceRail {
            min: min as u32,
            of: n as u32,
            wished: Box::new(wished),
        };
        rails.push(RailFired::MinAnnounce {
            pop: a.pop.clone(),
            prefix: a.prefix,
            state: a.state,
            min: min as u32,
            of: n as u32,
        });
    }
}
