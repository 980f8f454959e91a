use super::*;
use steer_types::{Degradation, PopHealth, PopId, PopPlan, RegionId, RegionPlan};

fn body(pops: &[(&str, bool)]) -> PlanBody {
    PlanBody {
        services: Vec::new(),
        pops: pops
            .iter()
            .map(|(id, usable)| PopPlan {
                id: PopId::from(*id),
                region: RegionId::from("eu"),
                health: PopHealth::Up,
                usable: *usable,
                drained_by: (!usable).then(|| "d1".to_owned()),
                weight: 500,
                service_drains: Vec::new(),
                at_target: false,
                budget_moves: Vec::new(),
            })
            .collect(),
        regions: vec![RegionPlan {
            id: RegionId::from("eu"),
            served_by: vec![RegionId::from("eu")],
            level: Degradation::Normal,
        }],
        announcements: Vec::new(),
        rails: Vec::new(),
    }
}

fn v(epoch: u64, sequence: u64) -> PlanVersion {
    PlanVersion { epoch, sequence }
}

fn full(version: PlanVersion, b: &PlanBody) -> Update {
    full_update(version, Timestamp::from_unix_ms(0), &PlanContent::encode(b))
}

fn delta(base: PlanVersion, version: PlanVersion, old: &PlanBody, new: &PlanBody) -> Update {
    let (o, n) = (PlanContent::encode(old), PlanContent::encode(new));
    let d = o.delta_to(&n);
    Update {
        version,
        computed_at: Timestamp::from_unix_ms(0),
        base: Some(base),
        changed: d.changed,
        removed: d.removed,
        sha256: n.sha256(),
    }
}

#[test]
fn full_then_delta_round_trips_the_body() {
    let a = body(&[("fra1", true), ("ams1", true)]);
    let b = body(&[("fra1", false), ("ams1", true)]);
    let mut f = Follower::default();
    let applied = f.apply(&full(v(1, 1), &a)).expect("full applies");
    assert_eq!(applied, Applied::New);
    assert_eq!(f.plan().map(|p| p.body), Some(a.clone()));
    let up = delta(v(1, 1), v(1, 2), &a, &b);
    assert_eq!(up.changed.len(), 1, "only fra1's entry changed");
    f.apply(&up).expect("delta applies");
    assert_eq!(f.plan().map(|p| (p.version, p.body)), Some((2, b)));
    assert_eq!(f.version(), Some(v(1, 2)));
}

#[test]
fn removals_and_layout_keep_topology_order() {
    let a = body(&[("fra1", true), ("ams1", true), ("lhr1", true)]);
    let b = body(&[("lhr1", true), ("fra1", true)]);
    let mut f = Follower::default();
    f.apply(&full(v(1, 1), &a)).expect("full");
    let up = delta(v(1, 1), v(1, 2), &a, &b);
    assert_eq!(up.removed, vec!["pop/ams1".to_owned()]);
    f.apply(&up).expect("delta");
    assert_eq!(f.plan().map(|p| p.body), Some(b));
}

#[test]
fn an_older_sequence_or_epoch_is_refused_and_changes_nothing() {
    let a = body(&[("fra1", true)]);
    let b = body(&[("fra1", false)]);
    let mut f = Follower::default();
    f.apply(&full(v(2, 5), &a)).expect("full");
    let err = f.apply(&full(v(2, 4), &b)).expect_err("lower sequence");
    assert_eq!(err.label(), "backwards");
    let err = f.apply(&full(v(1, 99), &b)).expect_err("older epoch");
    assert!(matches!(err, Refusal::Backwards { .. }));
    assert_eq!(f.version(), Some(v(2, 5)));
    assert_eq!(
        f.content().map(PlanContent::decode).and_then(Result::ok),
        Some(a)
    );
    // A new epoch orders after any sequence of the old one.
    f.apply(&full(v(3, 1), &b)).expect("newer epoch");
    assert_eq!(f.version(), Some(v(3, 1)));
}

#[test]
fn a_hash_mismatch_is_refused_and_changes_nothing() {
    let a = body(&[("fra1", true)]);
    let b = body(&[("fra1", false)]);
    let mut f = Follower::default();
    f.apply(&full(v(1, 1), &a)).expect("full");
    let mut up = delta(v(1, 1), v(1, 2), &a, &b);
    up.sha256[0] ^= 1;
    let err = f.apply(&up).expect_err("bad hash");
    assert_eq!(err.label(), "hash_mismatch");
    assert_eq!(f.version(), Some(v(1, 1)));
    // A tampered entry under the right hash is refused too.
    let mut up = delta(v(1, 1), v(1, 2), &a, &b);
    if let Some((_, body)) = up.changed.first_mut() {
        *body = Arc::from(&b"{}"[..]);
    }
    assert_eq!(f.apply(&up).expect_err("tampered").label(), "hash_mismatch");
}

#[test]
fn a_delta_on_the_wrong_base_needs_a_full_plan() {
    let a = body(&[("fra1", true)]);
    let b = body(&[("fra1", false)]);
    let mut f = Follower::default();
    assert_eq!(
        f.apply(&delta(v(1, 1), v(1, 2), &a, &b))
            .expect_err("no base held")
            .label(),
        "wrong_base"
    );
    f.apply(&full(v(1, 1), &a)).expect("full");
    assert_eq!(
        f.apply(&delta(v(1, 3), v(1, 4), &a, &b))
            .expect_err("other base")
            .label(),
        "wrong_base"
    );
}

#[test]
fn a_resend_of_the_held_version_is_a_no_op_and_other_content_is_refused() {
    let a = body(&[("fra1", true)]);
    let b = body(&[("fra1", false)]);
    let mut f = Follower::default();
    f.apply(&full(v(1, 1), &a)).expect("full");
    assert_eq!(f.apply(&full(v(1, 1), &a)).expect("resend"), Applied::Same);
    assert!(f.apply(&full(v(1, 1), &b)).is_err());
}

#[test]
fn the_hash_covers_content_not_version_and_is_stable() {
    let a = PlanContent::encode(&body(&[("fra1", true)]));
    let again = PlanContent::encode(&body(&[("fra1", true)]));
    assert_eq!(a.sha256(), again.sha256());
    assert_ne!(
        a.sha256(),
        PlanContent::encode(&body(&[("fra1", false)])).sha256()
    );
}

/// A world of `regions` regions with two PoPs each, `services` services
/// answering every region from its own PoPs; `drained` PoP out.
fn world(regions: usize, services: usize, drained: Option<&str>) -> PlanBody {
    use steer_types::{AnswerSet, ServiceId, ServicePlan, WeightedTarget};
    let pop_ids: Vec<(String, usize)> = (0..regions)
        .flat_map(|r| [(format!("p{r}a"), r), (format!("p{r}b"), r)])
        .collect();
    let usable = |p: &str| drained != Some(p);
    let set = |region: Option<usize>| {
        let targets: Vec<WeightedTarget> = pop_ids
            .iter()
            .filter(|(p, r)| region.is_none_or(|x| x == *r) && usable(p))
            .map(|(p, _)| WeightedTarget {
                pop: PopId::from(p.as_str()),
                weight: 500,
                ipv4: Some(std::net::Ipv4Addr::new(192, 0, 2, 1)),
                ipv6: None,
            })
            .collect();
        AnswerSet {
            region: region.map(|r| RegionId::from(format!("r{r}").as_str())),
            targets,
            reason: steer_types::SetReason::default(),
        }
    };
    PlanBody {
        services: (0..services)
            .map(|s| ServicePlan {
                id: ServiceId::from(format!("s{s}").as_str()),
                fqdn: format!("s{s}.example.test."),
                ttl: 30,
                max_records: 2,
                regional: (0..regions).map(|r| set(Some(r))).collect(),
                global: set(Some(0)),
                canary: None,
            })
            .collect(),
        pops: pop_ids
            .iter()
            .map(|(p, r)| PopPlan {
                id: PopId::from(p.as_str()),
                region: RegionId::from(format!("r{r}").as_str()),
                health: PopHealth::Up,
                usable: usable(p),
                drained_by: (!usable(p)).then(|| "d1".to_owned()),
                weight: 500,
                service_drains: Vec::new(),
                at_target: false,
                budget_moves: Vec::new(),
            })
            .collect(),
        regions: (0..regions)
            .map(|r| RegionPlan {
                id: RegionId::from(format!("r{r}").as_str()),
                served_by: Vec::new(),
                level: Degradation::Normal,
            })
            .collect(),
        announcements: Vec::new(),
        rails: Vec::new(),
    }
}

#[test]
fn a_pop_drain_is_a_small_delta_keyed_per_service_and_region() {
    let before = world(100, 10, None);
    let after = world(100, 10, Some("p7a"));
    let (old, new) = (PlanContent::encode(&before), PlanContent::encode(&after));
    let d = old.delta_to(&new);
    // The PoP itself and its region's set of each service.
    assert_eq!(
        d.changed.len(),
        1 + 10,
        "{:?}",
        d.changed.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    assert!(d.changed.iter().any(|(k, _)| k == "set/s3/r7"));
    assert!(
        d.size() * 100 < new.size(),
        "delta {} bytes of {}",
        d.size(),
        new.size()
    );
    // Round trip through a follower gives the same body, in plan order.
    let mut f = Follower::default();
    f.apply(&full(v(1, 1), &before)).expect("full");
    f.apply(&delta(v(1, 1), v(1, 2), &before, &after))
        .expect("delta");
    assert_eq!(f.plan().map(|p| p.body), Some(after));
}

/// A canary by client subnets travels in its service's meta: it comes,
/// changes and goes by delta, and a bad one refuses the plan.
#[test]
fn a_canary_comes_and_goes_by_delta_and_round_trips() {
    let before = world(3, 2, None);
    let mut during = before.clone();
    let mut canary_set = before.services[0].regional[1].clone();
    canary_set.targets.truncate(1);
    during.services[0].canary = Some(steer_types::Canary {
        share_ppm: 50_000,
        regional: vec![None, Some(canary_set), None],
        global: Some(before.services[0].global.clone()),
    });
    let mut moved = during.clone();
    if let Some(c) = &mut moved.services[0].canary {
        c.share_ppm = 100_000;
    }
    let mut f = Follower::default();
    f.apply(&full(v(1, 1), &before)).expect("full");
    f.apply(&delta(v(1, 1), v(1, 2), &before, &during))
        .expect("canary in");
    assert_eq!(f.plan().map(|p| p.body), Some(during.clone()));
    f.apply(&delta(v(1, 2), v(1, 3), &during, &moved))
        .expect("canary moved");
    assert_eq!(f.plan().map(|p| p.body), Some(moved.clone()));
    f.apply(&delta(v(1, 3), v(1, 4), &moved, &before))
        .expect("canary out");
    assert_eq!(f.plan().map(|p| p.body), Some(before.clone()));
    // Out-of-range shares and sets that name no region do not decode.
    for bad in [0, 1_000_000] {
        let mut b = during.clone();
        if let Some(c) = &mut b.services[0].canary {
            c.share_ppm = bad;
        }
        assert!(PlanContent::encode(&b).decode().is_err(), "{bad} ppm");
    }
    let mut b = during.clone();
    if let Some(c) = &mut b.services[0].canary {
        c.regional.push(Some(before.services[0].global.clone()));
    }
    assert!(
        PlanContent::encode(&b).decode().is_err(),
        "set past the regions"
    );
}

/// Every typed decision and reason survives the wire (proto) unchanged.
#[test]
fn every_reason_round_trips_through_the_typed_entries() {
    use steer_types::{
        AnnounceReason, AnnounceState, Announcement, RailFired, SetBasis, SetReason, SoftDrainPhase,
    };
    let mut b = world(3, 2, Some("p1a"));
    let bases = [
        SetBasis::WaterFilled {
            target_pct: 80,
            spilled: true,
            shed: false,
        },
        SetBasis::OwnRegion { usable: 2 },
        SetBasis::SpilledTo {
            region: RegionId::from("r2"),
            usable: 1,
        },
        SetBasis::UnmappedByHeadroom,
        SetBasis::UnmappedByCapacity { usable: 5 },
        SetBasis::FailStatic,
        SetBasis::AllDrained,
        SetBasis::External,
    ];
    let sets = b
        .services
        .iter_mut()
        .flat_map(|s| s.regional.iter_mut().chain(std::iter::once(&mut s.global)));
    for (set, basis) in sets.zip(bases.iter().cycle()) {
        set.reason = SetReason {
            basis: basis.clone(),
            panic: true,
            overrides: vec![(PopId::from("p0a"), 250)],
            ramping: true,
        };
    }
    b.services[0].global.targets[0].ipv6 = Some("2001:db8::1".parse().expect("v6"));
    b.regions[1].level = Degradation::Shed;
    b.pops[1].health = PopHealth::StaleDown;
    b.pops[1].service_drains = vec![steer_types::ServiceDrain {
        service: steer_types::ServiceId::from("s1"),
        drain: "d9".to_owned(),
    }];
    let prefix: ipnet::IpNet = "203.0.113.0/24".parse().expect("prefix");
    let reasons = [
        (AnnounceState::Announce, AnnounceReason::Healthy),
        (
            AnnounceState::Withdraw,
            AnnounceReason::Unhealthy {
                health: PopHealth::Down,
            },
        ),
        (
            AnnounceState::Withdraw,
            AnnounceReason::HardDrain {
                intent: "d1".to_owned(),
            },
        ),
        (
            AnnounceState::Prepend { count: 3 },
            AnnounceReason::SoftDrain {
                intent: "d2".to_owned(),
                phase: SoftDrainPhase::Prepend,
            },
        ),
        (
            AnnounceState::Prepend { count: 3 },
            AnnounceReason::MinAnnounceRail {
                min: 2,
                of: 4,
                wished: Box::new(AnnounceReason::HardDrain {
                    intent: "d3".to_owned(),
                }),
            },
        ),
    ];
    b.announcements = reasons
        .iter()
        .enumerate()
        .map(|(i, (state, reason))| Announcement {
            pop: PopId::from(format!("p{i}a").as_str()),
            prefix,
            state: *state,
            reason: reason.clone(),
        })
        .collect();
    b.rails = vec![
        RailFired::WeightStep {
            service: steer_types::ServiceId::from("s0"),
            region: None,
            pop: PopId::from("p0a"),
            held: 120,
        },
        RailFired::MinAnnounce {
            pop: PopId::from("p4a"),
            prefix,
            state: AnnounceState::Prepend { count: 3 },
            min: 2,
            of: 4,
        },
    ];
    let content = PlanContent::encode(&b);
    assert_eq!(content.decode().expect("decodes"), b);
}

/// One service whose set for unmapped clients lists every usable PoP of
/// `pops`, as the policy's does, with per-mille weights.
fn wide(pops: usize, drained: &[usize]) -> PlanBody {
    use steer_types::{ServiceId, ServicePlan, WeightedTarget};
    let mut b = body(&[]);
    b.pops = (0..pops)
        .map(|i| PopPlan {
            id: PopId::from(format!("p{i:03}").as_str()),
            region: RegionId::from("eu"),
            health: PopHealth::Up,
            usable: !drained.contains(&i),
            drained_by: drained.contains(&i).then(|| "d1".to_owned()),
            weight: 500,
            service_drains: Vec::new(),
            at_target: false,
            budget_moves: Vec::new(),
        })
        .collect();
    let usable: Vec<usize> = (0..pops).filter(|i| !drained.contains(i)).collect();
    let n = usable.len() as u32;
    let targets = usable
        .iter()
        .enumerate()
        .map(|(k, &i)| WeightedTarget {
            pop: PopId::from(format!("p{i:03}").as_str()),
            // Largest remainder by position, as the policy's apportion.
            weight: 1000 / n + u32::from((k as u32) < 1000 % n),
            ipv4: Some(std::net::Ipv4Addr::new(198, 18, 0, i as u8)),
            ipv6: None,
        })
        .collect();
    b.services = vec![ServicePlan {
        id: ServiceId::from("app"),
        fqdn: "app.example.test.".to_owned(),
        ttl: 30,
        max_records: 2,
        regional: Vec::new(),
        global: AnswerSet {
            region: None,
            targets,
            reason: steer_types::SetReason::new(steer_types::SetBasis::UnmappedByCapacity {
                usable: n,
            }),
        },
        canary: None,
    }];
    b
}

#[test]
fn a_large_set_travels_in_chunks_and_a_drain_resends_only_the_touched_ones() {
    // 200 PoPs: weights 5 each; draining p150 moves only p150 (gone) and
    // the remainder to the first PoPs, so chunks 0 and 9 change.
    let (before, after) = (wide(200, &[]), wide(200, &[150]));
    let (old, new) = (PlanContent::encode(&before), PlanContent::encode(&after));
    let chunks = new.entries.keys().filter(|k| k.contains("/~")).count();
    assert_eq!(chunks, 200 / CHUNK_SPAN + 1, "the set is cut in chunks");
    let d = old.delta_to(&new);
    let keys: Vec<&str> = d.changed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec!["pop/p150", "set/app", "set/app/~0", "set/app/~9"],
        "the PoP, the set's head (its reason counts usable PoPs) and two chunks"
    );
    assert!(d.size() * 5 < new.size(), "{} of {}", d.size(), new.size());
    let mut f = Follower::default();
    f.apply(&full(v(1, 1), &before)).expect("full");
    f.apply(&delta(v(1, 1), v(1, 2), &before, &after))
        .expect("delta");
    assert_eq!(f.plan().map(|p| p.body), Some(after.clone()));
    assert_eq!(f.content(), Some(&new));
    assert_eq!(f.content_hash(), Some(new.sha256()));

    // A whole chunk drained: its entry goes, the head lists one fewer.
    let gone: Vec<usize> = (16..32).collect();
    let emptied = wide(200, &gone);
    let d = new.delta_to(&PlanContent::encode(&emptied));
    assert!(d.removed.contains(&"set/app/~1".to_owned()), "{d:?}");
    f.apply(&delta(v(1, 2), v(1, 3), &after, &emptied))
        .expect("delta");
    assert_eq!(f.plan().map(|p| p.body), Some(emptied.clone()));
    // And back.
    f.apply(&delta(v(1, 3), v(1, 4), &emptied, &before))
        .expect("delta");
    assert_eq!(f.plan().map(|p| p.body), Some(before));
}

#[test]
fn a_set_out_of_layout_order_travels_whole_and_still_round_trips() {
    let mut b = wide(40, &[]);
    b.services[0].global.targets.reverse();
    let content = PlanContent::encode(&b);
    assert!(!content.entries.keys().any(|k| k.contains("/~")));
    assert_eq!(content.decode().expect("decodes"), b);
}

#[test]
fn a_refused_delta_leaves_the_follower_as_it_was_and_the_next_good_one_applies() {
    let (a, b) = (wide(100, &[]), wide(100, &[3]));
    let mut f = Follower::default();
    f.apply(&full(v(1, 1), &a)).expect("full");
    let (plan, hash, content) = (f.plan(), f.content_hash(), f.content().cloned());
    let check = |f: &Follower| {
        assert_eq!(f.version(), Some(v(1, 1)));
        assert_eq!(f.plan(), plan);
        assert_eq!(f.content_hash(), hash);
        assert_eq!(f.content().cloned(), content);
    };
    // A chunk's body tampered under the right hash.
    let mut up = delta(v(1, 1), v(1, 2), &a, &b);
    for (k, body) in &mut up.changed {
        if k.contains("/~") {
            *body = Arc::from(&b"\x0a\x01x"[..]);
        }
    }
    assert_eq!(f.apply(&up).expect_err("tampered").label(), "hash_mismatch");
    check(&f);
    // Bytes that hash right but do not decode (a controller's bug).
    let mut up = delta(v(1, 1), v(1, 2), &a, &b);
    let mut content_b = PlanContent::encode(&b);
    for (k, body) in &mut up.changed {
        if k == "pop/p003" {
            *body = Arc::from(&b"\xff\xff"[..]);
            content_b.entries.insert(k.clone(), body.clone());
        }
    }
    up.sha256 = content_b.sha256();
    assert_eq!(f.apply(&up).expect_err("garbage").label(), "undecodable");
    check(&f);
    // A chunk removed that the set still lists.
    let mut up = delta(v(1, 1), v(1, 2), &a, &b);
    up.changed.retain(|(k, _)| k != "set/app/~0");
    up.removed.push("set/app/~0".to_owned());
    let mut content_b = PlanContent::encode(&b);
    content_b.entries.remove("set/app/~0");
    up.sha256 = content_b.sha256();
    assert_eq!(f.apply(&up).expect_err("missing").label(), "undecodable");
    check(&f);
    f.apply(&delta(v(1, 1), v(1, 2), &a, &b))
        .expect("good delta");
    assert_eq!(f.plan().map(|p| p.body), Some(b));
}

#[test]
fn the_hash_changes_with_any_key_or_body_byte() {
    let c = PlanContent::encode(&wide(40, &[]));
    let h = c.sha256();
    for (k, body) in c.entries.iter().take(20) {
        let mut other = c.clone();
        let mut flipped = body.to_vec();
        if let Some(b) = flipped.last_mut() {
            *b ^= 1;
        }
        other.entries.insert(k.clone(), Arc::from(flipped));
        assert_ne!(other.sha256(), h, "body of {k}");
        let mut renamed = c.clone();
        if let Some(v) = renamed.entries.remove(k) {
            renamed.entries.insert(format!("{k}x"), v);
        }
        assert_ne!(renamed.sha256(), h, "key {k}");
    }
    let mut emptied = c.clone();
    emptied
        .entries
        .insert("extra".to_owned(), Arc::from(&b""[..]));
    assert_ne!(emptied.sha256(), h, "an extra empty entry");
    assert_ne!(PlanContent::default().sha256(), h);
}

mod random;
