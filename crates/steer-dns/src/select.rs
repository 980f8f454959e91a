//! Sticky weighted selection: weighted rendezvous hashing over the client's
//! subnet. The same /24 (IPv4) or /56 (IPv6) gets the same records while the
//! answer set is unchanged, and when a target leaves only the clients that
//! had it move.

use std::net::IpAddr;

/// IPv4 clients are grouped by /24, IPv6 by /56.
pub(crate) const STICKY_V4: u8 = 24;
pub(crate) const STICKY_V6: u8 = 56;

/// The stable key of a client's subnet (its address masked to the sticky
/// prefix, or to `source_prefix` when ECS gave less than that).
pub fn subnet_key(addr: IpAddr, source_prefix: u8) -> u64 {
    match addr {
        IpAddr::V4(v4) => {
            let len = source_prefix.min(STICKY_V4);
            let bits = u32::from(v4);
            let masked = if len == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(len)))
            };
            mix(u64::from(masked) ^ (u64::from(len) << 40) ^ 0x4)
        }
        IpAddr::V6(v6) => {
            let len = source_prefix.min(STICKY_V6);
            let bits = u128::from(v6);
            let masked = if len == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(len)))
            };
            mix((masked >> 64) as u64 ^ mix(masked as u64 ^ u64::from(len)) ^ 0x6)
        }
    }
}

/// Where a subnet falls for a change's canary by client subnets: uniform
/// over u64, independent of the rendezvous scores (another seed), so the
/// canary's clients are a fair sample of every target's.
pub(crate) fn canary_hash(subnet: u64) -> u64 {
    mix(subnet ^ 0x6361_6e61_7279_5f31)
}

/// FNV-1a, for seeding a target from its PoP id.
pub(crate) fn seed(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64 finaliser: a fast, well-distributed 64-bit mixer.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A key's weighted rendezvous score for a target is `weight` times this:
/// `-1 / ln(u)` for `u` in (0, 1] drawn from the key and the target's seed.
/// Calibration predicts the picker with the very same number.
pub(crate) fn rendezvous(key: u64, seed: u64) -> f64 {
    let u = (draw(key, seed) as f64 + 1.0) / (1u64 << 53) as f64;
    -1.0 / u.ln().min(-f64::MIN_POSITIVE)
}

/// The 53-bit draw `rendezvous` is increasing in.
fn draw(key: u64, seed: u64) -> u64 {
    mix(key ^ seed) >> 11
}

/// Most records one answer can carry (config caps `max_records` at 16).
pub const MAX_PICK: usize = 16;

/// Picks up to `n` of `targets` (given as `(seed, weight)`), writing their
/// indexes into `out` in descending score order. Deterministic for a given
/// `key`; each target's chance to be first is proportional to its weight.
pub fn pick(key: u64, targets: &[(u64, f64)], n: usize, out: &mut Vec<usize>) {
    let mut buf = [0usize; MAX_PICK];
    let len = pick_into(key, targets, n, &mut buf);
    out.clear();
    out.extend_from_slice(&buf[..len]);
}

/// As [`pick`], into a fixed buffer (no allocation); returns how many were
/// picked, at most `MAX_PICK`.
pub fn pick_into(key: u64, targets: &[(u64, f64)], n: usize, out: &mut [usize; MAX_PICK]) -> usize {
    let n = n.min(MAX_PICK);
    if targets.len() <= n {
        for (i, slot) in out.iter_mut().enumerate().take(targets.len()) {
            *slot = i;
        }
        return targets.len();
    }
    // With one positive weight for all, a target's score rises with its
    // draw alone (`rendezvous` is increasing in it): the draws rank them
    // as the scores would, without a logarithm per target.
    let same = targets
        .first()
        .is_some_and(|&(_, w)| w > 0.0 && w.is_finite() && targets.iter().all(|t| t.1 == w));
    // Keep the best n in a small sorted buffer on the stack.
    let mut best = [(0.0f64, 0usize); MAX_PICK + 1];
    let mut len = 0;
    for (i, &(seed, weight)) in targets.iter().enumerate() {
        let score = if same {
            draw(key, seed) as f64
        } else {
            weight * rendezvous(key, seed)
        };
        let pos = best[..len].partition_point(|&(s, j)| s > score || (s == score && j < i));
        if pos < n {
            best.copy_within(pos..len, pos + 1);
            best[pos] = (score, i);
            len = (len + 1).min(n);
        }
    }
    for (slot, &(_, i)) in out.iter_mut().zip(&best[..len]) {
        *slot = i;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_within_subnet() {
        let a = subnet_key("10.1.2.3".parse().unwrap_or([0u8; 4].into()), 32);
        let b = subnet_key("10.1.2.200".parse().unwrap_or([0u8; 4].into()), 32);
        let c = subnet_key("10.1.3.3".parse().unwrap_or([0u8; 4].into()), 32);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn weights_are_respected() {
        let targets = [(seed("a"), 900.0), (seed("b"), 100.0)];
        let mut out = Vec::new();
        let mut first_a = 0;
        for k in 0..10_000u64 {
            pick(mix(k), &targets, 1, &mut out);
            if out[0] == 0 {
                first_a += 1;
            }
        }
        assert!((8_700..9_300).contains(&first_a), "a first {first_a} times");
    }

    /// The shortcut for equal weights picks what the scores pick.
    #[test]
    fn equal_weights_rank_as_the_scores_do() {
        let targets: Vec<(u64, f64)> = (0..7).map(|i| (seed(&format!("p{i}")), 250.0)).collect();
        let mut out = Vec::new();
        for k in 0..5_000u64 {
            let key = mix(k);
            pick(key, &targets, 3, &mut out);
            let mut scored: Vec<(f64, usize)> = targets
                .iter()
                .enumerate()
                .map(|(i, &(s, w))| (w * rendezvous(key, s), i))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let want: Vec<usize> = scored.iter().take(3).map(|&(_, i)| i).collect();
            assert_eq!(out, want, "key {key}");
        }
    }

    proptest::proptest! {
        #[test]
        fn picks_distinct_and_bounded(key: u64, weights in proptest::collection::vec(1u32..1000, 1..12), n in 1usize..5) {
            let targets: Vec<(u64, f64)> = weights.iter().enumerate().map(|(i, w)| (seed(&i.to_string()), f64::from(*w))).collect();
            let mut out = Vec::new();
            pick(key, &targets, n, &mut out);
            proptest::prop_assert_eq!(out.len(), n.min(targets.len()));
            let mut sorted = out.clone();
            sorted.sort_unstable();
            sorted.dedup();
            proptest::prop_assert_eq!(sorted.len(), out.len());
            let mut again = Vec::new();
            pick(key, &targets, n, &mut again);
            proptest::prop_assert_eq!(out, again);
        }
    }
}
