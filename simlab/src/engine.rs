//! The simulation: a world of PoPs and resolvers on a simulated clock,
//! driving the real control loop (health aggregation, policy, plan
//! publication) and the real DNS answer function.
//!
//! Deterministic for a seed: all randomness comes from one xorshift
//! generator, time from the step counter, and iteration orders are fixed.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, RecordType};
use serde::Serialize;
use steer_command::{ApiCommand, DrainCommand};
use steer_control::{ControlLoop, ReplayClock};
use steer_dns::{ClientInfo, DnsView, Question};
use steer_health::{Observation, ObservedReport, PeerObservation};
use steer_types::{
    AnnounceState, DrainMode, DrainScope, Plan, PopId, RailFired, Timestamp, Topology,
    answers::AnswerTally,
};

use crate::{
    change::{ChangeResult, Driver},
    cluster::{Cluster, DEFAULT_LEASE_TTL_S, SharedStore, Wiring},
    naive,
    scenario::{CLUSTER_KINDS, Curve, Fault, Scenario},
    sli::BudgetBurn,
};

/// Simulated wall clock starts here (fixed, for byte-identical traces).
pub(crate) const EPOCH_MS: i64 = 1_700_000_000_000;

/// xorshift64*: tiny, seeded, good enough for jitter and sampling.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

struct Resolver {
    region: Option<usize>,
    addr: Ipv4Addr,
    holds: bool,
    answer: Vec<usize>,
    /// Which compiled view (see `view_id`) gave `answer`.
    answer_view: u64,
    expires_ms: u64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// One second (or step) of the trace.
#[derive(Debug, Serialize)]
pub(crate) struct StepRecord {
    pub(crate) t_s: f64,
    pub(crate) plan_version: u64,
    pub(crate) demand_rps: f64,
    /// Offered load per PoP (topology order).
    pub(crate) load_rps: Vec<f64>,
    pub(crate) utilisation: Vec<f64>,
    pub(crate) unserved_rps: f64,
    pub(crate) overloaded_rps: f64,
    /// Requests failing at PoPs that serve them (past their capacity, or
    /// errors faults); left out when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) failed_rps: f64,
    /// Fewest PoPs announcing any prefix.
    pub(crate) min_announced: usize,
    pub(crate) answer_changes: usize,
    /// Utilisation the plan in force intends for the true demand (what
    /// the policy decided, before the hashing of a finite set of client
    /// subnets rounds it).
    pub(crate) planned_utilisation: Vec<f64>,
    /// Plans published since the previous record.
    pub(crate) published: usize,
    /// Edges had no plan source this step (left out when false, so runs
    /// without control-plane faults keep their traces).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) control_plane_gone: bool,
    /// Where a `config_change`'s proposed config is in force (`every
    /// region`, `ap-south`); left out when nowhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) proposed_config_in: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct FaultResult {
    pub(crate) kind: String,
    pub(crate) at_s: u64,
    pub(crate) targets: Vec<String>,
    /// Until the plan stopped sending new clients to the targets.
    pub(crate) time_to_detect_s: Option<f64>,
    /// Until less than 1% of demand still reached a dead target.
    pub(crate) time_to_mitigate_s: Option<f64>,
}

pub(crate) struct Outcome {
    pub(crate) pops: Vec<String>,
    pub(crate) steps: Vec<StepRecord>,
    pub(crate) faults: Vec<FaultResult>,
    pub(crate) rails_fired: usize,
    pub(crate) max_weight_change_per_step: u32,
    pub(crate) plans: usize,
    /// Time edges had no plan source (no control plane, no leader, no
    /// etcd quorum, or cut off from every controller).
    pub(crate) control_plane_gone_ms: u64,
    /// While the control plane was gone: answers edges served that differ
    /// from what they had served the same resolver since it went (every
    /// step, not only recorded ones).
    pub(crate) answer_changes_while_gone: usize,
    /// Operator commands the control plane refused.
    pub(crate) commands_refused: usize,
    /// Leaders elected after the first (clustered runs).
    pub(crate) takeovers: usize,
    /// The scenario's `config_change`, if it has one.
    pub(crate) config_change: Option<ChangeResult>,
    /// The error budget each availability SLO spent over the run.
    pub(crate) slo_budget: Vec<BudgetBurn>,
}

enum Planner {
    Steer(Box<ControlLoop>),
    Naive(Box<naive::Naive>),
    /// Control plane down: data plane keeps the last plan.
    Down {
        until_ms: u64,
    },
    /// Clustered controllers (see [`crate::cluster`]): used when the
    /// scenario has a cluster fault.
    Cluster(Box<Cluster>),
}

/// Runs `scenario` in the world `world` describes, with `slos` (the
/// world's, with the scenario's steering; none for the naive policy) and
/// the config its `config_change` proposes, if any.
pub(crate) fn run(
    scenario: &Scenario,
    world: &steer_config::SteerConfig,
    slos: &[steer_slo::SloSpec],
    proposed: Option<&steer_config::SteerConfig>,
) -> anyhow::Result<Outcome> {
    let mut topology = world.topology.clone();
    scenario.world.shape(&mut topology);
    let zones = &world.zones;
    let topology = Arc::new(topology);
    let npops = topology.pops.len();
    let nregions = topology.regions.len();
    let service = topology
        .services
        .first()
        .ok_or_else(|| anyhow::anyhow!("the world needs at least one service"))?
        .clone();
    let fqdn = LowerName::new(&Name::from_ascii(&service.fqdn)?);
    let mut rng = Rng::new(scenario.seed);
    let clock = ReplayClock::default();
    let store = SharedStore::default();
    clock.set(Timestamp(EPOCH_MS));

    // The DNS views count the answers they serve; the control loop reads
    // the counts, as steerd's does.
    let tally = Arc::new(AnswerTally::default());
    let new_loop = |store: &SharedStore| -> anyhow::Result<Box<ControlLoop>> {
        let (mut c, _h) = ControlLoop::new(
            topology.clone(),
            Box::new(store.clone()),
            Box::new(clock.clone()),
        )?;
        c.count_answers_from(tally.clone());
        if !slos.is_empty() {
            c.configure_slos(
                slos.to_vec(),
                Duration::from_secs(scenario.world.slo_evaluate_s),
                Duration::from_secs(60),
            );
        }
        Ok(Box::new(c))
    };
    // Cluster faults apply to the real control plane only; the naive
    // policy (a comparison baseline) has none.
    let mut planner = if scenario.policy == "naive" {
        Planner::Naive(Box::new(naive::Naive::new(topology.clone())))
    } else if scenario
        .faults
        .iter()
        .any(|f| CLUSTER_KINDS.contains(&f.kind.as_str()))
    {
        let wiring = Wiring {
            topology: topology.clone(),
            clock: clock.clone(),
            tally: tally.clone(),
        };
        Planner::Cluster(Box::new(Cluster::new(wiring, store.clone())?))
    } else {
        Planner::Steer(new_loop(&store)?)
    };
    // A config change: simlab plays its people and steerd's reloader.
    let mut driver = match &mut planner {
        Planner::Steer(c) => Driver::attach(scenario, world, proposed, c)?,
        _ => None,
    };
    let mut plan: Arc<Plan> = match &mut planner {
        Planner::Steer(c) => c.plan(),
        Planner::Naive(n) => n.plan(Timestamp(EPOCH_MS)),
        Planner::Cluster(c) => c.committed(),
        Planner::Down { .. } => unreachable_plan(),
    };
    let settings = steer_types::DnsSettings {
        udp_payload: 1232,
        ..steer_types::DnsSettings::default()
    };
    // Edges calibrate selection on the subnets that ask (as steerd does:
    // at every compile, and every `calibrate_every` while the plan source is
    // there).
    let samples = steer_dns::ClientSamples::default();
    let compile = |plan: &Plan| {
        DnsView::compile_sampled(
            zones,
            &topology.client_networks,
            plan,
            &settings,
            &tally,
            &samples,
        )
    };
    let recalibrate_ms = settings
        .calibrate_every
        .map_or(u64::MAX, |d| d.as_millis() as u64);
    let mut next_recalibration_ms = recalibrate_ms;
    let mut recalibration_round = 0u32;
    let mut view = compile(&plan)?;
    // Counts the views edges served, so an answer can be traced to one.
    let mut view_id = 0u64;

    // Resolvers: `per_region` /24s inside each region's first IPv4 network,
    // plus as many unmapped ones (198.18.x.0/24) for global demand.
    let mut resolvers = Vec::new();
    for r in 0..=nregions {
        let base = if r < nregions {
            topology
                .client_networks
                .iter()
                .find(|n| n.region == topology.regions[r].id && n.prefix.addr().is_ipv4())
                .and_then(|n| match n.prefix.addr() {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                })
        } else {
            Some(Ipv4Addr::new(198, 18, 0, 0))
        };
        let Some(base) = base else { continue };
        for i in 0..scenario.resolvers.per_region {
            let offset = u32::try_from(i).unwrap_or(0) << 8;
            resolvers.push(Resolver {
                region: (r < nregions).then_some(r),
                addr: Ipv4Addr::from(u32::from(base) + offset),
                holds: (rng.below(1000) as f64) < scenario.resolvers.ignore_ttl_share * 1000.0,
                answer: Vec::new(),
                answer_view: 0,
                // Spread first queries over the first TTL.
                expires_ms: rng.below(u64::from(service.ttl) * 1000),
            });
        }
    }
    let by_ip: BTreeMap<Ipv4Addr, usize> = topology
        .pops
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.ipv4.map(|a| (a, i)))
        .collect();

    // Fault targets, resolved once with the seeded generator.
    let targets: Vec<Vec<usize>> = scenario
        .faults
        .iter()
        .map(|f| resolve_targets(f, &topology, &mut rng))
        .collect();

    let step_ms = scenario.step_ms;
    let total_ms = scenario.duration_s * 1000;
    let mut last_load = vec![0.0; npops];
    let mut requests = crate::sli::Requests::new(npops);
    // Per PoP, its load by client region (unmapped clients not counted).
    let mut last_region_load: Vec<BTreeMap<usize, f64>> = vec![BTreeMap::new(); npops];
    let mut next_report_ms = 0;
    let mut steps = Vec::new();
    let mut plans = 1;
    let mut published = 0;
    let mut rails: BTreeSet<String> = BTreeSet::new();
    let mut max_change = 0u32;
    let mut detect: Vec<Option<f64>> = vec![None; scenario.faults.len()];
    let mut mitigate: Vec<Option<f64>> = vec![None; scenario.faults.len()];
    let mut fired_commands = vec![false; scenario.faults.len()];
    let mut gone_ms = 0;
    let mut changes_while_gone = 0;
    let mut gone_since_view: Option<u64> = None;
    let mut refused_commands = 0;

    let mut t_ms = 0;
    while t_ms < total_ms {
        let now = Timestamp(EPOCH_MS + i64::try_from(t_ms).unwrap_or(i64::MAX));
        clock.set(now);
        let active = |i: usize| {
            let f = &scenario.faults[i];
            let start = f.at_s * 1000;
            let end = f.duration_s.map_or(u64::MAX, |d| start + d * 1000);
            (start..end).contains(&t_ms)
        };

        // The truth this step, and what agents will say.
        let mut truly_up = vec![true; npops];
        let mut says_up = vec![true; npops];
        let mut silent = vec![false; npops];
        let mut cap_factor = vec![1.0; npops];
        // Requests failing while probes pass (what only SLIs show).
        let mut error_share = vec![0.0; npops];
        // Gray failure: the PoP says it is fine, but clients and other PoPs
        // cannot reach it. Partitioned observers cannot reach anyone.
        let mut hidden = vec![false; npops];
        let mut partitioned = vec![false; npops];
        for (i, f) in scenario.faults.iter().enumerate() {
            if !active(i) {
                continue;
            }
            for &p in &targets[i] {
                match f.kind.as_str() {
                    "pop_down" => {
                        truly_up[p] = false;
                        says_up[p] = false;
                    }
                    "flap" => {
                        let half = f.period_s.unwrap_or(10).max(1) * 1000;
                        let down = ((t_ms - f.at_s * 1000) / half) % 2 == 0;
                        truly_up[p] = !down;
                        says_up[p] = !down;
                    }
                    "agent_silence" => silent[p] = true,
                    "correlated_self_report" => says_up[p] = false,
                    "capacity_loss" => cap_factor[p] = f.capacity_factor.unwrap_or(0.5),
                    "errors" => error_share[p] = f.error_share.unwrap_or(0.05),
                    "gray" => {
                        truly_up[p] = false;
                        hidden[p] = true;
                    }
                    "observer_partition" => partitioned[p] = true,
                    _ => {}
                }
            }
        }

        // Operator faults and control-plane restarts happen once, at start.
        for (i, f) in scenario.faults.iter().enumerate() {
            if fired_commands[i] || t_ms < f.at_s * 1000 {
                continue;
            }
            fired_commands[i] = true;
            match f.kind.as_str() {
                "drain" | "drain_storm" => {
                    for &p in &targets[i] {
                        let cmd = DrainCommand {
                            scope: DrainScope::Pop {
                                pop: topology.pops[p].id.clone(),
                            },
                            mode: if f.mode.as_deref() == Some("soft") {
                                DrainMode::Soft
                            } else {
                                DrainMode::Hard
                            },
                            ramp: Duration::from_secs(f.ramp_s.unwrap_or(0)),
                            expires_in: f.duration_s.map(Duration::from_secs),
                            reason: format!("simlab {}", f.kind),
                            principal: "simlab".into(),
                            dry_run: false,
                            force: f.force,
                            emergency: false,
                        };
                        let refused = match &mut planner {
                            Planner::Steer(c) => {
                                let (reply, mut rx) = tokio::sync::oneshot::channel();
                                c.step_command(ApiCommand::Drain { cmd, reply });
                                match rx.try_recv() {
                                    Ok(Err(refused)) => Some(refused.to_string()),
                                    _ => None,
                                }
                            }
                            Planner::Cluster(c) => c.drain(cmd).err(),
                            Planner::Naive(_) | Planner::Down { .. } => None,
                        };
                        if let Some(refused) = refused {
                            refused_commands += 1;
                            rails.insert(format!(
                                "t={}s drain of {} refused: {refused}",
                                t_ms / 1000,
                                topology.pops[p].id
                            ));
                        }
                    }
                }
                "control_restart" => {
                    if matches!(planner, Planner::Steer(_)) {
                        planner = Planner::Down {
                            until_ms: t_ms + f.duration_s.unwrap_or(10) * 1000,
                        };
                    }
                }
                "leader_loss" => {
                    if let Planner::Cluster(c) = &mut planner {
                        c.leader_dies(
                            t_ms,
                            f.lease_ttl_s.unwrap_or(DEFAULT_LEASE_TTL_S) * 1000,
                            f.duration_s.map(|d| d * 1000),
                        );
                    }
                }
                _ => {}
            }
        }

        // etcd's quorum and the edges' path to the controllers, for as
        // long as their faults last.
        let mut edges_cut = false;
        if let Planner::Cluster(c) = &mut planner {
            let mut quorum_lost = None;
            for (i, f) in scenario.faults.iter().enumerate() {
                match f.kind.as_str() {
                    "controller_partition" if active(i) => edges_cut = true,
                    "quorum_loss" if active(i) => {
                        quorum_lost = Some(f.lease_ttl_s.unwrap_or(DEFAULT_LEASE_TTL_S));
                    }
                    _ => {}
                }
            }
            c.set_quorum(quorum_lost.map(|ttl_s| ttl_s * 1000), t_ms);
        }

        // Agents report; the control plane plans.
        if t_ms >= next_report_ms {
            next_report_ms = t_ms + scenario.world.report_interval_ms;
            let batch: Vec<ObservedReport> = (0..npops)
                .filter(|&p| !silent[p])
                .map(|p| ObservedReport {
                    pop: topology.pops[p].id.clone(),
                    services: vec![(
                        service.id.clone(),
                        if says_up[p] {
                            Observation::Up
                        } else {
                            Observation::Down
                        },
                    )],
                    load_rps: last_load[p],
                    capacity_rps: scenario
                        .world
                        .agents_report_capacity
                        .then(|| topology.pops[p].capacity_rps * cap_factor[p]),
                    evidence: if says_up[p] {
                        "probe ok"
                    } else {
                        "probe failed"
                    }
                    .into(),
                    load: Default::default(),
                    region_load: if scenario.world.region_load {
                        last_region_load[p]
                            .iter()
                            .map(|(&r, &l)| (topology.regions[r].id.clone(), l))
                            .collect()
                    } else {
                        BTreeMap::new()
                    },
                    // Each agent probes the next `peer_observers` PoPs in
                    // ring order, so every PoP has that many observers.
                    peers: (1..=scenario.world.peer_observers.min(npops.saturating_sub(1)))
                        .map(|k| {
                            let target = (p + k) % npops;
                            let reachable = !partitioned[p] && !hidden[target] && truly_up[target];
                            PeerObservation {
                                target: topology.pops[target].id.clone(),
                                reachable,
                                detail: if reachable { "connect ok" } else { "timeout" }.into(),
                                latency_ms: if reachable { 20 } else { 1000 },
                            }
                        })
                        .collect(),
                    sli: vec![requests.counters(p, &service.id)],
                })
                .collect();
            match &mut planner {
                Planner::Steer(c) => c.step_reports(&batch),
                Planner::Naive(n) => n.observe(&batch, now),
                Planner::Cluster(c) => c.step_reports(&batch),
                Planner::Down { .. } => {}
            }
        }
        if let Planner::Down { until_ms } = planner
            && t_ms >= until_ms
        {
            // Restarted: intents come back from the store, health starts over.
            planner = Planner::Steer(new_loop(&store)?);
        }
        let next_plan = match &mut planner {
            Planner::Steer(c) => {
                c.step_tick();
                if let Some(d) = &mut driver {
                    d.step(c, t_ms)?;
                }
                Some(c.plan())
            }
            Planner::Naive(n) => Some(n.plan(now)),
            // Edges get what the store holds, when they reach a
            // controller; cut off, they keep the plan they have.
            Planner::Cluster(c) => {
                c.step(t_ms)?;
                (!edges_cut).then(|| c.committed())
            }
            Planner::Down { .. } => None,
        };
        let control_plane_gone = match &planner {
            Planner::Down { .. } => true,
            Planner::Cluster(c) => edges_cut || !c.committing(),
            Planner::Steer(_) | Planner::Naive(_) => false,
        };
        if let Some(next) = next_plan
            && next.body != plan.body
        {
            max_change = max_change.max(weight_change(&plan, &next));
            for r in &next.body.rails {
                rails.insert(match r {
                    RailFired::MinAnnounce { pop, prefix, .. } => {
                        format!("min-announce rail kept {pop} {prefix}")
                    }
                    other => other.to_string(),
                });
            }
            view = compile(&next)?;
            view_id += 1;
            plan = next;
            plans += 1;
            published += 1;
        }
        if t_ms >= next_recalibration_ms {
            next_recalibration_ms = next_recalibration_ms.saturating_add(recalibrate_ms);
            if !control_plane_gone {
                recalibration_round += 1;
                if recalibration_round.is_multiple_of(steer_dns::ROUNDS_PER_GENERATION) {
                    samples.rotate();
                }
                if samples.changed() {
                    samples.settle();
                    view = compile(&plan)?;
                    view_id += 1;
                }
            }
        }
        // The view edges served when the control plane went away.
        gone_since_view = match (control_plane_gone, gone_since_view) {
            (false, _) => None,
            (true, None) => Some(view_id),
            (true, since) => since,
        };

        // Resolvers refresh expired answers; clients send demand.
        let demand_of = |region: Option<usize>| -> f64 {
            let key = region.map_or("global", |r| topology.regions[r].id.as_str());
            let base = scenario.world.demand_rps.get(key).copied().unwrap_or(0.0);
            base * curve_factor(&scenario.world.curve, t_ms, key)
        };
        let mut counts: BTreeMap<Option<usize>, usize> = BTreeMap::new();
        for r in &resolvers {
            *counts.entry(r.region).or_default() += 1;
        }
        let mut offered = vec![0.0; npops];
        let mut offered_by_region: Vec<BTreeMap<usize, f64>> = vec![BTreeMap::new(); npops];
        let mut changes = 0;
        let mut demand_total = 0.0;
        for res in &mut resolvers {
            // A warm start: the answer every resolver held when the run
            // began, its expiry kept.
            let warm = scenario.resolvers.warm_start && t_ms == 0;
            if t_ms >= res.expires_ms || warm {
                let info = if scenario.resolvers.ecs {
                    ClientInfo {
                        addr: IpAddr::V4(res.addr),
                        source_prefix: 24,
                        from_ecs: true,
                        random: rng.next(),
                    }
                } else {
                    ClientInfo::resolver(IpAddr::V4(res.addr))
                };
                let q = Question {
                    name: &fqdn,
                    qtype: RecordType::A,
                    qclass: DNSClass::IN,
                };
                // The edge serves it: the answer counts and samples.
                let served = steer_dns::answer(&view, &q, &info);
                served.record_served();
                let answer: Vec<usize> = served
                    .answers
                    .iter()
                    .filter_map(|rec| match &rec.data {
                        RData::A(a) => by_ip.get(&a.0).copied(),
                        _ => None,
                    })
                    .collect();
                // While edges have no plan source, the answers they serve
                // must hold: a resolver whose answer came from the view in
                // force when the control plane went away (or a later one)
                // must get it again. Answers cached from older plans
                // changing are the TTL catching up, not the edges.
                if answer != res.answer
                    && gone_since_view.is_some_and(|since| res.answer_view >= since)
                {
                    changes_while_gone += 1;
                }
                if answer != res.answer {
                    changes += 1;
                }
                res.answer = answer;
                res.answer_view = view_id;
                let hold = if res.holds {
                    scenario.resolvers.hold_s.max(u64::from(service.ttl))
                } else {
                    u64::from(service.ttl)
                };
                if t_ms >= res.expires_ms {
                    res.expires_ms = t_ms + hold * 1000;
                }
            }
            let n = counts.get(&res.region).copied().unwrap_or(1).max(1);
            let d = demand_of(res.region) / n as f64;
            demand_total += d;
            if !res.answer.is_empty() {
                let share = d / res.answer.len() as f64;
                for &p in &res.answer {
                    offered[p] += share;
                    if let Some(r) = res.region {
                        *offered_by_region[p].entry(r).or_default() += share;
                    }
                }
            }
        }

        if control_plane_gone {
            gone_ms += step_ms;
        }
        if let Some(d) = &mut driver {
            d.account(t_ms, step_ms);
        }

        let mut unserved = 0.0;
        let mut overloaded = 0.0;
        let mut failed = 0.0;
        let mut utilisation = vec![0.0; npops];
        for p in 0..npops {
            let cap = topology.pops[p].capacity_rps * cap_factor[p];
            if !truly_up[p] {
                unserved += offered[p];
                utilisation[p] = 0.0;
                last_load[p] = 0.0;
                last_region_load[p].clear();
                continue;
            }
            overloaded += (offered[p] - cap).max(0.0);
            failed += requests.serve(p, offered[p], cap, error_share[p], step_ms as f64 / 1000.0);
            utilisation[p] = if cap > 0.0 { offered[p] / cap } else { 0.0 };
            last_load[p] = offered[p];
            last_region_load[p] = std::mem::take(&mut offered_by_region[p]);
        }

        // Fault detection and mitigation times.
        for (i, f) in scenario.faults.iter().enumerate() {
            if !matches!(
                f.kind.as_str(),
                "pop_down" | "gray" | "flap" | "drain" | "drain_storm"
            ) || targets[i].is_empty()
            {
                continue;
            }
            let since = t_ms.saturating_sub(f.at_s * 1000) as f64 / 1000.0;
            if t_ms < f.at_s * 1000 {
                continue;
            }
            if detect[i].is_none()
                && targets[i]
                    .iter()
                    .all(|&p| !in_any_regional_set(&plan, &topology.pops[p].id))
            {
                detect[i] = Some(since);
            }
            let to_targets: f64 = targets[i].iter().map(|&p| offered[p]).sum();
            if mitigate[i].is_none() && (demand_total <= 0.0 || to_targets / demand_total < 0.01) {
                mitigate[i] = Some(since);
            }
        }

        let min_announced = min_announced(&plan);
        if t_ms % 1000 == 0 {
            steps.push(StepRecord {
                t_s: t_ms as f64 / 1000.0,
                plan_version: plan.version,
                demand_rps: demand_total,
                load_rps: offered.iter().map(|x| (x * 10.0).round() / 10.0).collect(),
                utilisation: utilisation
                    .iter()
                    .map(|x| (x * 1000.0).round() / 1000.0)
                    .collect(),
                unserved_rps: (unserved * 10.0).round() / 10.0,
                overloaded_rps: (overloaded * 10.0).round() / 10.0,
                failed_rps: (failed * 10.0).round() / 10.0,
                min_announced,
                answer_changes: changes,
                planned_utilisation: planned_utilisation(&plan, &topology, &demand_of, &cap_factor)
                    .iter()
                    .map(|x| (x * 1000.0).round() / 1000.0)
                    .collect(),
                published: std::mem::take(&mut published),
                control_plane_gone,
                proposed_config_in: driver.as_ref().and_then(Driver::in_force),
            });
        }
        t_ms += step_ms;
    }

    Ok(Outcome {
        pops: topology.pops.iter().map(|p| p.id.to_string()).collect(),
        steps,
        faults: scenario
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| FaultResult {
                kind: f.kind.clone(),
                at_s: f.at_s,
                targets: targets[i]
                    .iter()
                    .map(|&p| topology.pops[p].id.to_string())
                    .collect(),
                time_to_detect_s: detect[i],
                time_to_mitigate_s: mitigate[i],
            })
            .collect(),
        rails_fired: rails.len(),
        max_weight_change_per_step: max_change,
        plans,
        control_plane_gone_ms: gone_ms,
        answer_changes_while_gone: changes_while_gone,
        commands_refused: refused_commands,
        takeovers: match &planner {
            Planner::Cluster(c) => c.takeovers,
            _ => 0,
        },
        config_change: driver.map(Driver::finish),
        slo_budget: requests.budget_burned(slos, &topology, &service.id, total_ms as f64 / 1000.0),
    })
}

/// Per PoP: the load the plan's shares give it under the true demand,
/// over its true capacity.
fn planned_utilisation(
    plan: &Plan,
    topology: &Topology,
    demand_of: &dyn Fn(Option<usize>) -> f64,
    cap_factor: &[f64],
) -> Vec<f64> {
    let mut load = vec![0.0; topology.pops.len()];
    if let Some(service) = plan.body.services.first() {
        let sets = service
            .regional
            .iter()
            .enumerate()
            .map(|(r, set)| (Some(r), set))
            .chain(std::iter::once((None, &service.global)));
        for (region, set) in sets {
            let d = demand_of(region);
            let total: u32 = set.targets.iter().map(|t| t.weight).sum();
            for t in &set.targets {
                if let Some(p) = topology.pops.iter().position(|p| p.id == t.pop)
                    && total > 0
                {
                    load[p] += d * f64::from(t.weight) / f64::from(total);
                }
            }
        }
    }
    load.iter()
        .enumerate()
        .map(|(p, l)| {
            let cap = topology.pops[p].capacity_rps * cap_factor[p];
            if cap > 0.0 { l / cap } else { 0.0 }
        })
        .collect()
}

/// Only reached if a scenario could start with the control plane down,
/// which `run` never does.
fn unreachable_plan() -> Arc<Plan> {
    Arc::new(Plan {
        version: 0,
        computed_at: Timestamp(EPOCH_MS),
        body: steer_types::PlanBody {
            services: vec![],
            pops: vec![],
            regions: vec![],
            announcements: vec![],
            rails: vec![],
        },
    })
}

fn curve_factor(curve: &Curve, t_ms: u64, region: &str) -> f64 {
    match curve {
        Curve::Flat => 1.0,
        Curve::Diurnal {
            amplitude,
            period_s,
        } => {
            let phase = t_ms as f64 / 1000.0 / (*period_s).max(1) as f64;
            1.0 + amplitude * (2.0 * std::f64::consts::PI * phase).sin()
        }
        Curve::Flash {
            at_s,
            duration_s,
            factor,
            region: only,
        } => {
            let on = (at_s * 1000..(at_s + duration_s) * 1000).contains(&t_ms);
            if on && only.as_deref().is_none_or(|r| r == region) {
                *factor
            } else {
                1.0
            }
        }
    }
}

fn resolve_targets(f: &Fault, topology: &Topology, rng: &mut Rng) -> Vec<usize> {
    let n = topology.pops.len();
    // Control-plane faults have no PoP (and draw nothing from the
    // generator, so adding one moves no other fault's targets).
    if ["control_restart", "config_change"].contains(&f.kind.as_str())
        || CLUSTER_KINDS.contains(&f.kind.as_str())
    {
        return Vec::new();
    }
    if let Some(t) = &f.target {
        if t == "all" {
            return (0..n).collect();
        }
        return t
            .split(',')
            .filter_map(|id| {
                topology
                    .pops
                    .iter()
                    .position(|p| p.id.as_str() == id.trim())
            })
            .collect();
    }
    let count = match (f.count, f.percent) {
        (Some(c), _) => c.min(n),
        (None, Some(pct)) => ((pct / 100.0) * n as f64).round() as usize,
        (None, None) => 1,
    };
    // A seeded shuffle, then the first `count`, in topology order.
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        idx.swap(i, j);
    }
    let mut chosen: Vec<usize> = idx.into_iter().take(count).collect();
    chosen.sort_unstable();
    chosen
}

fn in_any_regional_set(plan: &Plan, pop: &PopId) -> bool {
    plan.body.services.iter().any(|s| {
        s.regional
            .iter()
            .any(|set| set.targets.iter().any(|t| &t.pop == pop))
    })
}

fn min_announced(plan: &Plan) -> usize {
    let mut per_prefix: BTreeMap<String, usize> = BTreeMap::new();
    for a in &plan.body.announcements {
        let e = per_prefix.entry(a.prefix.to_string()).or_default();
        if a.state != AnnounceState::Withdraw {
            *e += 1;
        }
    }
    per_prefix.values().copied().min().unwrap_or(0)
}

/// Largest weight change of any PoP in any answer set between two plans.
fn weight_change(a: &Plan, b: &Plan) -> u32 {
    let mut max = 0;
    for (sa, sb) in a.body.services.iter().zip(&b.body.services) {
        for (x, y) in sa
            .regional
            .iter()
            .chain([&sa.global])
            .zip(sb.regional.iter().chain([&sb.global]))
        {
            let pops: BTreeSet<&PopId> =
                x.targets.iter().chain(&y.targets).map(|t| &t.pop).collect();
            for p in pops {
                let w = |s: &steer_types::AnswerSet| {
                    s.targets
                        .iter()
                        .find(|t| &t.pop == p)
                        .map_or(0, |t| t.weight)
                };
                max = max.max(w(x).abs_diff(w(y)));
            }
        }
    }
    max
}
