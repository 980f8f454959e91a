//! Property: every UPDATE we build survives the wire (netgauze's own codec,
//! four-octet AS) and reads back as exactly the routes we meant to send.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use bytes::BytesMut;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netgauze_bgp_pkt::{BgpMessage, codec::BgpCodec};
use proptest::prelude::*;
use steer_bgp::{
    routes::{RouteAttrs, RouteChanges},
    update::{build_updates, end_of_rib, routes_in},
};
use tokio_util::codec::{Decoder, Encoder};

fn v4net() -> impl Strategy<Value = IpNet> {
    (1u8..224, any::<u8>(), any::<u8>(), 8u8..=32).prop_map(|(a, b, c, len)| {
        IpNet::V4(
            Ipv4Net::new(Ipv4Addr::new(a, b, c, 0), len)
                .unwrap()
                .trunc(),
        )
    })
}

fn v6net() -> impl Strategy<Value = IpNet> {
    (any::<u16>(), any::<u16>(), 16u8..=64).prop_map(|(a, b, len)| {
        IpNet::V6(
            Ipv6Net::new(Ipv6Addr::new(0x2001, 0xdb8, a, b, 0, 0, 0, 0), len)
                .unwrap()
                .trunc(),
        )
    })
}

fn attrs(v6: bool) -> impl Strategy<Value = RouteAttrs> {
    (
        prop::collection::vec(1u32..4_000_000_000, 0..6),
        any::<[u8; 4]>(),
        prop::option::of(any::<u32>()),
        prop::collection::vec(any::<u32>(), 0..4),
        prop::collection::vec(any::<[u32; 3]>(), 0..3),
    )
        .prop_map(
            move |(as_path, nh, local_pref, communities, large)| RouteAttrs {
                as_path,
                next_hop: if v6 {
                    IpAddr::V6(Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        0,
                        0,
                        0,
                        0,
                        u16::from(nh[0]),
                        1,
                    ))
                } else {
                    IpAddr::V4(Ipv4Addr::from(nh))
                },
                local_pref,
                communities,
                large_communities: large,
            },
        )
}

fn changes() -> impl Strategy<Value = RouteChanges> {
    (
        prop::collection::btree_map(v4net(), attrs(false), 0..40),
        prop::collection::btree_map(v6net(), attrs(true), 0..40),
        prop::collection::btree_set(prop_oneof![v4net(), v6net()], 0..40),
    )
        .prop_map(|(a4, a6, w)| {
            let announce: BTreeMap<IpNet, RouteAttrs> = a4.into_iter().chain(a6).collect();
            RouteChanges {
                withdraw: w
                    .into_iter()
                    .filter(|p| !announce.contains_key(p))
                    .collect(),
                announce: announce.into_iter().collect(),
            }
        })
}

fn roundtrip(msg: &BgpMessage) -> BgpMessage {
    let mut codec = BgpCodec::new(true);
    let mut buf = BytesMut::new();
    codec.encode(msg.clone(), &mut buf).unwrap();
    assert!(buf.len() <= 4096, "UPDATE of {} bytes", buf.len());
    let (back, _) = codec.decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    back
}

proptest! {
    #[test]
    fn updates_roundtrip_to_the_same_routes(c in changes()) {
        let mut announced = BTreeMap::new();
        let mut withdrawn = Vec::new();
        for m in build_updates(&c, true) {
            let back = roundtrip(&m);
            prop_assert_eq!(&back, &m);
            let BgpMessage::Update(u) = back else { panic!("not an UPDATE") };
            let (a, w) = routes_in(&u);
            announced.extend(a);
            withdrawn.extend(w);
        }
        let want: BTreeMap<IpNet, RouteAttrs> = c.announce.iter().cloned().collect();
        prop_assert_eq!(announced, want);
        withdrawn.sort();
        let mut want_w = c.withdraw.clone();
        want_w.sort();
        prop_assert_eq!(withdrawn, want_w);
    }
}

#[test]
fn end_of_rib_markers_decode_as_such() {
    for m in end_of_rib(true, true) {
        let BgpMessage::Update(u) = roundtrip(&m) else {
            panic!("not an UPDATE")
        };
        assert!(u.end_of_rib().is_some(), "{u:?}");
    }
}

/// A valid BGP header in front of arbitrary bytes: the codec must return a
/// message or an error, never panic.
fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
    (2u8..=5, prop::collection::vec(any::<u8>(), 0..200)).prop_map(|(kind, body)| {
        let mut v = vec![0xff; 16];
        v.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        v.push(kind);
        v.extend(body);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn decoder_never_panics_on_peer_input(
        bytes in prop_oneof![framed_garbage(), prop::collection::vec(any::<u8>(), 0..300)],
        asn4 in any::<bool>(),
    ) {
        let mut codec = BgpCodec::new(asn4);
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = codec.decode(&mut buf);
    }
}
