//! Selection calibration: making a finite client population send each PoP
//! the share the plan gives it.
//!
//! Sticky selection hashes each client subnet onto the targets with weights
//! that deliver the plan's shares to an unbounded population of equal
//! subnets (`steer_types::delivery`). A real answer set is asked by a few
//! hundred or thousand subnets, and where their hashes happen to land
//! rounds the shares: with 250 subnets a PoP planned at 80% of its capacity
//! gets 84–85%. Each edge therefore remembers a bounded, uniform sample of
//! the subnets that asked each answer set (bottom-k by a salted hash, so
//! the sample is the same whichever order clients arrive in), and when it
//! compiles a view it trims every target's selection weight until the
//! sample, answered through the very picker the query path uses, splits
//! over the targets as planned.
//!
//! The trims are a deterministic function of the plan and the sample: no
//! feedback from measured load, so nothing to oscillate; the same clients
//! and the same plan give the same answers. Each subnet counts once (a
//! caching resolver asks about once per TTL whatever it serves, so query
//! counts say nothing about load), which is the planner's model too.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
};

use steer_types::{RegionId, ServiceId};

use crate::select::{MAX_PICK, mix, rendezvous};

/// Subnets remembered per answer set. The calibration error left by a
/// sample of k subnets is about 1/k of the set's traffic per target; the
/// memory is 24 bytes a subnet.
pub(crate) const SAMPLE_KEYS: usize = 2048;

/// Slots of a sample's noted-this-generation table (see
/// `ClientSample::seen`): twice the subnets a sample keeps, four to a
/// bucket.
const SEEN_SLOTS: usize = 2 * SAMPLE_KEYS;
const SEEN_WAYS: usize = 4;
const SEEN_BUCKETS: usize = SEEN_SLOTS / SEEN_WAYS;

/// Fewer sampled subnets than this and a set is answered with the plan's
/// weights as they are: too few to say anything about the population.
pub(crate) const MIN_SAMPLE: usize = 32;

/// Recalibration rounds per sample generation: a subnet silent for two
/// generations (10 to 15 minutes) is forgotten.
pub const ROUNDS_PER_GENERATION: u32 = 10;

/// A subnet not seen for this many generations is forgotten (the edge
/// rotates a generation every few minutes, see `ClientSamples::rotate`).
const KEEP_GENERATIONS: u32 = 2;

/// Salt of the hash that ranks subnets for the bottom-k sample, so the
/// sample is independent of the rendezvous scores and the short/full split.
const RANK_SALT: u64 = 0x5341_4d50_4c45_5f4b;

/// Multiplicative steps the calibration takes at most per set.
const MAX_STEPS: usize = 100;

/// Trims stay within [1/TRIM_LIMIT, TRIM_LIMIT] of the plan's weight.
const TRIM_LIMIT: f64 = 16.0;

/// Which answer set a sample belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SetKey {
    pub(crate) service: ServiceId,
    pub(crate) region: Option<RegionId>,
}

/// The samples of every answer set an edge answers, shared by the views
/// it compiles (as the answer tally is).
#[derive(Debug, Default)]
pub struct ClientSamples {
    sets: Mutex<HashMap<SetKey, Arc<ClientSample>>>,
    generation: Arc<AtomicU32>,
    /// Sum of every sample's version when they were last settled.
    calibrated: AtomicU64,
    /// Residual of the last compile's calibration (worst set, as a share of
    /// its traffic), in millionths.
    residual_ppm: AtomicU64,
}

impl ClientSamples {
    /// The sample of one answer set, created empty on first use.
    pub(crate) fn sample(&self, key: SetKey) -> Arc<ClientSample> {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        sets.entry(key)
            .or_insert_with(|| Arc::new(ClientSample::new(self.generation.clone())))
            .clone()
    }

    /// Starts a new generation and forgets subnets not seen in the last
    /// two: clients that moved away stop weighing on the calibration.
    pub fn rotate(&self) {
        let now = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        for sample in sets.values() {
            sample.prune(now);
        }
    }

    /// Whether any sample gained or lost subnets since it was last settled:
    /// then settling and recompiling would calibrate differently.
    pub fn changed(&self) -> bool {
        self.version() != self.calibrated.load(Ordering::Relaxed)
    }

    /// Fixes what views calibrate on to the subnets sampled now. Views
    /// compiled between two settlings (every plan publication) calibrate
    /// on the same subnets, so a sample that is still filling (an edge
    /// just started) does not reshuffle answers at every plan.
    pub fn settle(&self) {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let mut version = 0u64;
        for sample in sets.values() {
            version = version.wrapping_add(sample.settle());
        }
        self.calibrated.store(version, Ordering::Relaxed);
    }

    fn version(&self) -> u64 {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        sets.values()
            .map(|s| s.version.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }

    /// Subnets remembered over every answer set.
    pub fn keys(&self) -> usize {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        sets.values().map(|s| s.len()).sum()
    }

    /// The worst calibrated set's remaining error after the last compile,
    /// as a share of that set's traffic (0.004: 0.4 points).
    pub fn residual(&self) -> f64 {
        self.residual_ppm.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Called when a compile has calibrated every set, with `residual` the
    /// worst set's error.
    pub(crate) fn finish(&self, residual: f64) {
        self.residual_ppm
            .store((residual.clamp(0.0, 1.0) * 1e6) as u64, Ordering::Relaxed);
        metrics::gauge!("steer_dns_selection_residual").set(residual);
        metrics::gauge!("steer_dns_selection_sample_keys").set(self.keys() as f64);
    }
}

#[derive(Debug)]
struct Entry {
    key: u64,
    generation: u32,
}

/// A bottom-k sample of the subnet keys that asked one answer set.
#[derive(Debug)]
pub(crate) struct ClientSample {
    /// Subnets ranked at or above this are not kept (the sample is full of
    /// lower ranks); `u64::MAX` while it has room.
    below: AtomicU64,
    /// Bumped whenever a subnet joins or leaves.
    version: AtomicU64,
    generation: Arc<AtomicU32>,
    keys: Mutex<BTreeMap<u64, Entry>>,
    /// Per bucket, four 16-bit tags of subnets noted this generation
    /// (bucket and tag from a hash of rank and generation), so a subnet
    /// asking again costs one load from a table that stays in cache
    /// instead of a walk of the sample (a cache miss per query once the
    /// kernel's work between queries has evicted it). Four ways, so two
    /// subnets landing in one place do not evict each other's tags at
    /// every query (with one tag per slot, a third of 1,500 subnets did,
    /// and took the locked path each time). A subnet whose tag is not
    /// there takes the locked path, so nothing is lost; one that finds an
    /// equal tag of another subnet (about 1 in 8,000) is not noted that
    /// time. Allocated (8 KiB) once the sample is big enough to calibrate
    /// on, so idle sets cost nothing.
    seen: OnceLock<Box<[AtomicU64]>>,
    /// The subnets views calibrate on, as of the last `settle`.
    settled: Mutex<Arc<[u64]>>,
    /// The trims the last compile settled on, per (picker, target seed):
    /// the next calibration starts from them, so an unchanged plan and
    /// population keep their answers and a small plan change moves few.
    trims: Mutex<HashMap<(u8, u64), f64>>,
}

impl ClientSample {
    fn new(generation: Arc<AtomicU32>) -> Self {
        Self {
            below: AtomicU64::new(u64::MAX),
            version: AtomicU64::new(0),
            generation,
            keys: Mutex::new(BTreeMap::new()),
            seen: OnceLock::new(),
            settled: Mutex::new(Arc::from(Vec::new())),
            trims: Mutex::new(HashMap::new()),
        }
    }

    /// The trims last settled on for `picker`'s targets (1 for new ones).
    pub(crate) fn last_trims(&self, picker: u8, seeds: &[u64]) -> Vec<f64> {
        let trims = self.trims.lock().unwrap_or_else(|e| e.into_inner());
        seeds
            .iter()
            .map(|s| trims.get(&(picker, *s)).copied().unwrap_or(1.0))
            .collect()
    }

    /// Remembers the trims `picker` settled on, forgetting its old ones.
    pub(crate) fn keep_trims(&self, picker: u8, seeds: &[u64], settled: &[f64]) {
        let mut trims = self.trims.lock().unwrap_or_else(|e| e.into_inner());
        trims.retain(|(p, _), _| *p != picker);
        for (s, t) in seeds.iter().zip(settled) {
            trims.insert((picker, *s), *t);
        }
    }

    /// Whether noting `key` would change nothing: it ranks outside the
    /// sample, or it was noted this generation. Loads only, so a batch of
    /// queries can check all of theirs first and have the cache misses
    /// overlap (see `metrics::Counts`).
    pub(crate) fn noted(&self, key: u64) -> bool {
        let rank = mix(key ^ RANK_SALT);
        if rank >= self.below.load(Ordering::Relaxed) {
            return true;
        }
        let generation = self.generation.load(Ordering::Relaxed);
        let h = mix(rank ^ u64::from(generation).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let tag = (h >> 48) as u16 | 1;
        self.seen
            .get()
            .and_then(|t| t.get(h as usize % SEEN_BUCKETS))
            .is_some_and(|b| holds(b.load(Ordering::Relaxed), tag))
    }

    /// Notes that `key` asked. On the query path: one relaxed load for the
    /// subnets outside the sample; never waits (a busy sample skips the
    /// observation: it is a sample).
    pub(crate) fn observe(&self, key: u64) {
        let rank = mix(key ^ RANK_SALT);
        if rank >= self.below.load(Ordering::Relaxed) {
            return;
        }
        let generation = self.generation.load(Ordering::Relaxed);
        let h = mix(rank ^ u64::from(generation).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // Never 0, the empty slot's value.
        let tag = (h >> 48) as u16 | 1;
        let bucket = self
            .seen
            .get()
            .and_then(|t| t.get(h as usize % SEEN_BUCKETS));
        let tags = bucket.map(|b| b.load(Ordering::Relaxed));
        if tags.is_some_and(|t| holds(t, tag)) {
            return;
        }
        let Ok(mut keys) = self.keys.try_lock() else {
            return;
        };
        if let (Some(b), Some(tags)) = (bucket, tags) {
            // A racing worker's store may undo this one: that subnet then
            // takes the locked path once more.
            b.store(with_tag(tags, tag, (h >> 32) as usize), Ordering::Relaxed);
        }
        if let Some(e) = keys.get_mut(&rank) {
            e.generation = generation;
            return;
        }
        keys.insert(rank, Entry { key, generation });
        if keys.len() == MIN_SAMPLE {
            let _ = self
                .seen
                .set((0..SEEN_BUCKETS).map(|_| AtomicU64::new(0)).collect());
        }
        if keys.len() > SAMPLE_KEYS {
            keys.pop_last();
            if let Some((&top, _)) = keys.last_key_value() {
                self.below.store(top, Ordering::Relaxed);
            }
        }
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    fn prune(&self, now: u32) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let before = keys.len();
        keys.retain(|_, e| now.saturating_sub(e.generation) < KEEP_GENERATIONS);
        if keys.len() != before {
            // Room again: let higher ranks back in.
            self.below.store(u64::MAX, Ordering::Relaxed);
            self.version.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The sampled subnet keys, in rank order.
    fn keys(&self) -> Vec<u64> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.values().map(|e| e.key).collect()
    }

    /// Snapshots the sample for calibration; returns its version.
    fn settle(&self) -> u64 {
        let keys: Arc<[u64]> = Arc::from(self.keys());
        let version = self.version.load(Ordering::Relaxed);
        *self.settled.lock().unwrap_or_else(|e| e.into_inner()) = keys;
        version
    }

    /// The subnets to calibrate on (the last settled sample).
    pub(crate) fn settled(&self) -> Arc<[u64]> {
        self.settled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Whether a bucket of the `seen` table holds `tag` (never 0).
fn holds(bucket: u64, tag: u16) -> bool {
    (0..SEEN_WAYS).any(|way| (bucket >> (16 * way)) as u16 == tag)
}

/// `bucket` with `tag` in an empty way, or else in the way `pick` names.
fn with_tag(bucket: u64, tag: u16, pick: usize) -> u64 {
    let way = (0..SEEN_WAYS)
        .find(|&way| (bucket >> (16 * way)) as u16 == 0)
        .unwrap_or(pick % SEEN_WAYS);
    let shift = 16 * way;
    (bucket & !(0xffff << shift)) | (u64::from(tag) << shift)
}

/// What the picker does for one subnet key, precomputed: how many records
/// it gets and, per target, the factor its weight is scored by.
struct Prepared {
    /// Records per sampled key (1 for short answers).
    records: Vec<usize>,
    /// `select::rendezvous` per key and target, row-major; full and short
    /// answers score the same hash.
    inv: Vec<f64>,
    short: Vec<bool>,
}

/// A picker's weights: `full` for full answers of `records`, `short` for
/// the keys that hash below `short_below` (see `view::Keyed`).
pub(crate) struct Picker<'a> {
    pub(crate) seeds: &'a [u64],
    pub(crate) full: &'a [f64],
    pub(crate) short: &'a [f64],
    pub(crate) short_below: u64,
    pub(crate) records: usize,
    pub(crate) short_salt: u64,
}

impl Picker<'_> {
    fn prepare(&self, keys: &[u64]) -> Prepared {
        let n = self.seeds.len();
        let mut inv = Vec::with_capacity(keys.len() * n);
        let mut short = Vec::with_capacity(keys.len());
        let mut records = Vec::with_capacity(keys.len());
        for &key in keys {
            let is_short = self.short_below > 0 && mix(key ^ self.short_salt) < self.short_below;
            short.push(is_short);
            records.push(if is_short {
                1
            } else {
                self.records.min(n).min(MAX_PICK)
            });
            for &seed in self.seeds {
                inv.push(rendezvous(key, seed));
            }
        }
        Prepared {
            records,
            inv,
            short,
        }
    }

    /// Each target's share of the sample's traffic with weights trimmed by
    /// `trims` (a key's traffic splits evenly over its records).
    fn delivered(&self, p: &Prepared, trims: &[f64], out: &mut [f64]) {
        let n = self.seeds.len();
        out.iter_mut().for_each(|o| *o = 0.0);
        let keys = p.records.len();
        let mut best: [(f64, usize); MAX_PICK + 1] = [(0.0, 0); MAX_PICK + 1];
        for k in 0..keys {
            let m = p.records[k];
            let weights = if p.short[k] { self.short } else { self.full };
            let row = &p.inv[k * n..(k + 1) * n];
            let mut len = 0;
            for i in 0..n {
                let score = weights[i] * trims[i] * row[i];
                let pos = best[..len].partition_point(|&(s, j)| s > score || (s == score && j < i));
                if pos < m {
                    best.copy_within(pos..len, pos + 1);
                    best[pos] = (score, i);
                    len = (len + 1).min(m);
                }
            }
            let share = 1.0 / (keys as f64 * len.max(1) as f64);
            for &(_, i) in &best[..len] {
                out[i] += share;
            }
        }
    }
}

/// Under calibration, no target with a share has a single-record weight
/// below this part of the largest.
const SHORT_FLOOR: f64 = 0.02;

/// Single-record weights for calibration: trims scale weights, so a target
/// the mix gives no single-record answers (a small share beside a big one,
/// carried by full answers alone) could never get one, however the
/// subnets' hashes fall and however far the delivered share is off. Every
/// target with a share starts with a sliver of them, for the trims to grow
/// or shrink.
pub(crate) fn floor_short(short: &[f64], shares: &[f64]) -> Vec<f64> {
    let floor = short.iter().copied().fold(0.0, f64::max) * SHORT_FLOOR;
    short
        .iter()
        .zip(shares)
        .map(|(w, s)| if *s > 0.0 { w.max(floor) } else { *w })
        .collect()
}

/// What a set's clients should send its targets.
pub(crate) struct Goal<'a> {
    /// Per target, shares summing to 1.
    pub(crate) shares: &'a [f64],
    /// Per target (or empty: none): the plan fills this PoP to its target
    /// utilisation, so the subnet that does not divide evenly goes
    /// elsewhere rather than push it over.
    pub(crate) at_target: &'a [bool],
}

impl Goal<'_> {
    /// The shares to aim at: half a subnet below the plan at full PoPs,
    /// made up on the others in proportion to their shares, so the
    /// rounding lands on PoPs with headroom. The plan's shares when every
    /// target is full or none is.
    fn aim(&self, grain: f64) -> Vec<f64> {
        let full = |i: usize| self.at_target.get(i).copied().unwrap_or(false);
        let n = self.shares.len();
        let cut: Vec<f64> = (0..n)
            .map(|i| {
                if full(i) {
                    (grain / 2.0).min(self.shares[i])
                } else {
                    0.0
                }
            })
            .collect();
        let taken: f64 = cut.iter().sum();
        let open: f64 = (0..n).filter(|&i| !full(i)).map(|i| self.shares[i]).sum();
        if taken <= 0.0 || open <= 0.0 {
            return self.shares.to_vec();
        }
        (0..n)
            .map(|i| {
                if full(i) {
                    self.shares[i] - cut[i]
                } else {
                    self.shares[i] + taken * self.shares[i] / open
                }
            })
            .collect()
    }
}

/// Per-target factors for the picker's weights so that `keys`, answered by
/// the picker, split over the targets as `goal` says; and the largest
/// remaining difference from its shares. The search starts from `start`
/// (the last trims) and keeps it unless something is strictly better.
/// `None` when the sample is too small or the answer does not depend on
/// the key.
pub(crate) fn calibrate(
    picker: &Picker<'_>,
    keys: &[u64],
    goal: &Goal<'_>,
    start: &[f64],
) -> Option<(Vec<f64>, f64)> {
    let n = picker.seeds.len();
    if keys.len() < MIN_SAMPLE || n < 2 || goal.shares.len() != n {
        return None;
    }
    let hashed = n > picker.records || picker.short_below > 0;
    if !hashed {
        return None;
    }
    let prepared = picker.prepare(keys);
    let mut trims: Vec<f64> = if start.len() == n {
        start
            .iter()
            .map(|t| {
                if t.is_finite() {
                    t.clamp(1.0 / TRIM_LIMIT, TRIM_LIMIT)
                } else {
                    1.0
                }
            })
            .collect()
    } else {
        vec![1.0; n]
    };
    let mut delivered = vec![0.0; n];
    // Trims, score, total error, error from the plan's shares.
    let mut best: Option<(Vec<f64>, f64, f64, f64)> = None;
    // One subnet's traffic: nothing finer can be delivered.
    let grain = 1.0 / keys.len() as f64;
    let target = goal.aim(grain);
    let full = |i: usize| goal.at_target.get(i).copied().unwrap_or(false);
    for step in 0..MAX_STEPS {
        picker.delivered(&prepared, &trims, &mut delivered);
        // The worst target's error, then the total: of two settings that
        // miss by one subnet, the one that misses fewer targets. Pushing a
        // full PoP past the plan costs a subnet more.
        let (mut score, mut sum, mut err) = (0.0f64, 0.0f64, 0.0f64);
        for (i, (d, t)) in delivered.iter().zip(&target).enumerate() {
            let over = full(i) && *d > goal.shares[i] + 1e-12;
            score = score.max((d - t).abs() + if over { grain } else { 0.0 });
            sum += (d - t).abs();
            err = err.max((d - goal.shares[i]).abs());
        }
        if best.as_ref().is_none_or(|(_, e, s, _)| {
            score < *e - 1e-12 || (score <= *e + 1e-12 && sum < *s - 1e-12)
        }) {
            best = Some((trims.clone(), score, sum, err));
        }
        if sum <= 1e-12 {
            break;
        }
        for i in 0..n {
            if target[i] <= 0.0 {
                continue;
            }
            // Bold steps first, then finer ones to settle the last subnets.
            let gain = 0.7 - 0.6 * step as f64 / MAX_STEPS as f64;
            let ratio = target[i] / delivered[i].max(grain / 4.0);
            trims[i] =
                (trims[i] * ratio.powf(gain).clamp(0.5, 2.0)).clamp(1.0 / TRIM_LIMIT, TRIM_LIMIT);
        }
    }
    best.map(|(trims, _, _, err)| (trims, err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::seed;

    fn population(n: usize, salt: u64) -> Vec<u64> {
        (0..n as u64)
            .map(|i| mix(i.wrapping_mul(0x9e37) ^ salt))
            .collect()
    }

    fn goal(shares: &[f64]) -> Goal<'_> {
        Goal {
            shares,
            at_target: &[],
        }
    }

    fn shares_of(picker: &Picker<'_>, keys: &[u64], trims: &[f64]) -> Vec<f64> {
        let p = picker.prepare(keys);
        let mut out = vec![0.0; picker.seeds.len()];
        picker.delivered(&p, trims, &mut out);
        out
    }

    #[test]
    fn the_model_agrees_with_the_picker() {
        let seeds: Vec<u64> = ["a", "b", "c", "d"].iter().map(|s| seed(s)).collect();
        let full = [4.0, 3.0, 2.0, 1.0];
        let picker = Picker {
            seeds: &seeds,
            full: &full,
            short: &full,
            short_below: 0,
            records: 2,
            short_salt: 1,
        };
        let keys = population(500, 7);
        let model = shares_of(&picker, &keys, &[1.0; 4]);
        let targets: Vec<(u64, f64)> = seeds.iter().copied().zip(full).collect();
        let mut real = [0.0; 4];
        let mut out = Vec::new();
        for &k in &keys {
            crate::select::pick(k, &targets, 2, &mut out);
            for &i in &out {
                real[i] += 1.0 / (keys.len() as f64 * out.len() as f64);
            }
        }
        for i in 0..4 {
            assert!((model[i] - real[i]).abs() < 1e-12, "{model:?} vs {real:?}");
        }
    }

    #[test]
    fn a_few_hundred_subnets_get_their_planned_shares() {
        let seeds: Vec<u64> = ["fra1", "ams1", "lhr1"].iter().map(|s| seed(s)).collect();
        let target = [0.5, 0.3, 0.2];
        let picker = Picker {
            seeds: &seeds,
            full: &target,
            short: &target,
            short_below: 0,
            records: 1,
            short_salt: 1,
        };
        for salt in 0..20 {
            let keys = population(250, salt);
            let before = shares_of(&picker, &keys, &[1.0; 3]);
            let (trims, err) = calibrate(&picker, &keys, &goal(&target), &[]).unwrap_or_default();
            let after = shares_of(&picker, &keys, &trims);
            let worst_before = before
                .iter()
                .zip(&target)
                .map(|(d, t)| (d - t).abs())
                .fold(0.0, f64::max);
            // One subnet is 1/250 of the set's traffic.
            assert!(
                err <= 1.0 / 250.0 + 1e-12,
                "salt {salt}: {after:?} (was {before:?})"
            );
            assert!(err <= worst_before, "salt {salt}");
            for (a, t) in after.iter().zip(&target) {
                assert!((a - t).abs() <= err + 1e-12);
            }
        }
    }

    #[test]
    fn the_odd_subnet_goes_to_a_pop_with_headroom() {
        // Shares that 250 subnets cannot hit exactly (0.4% a subnet): the
        // two PoPs the plan fills to target never get more than planned,
        // and the odd subnets land on the third.
        let seeds: Vec<u64> = ["fra1", "ams1", "lhr1"].iter().map(|s| seed(s)).collect();
        let shares = [0.4813, 0.3127, 0.206];
        let picker = Picker {
            seeds: &seeds,
            full: &shares,
            short: &shares,
            short_below: 0,
            records: 2,
            short_salt: 1,
        };
        let at_target = [true, true, false];
        let goal = Goal {
            shares: &shares,
            at_target: &at_target,
        };
        for salt in 0..20 {
            let keys = population(250, salt);
            let (trims, err) = calibrate(&picker, &keys, &goal, &[]).unwrap_or_default();
            let after = shares_of(&picker, &keys, &trims);
            for i in 0..2 {
                assert!(after[i] <= shares[i] + 1e-12, "salt {salt}: {after:?}");
            }
            // Still within a subnet and a half of the plan everywhere.
            assert!(err <= 1.5 / 250.0 + 1e-12, "salt {salt}: {after:?}");
        }
    }

    #[test]
    fn a_small_share_carried_by_full_answers_alone_is_calibrated_too() {
        // Two targets, two records: full answers carry both, and the mix
        // gives fra1 no single-record answers at all. How many subnets get
        // full answers is up to their hashes, so without a sliver of the
        // short answers fra1 stays wherever that lands (a point off).
        let seeds: Vec<u64> = ["fra1", "ams1"].iter().map(|s| seed(s)).collect();
        let shares = [0.052, 0.948];
        let m = steer_types::delivery::mix(&shares, 2);
        assert_eq!(m.short_weights[0], 0.0);
        let short_below = (m.short_share * 18_446_744_073_709_551_616.0) as u64;
        let goal = goal(&shares);
        let mut fixed = 0;
        for salt in 0..10 {
            let keys = population(250, salt);
            let floored = floor_short(&m.short_weights, &shares);
            let picker = Picker {
                seeds: &seeds,
                full: &m.full_weights,
                short: &floored,
                short_below,
                records: 2,
                short_salt: 7,
            };
            let (_, err) = calibrate(&picker, &keys, &goal, &[]).unwrap_or_default();
            let bare = Picker {
                short: &m.short_weights,
                ..picker
            };
            let full_only = shares_of(&bare, &keys, &[1.0, 1.0]);
            let (_, bare_err) = calibrate(&bare, &keys, &goal, &[]).unwrap_or_default();
            let grain = 1.0 / 250.0 + 1e-9;
            // Never worse than a subnet, nor than without the sliver.
            assert!(
                err <= bare_err.max(grain),
                "salt {salt}: {err} vs {bare_err}"
            );
            // Where full answers alone fall short, the sliver makes it up.
            if full_only[0] < shares[0] {
                assert!(err <= grain, "salt {salt}: off by {err}");
            }
            // (Where they alone give fra1 too much, no weight can help: how
            // many subnets get full answers is up to their hashes.)
            fixed += usize::from(bare_err > grain && err <= grain);
        }
        assert!(fixed >= 3, "{fixed}");
    }

    #[test]
    fn settled_trims_are_kept_and_small_changes_move_few_subnets() {
        let seeds: Vec<u64> = ["a", "b", "c", "d"].iter().map(|s| seed(s)).collect();
        let keys = population(400, 11);
        let picker = |w: &'static [f64]| Picker {
            seeds: &[],
            full: w,
            short: w,
            short_below: 0,
            records: 1,
            short_salt: 1,
        };
        const BEFORE: [f64; 4] = [0.4, 0.3, 0.2, 0.1];
        const AFTER: [f64; 4] = [0.39, 0.31, 0.2, 0.1];
        let (before, after) = (&BEFORE, &AFTER);
        let p = Picker {
            seeds: &seeds,
            ..picker(before)
        };
        let (trims, err) = calibrate(&p, &keys, &goal(before), &[]).unwrap_or_default();
        let (again, err_again) = calibrate(&p, &keys, &goal(before), &trims).unwrap_or_default();
        assert_eq!(trims, again, "same plan, same clients: same trims");
        assert!(err_again <= err);
        // A one-point move between two targets, from the settled trims.
        let q = Picker {
            seeds: &seeds,
            ..picker(after)
        };
        let (moved, _) = calibrate(&q, &keys, &goal(after), &trims).unwrap_or_default();
        let targets = |w: &[f64], t: &[f64]| -> Vec<(u64, f64)> {
            seeds
                .iter()
                .zip(w.iter().zip(t))
                .map(|(s, (w, t))| (*s, w * t))
                .collect()
        };
        let (old, new) = (targets(before, &trims), targets(after, &moved));
        let mut out = Vec::new();
        let changed = keys
            .iter()
            .filter(|&&k| {
                crate::select::pick(k, &old, 1, &mut out);
                let a = out.clone();
                crate::select::pick(k, &new, 1, &mut out);
                a != out
            })
            .count();
        // One point of 400 subnets is 4; allow the calibration some slack.
        assert!(changed <= 16, "{changed} of 400 subnets moved");
    }

    #[test]
    fn too_small_or_unhashed_sets_are_left_alone() {
        let seeds: Vec<u64> = ["a", "b"].iter().map(|s| seed(s)).collect();
        let w = [0.5, 0.5];
        let picker = Picker {
            seeds: &seeds,
            full: &w,
            short: &w,
            short_below: 0,
            records: 2,
            short_salt: 1,
        };
        assert!(calibrate(&picker, &population(500, 1), &goal(&w), &[]).is_none());
        let one = Picker {
            records: 1,
            ..picker
        };
        assert!(calibrate(&one, &population(MIN_SAMPLE - 1, 1), &goal(&w), &[]).is_none());
    }

    #[test]
    fn the_sample_is_bounded_and_order_independent() {
        let g = Arc::new(AtomicU32::new(0));
        let a = ClientSample::new(g.clone());
        let b = ClientSample::new(g.clone());
        let keys = population(3 * SAMPLE_KEYS, 3);
        for &k in &keys {
            a.observe(k);
        }
        for &k in keys.iter().rev() {
            b.observe(k);
        }
        assert_eq!(a.len(), SAMPLE_KEYS);
        let (mut ka, mut kb) = (a.keys(), b.keys());
        ka.sort_unstable();
        kb.sort_unstable();
        assert_eq!(ka, kb);
    }

    #[test]
    fn a_seen_bucket_keeps_four_tags_then_replaces_one() {
        let mut b = 0u64;
        for tag in [3u16, 5, 7, 9] {
            assert!(!holds(b, tag));
            b = with_tag(b, tag, 0);
            assert!(holds(b, tag));
        }
        assert!([3, 5, 7, 9].iter().all(|&t| holds(b, t)), "four ways");
        let b = with_tag(b, 11, 2);
        assert!(holds(b, 11));
        assert!(!holds(b, 7), "the picked way is replaced");
        assert!([3, 5, 9].iter().all(|&t| holds(b, t)), "the others stay");
    }

    #[test]
    fn subnets_asking_again_are_noted_without_the_lock() {
        let s = ClientSample::new(Arc::new(AtomicU32::new(0)));
        // More subnets than a one-tag-per-slot table keeps apart.
        let keys: Vec<u64> = (0..1500u64).map(|k| mix(k + 1)).collect();
        for &k in &keys {
            s.observe(k);
        }
        for &k in &keys {
            s.observe(k);
        }
        // One tag per slot left about a third out; four ways leave the
        // few whose bucket drew more than four (24 of these).
        let missed = keys.iter().filter(|&&k| !s.noted(k)).count();
        assert!(missed < 45, "{missed} of 1500 subnets not in the table");
    }

    #[test]
    fn subnets_not_seen_for_two_generations_are_forgotten() {
        let samples = ClientSamples::default();
        let key = SetKey {
            service: ServiceId::new("www"),
            region: None,
        };
        let s = samples.sample(key.clone());
        for k in population(100, 9) {
            s.observe(k);
        }
        assert!(samples.changed());
        assert!(s.settled().is_empty(), "not settled yet");
        samples.settle();
        assert!(!samples.changed());
        assert_eq!(s.settled().len(), 100);
        samples.rotate();
        // Half of them ask again in the new generation.
        for k in population(50, 9) {
            s.observe(k);
        }
        assert_eq!(s.len(), 100, "seen a generation ago: kept");
        samples.rotate();
        assert_eq!(s.len(), 50, "two generations without a query: gone");
        samples.rotate();
        assert_eq!(s.len(), 0);
        assert!(samples.changed());
    }
}
