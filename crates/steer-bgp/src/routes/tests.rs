use std::{net::Ipv4Addr, time::Duration};

use steer_types::{
    AnnounceState, Announcement, PopId,
    bgp::{BgpPeerConfig, BgpSettings, BgpShutdownAction, RouteTags},
};

use super::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|_| panic!("bad prefix {s}"))
}

fn wish(pop: &str, prefix: &str, state: AnnounceState) -> Announcement {
    Announcement {
        pop: PopId::new(pop),
        prefix: net(prefix),
        state,
        reason: steer_types::AnnounceReason::Healthy,
    }
}

fn settings() -> BgpSettings {
    BgpSettings {
        peers: vec![],
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(5),
        graceful_restart: true,
        restart_time: 120,
        on_shutdown: BgpShutdownAction::GracefulRestart,
        graceful_shutdown: Duration::from_secs(5),
        startup_hold: Duration::ZERO,
        add_path: false,
        announce: RouteTags {
            communities: vec![65000 << 16 | 100],
            large_communities: vec![[65000, 0, 100]],
        },
        prepend: RouteTags {
            communities: vec![65000 << 16 | 200],
            large_communities: vec![],
        },
    }
}

fn peer(pop: &str, peer_as: u32) -> BgpPeerConfig {
    BgpPeerConfig {
        pop: PopId::new(pop),
        address: "127.0.0.2"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port: 1179,
        peer_as,
        local_as: 65000,
        router_id: Ipv4Addr::LOCALHOST,
        hold_time: 9,
        passive: false,
        local_address: None,
        next_hop_ipv4: Some(Ipv4Addr::new(192, 0, 2, 11)),
        next_hop_ipv6: "2001:db8::11".parse().ok(),
    }
}

const S: Duration = Duration::from_secs(1);
const PREPEND: AnnounceState = AnnounceState::Prepend { count: 3 };

#[test]
fn diff_sends_only_changes() {
    let a = |path: Vec<u32>| RouteAttrs {
        as_path: path,
        next_hop: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        local_pref: None,
        communities: vec![],
        large_communities: vec![],
    };
    let old: RouteTable = [
        (net("203.0.113.0/24"), a(vec![1])),
        (net("198.51.100.0/24"), a(vec![1])),
    ]
    .into_iter()
    .collect();
    let new: RouteTable = [
        (net("203.0.113.0/24"), a(vec![1, 1])),
        (net("2001:db8::/48"), a(vec![1])),
    ]
    .into_iter()
    .collect();
    let d = diff(&old, &new);
    assert_eq!(
        d.announce,
        vec![
            (net("203.0.113.0/24"), a(vec![1, 1])),
            (net("2001:db8::/48"), a(vec![1]))
        ]
    );
    assert_eq!(d.withdraw, vec![net("198.51.100.0/24")]);
    assert!(diff(&new, &new).is_empty());
    assert_eq!(diff(&new, &RouteTable::new()).withdraw.len(), 2);
}

#[test]
fn phase_machine_lingers_only_on_planned_withdraw() {
    use RoutePhase::*;
    let l = 5 * S;
    // Hard drain / unhealthy: at once.
    assert_eq!(Announced.step(AnnounceState::Withdraw, l, S), Withdrawn);
    // Soft drain: prepend, then graceful shutdown for `l`, then withdraw.
    let p = Announced.step(PREPEND, l, S);
    assert_eq!(p, Prepended { count: 3 });
    let g = p.step(AnnounceState::Withdraw, l, 2 * S);
    assert_eq!(
        g,
        GracefulShutdown {
            count: 3,
            until: 7 * S
        }
    );
    assert_eq!(g.step(AnnounceState::Withdraw, l, 6 * S), g);
    assert_eq!(g.step(AnnounceState::Withdraw, l, 7 * S), Withdrawn);
    // Undrain during the linger: announced again.
    assert_eq!(g.step(AnnounceState::Announce, l, 3 * S), Announced);
    // Linger off: straight to withdrawn.
    assert_eq!(
        p.step(AnnounceState::Withdraw, Duration::ZERO, 2 * S),
        Withdrawn
    );
    assert_eq!(Withdrawn.step(AnnounceState::Announce, l, S), Announced);
}

#[test]
fn tables_carry_path_communities_and_next_hop_per_state() {
    let s = settings();
    let mut r = Routes::default();
    let w = vec![
        wish("fra1", "203.0.113.0/24", AnnounceState::Announce),
        wish("fra1", "2001:db8:ffff::/48", PREPEND),
        wish("ams1", "203.0.113.0/24", AnnounceState::Announce),
        wish("ams1", "2001:db8:ffff::/48", AnnounceState::Announce),
    ];
    assert_eq!(r.apply(&w, 0.5, s.graceful_shutdown, S), Ok(()));
    let t = r.table_for(&peer("fra1", 65001), &s);
    let v4 = &t[&net("203.0.113.0/24")];
    assert_eq!(v4.as_path, vec![65000]);
    assert_eq!(v4.communities, vec![65000 << 16 | 100]);
    assert_eq!(v4.next_hop, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11)));
    let v6 = &t[&net("2001:db8:ffff::/48")];
    assert_eq!(v6.as_path, vec![65000; 4]);
    assert_eq!(v6.communities, vec![65000 << 16 | 200]);
    assert_eq!(v6.next_hop.to_string(), "2001:db8::11");
    // iBGP: no own AS in the path, LOCAL_PREF set.
    let ibgp = r.table_for(&peer("fra1", 65000), &s);
    assert_eq!(ibgp[&net("203.0.113.0/24")].as_path, Vec::<u32>::new());
    assert_eq!(ibgp[&net("203.0.113.0/24")].local_pref, Some(100));

    // Planned withdraw: GRACEFUL_SHUTDOWN until the linger passes.
    let mut w2 = w.clone();
    w2[1].state = AnnounceState::Withdraw;
    assert_eq!(r.apply(&w2, 0.5, s.graceful_shutdown, 2 * S), Ok(()));
    let t = r.table_for(&peer("fra1", 65001), &s);
    assert!(
        t[&net("2001:db8:ffff::/48")]
            .communities
            .contains(&GRACEFUL_SHUTDOWN)
    );
    assert_eq!(r.next_deadline(), Some(7 * S));
    r.tick(s.graceful_shutdown, 7 * S);
    let t = r.table_for(&peer("fra1", 65001), &s);
    assert!(!t.contains_key(&net("2001:db8:ffff::/48")));
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn speaker_rail_refuses_plans_that_withdraw_too_much() {
    let s = settings();
    let mut r = Routes::default();
    let ok = vec![
        wish("fra1", "203.0.113.0/24", AnnounceState::Announce),
        wish("ams1", "203.0.113.0/24", AnnounceState::Announce),
    ];
    assert_eq!(r.apply(&ok, 0.5, s.graceful_shutdown, S), Ok(()));
    let all_gone = vec![
        wish("fra1", "203.0.113.0/24", AnnounceState::Withdraw),
        wish("ams1", "203.0.113.0/24", AnnounceState::Withdraw),
    ];
    let err = r.apply(&all_gone, 0.5, s.graceful_shutdown, 2 * S);
    assert!(err.is_err_and(|e| e.contains("from 0 of 2 PoPs")));
    // Nothing changed: both still announce.
    assert_eq!(
        r.phase("fra1", net("203.0.113.0/24")),
        Some(RoutePhase::Announced)
    );
    assert_eq!(
        r.phase("ams1", net("203.0.113.0/24")),
        Some(RoutePhase::Announced)
    );
    // Half is allowed at share 0.5.
    let half = vec![ok[0].clone(), all_gone[1].clone()];
    assert_eq!(r.apply(&half, 0.5, s.graceful_shutdown, 3 * S), Ok(()));
    assert_eq!(
        r.phase("ams1", net("203.0.113.0/24")),
        Some(RoutePhase::Withdrawn)
    );
}
