use super::*;
use steer_types::{Degradation, PopHealth, PopId, RegionId};

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
    let (applied, plan) = f.apply(&full(v(1, 1), &a)).expect("full applies");
    assert_eq!(applied, Applied::New);
    assert_eq!(plan.map(|p| p.body), Some(a.clone()));
    let up = delta(v(1, 1), v(1, 2), &a, &b);
    assert_eq!(up.changed.len(), 1, "only fra1's entry changed");
    let (_, plan) = f.apply(&up).expect("delta applies");
    assert_eq!(plan.map(|p| (p.version, p.body)), Some((2, b)));
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
    let (_, plan) = f.apply(&up).expect("delta");
    assert_eq!(plan.map(|p| p.body), Some(b));
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
    assert_eq!(
        f.apply(&full(v(1, 1), &a)).expect("resend").0,
        Applied::Same
    );
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
