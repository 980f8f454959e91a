//! Client networks to regions on the query path: the longest configured
//! network that holds a client's subnet, found with one hash probe per
//! prefix length in use, longest first. A region map names a few lengths
//! (/16 and /48, say), and walking the prefix trie instead cost about as
//! much as the rest of a steered answer's selection. With more lengths
//! than [`MAX_LENGTHS`] in a family the trie decides (the caller's
//! fallback).

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;

use crate::names::FastHash;

/// Prefix lengths per family beyond which the probes would cost more than
/// the trie walk.
pub(crate) const MAX_LENGTHS: usize = 8;

/// The networks of one prefix length, by their address bits.
type Nets<K> = (u8, HashMap<K, usize, FastHash>);

/// Networks of one family by prefix length, longest first (`None`: too
/// many lengths).
type ByLength<K> = Option<Vec<Nets<K>>>;

#[derive(Default)]
pub(crate) struct NetMap {
    v4: ByLength<u32>,
    v6: ByLength<u128>,
}

/// What the flat map says of a client subnet.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The longest network holding it: its value and prefix length.
    Found(usize, u8),
    /// No network holds it.
    Missing,
    /// Its family has too many prefix lengths: ask the trie.
    Unindexed,
}

impl NetMap {
    /// The map of `networks` (a later duplicate replaces an earlier one,
    /// as in the trie).
    pub(crate) fn new<'a>(networks: impl IntoIterator<Item = (&'a IpNet, usize)>) -> Self {
        let mut v4: Vec<Nets<u32>> = Vec::new();
        let mut v6: Vec<Nets<u128>> = Vec::new();
        for (net, value) in networks {
            let len = net.prefix_len();
            match net.trunc() {
                IpNet::V4(n) => slot(&mut v4, len).insert(u32::from(n.network()), value),
                IpNet::V6(n) => slot(&mut v6, len).insert(u128::from(n.network()), value),
            };
        }
        Self {
            v4: sorted(v4),
            v6: sorted(v6),
        }
    }

    /// The longest network holding `addr`/`prefix` (the client's subnet:
    /// networks longer than `prefix` do not hold it).
    pub(crate) fn get(&self, addr: IpAddr, prefix: u8) -> Lookup {
        match addr {
            IpAddr::V4(a) => probe(self.v4.as_deref(), u32::from(a), prefix, |bits, len| {
                bits & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
            }),
            IpAddr::V6(a) => probe(self.v6.as_deref(), u128::from(a), prefix, |bits, len| {
                bits & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
            }),
        }
    }
}

fn slot<K>(lengths: &mut Vec<Nets<K>>, len: u8) -> &mut HashMap<K, usize, FastHash> {
    let at = match lengths.iter().position(|(l, _)| *l == len) {
        Some(at) => at,
        None => {
            lengths.push((len, HashMap::default()));
            lengths.len() - 1
        }
    };
    &mut lengths[at].1
}

fn sorted<K>(mut lengths: Vec<Nets<K>>) -> ByLength<K> {
    if lengths.len() > MAX_LENGTHS {
        return None;
    }
    lengths.sort_by_key(|n| std::cmp::Reverse(n.0));
    Some(lengths)
}

fn probe<K: std::hash::Hash + Eq + Copy>(
    lengths: Option<&[Nets<K>]>,
    bits: K,
    prefix: u8,
    mask: impl Fn(K, u8) -> K,
) -> Lookup {
    let Some(lengths) = lengths else {
        return Lookup::Unindexed;
    };
    lengths
        .iter()
        .filter(|(len, _)| *len <= prefix)
        .find_map(|(len, nets)| nets.get(&mask(bits, *len)).map(|&v| Lookup::Found(v, *len)))
        .unwrap_or(Lookup::Missing)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use prefix_trie::joint::map::JointPrefixMap;
    use proptest::prelude::*;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn the_longest_network_holding_the_subnet_wins() {
        let nets = [
            (net("10.0.0.0/8"), 1),
            (net("10.1.0.0/16"), 2),
            (net("10.1.2.0/24"), 3),
            (net("2001:db8::/32"), 4),
            (net("0.0.0.0/0"), 5),
        ];
        let map = NetMap::new(nets.iter().map(|(n, v)| (n, *v)));
        let v4 = |a: [u8; 4], p| map.get(IpAddr::V4(Ipv4Addr::from(a)), p);
        assert_eq!(v4([10, 1, 2, 0], 24), Lookup::Found(3, 24));
        assert_eq!(
            v4([10, 1, 2, 0], 20),
            Lookup::Found(2, 16),
            "a /24 does not hold a /20"
        );
        assert_eq!(v4([10, 9, 0, 0], 24), Lookup::Found(1, 8));
        assert_eq!(v4([192, 0, 2, 0], 24), Lookup::Found(5, 0));
        let v6 = |s: &str, p| map.get(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()), p);
        assert_eq!(v6("2001:db8:1::", 56), Lookup::Found(4, 32));
        assert_eq!(v6("2001:db9::", 56), Lookup::Missing);
    }

    #[test]
    fn a_family_with_many_lengths_is_left_to_the_trie() {
        let nets: Vec<(IpNet, usize)> = (8..=(8 + MAX_LENGTHS as u8))
            .map(|len| {
                (
                    IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), len).unwrap(),
                    1,
                )
            })
            .collect();
        let map = NetMap::new(nets.iter().map(|(n, v)| (n, *v)));
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(map.get(a, 24), Lookup::Unindexed);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            map.get(v6, 128),
            Lookup::Missing,
            "the other family is indexed"
        );
    }

    fn v4_net() -> impl Strategy<Value = IpNet> {
        // Few distinct addresses and lengths, so networks nest and collide.
        (
            0u32..4,
            prop::sample::select(vec![0u8, 8, 12, 16, 20, 24, 32]),
        )
            .prop_map(|(a, len)| {
                let addr = Ipv4Addr::from(0x0a00_0000 | (a << 20) | (a << 8));
                IpNet::new(IpAddr::V4(addr), len).unwrap().trunc()
            })
    }

    proptest! {
        #[test]
        fn agrees_with_the_trie(
            nets in prop::collection::vec((v4_net(), 0usize..5), 0..12),
            a in 0u32..4,
            b in 0u32..256,
            prefix in 0u8..=32,
        ) {
            let mut trie = JointPrefixMap::new();
            for (n, v) in &nets {
                trie.insert(*n, *v);
            }
            let map = NetMap::new(nets.iter().map(|(n, v)| (n, *v)));
            let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (a << 20) | (b << 8)));
            let client = IpNet::new(addr, prefix).unwrap().trunc();
            let want = match trie.get_lpm(&client) {
                Some((p, &v)) => Lookup::Found(v, p.prefix_len()),
                None => Lookup::Missing,
            };
            prop_assert_eq!(map.get(addr, prefix), want);
        }
    }
}
