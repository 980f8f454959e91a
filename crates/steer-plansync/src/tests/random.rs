//! Random plans and random edits of them: encode → delta → apply gives
//! the new plan exactly, and the follower's content and hash equal the
//! new plan's encoded whole.

use super::*;
use proptest::prelude::*;
use steer_types::{
    AnnounceReason, AnnounceState, Announcement, RailFired, ServiceId, ServicePlan, SetBasis,
    SetReason, WeightedTarget,
};

/// xorshift: the plan is a function of the seed, and proptest shrinks
/// the seeds.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn target(rng: &mut Rng, pop: &PopId) -> WeightedTarget {
    let (v4, v6) = (rng.next(), rng.next());
    WeightedTarget {
        pop: pop.clone(),
        weight: 1 + rng.below(1000) as u32,
        ipv4: rng.chance(80).then(|| std::net::Ipv4Addr::from(v4 as u32)),
        ipv6: rng
            .chance(30)
            .then(|| std::net::Ipv6Addr::from(u128::from(v6))),
    }
}

fn set(rng: &mut Rng, region: Option<RegionId>, pops: &[PopId]) -> AnswerSet {
    let keep = rng.below(101) as u64;
    let mut targets = Vec::new();
    for p in pops {
        if rng.chance(keep) {
            targets.push(target(rng, p));
        }
    }
    if rng.chance(10) {
        targets.reverse();
    }
    AnswerSet {
        region,
        targets,
        reason: SetReason {
            basis: SetBasis::UnmappedByCapacity {
                usable: rng.below(50) as u32,
            },
            panic: rng.chance(10),
            overrides: Vec::new(),
            ramping: rng.chance(10),
        },
    }
}

fn plan(seed: u64) -> PlanBody {
    let mut rng = Rng(seed | 1);
    let pops: Vec<PopId> = (0..rng.below(70))
        .map(|i| PopId::from(format!("p{i}").as_str()))
        .collect();
    let regions: Vec<RegionId> = (0..rng.below(5))
        .map(|i| RegionId::from(format!("r{i}").as_str()))
        .collect();
    let mut b = body(&[]);
    b.pops = pops
        .iter()
        .map(|p| PopPlan {
            id: p.clone(),
            region: RegionId::from("r0"),
            health: PopHealth::Up,
            usable: true,
            drained_by: None,
            weight: 500,
            service_drains: Vec::new(),
            at_target: rng.chance(50),
            budget_moves: if rng.chance(30) {
                vec![steer_types::BudgetMove {
                    service: ServiceId::from("app"),
                    slo: "app-availability".into(),
                    permille: rng.below(1000) as u32,
                }]
            } else {
                Vec::new()
            },
        })
        .collect();
    b.regions = regions
        .iter()
        .map(|r| RegionPlan {
            id: r.clone(),
            served_by: Vec::new(),
            level: Degradation::Normal,
        })
        .collect();
    b.services = (0..rng.below(4))
        .map(|s| ServicePlan {
            id: ServiceId::from(format!("s{s}").as_str()),
            fqdn: format!("s{s}.example.test."),
            ttl: 30,
            max_records: 2,
            regional: regions
                .iter()
                .map(|r| set(&mut rng, Some(r.clone()), &pops))
                .collect(),
            global: set(&mut rng, None, &pops),
            canary: None,
        })
        .collect();
    b.announcements = pops
        .iter()
        .filter(|_| rng.chance(50))
        .map(|p| Announcement {
            pop: p.clone(),
            prefix: "203.0.113.0/24".parse().expect("prefix"),
            state: AnnounceState::Announce,
            reason: AnnounceReason::Healthy,
        })
        .collect();
    b
}

/// Edits like a control plane's: drains, weight moves, PoPs coming
/// and going, chunks emptied, sets reordered, services and rails
/// changed.
fn edit(b: &PlanBody, seed: u64) -> PlanBody {
    let mut rng = Rng(seed | 1);
    let mut b = b.clone();
    for _ in 0..1 + rng.below(4) {
        let pops: Vec<PopId> = b.pops.iter().map(|p| p.id.clone()).collect();
        // Mostly what moves plans day to day; the layout now and then.
        match rng.below(16) {
            0..=3 if !pops.is_empty() => {
                // Drain: out of every set.
                let i = rng.below(pops.len());
                if let Some(p) = b.pops.get_mut(i) {
                    p.usable = false;
                    p.drained_by = Some("d".to_owned());
                }
                for s in &mut b.services {
                    for set in s.regional.iter_mut().chain([&mut s.global]) {
                        set.targets.retain(|t| t.pop != pops[i]);
                        if let Some(t) = set.targets.first_mut() {
                            t.weight += 1;
                        }
                    }
                }
            }
            4..=6 => {
                for s in &mut b.services {
                    let n = s.global.targets.len();
                    if let Some(t) = s.global.targets.get_mut(rng.below(n)) {
                        t.weight = 1 + rng.below(1000) as u32;
                    }
                    s.global.reason.ramping = !s.global.reason.ramping;
                }
            }
            7 if !pops.is_empty() => {
                // A PoP leaves the topology.
                let i = rng.below(pops.len());
                b.pops.remove(i);
                b.announcements.retain(|a| a.pop != pops[i]);
                for s in &mut b.services {
                    for set in s.regional.iter_mut().chain([&mut s.global]) {
                        set.targets.retain(|t| t.pop != pops[i]);
                    }
                }
            }
            8 => {
                // A PoP joins, in the middle of the layout.
                let id = PopId::from(format!("n{}", rng.below(1000)).as_str());
                if !pops.contains(&id) {
                    let at = rng.below(pops.len() + 1);
                    let mut p = body(&[("x", true)]).pops.remove(0);
                    p.id = id.clone();
                    b.pops.insert(at, p);
                    for s in &mut b.services {
                        let t = target(&mut rng, &id);
                        let k = s
                            .global
                            .targets
                            .iter()
                            .position(|x| pops.iter().position(|p| *p == x.pop).unwrap_or(0) >= at)
                            .unwrap_or(s.global.targets.len());
                        s.global.targets.insert(k, t);
                    }
                }
            }
            9 | 10 => {
                // A chunk's worth of PoPs out of the big sets.
                let from = CHUNK_SPAN * rng.below(5);
                let gone: Vec<&PopId> = pops.iter().skip(from).take(CHUNK_SPAN).collect();
                for s in &mut b.services {
                    s.global.targets.retain(|t| !gone.contains(&&t.pop));
                }
            }
            11 => {
                for s in &mut b.services {
                    if rng.chance(50) {
                        s.global.targets.reverse();
                    }
                    if let Some(r) = s.regional.first_mut() {
                        r.region = None;
                    }
                }
            }
            12 => {
                if let Some(s) = b.services.first_mut() {
                    s.ttl += 1;
                    s.global = set(&mut rng, None, &pops);
                }
            }
            13 | 14 => {
                b.rails = vec![RailFired::WeightStep {
                    service: ServiceId::from("s0"),
                    region: None,
                    pop: PopId::from("p0"),
                    held: rng.below(1000) as u32,
                }];
                if let Some(r) = b.regions.first_mut() {
                    r.level = Degradation::Spill;
                }
            }
            _ => {
                if let Some(a) = b.announcements.first_mut() {
                    a.state = AnnounceState::Withdraw;
                }
                if !b.services.is_empty() && rng.chance(50) {
                    let i = rng.below(b.services.len());
                    b.services.remove(i);
                }
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn encode_delta_apply_gives_the_new_plan(
        seed in any::<u64>(),
        edits in prop::collection::vec(any::<u64>(), 1..4),
    ) {
        let mut old = plan(seed);
        let mut f = Follower::default();
        f.apply(&full(v(1, 1), &old)).expect("full");
        prop_assert_eq!(f.plan().map(|p| p.body), Some(old.clone()));
        for (i, e) in edits.iter().enumerate() {
            let new = edit(&old, *e);
            let (base, next) = (v(1, 1 + i as u64), v(1, 2 + i as u64));
            f.apply(&delta(base, next, &old, &new)).expect("delta");
            let encoded = PlanContent::encode(&new);
            prop_assert_eq!(f.plan().map(|p| p.body), Some(new.clone()));
            prop_assert_eq!(f.content_hash(), Some(encoded.sha256()));
            prop_assert_eq!(f.content(), Some(&encoded));
            old = new;
        }
    }
}
