//! Capacity-aware placement of each service's demand (water-filling).
//!
//! Services are placed most important first and share one load ledger, so
//! a lower-priority service only gets the headroom that is left. Each
//! region's demand goes to PoPs in its preference order: first up to the
//! target utilisation, then up to full capacity, a preference depth at a
//! time; regions that want the same PoPs at the same depth share them in
//! proportion to their requests, and within a region PoPs take load in
//! proportion to their room. A failed PoP's load therefore spreads over
//! several neighbours by headroom instead of landing on the nearest one.

use std::collections::BTreeMap;

use steer_types::{
    AnswerSet, Degradation, DemandSource, Intents, PERMILLE, Pop, PopId, RegionId, Service,
    ServiceFigures, ServicePlan, SetBasis, SetFigures, SetReason, Timestamp, Topology,
    WeightedTarget, health::HealthSnapshot, health::PopHealthReport,
};

use crate::{apportion, drain_factor, overrides::apply_overrides, state_usable};

pub(crate) struct Filled {
    /// In topology order.
    pub(crate) services: Vec<ServicePlan>,
    /// Live figures per service, in the same order (evidence, not plan).
    pub(crate) figures: Vec<ServiceFigures>,
    /// Worst level per region (topology order) across services.
    pub(crate) levels: Vec<Degradation>,
    /// Per PoP (topology order): demand fills it to the target
    /// utilisation of what some service may use there, or past it.
    pub(crate) at_target: Vec<bool>,
}

/// Indexes over the topology shared by every service.
struct World<'a> {
    topo: &'a Topology,
    /// Region index of each PoP (topology order).
    pop_region: Vec<usize>,
    /// PoP indexes of each region.
    region_pops: Vec<Vec<usize>>,
    pop_index: std::collections::HashMap<&'a str, usize>,
    /// Capacity of each PoP (reported, else configured).
    capacity: Vec<f64>,
    /// Preference order of regions for each region's clients.
    pref: Vec<Vec<usize>>,
    /// Each region and its configured fallbacks (the panic-mode scope).
    serving: Vec<Vec<usize>>,
}

impl<'a> World<'a> {
    fn new<'h>(topo: &'a Topology, report: &impl Fn(&Pop) -> &'h PopHealthReport) -> Self {
        let by_id: std::collections::HashMap<&str, usize> = topo
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let region_index = |id: &RegionId| by_id.get(id.as_str()).copied();
        let pop_region: Vec<usize> = topo
            .pops
            .iter()
            .map(|p| region_index(&p.region).unwrap_or(0))
            .collect();
        let mut region_pops = vec![Vec::new(); topo.regions.len()];
        for (p, &r) in pop_region.iter().enumerate() {
            if let Some(list) = region_pops.get_mut(r) {
                list.push(p);
            }
        }
        let pop_index = topo
            .pops
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i))
            .collect();
        let capacity = topo
            .pops
            .iter()
            .map(|p| report(p).reported_capacity_rps.unwrap_or(p.capacity_rps))
            .collect();
        let latency = |a: usize, b: usize| -> u32 {
            topo.policy
                .latency_ms
                .iter()
                .find(|l| {
                    (l.from == topo.regions[a].id && l.to == topo.regions[b].id)
                        || (l.from == topo.regions[b].id && l.to == topo.regions[a].id)
                })
                .map_or(u32::MAX, |l| l.ms)
        };
        let pref = (0..topo.regions.len())
            .map(|r| {
                let mut order = vec![r];
                for f in &topo.regions[r].fallback {
                    if let Some(i) = region_index(f)
                        && !order.contains(&i)
                    {
                        order.push(i);
                    }
                }
                let mut rest: Vec<usize> = (0..topo.regions.len())
                    .filter(|i| !order.contains(i))
                    .collect();
                // Nearest first by the latency matrix; unknown pairs last,
                // in topology order (stable sort).
                rest.sort_by_key(|&i| latency(r, i));
                order.extend(rest);
                order
            })
            .collect();
        let serving = (0..topo.regions.len())
            .map(|r| {
                std::iter::once(r)
                    .chain(topo.regions[r].fallback.iter().filter_map(&region_index))
                    .collect()
            })
            .collect();
        Self {
            topo,
            pop_region,
            region_pops,
            pop_index,
            capacity,
            pref,
            serving,
        }
    }
}

/// Per-service view of which PoPs may take traffic.
struct Candidates {
    member: Vec<bool>,
    /// Capacity after drains (soft drains scale it down over the ramp).
    cap: Vec<f64>,
    healthy: Vec<bool>,
    /// Per region: health is ignored for its clients.
    panic: Vec<bool>,
    /// Share of its capacity each PoP keeps under drains (1 undrained).
    drain: Vec<f64>,
    /// Share of each PoP's traffic budget-aware steering moves elsewhere
    /// (0: none), within the other PoPs' headroom.
    budget: Vec<f64>,
}

impl Candidates {
    fn usable(&self, p: usize, panic: bool) -> bool {
        self.member[p] && self.cap[p] > 0.0 && (self.healthy[p] || panic)
    }
}

pub(crate) fn plan_services<'h>(
    topo: &Topology,
    health: &HealthSnapshot,
    intents: &Intents,
    report: &impl Fn(&Pop) -> &'h PopHealthReport,
    now: Timestamp,
) -> Filled {
    let world = World::new(topo, report);
    let mut load = vec![0.0; topo.pops.len()];
    let mut levels = vec![Degradation::Normal; topo.regions.len()];
    // Most important first; ties keep config order.
    let mut order: Vec<usize> = (0..topo.services.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(topo.services[i].priority));
    let mut planned: Vec<Option<(ServicePlan, ServiceFigures)>> = vec![None; topo.services.len()];
    let mut at_target = vec![false; topo.pops.len()];
    let target = topo.policy.target_utilisation.clamp(0.05, 1.0);
    for i in order {
        let service = &topo.services[i];
        let mut cands = candidates(&world, service, intents, report, now);
        cands.budget = budget_shares(&world, service, health);
        let (plan, figures, service_levels) =
            plan_service(&world, service, &cands, health, intents, &mut load);
        for (l, s) in levels.iter_mut().zip(service_levels) {
            *l = (*l).max(s);
        }
        // The pours fill a PoP to exactly its limit: within float dust of
        // it means the demand wanted more here than the target allows.
        for (p, full) in at_target.iter_mut().enumerate() {
            let limit = cands.cap[p] * target;
            *full |= cands.member[p] && limit > 0.0 && load[p] >= limit * (1.0 - 1e-6);
        }
        planned[i] = Some((plan, figures));
    }
    let (services, figures) = planned.into_iter().flatten().unzip();
    Filled {
        services,
        figures,
        levels,
        at_target,
    }
}

fn candidates<'h>(
    world: &World<'_>,
    service: &Service,
    intents: &Intents,
    report: &impl Fn(&Pop) -> &'h PopHealthReport,
    now: Timestamp,
) -> Candidates {
    let topo = world.topo;
    let n = topo.pops.len();
    let mut member = vec![false; n];
    for id in &service.pops {
        if let Some(&i) = world.pop_index.get(id.as_str()) {
            member[i] = true;
        }
    }
    // Usable capacity = capacity × health factor × drain share left.
    let drain: Vec<f64> = topo
        .pops
        .iter()
        .map(|p| drain_factor(service, p, intents, now))
        .collect();
    let cap: Vec<f64> = topo
        .pops
        .iter()
        .enumerate()
        .map(|(i, p)| world.capacity[i] * report(p).load.health_factor() * drain[i])
        .collect();
    let healthy: Vec<bool> = topo
        .pops
        .iter()
        .map(|p| {
            state_usable(
                report(p).service_state(&service.id),
                topo.health.unknown_health,
            )
        })
        .collect();
    let threshold = topo.policy.panic_threshold;
    let panic = (0..topo.regions.len())
        .map(|r| {
            if threshold <= 0.0 {
                return false;
            }
            let (mut total, mut ok) = (0.0, 0.0);
            for &region in &world.serving[r] {
                for &p in &world.region_pops[region] {
                    if member[p] && cap[p] > 0.0 {
                        total += cap[p];
                        if healthy[p] {
                            ok += cap[p];
                        }
                    }
                }
            }
            total > 0.0 && ok / total < threshold
        })
        .collect();
    Candidates {
        member,
        cap,
        healthy,
        panic,
        drain,
        budget: vec![0.0; n],
    }
}

/// Per PoP (topology order): the share of `service`'s traffic budget-aware
/// steering moves off it (the largest of its SLOs' shifts).
fn budget_shares(world: &World<'_>, service: &Service, health: &HealthSnapshot) -> Vec<f64> {
    let mut out = vec![0.0; world.topo.pops.len()];
    for b in health.budget.iter().filter(|b| b.service == service.id) {
        if let Some(&p) = world.pop_index.get(b.pop.as_str())
            && b.share.is_finite()
        {
            out[p] = f64::max(out[p], b.share.clamp(0.0, 1.0));
        }
    }
    out
}

/// Demand of one service: per region (topology order) and for unmapped
/// clients, with where each figure came from.
struct Demand {
    regional: Vec<f64>,
    global: f64,
    sources: Vec<DemandSource>,
    global_source: DemandSource,
}

/// Observed if any load is reported, else the configured estimate.
fn demand(world: &World<'_>, service: &Service, health: &HealthSnapshot) -> Demand {
    let topo = world.topo;
    if let Some(observed) = health.demand.get(&service.id) {
        let regional: Vec<f64> = topo
            .regions
            .iter()
            .map(|r| observed.regional.get(&r.id).copied().unwrap_or(0.0))
            .collect();
        if regional.iter().sum::<f64>() + observed.global > 0.0 {
            let sources = topo
                .regions
                .iter()
                .map(|r| observed.sources.get(&r.id).copied().unwrap_or_default())
                .collect();
            return Demand {
                regional,
                global: observed.global,
                sources,
                global_source: observed.global_source,
            };
        }
    }
    let est = &service.demand_estimate;
    let regional: Vec<f64> = topo
        .regions
        .iter()
        .map(|r| est.get(r.id.as_str()).copied().unwrap_or(0.0))
        .collect();
    let source = |x: f64| {
        if x > 0.0 {
            DemandSource::Configured
        } else {
            DemandSource::None
        }
    };
    let global = est.get("global").copied().unwrap_or(0.0);
    Demand {
        sources: regional.iter().map(|x| source(*x)).collect(),
        regional,
        global,
        global_source: source(global),
    }
}

/// rps placed per PoP for one answer set.
type Placement = BTreeMap<usize, f64>;

/// One client population being placed: a region's clients, or the
/// unmapped ones. Any share of it can go to any PoP: the DNS view delivers
/// whatever shares the plan says (see `steer_types::delivery`).
struct Requester<'p> {
    remaining: f64,
    placement: &'p mut Placement,
}

/// Pours what `requesters` still need into `pops`, up to `limit(p)` load
/// per PoP. Every requester asks each PoP for a part of its remainder in
/// proportion to the PoP's room; a PoP asked for more than its room grants
/// pro rata to the asks, so requesters sharing PoPs share them in
/// proportion to their needs. Rounds repeat while they place anything.
fn pour(
    requesters: &mut [Requester<'_>],
    pops: &[usize],
    limit: &dyn Fn(usize) -> f64,
    load: &mut [f64],
) {
    for _ in 0..32 {
        let room: Vec<f64> = pops
            .iter()
            .map(|&p| (limit(p) - load[p]).max(0.0))
            .collect();
        let asks: Vec<Vec<f64>> = requesters
            .iter()
            .map(|r| {
                let open: f64 = room.iter().sum();
                room.iter()
                    .map(|&room| {
                        if open <= 0.0 || r.remaining <= 1e-9 {
                            0.0
                        } else {
                            (r.remaining * room / open).min(room)
                        }
                    })
                    .collect()
            })
            .collect();
        let mut placed = 0.0;
        for (k, &p) in pops.iter().enumerate() {
            let asked: f64 = asks.iter().map(|a| a[k]).sum();
            if asked <= 1e-12 {
                continue;
            }
            let grant = (room[k] / asked).min(1.0);
            for (r, a) in requesters.iter_mut().zip(&asks) {
                let x = a[k] * grant;
                if x > 0.0 {
                    *r.placement.entry(p).or_default() += x;
                    r.remaining -= x;
                    load[p] += x;
                    placed += x;
                }
            }
        }
        if placed <= 1e-9 {
            break;
        }
    }
}

/// Spreads what a requester still needs over `pops` in proportion to
/// their capacity: overload, when nothing has room.
fn spread(r: &mut Requester<'_>, pops: &[usize], cap: &[f64], load: &mut [f64]) {
    let total: f64 = pops.iter().map(|&p| cap[p]).sum();
    if r.remaining <= 1e-9 || total <= 0.0 {
        return;
    }
    let amount = r.remaining;
    for &p in pops {
        let x = amount * cap[p] / total;
        *r.placement.entry(p).or_default() += x;
        load[p] += x;
    }
    r.remaining = 0.0;
}

/// Where one service's demand goes.
struct Placed {
    /// Per region (topology order).
    placements: Vec<Placement>,
    /// Unmapped clients.
    global: Placement,
    /// Per region: demand placed past every PoP's capacity.
    shed: Vec<f64>,
}

/// PoPs a region's clients may use at a preference depth.
fn pops_of(world: &World<'_>, cands: &Candidates, region: usize, panic: bool) -> Vec<usize> {
    world.region_pops[region]
        .iter()
        .copied()
        .filter(|&p| cands.usable(p, panic))
        .collect()
}

fn reachable(world: &World<'_>, cands: &Candidates, panic: bool) -> Vec<usize> {
    (0..world.topo.pops.len())
        .filter(|&p| cands.usable(p, panic))
        .collect()
}

/// Pours what each region still needs (`remaining`) into PoPs up to
/// `limit`, a preference depth at a time.
fn fill_by_preference(
    world: &World<'_>,
    cands: &Candidates,
    remaining: &mut [f64],
    placements: &mut [Placement],
    limit: &dyn Fn(usize) -> f64,
    load: &mut [f64],
) {
    for depth in 0..world.topo.regions.len() {
        if remaining.iter().all(|x| *x <= 1e-9) {
            break;
        }
        // Group requesters by (region asked, panic) so they share fairly.
        let mut groups: BTreeMap<(usize, bool), Vec<usize>> = BTreeMap::new();
        for (r, left) in remaining.iter().enumerate() {
            if *left > 1e-9
                && let Some(&t) = world.pref[r].get(depth)
            {
                groups.entry((t, cands.panic[r])).or_default().push(r);
            }
        }
        for ((t, panic), members) in groups {
            let pops = pops_of(world, cands, t, panic);
            let mut taken: Vec<(usize, Placement)> = members
                .iter()
                .map(|&r| (r, std::mem::take(&mut placements[r])))
                .collect();
            {
                let mut requesters: Vec<Requester<'_>> = taken
                    .iter_mut()
                    .map(|(r, pl)| Requester {
                        remaining: remaining[*r],
                        placement: pl,
                    })
                    .collect();
                pour(&mut requesters, &pops, limit, load);
                for (req, &r) in requesters.iter().zip(&members) {
                    remaining[r] = req.remaining.max(0.0);
                }
            }
            for (r, pl) in taken {
                placements[r] = pl;
            }
        }
    }
}

/// Water-fills `demand` (per region) and `global_demand` into the
/// candidates, adding to `load`: up to the target utilisation, then up to
/// full capacity, then overload spread by capacity.
fn place(
    world: &World<'_>,
    cands: &Candidates,
    target: f64,
    demand: &[f64],
    global_demand: f64,
    load: &mut [f64],
) -> Placed {
    let nregions = world.topo.regions.len();
    let mut placements: Vec<Placement> = vec![Placement::new(); nregions];
    let mut remaining = demand.to_vec();
    let mut shed = vec![0.0; nregions];
    // Phase 1 up to target utilisation, phase 2 up to full capacity.
    for phase_limit in [target, 1.0] {
        let limit = |p: usize| cands.cap[p] * phase_limit;
        fill_by_preference(world, cands, &mut remaining, &mut placements, &limit, load);
    }
    // Phase 3: what still does not fit is spread by capacity over every
    // candidate in reach: overload.
    for r in 0..nregions {
        if remaining[r] > 1e-9 {
            let pops = reachable(world, cands, cands.panic[r]);
            let before = remaining[r];
            let mut req = Requester {
                remaining: remaining[r],
                placement: &mut placements[r],
            };
            spread(&mut req, &pops, &cands.cap, load);
            remaining[r] = req.remaining.max(0.0);
            shed[r] = before - remaining[r];
        }
    }

    // Unmapped clients: spread over every candidate by room, then capacity.
    let mut global = Placement::new();
    if global_demand > 0.0 {
        let all = reachable(world, cands, false);
        let mut req = Requester {
            remaining: global_demand,
            placement: &mut global,
        };
        for phase_limit in [target, 1.0] {
            let limit = |p: usize| cands.cap[p] * phase_limit;
            pour(std::slice::from_mut(&mut req), &all, &limit, load);
        }
        spread(&mut req, &all, &cands.cap, load);
    }
    Placed {
        placements,
        global,
        shed,
    }
}

/// Budget-aware steering: takes each burning PoP's shift (a share of what
/// it was given) out of every placement and pours it, by the clients'
/// preference order, into the other PoPs' room under the target; what
/// finds no room goes back where it came from. So at most the shift moves,
/// and no PoP goes past the target for it.
fn shift_budget(
    world: &World<'_>,
    cands: &Candidates,
    target: f64,
    placed: &mut Placed,
    load: &mut [f64],
) {
    if cands.budget.iter().all(|b| *b <= 0.0) {
        return;
    }
    // Burning PoPs take nothing of what moves.
    let limit = |p: usize| {
        if cands.budget[p] > 0.0 {
            0.0
        } else {
            cands.cap[p] * target
        }
    };
    let take = |placement: &mut Placement, load: &mut [f64]| -> Vec<(usize, f64)> {
        let mut taken = Vec::new();
        for (&p, x) in placement.iter_mut() {
            let b = cands.budget[p];
            if b > 0.0 && *x > 0.0 {
                let m = *x * b;
                *x -= m;
                load[p] -= m;
                taken.push((p, m));
            }
        }
        taken
    };
    let give_back =
        |placement: &mut Placement, taken: &[(usize, f64)], left: f64, load: &mut [f64]| {
            let total: f64 = taken.iter().map(|(_, m)| m).sum();
            if left <= 1e-9 || total <= 0.0 {
                return;
            }
            for &(p, m) in taken {
                let x = left * m / total;
                *placement.entry(p).or_default() += x;
                load[p] += x;
            }
        };
    let nregions = world.topo.regions.len();
    let taken: Vec<Vec<(usize, f64)>> = placed
        .placements
        .iter_mut()
        .map(|pl| take(pl, load))
        .collect();
    let mut remaining: Vec<f64> = taken
        .iter()
        .map(|t| t.iter().map(|(_, m)| m).sum())
        .collect();
    fill_by_preference(
        world,
        cands,
        &mut remaining,
        &mut placed.placements,
        &limit,
        load,
    );
    for r in 0..nregions {
        give_back(&mut placed.placements[r], &taken[r], remaining[r], load);
    }
    let global_taken = take(&mut placed.global, load);
    let mut req = Requester {
        remaining: global_taken.iter().map(|(_, m)| m).sum(),
        placement: &mut placed.global,
    };
    if req.remaining > 1e-9 {
        pour(
            std::slice::from_mut(&mut req),
            &reachable(world, cands, false),
            &limit,
            load,
        );
    }
    let left = req.remaining;
    give_back(&mut placed.global, &global_taken, left, load);
}

fn plan_service(
    world: &World<'_>,
    service: &Service,
    cands: &Candidates,
    health: &HealthSnapshot,
    intents: &Intents,
    load: &mut [f64],
) -> (ServicePlan, ServiceFigures, Vec<Degradation>) {
    let topo = world.topo;
    let nregions = topo.regions.len();
    let observed = demand(world, service, health);
    let (demand, global_demand) = (observed.regional.clone(), observed.global);
    let target = topo.policy.target_utilisation.clamp(0.05, 1.0);

    let mut placed = place(world, cands, target, &demand, global_demand, load);
    shift_budget(world, cands, target, &mut placed, load);
    let Placed {
        placements,
        global: global_placement,
        shed,
    } = placed;

    let mut levels = vec![Degradation::Normal; nregions];
    let mut figures = Vec::with_capacity(nregions);
    let regional = (0..nregions)
        .map(|r| {
            let region_id = topo.regions[r].id.clone();
            let (set, level, f) = if demand[r] > 0.0 && !placements[r].is_empty() {
                let (set, level, f) =
                    placed_set(world, cands, intents, r, &placements[r], demand[r], shed[r]);
                (
                    set,
                    level,
                    SetFigures {
                        source: observed.sources[r],
                        ..f
                    },
                )
            } else {
                let (set, level) = capacity_set(world, cands, intents, r);
                (set, level, SetFigures::default())
            };
            levels[r] = level;
            figures.push(f);
            AnswerSet {
                region: Some(region_id),
                ..set
            }
        })
        .collect();
    let (global, global_figures) = if global_demand > 0.0 && !global_placement.is_empty() {
        let (targets, overrides) = targets_from(world, cands, intents, &global_placement);
        (
            AnswerSet {
                region: None,
                targets,
                reason: SetReason {
                    overrides,
                    ..SetReason::new(SetBasis::UnmappedByHeadroom)
                },
            },
            SetFigures {
                demand_rps: global_demand,
                source: observed.global_source,
                ..SetFigures::default()
            },
        )
    } else {
        (
            global_capacity_set(world, cands, intents),
            SetFigures::default(),
        )
    };
    (
        ServicePlan {
            id: service.id.clone(),
            fqdn: service.fqdn.clone(),
            ttl: service.ttl,
            max_records: service.max_records,
            regional,
            global,
            canary: None,
        },
        ServiceFigures {
            id: service.id.clone(),
            regional: figures,
            global: global_figures,
        },
        levels,
    )
}

/// Weight overrides that pinned a target: (PoP, pinned per-mille).
type Pins = Vec<(PopId, u32)>;

/// Targets with weights from a placement; applies overrides.
fn targets_from(
    world: &World<'_>,
    cands: &Candidates,
    intents: &Intents,
    placement: &Placement,
) -> (Vec<WeightedTarget>, Pins) {
    // Float dust from the pours is not a target.
    let total: f64 = placement.values().sum();
    let pops: Vec<usize> = placement
        .iter()
        .filter(|(_, x)| **x > total * 1e-4)
        .map(|(p, _)| *p)
        .collect();
    let shares: Vec<f64> = pops.iter().map(|p| placement[p]).collect();
    weighted(world, cands, intents, &pops, &shares)
}

/// Per-mille weights for `pops` from their shares: overrides pin a PoP's
/// share (a drain in progress caps the pin: the stricter intent wins), and
/// the result is the share clients will send each PoP (the DNS view
/// delivers it whatever the records per answer).
fn weighted(
    world: &World<'_>,
    cands: &Candidates,
    intents: &Intents,
    pops: &[usize],
    shares: &[f64],
) -> (Vec<WeightedTarget>, Pins) {
    let topo = world.topo;
    let mut weights = apportion(shares);
    let pinned: Vec<(usize, u32)> = pops
        .iter()
        .enumerate()
        .filter_map(|(k, &p)| {
            intents.override_for(&topo.pops[p].id).map(|o| {
                let pin = o.weight.min(PERMILLE);
                if cands.drain[p] < 1.0 {
                    (k, pin.min(weights[k]))
                } else {
                    (k, pin)
                }
            })
        })
        .collect();
    let mut pins = Vec::new();
    if !pinned.is_empty() {
        weights = apply_overrides(&weights, &pinned);
        pins = pinned
            .iter()
            .map(|&(k, w)| (topo.pops[pops[k]].id.clone(), w))
            .collect();
    }
    let targets = pops
        .iter()
        .zip(weights)
        .filter(|(_, w)| *w > 0)
        .map(|(&p, weight)| {
            let pop = &topo.pops[p];
            WeightedTarget {
                pop: pop.id.clone(),
                weight,
                ipv4: pop.ipv4,
                ipv6: pop.ipv6,
            }
        })
        .collect();
    (targets, pins)
}

fn placed_set(
    world: &World<'_>,
    cands: &Candidates,
    intents: &Intents,
    r: usize,
    placement: &Placement,
    demand: f64,
    shed: f64,
) -> (AnswerSet, Degradation, SetFigures) {
    let topo = world.topo;
    let (targets, overrides) = targets_from(world, cands, intents, placement);
    let outside: f64 = placement
        .iter()
        .filter(|(p, _)| world.pop_region[**p] != r)
        .map(|(_, x)| x)
        .sum();
    let spilled = outside > 1e-6;
    let shedding = shed > 0.0;
    let level = if cands.panic[r] {
        Degradation::Panic
    } else if shedding {
        Degradation::Shed
    } else if spilled {
        Degradation::Spill
    } else {
        Degradation::Normal
    };
    let target_pct = (topo.policy.target_utilisation * 100.0).round() as u32;
    (
        AnswerSet {
            region: None,
            targets,
            reason: SetReason {
                panic: cands.panic[r],
                overrides,
                ..SetReason::new(SetBasis::WaterFilled {
                    target_pct,
                    spilled,
                    shed: shedding,
                })
            },
        },
        level,
        SetFigures {
            demand_rps: demand,
            spilled_rps: outside,
            shed_rps: shed,
            source: DemandSource::None,
        },
    )
}

/// Without demand figures: the first region in preference order with
/// candidates serves, by capacity.
fn capacity_set(
    world: &World<'_>,
    cands: &Candidates,
    intents: &Intents,
    r: usize,
) -> (AnswerSet, Degradation) {
    let topo = world.topo;
    let panic = cands.panic[r];
    for &t in &world.pref[r] {
        let pops: Vec<usize> = world.region_pops[t]
            .iter()
            .copied()
            .filter(|&p| cands.usable(p, panic))
            .collect();
        if pops.is_empty() {
            continue;
        }
        let shares = by_capacity(cands, &pops);
        let (targets, overrides) = weighted(world, cands, intents, &pops, &shares);
        let usable = pops.len() as u32;
        let (basis, level) = if t == r {
            (SetBasis::OwnRegion { usable }, Degradation::Normal)
        } else {
            (
                SetBasis::SpilledTo {
                    region: topo.regions[t].id.clone(),
                    usable,
                },
                Degradation::Spill,
            )
        };
        let level = if panic { Degradation::Panic } else { level };
        return (
            AnswerSet {
                region: None,
                targets,
                reason: SetReason {
                    panic,
                    overrides,
                    ..SetReason::new(basis)
                },
            },
            level,
        );
    }
    (fail_static(world, cands), Degradation::Panic)
}

/// Shares by capacity without demand figures: a PoP burning the budget
/// keeps only what its shift leaves (no headroom to check: the others
/// serve in proportion to their capacity as they would anyway).
fn by_capacity(cands: &Candidates, pops: &[usize]) -> Vec<f64> {
    pops.iter()
        .map(|&p| cands.cap[p] * (1.0 - cands.budget[p]))
        .collect()
}

fn global_capacity_set(world: &World<'_>, cands: &Candidates, intents: &Intents) -> AnswerSet {
    let pops: Vec<usize> = (0..world.topo.pops.len())
        .filter(|&p| cands.usable(p, false))
        .collect();
    if pops.is_empty() {
        return fail_static(world, cands);
    }
    let shares = by_capacity(cands, &pops);
    let (targets, overrides) = weighted(world, cands, intents, &pops, &shares);
    AnswerSet {
        region: None,
        targets,
        reason: SetReason {
            overrides,
            ..SetReason::new(SetBasis::UnmappedByCapacity {
                usable: pops.len() as u32,
            })
        },
    }
}

/// No candidate anywhere: serve every undrained member (or, if the
/// operator drained all of them, every member) rather than nothing.
fn fail_static(world: &World<'_>, cands: &Candidates) -> AnswerSet {
    let topo = world.topo;
    let members: Vec<usize> = (0..topo.pops.len()).filter(|&p| cands.member[p]).collect();
    let undrained: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&p| cands.cap[p] > 0.0)
        .collect();
    let (pops, basis) = if undrained.is_empty() {
        (members, SetBasis::AllDrained)
    } else {
        (undrained, SetBasis::FailStatic)
    };
    let shares: Vec<f64> = pops.iter().map(|&p| world.capacity[p].max(1.0)).collect();
    let weights = apportion(&shares);
    AnswerSet {
        region: None,
        targets: pops
            .iter()
            .zip(weights)
            .map(|(&p, weight)| WeightedTarget {
                pop: topo.pops[p].id.clone(),
                weight,
                ipv4: topo.pops[p].ipv4,
                ipv6: topo.pops[p].ipv6,
            })
            .collect(),
        reason: SetReason::new(basis),
    }
}
