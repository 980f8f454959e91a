//! UPDATE messages from route changes, and back (for tests and logs).
//!
//! IPv4 goes in the classic NLRI/withdrawn fields with NEXT_HOP, IPv6 in
//! MP_REACH/MP_UNREACH (RFC 4760). Routes with identical attributes share
//! one UPDATE; long lists are split so no message nears 4096 bytes.

use std::net::IpAddr;

use ipnet::IpNet;
use netgauze_bgp_pkt::{
    BgpMessage,
    community::{Community, LargeCommunity},
    nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress},
    path_attribute::{
        As2PathSegment, As4PathSegment, AsPath, AsPathSegmentType, Communities, LargeCommunities,
        LocalPreference, MpReach, MpUnreach, NextHop, Origin, PathAttribute, PathAttributeValue,
    },
    update::BgpUpdateMessage,
};

use crate::routes::{RouteAttrs, RouteChanges};

/// Prefixes per UPDATE: 17 bytes each at most (v6 /128), well under 4096.
const CHUNK: usize = 200;

fn attr(optional: bool, transitive: bool, value: PathAttributeValue) -> Option<PathAttribute> {
    // Flags are chosen to match each type, so this cannot fail; if it ever
    // did, the attribute is left out rather than crashing the speaker.
    PathAttribute::from(optional, transitive, false, true, value).ok()
}

fn common_attrs(a: &RouteAttrs, asn4: bool) -> Vec<PathAttribute> {
    let as_path = if a.as_path.is_empty() {
        if asn4 {
            AsPath::As4PathSegments(Box::new([]))
        } else {
            AsPath::As2PathSegments(Box::new([]))
        }
    } else if asn4 {
        AsPath::As4PathSegments(Box::new([As4PathSegment::new(
            AsPathSegmentType::AsSequence,
            a.as_path.clone(),
        )]))
    } else {
        // 2-octet peer: ASNs above 65535 become AS_TRANS (RFC 6793).
        let path: Vec<u16> = a
            .as_path
            .iter()
            .map(|&n| u16::try_from(n).unwrap_or(23_456))
            .collect();
        AsPath::As2PathSegments(Box::new([As2PathSegment::new(
            AsPathSegmentType::AsSequence,
            path,
        )]))
    };
    let mut out: Vec<PathAttribute> = [
        attr(false, true, PathAttributeValue::Origin(Origin::IGP)),
        attr(false, true, PathAttributeValue::AsPath(as_path)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Some(lp) = a.local_pref {
        out.extend(attr(
            false,
            true,
            PathAttributeValue::LocalPreference(LocalPreference::new(lp)),
        ));
    }
    if !a.communities.is_empty() {
        let c: Vec<Community> = a.communities.iter().map(|&c| Community::new(c)).collect();
        out.extend(attr(
            true,
            true,
            PathAttributeValue::Communities(Communities::new(c)),
        ));
    }
    if !a.large_communities.is_empty() {
        let c: Vec<LargeCommunity> = a
            .large_communities
            .iter()
            .map(|[g, l1, l2]| LargeCommunity::new(*g, *l1, *l2))
            .collect();
        out.extend(attr(
            true,
            true,
            PathAttributeValue::LargeCommunities(LargeCommunities::new(c)),
        ));
    }
    out
}

fn v4(net: &IpNet) -> Option<Ipv4UnicastAddress> {
    match net {
        IpNet::V4(n) => Ipv4Unicast::from_net(*n)
            .ok()
            .map(Ipv4UnicastAddress::new_no_path_id),
        IpNet::V6(_) => None,
    }
}

fn v6(net: &IpNet) -> Option<Ipv6UnicastAddress> {
    match net {
        IpNet::V6(n) => Ipv6Unicast::from_net(*n)
            .ok()
            .map(|u| Ipv6UnicastAddress::new(None, u)),
        IpNet::V4(_) => None,
    }
}

/// UPDATE messages carrying `changes`; `asn4` when both sides sent the
/// four-octet AS capability.
pub fn build_updates(changes: &RouteChanges, asn4: bool) -> Vec<BgpMessage> {
    let mut out = Vec::new();
    let w4: Vec<Ipv4UnicastAddress> = changes.withdraw.iter().filter_map(v4).collect();
    for chunk in w4.chunks(CHUNK) {
        out.push(BgpUpdateMessage::new(chunk.to_vec(), vec![], vec![]));
    }
    let w6: Vec<Ipv6UnicastAddress> = changes.withdraw.iter().filter_map(v6).collect();
    for chunk in w6.chunks(CHUNK) {
        let unreach = MpUnreach::Ipv6Unicast {
            nlri: chunk.to_vec().into(),
        };
        out.push(BgpUpdateMessage::new(
            vec![],
            attr(true, false, PathAttributeValue::MpUnreach(unreach))
                .into_iter()
                .collect::<Vec<_>>(),
            vec![],
        ));
    }

    // Group by attributes so equal routes share a message.
    let mut groups: std::collections::BTreeMap<&RouteAttrs, Vec<IpNet>> = Default::default();
    for (p, a) in &changes.announce {
        groups.entry(a).or_default().push(*p);
    }
    for (a, prefixes) in groups {
        let base = common_attrs(a, asn4);
        let n4: Vec<Ipv4UnicastAddress> = prefixes.iter().filter_map(v4).collect();
        if let IpAddr::V4(nh) = a.next_hop {
            for chunk in n4.chunks(CHUNK) {
                let mut attrs = base.clone();
                attrs.extend(attr(
                    false,
                    true,
                    PathAttributeValue::NextHop(NextHop::new(nh)),
                ));
                out.push(BgpUpdateMessage::new(vec![], attrs, chunk.to_vec()));
            }
        }
        let n6: Vec<Ipv6UnicastAddress> = prefixes.iter().filter_map(v6).collect();
        if let IpAddr::V6(nh) = a.next_hop {
            for chunk in n6.chunks(CHUNK) {
                let mut attrs = base.clone();
                attrs.extend(attr(
                    true,
                    false,
                    PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                        next_hop_global: nh,
                        next_hop_local: None,
                        nlri: chunk.to_vec().into(),
                    }),
                ));
                out.push(BgpUpdateMessage::new(vec![], attrs, vec![]));
            }
        }
    }
    out.into_iter().map(BgpMessage::Update).collect()
}

/// End-of-RIB markers (RFC 4724): an empty UPDATE for IPv4 unicast and an
/// empty MP_UNREACH for IPv6 unicast.
pub fn end_of_rib(ipv4: bool, ipv6: bool) -> Vec<BgpMessage> {
    let mut out = Vec::new();
    if ipv4 {
        out.push(BgpUpdateMessage::new(vec![], vec![], vec![]));
    }
    if ipv6 {
        let unreach = MpUnreach::Ipv6Unicast { nlri: Box::new([]) };
        out.push(BgpUpdateMessage::new(
            vec![],
            attr(true, false, PathAttributeValue::MpUnreach(unreach))
                .into_iter()
                .collect::<Vec<_>>(),
            vec![],
        ));
    }
    out.into_iter().map(BgpMessage::Update).collect()
}

/// Reads routes back out of an UPDATE: (announced, withdrawn). Attributes
/// this speaker never sends are ignored.
pub fn routes_in(msg: &BgpUpdateMessage) -> (Vec<(IpNet, RouteAttrs)>, Vec<IpNet>) {
    let mut withdrawn: Vec<IpNet> = msg
        .withdraw_routes()
        .iter()
        .map(|a| IpNet::V4(a.network().address()))
        .collect();
    let mut as_path = Vec::new();
    let mut next_hop = None;
    let mut local_pref = None;
    let mut communities = Vec::new();
    let mut large_communities = Vec::new();
    let mut reach6: Vec<IpNet> = Vec::new();
    for a in msg.path_attributes() {
        match a.value() {
            PathAttributeValue::AsPath(p) => as_path = Vec::<u32>::from(p.clone()),
            PathAttributeValue::NextHop(nh) => next_hop = Some(IpAddr::V4(nh.next_hop())),
            PathAttributeValue::LocalPreference(lp) => local_pref = Some(lp.metric()),
            PathAttributeValue::Communities(c) => {
                communities = c.communities().iter().map(|c| c.value()).collect();
            }
            PathAttributeValue::LargeCommunities(c) => {
                large_communities = c
                    .communities()
                    .iter()
                    .map(|c| [c.global_admin(), c.local_data1(), c.local_data2()])
                    .collect();
            }
            PathAttributeValue::MpReach(MpReach::Ipv6Unicast {
                next_hop_global,
                nlri,
                ..
            }) => {
                next_hop = Some(IpAddr::V6(*next_hop_global));
                reach6 = nlri
                    .iter()
                    .map(|a| IpNet::V6(a.network().address()))
                    .collect();
            }
            PathAttributeValue::MpUnreach(MpUnreach::Ipv6Unicast { nlri }) => {
                withdrawn.extend(nlri.iter().map(|a| IpNet::V6(a.network().address())));
            }
            _ => {}
        }
    }
    let mut announced = Vec::new();
    if let Some(next_hop) = next_hop {
        let attrs = RouteAttrs {
            as_path,
            next_hop,
            local_pref,
            communities,
            large_communities,
        };
        for p in msg
            .nlri()
            .iter()
            .map(|a| IpNet::V4(a.network().address()))
            .chain(reach6)
        {
            announced.push((p, attrs.clone()));
        }
    }
    (announced, withdrawn)
}
