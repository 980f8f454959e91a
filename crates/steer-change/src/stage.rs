//! A stage in force: one plan from two (the new config's decisions for the
//! stage's scope, the old config's everywhere else), and the judgement of
//! the stage's canary scope against its baseline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use steer_types::{PlanBody, PopId, RailFired, Topology};

use crate::settings::{Judgement, RegionScope, StageScope};

/// The plan of a stage: `old` (computed from the config in force) with
/// the answer sets of the scope's client regions, their degradation, and
/// the state and announcements of the scope's PoPs (its list, or the PoPs
/// of its regions) taken from `new` (computed from the proposed config,
/// whose topology is `new_topology`). Clients that
/// map to no region move only when the scope is every region. With a
/// share, only that share of the regions' client subnets move: the new
/// sets ride beside the old as the services' canary. Services
/// the proposal adds appear when it completes (DNS knows their names
/// only then); sets the proposal removes stay until then.
pub fn merge_stage(
    old: &PlanBody,
    new: &PlanBody,
    stage: &StageScope,
    new_topology: &Topology,
) -> PlanBody {
    let scope = &stage.regions;
    let mut out = old.clone();
    match stage.share_ppm {
        // A share of the clients: the new sets beside the old ones.
        Some(share_ppm) => canary_sets(&mut out, new, scope, share_ppm),
        None => answers_of_scope(&mut out, new, scope),
    }
    // BGP: the scope's PoPs announce as the new config says.
    let in_scope = |pop: &PopId| stage.announces(pop, new_topology);
    for p in &mut out.pops {
        if in_scope(&p.id)
            && let Some(n) = new.pops.iter().find(|n| n.id == p.id)
        {
            *p = n.clone();
        }
    }
    for a in &mut out.announcements {
        if in_scope(&a.pop)
            && let Some(n) = new
                .announcements
                .iter()
                .find(|n| n.pop == a.pop && n.prefix == a.prefix)
        {
            *a = n.clone();
        }
    }
    // Each rail from the plan whose decision was kept: the new one's for
    // the scope's sets and PoPs, the old one's elsewhere. (Keeping both
    // would publish a new version each time either side's rail moved.)
    let scoped = |r: &RailFired| match r {
        // A share stage keeps the plan's sets (the canary's are beside them).
        RailFired::WeightStep { .. } if stage.share_ppm.is_some() => false,
        RailFired::WeightStep { region, .. } => match region {
            Some(region) => scope.covers(region),
            None => *scope == RegionScope::All,
        },
        RailFired::MinAnnounce { pop, .. } => in_scope(pop),
    };
    out.rails = old
        .rails
        .iter()
        .filter(|r| !scoped(r))
        .chain(new.rails.iter().filter(|r| scoped(r)))
        .cloned()
        .collect();
    out
}

/// The scope's regions' answer sets and degradation (and, for every
/// region, unmapped clients' set) from `new`.
fn answers_of_scope(out: &mut PlanBody, new: &PlanBody, scope: &RegionScope) {
    for svc in &mut out.services {
        let Some(next) = new.services.iter().find(|s| s.id == svc.id) else {
            continue;
        };
        for set in &mut svc.regional {
            let Some(region) = &set.region else {
                continue;
            };
            if !scope.covers(region) {
                continue;
            }
            if let Some(n) = next
                .regional
                .iter()
                .find(|n| n.region.as_ref() == Some(region))
            {
                *set = n.clone();
            }
        }
        if *scope == RegionScope::All {
            svc.global = next.global.clone();
        }
    }
    for region in &mut out.regions {
        if scope.covers(&region.id)
            && let Some(n) = new.regions.iter().find(|n| n.id == region.id)
        {
            *region = n.clone();
        }
    }
}

/// The canary of a share stage: beside each service's sets, the new
/// config's sets for the scope's regions (and for unmapped clients when
/// the scope is every region), where they differ.
fn canary_sets(out: &mut PlanBody, new: &PlanBody, scope: &RegionScope, share_ppm: u32) {
    for svc in &mut out.services {
        let Some(next) = new.services.iter().find(|s| s.id == svc.id) else {
            continue;
        };
        let regional: Vec<Option<steer_types::AnswerSet>> = svc
            .regional
            .iter()
            .map(|set| {
                let region = set.region.as_ref().filter(|r| scope.covers(r))?;
                let n = next
                    .regional
                    .iter()
                    .find(|n| n.region.as_ref() == Some(region))?;
                (n.targets != set.targets).then(|| n.clone())
            })
            .collect();
        let global = (*scope == RegionScope::All && next.global.targets != svc.global.targets)
            .then(|| next.global.clone());
        let moved = global.is_some() || regional.iter().any(Option::is_some);
        svc.canary = moved.then_some(steer_types::Canary {
            share_ppm,
            regional,
            global,
        });
    }
}

/// Bad and total events of one SLI over some PoPs and a span of time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    pub total: u64,
    pub bad: u64,
}

impl Events {
    pub fn ratio(self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.bad as f64 / self.total as f64
        }
    }
}

/// One SLO's events in the canary scope and in the baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub slo: String,
    pub canary: Events,
    pub baseline: Events,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    Pass(String),
    Fail(String),
    /// Not enough events (or no SLO at all): never promotes.
    Inconclusive(String),
}

/// Judges a stage: Fail if any SLO's canary error ratio is over
/// `max_error_ratio` or over its baseline's by more than
/// `max_error_ratio_increase`, with at least `min_events` canary events;
/// Pass if at least one SLO had enough events in both scopes and none
/// failed; Inconclusive otherwise. Each verdict says which figures.
pub fn judge(evidence: &[Evidence], j: &Judgement) -> Verdict {
    let mut passed = Vec::new();
    let mut short = Vec::new();
    for e in evidence {
        let (c, b) = (e.canary.ratio(), e.baseline.ratio());
        let figures = format!(
            "{}: canary {}/{} bad ({:.2}%), baseline {}/{} ({:.2}%)",
            e.slo,
            e.canary.bad,
            e.canary.total,
            c * 100.0,
            e.baseline.bad,
            e.baseline.total,
            b * 100.0
        );
        if e.canary.total >= j.min_events {
            if c > j.max_error_ratio {
                return Verdict::Fail(format!(
                    "{figures}: over the {:.2}% ceiling",
                    j.max_error_ratio * 100.0
                ));
            }
            if e.baseline.total >= j.min_events && c - b > j.max_error_ratio_increase {
                return Verdict::Fail(format!(
                    "{figures}: {:.2} points worse than the baseline (limit {:.2})",
                    (c - b) * 100.0,
                    j.max_error_ratio_increase * 100.0
                ));
            }
        }
        if e.canary.total >= j.min_events && e.baseline.total >= j.min_events {
            passed.push(figures);
        } else {
            short.push(format!("{figures}: fewer than {} events", j.min_events));
        }
    }
    if evidence.is_empty() {
        return Verdict::Inconclusive(
            "no SLO to judge by ([[slos]]): promote by hand after checking".into(),
        );
    }
    if passed.is_empty() {
        Verdict::Inconclusive(short.join("; "))
    } else {
        Verdict::Pass(passed.join("; "))
    }
}

/// Sums per-PoP events into the scope's and the rest's.
pub fn split_events(
    per_pop: &BTreeMap<String, Events>,
    in_scope: impl Fn(&str) -> bool,
) -> (Events, Events) {
    let mut canary = Events::default();
    let mut rest = Events::default();
    for (pop, e) in per_pop {
        let into = if in_scope(pop) {
            &mut canary
        } else {
            &mut rest
        };
        into.total += e.total;
        into.bad += e.bad;
    }
    (canary, rest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn events(total: u64, bad: u64) -> Events {
        Events { total, bad }
    }

    fn evidence(canary: Events, baseline: Events) -> Vec<Evidence> {
        vec![Evidence {
            slo: "app".into(),
            canary,
            baseline,
        }]
    }

    #[test]
    fn a_worse_canary_fails_and_says_by_how_much() {
        let j = Judgement::default();
        let v = judge(&evidence(events(1000, 20), events(5000, 10)), &j);
        let Verdict::Fail(why) = v else {
            panic!("{v:?}")
        };
        assert!(why.contains("1.80 points worse"), "{why}");
        // Over the ceiling even with a bad baseline too.
        let v = judge(&evidence(events(1000, 100), events(5000, 500)), &j);
        assert!(
            matches!(v, Verdict::Fail(ref w) if w.contains("ceiling")),
            "{v:?}"
        );
    }

    #[test]
    fn no_data_never_counts_as_success() {
        let j = Judgement::default();
        assert!(matches!(judge(&[], &j), Verdict::Inconclusive(_)));
        let v = judge(&evidence(events(50, 0), events(5000, 5)), &j);
        assert!(
            matches!(v, Verdict::Inconclusive(ref w) if w.contains("fewer than 100")),
            "{v:?}"
        );
        let v = judge(&evidence(events(0, 0), events(0, 0)), &j);
        assert!(matches!(v, Verdict::Inconclusive(_)), "{v:?}");
        // A clean canary with enough events passes.
        let v = judge(&evidence(events(1000, 1), events(5000, 5)), &j);
        assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
        // A failing canary fails before the baseline has enough events.
        let v = judge(&evidence(events(1000, 200), events(10, 0)), &j);
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
    }

    fn world(ap_capacity: f64) -> Topology {
        use steer_types::{Pop, Region, Service, UnknownHealth};
        let pop = |id: &str, region: &str, cap: f64| Pop {
            id: id.into(),
            region: region.into(),
            ipv4: Some("192.0.2.1".parse().unwrap()),
            ipv6: None,
            capacity_rps: cap,
        };
        let mut t = Topology {
            regions: ["eu", "ap"]
                .iter()
                .map(|r| Region {
                    id: (*r).into(),
                    fallback: vec![],
                })
                .collect(),
            pops: vec![
                pop("fra1", "eu", 1000.0),
                pop("ams1", "eu", 1000.0),
                pop("sin1", "ap", ap_capacity),
                pop("bom1", "ap", 1000.0),
            ],
            services: vec![Service {
                id: "app".into(),
                fqdn: "app.example.test.".into(),
                ttl: 30,
                max_records: 1,
                pops: ["fra1", "ams1", "sin1", "bom1"]
                    .iter()
                    .map(|p| (*p).into())
                    .collect(),
                anycast: vec![],
                priority: 0,
                demand_estimate: [("eu".to_owned(), 800.0), ("ap".to_owned(), 800.0)].into(),
            }],
            client_networks: vec![],
            health: Default::default(),
            policy: Default::default(),
        };
        t.health.unknown_health = UnknownHealth::AssumeUp;
        t
    }

    /// The plan the policy makes of `t` with every PoP up, no intents.
    fn plan_of(t: &Topology) -> PlanBody {
        use steer_types::{Intents, Timestamp, health::HealthSnapshot};
        steer_policy::compute(
            t,
            &HealthSnapshot::default(),
            &Intents::default(),
            Timestamp(0),
        )
    }

    #[test]
    fn only_the_scope_takes_the_new_decisions() {
        let (old_t, new_t) = (world(1000.0), world(100.0));
        let (old, new) = (plan_of(&old_t), plan_of(&new_t));
        let set = |b: &PlanBody, r: &str| {
            b.services[0]
                .regional
                .iter()
                .find(|s| s.region.as_ref().is_some_and(|x| x.as_str() == r))
                .unwrap()
                .clone()
        };
        assert_ne!(set(&old, "ap"), set(&new, "ap"), "the change must move ap");
        let ap = StageScope {
            regions: RegionScope::Only(vec!["ap".into()]),
            pops: None,
            share_ppm: None,
        };
        let staged = merge_stage(&old, &new, &ap, &new_t);
        assert_eq!(set(&staged, "ap"), set(&new, "ap"));
        assert_eq!(set(&staged, "eu"), set(&old, "eu"));
        assert_eq!(staged.services[0].global, old.services[0].global);
        let pop =
            |b: &PlanBody, id: &str| b.pops.iter().find(|p| p.id.as_str() == id).unwrap().clone();
        assert_eq!(pop(&staged, "sin1"), pop(&new, "sin1"));
        assert_eq!(pop(&staged, "fra1"), pop(&old, "fra1"));
        let all = merge_stage(&old, &new, &StageScope::all(), &new_t);
        assert_eq!(all.services, new.services);
        assert_eq!(all.regions, new.regions);
    }

    #[test]
    fn a_pop_list_moves_only_those_pops_bgp() {
        use steer_types::{AnnounceReason, AnnounceState, Announcement};
        let (old_t, new_t) = (world(1000.0), world(100.0));
        let mut old = plan_of(&old_t);
        let mut new = plan_of(&new_t);
        // Make every PoP differ between the two plans, so which side each
        // PoP's state and announcement came from shows.
        for p in &mut new.pops {
            p.weight = 999;
        }
        for (b, state) in [
            (&mut old, AnnounceState::Announce),
            (&mut new, AnnounceState::Withdraw),
        ] {
            b.announcements = b
                .pops
                .iter()
                .map(|p| Announcement {
                    pop: p.id.clone(),
                    prefix: "192.0.2.0/24".parse().unwrap(),
                    state,
                    reason: AnnounceReason::Healthy,
                })
                .collect();
        }
        // BGP of sin1 only, no client region: answers stay as they were.
        let sin1 = StageScope {
            regions: RegionScope::Only(vec![]),
            pops: Some(vec!["sin1".into()]),
            share_ppm: None,
        };
        let staged = merge_stage(&old, &new, &sin1, &new_t);
        assert_eq!(staged.services, old.services);
        assert_eq!(staged.regions, old.regions);
        for a in &staged.announcements {
            let moved = a.state == AnnounceState::Withdraw;
            assert_eq!(moved, a.pop.as_str() == "sin1", "{a:?}");
        }
        for p in &staged.pops {
            assert_eq!(p.weight == 999, p.id.as_str() == "sin1", "{p:?}");
        }
        // Regions with a PoP list: ap's answers, sin1's BGP (not bom1's).
        let ap_sin1 = StageScope {
            regions: RegionScope::Only(vec!["ap".into()]),
            pops: Some(vec!["sin1".into()]),
            share_ppm: None,
        };
        let staged = merge_stage(&old, &new, &ap_sin1, &new_t);
        let bom1 = staged
            .announcements
            .iter()
            .find(|a| a.pop.as_str() == "bom1");
        assert_eq!(bom1.unwrap().state, AnnounceState::Announce);
        assert!(ap_sin1.judges(&"bom1".into(), Some(&"ap".into())));
        assert!(ap_sin1.judges(&"sin1".into(), None));
        assert!(!ap_sin1.judges(&"fra1".into(), Some(&"eu".into())));
        assert_eq!(ap_sin1.describe(), "ap; BGP of sin1");
        assert_eq!(sin1.describe(), "no client region; BGP of sin1");
    }

    #[test]
    fn a_share_puts_the_new_sets_beside_the_old_as_a_canary() {
        let (old_t, new_t) = (world(1000.0), world(100.0));
        let (old, new) = (plan_of(&old_t), plan_of(&new_t));
        let tenth = StageScope {
            regions: RegionScope::Only(vec!["ap".into()]),
            pops: None,
            share_ppm: Some(100_000),
        };
        let staged = merge_stage(&old, &new, &tenth, &new_t);
        // The plan's own decisions are the old config's, BGP included...
        let mut plain = staged.clone();
        plain.services[0].canary = None;
        assert_eq!(plain, old);
        // ...and the canary holds the new set for ap only.
        let c = staged.services[0].canary.as_ref().unwrap();
        assert_eq!(c.share_ppm, 100_000);
        let ap = old.services[0]
            .regional
            .iter()
            .position(|s| s.region.as_ref().is_some_and(|r| r.as_str() == "ap"))
            .unwrap();
        for (i, set) in c.regional.iter().enumerate() {
            assert_eq!(set.is_some(), i == ap, "{i}: {set:?}");
        }
        assert_eq!(
            c.regional[ap].as_ref().unwrap().targets,
            new.services[0].regional[ap].targets
        );
        assert_eq!(c.global, None);
        assert_eq!(tenth.describe(), "10% of client subnets of ap");
        // A share of a change that moves nothing there: no canary at all.
        let same = merge_stage(&old, &old, &tenth, &old_t);
        assert_eq!(same, old);
    }

    #[test]
    fn events_split_by_scope() {
        let per_pop: BTreeMap<String, Events> = [
            ("sin1".to_owned(), events(100, 5)),
            ("bom1".to_owned(), events(100, 5)),
            ("fra1".to_owned(), events(300, 0)),
        ]
        .into();
        let (c, r) = split_events(&per_pop, |p| p == "sin1" || p == "bom1");
        assert_eq!((c, r), (events(200, 10), events(300, 0)));
    }
}
