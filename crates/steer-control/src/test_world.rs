//! A small world (two regions, four PoPs, one anycast service) shared by
//! the control loop's unit tests.

use std::time::Duration;

use steer_health::{Observation, ObservedReport};
use steer_types::{PopId, ServiceId, Topology};

pub(crate) fn topology() -> Topology {
    let region = |id: &str, fb: [&str; 2]| steer_types::Region {
        id: id.into(),
        fallback: fb.iter().map(|f| (*f).into()).collect(),
    };
    let pops = [
        ("fra1", "eu-west"),
        ("ams1", "eu-west"),
        ("iad1", "us-east"),
        ("ord1", "us-east"),
    ];
    Topology {
        regions: vec![
            region("eu-west", ["us-east", "us-east"]),
            region("us-east", ["eu-west", "eu-west"]),
        ],
        pops: pops
            .iter()
            .enumerate()
            .map(|(i, (id, r))| steer_types::Pop {
                id: (*id).into(),
                region: (*r).into(),
                ipv4: Some(std::net::Ipv4Addr::new(192, 0, 2, i as u8 + 1)),
                ipv6: None,
                capacity_rps: 10_000.0,
            })
            .collect(),
        services: vec![steer_types::Service {
            id: "app".into(),
            fqdn: "app.example.test.".into(),
            ttl: 30,
            max_records: 2,
            pops: pops.iter().map(|(id, _)| PopId::new(id)).collect(),
            anycast: vec!["203.0.113.0/24".parse().unwrap()],
            priority: 0,
            demand_estimate: Default::default(),
        }],
        client_networks: vec![],
        health: steer_types::HealthSettings {
            unknown_health: steer_types::UnknownHealth::AssumeUp,
            stale_after: Duration::from_secs(10),
            max_stale: Duration::from_secs(60),
            rise: 2,
            fall: 2,
            guards: Default::default(),
        },
        policy: Default::default(),
    }
}

pub(crate) fn report(pop: &str, up: bool, load: f64) -> ObservedReport {
    ObservedReport {
        pop: PopId::new(pop),
        services: vec![(
            ServiceId::new("app"),
            if up {
                Observation::Up
            } else {
                Observation::Down
            },
        )],
        load_rps: load,
        capacity_rps: None,
        evidence: String::new(),
        load: Default::default(),
        peers: Vec::new(),
        sli: Vec::new(),
        region_load: Default::default(),
    }
}

/// A forced hard drain of `pop` through the loop's command path; the plan
/// version it produced, or the loop's refusal.
pub(crate) fn hard_drain(
    c: &mut crate::ControlLoop,
    pop: &str,
    reason: &str,
) -> Result<u64, steer_command::ApiError> {
    let (reply, mut rx) = tokio::sync::oneshot::channel();
    c.handle(steer_command::ApiCommand::Drain {
        cmd: steer_command::DrainCommand {
            scope: steer_types::DrainScope::Pop {
                pop: PopId::new(pop),
            },
            mode: steer_types::DrainMode::Hard,
            ramp: Duration::ZERO,
            expires_in: None,
            reason: reason.into(),
            principal: "alice".into(),
            dry_run: false,
            force: true,
            emergency: false,
        },
        reply,
    });
    rx.try_recv()
        .unwrap_or_else(|e| panic!("the loop did not answer: {e}"))
        .map(|o| o.plan_version)
}
