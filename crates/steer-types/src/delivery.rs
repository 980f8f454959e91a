//! What clients actually send each target of an answer set.
//!
//! An answer carries up to `k` records (`max_records`; one for CNAME-style
//! services), chosen per client subnet by weighted rendezvous hashing: each
//! target scores `w / E` with `E` exponential, and the `k` best win. That
//! is sampling without replacement in proportion to weight, so a target's
//! chance to be in an answer (its inclusion probability) is not its weight
//! share once `k > 1`; and a client spreads its traffic evenly over the
//! records it got, so no target can get more than `1/k` of the clients
//! that get full answers. With two records and two targets each target
//! gets half of the traffic, whatever the weights.
//!
//! The plan's weights are the shares clients should send each target. To
//! deliver any share vector, the DNS view builds an [`AnswerMix`]: a part
//! of the clients (sticky per subnet) get one record, picked in proportion
//! to what the full answers cannot deliver, and the rest get full answers
//! whose selection weights are solved so that inclusion over records per
//! answer is their share. `max_records` is a ceiling: answers are shortened
//! only as much as a skewed plan needs.

/// How one answer set is answered so that clients send the planned shares.
#[derive(Clone, Debug, PartialEq)]
pub struct AnswerMix {
    /// Share of clients given a single record (0 when full answers alone
    /// deliver the shares).
    pub short_share: f64,
    /// Rendezvous weights of the single-record answers (0 = never).
    pub short_weights: Vec<f64>,
    /// Rendezvous weights of the full answers; infinite = in every one.
    pub full_weights: Vec<f64>,
}

/// The mix that delivers `shares` (any non-negative vector; normalised
/// here) with up to `k` records per answer, giving as many clients as
/// possible full answers.
pub fn mix(shares: &[f64], k: usize) -> AnswerMix {
    let n = shares.len();
    let valid = shares.iter().all(|s| s.is_finite() && *s >= 0.0);
    let total: f64 = if valid { shares.iter().sum() } else { 0.0 };
    let x: Vec<f64> = if total > 0.0 {
        shares.iter().map(|s| s / total).collect()
    } else {
        vec![1.0 / n.max(1) as f64; n]
    };
    let m = k.max(1).min(n.max(1));
    if n == 0 || m == 1 {
        return AnswerMix {
            short_share: 0.0,
            short_weights: vec![0.0; n],
            full_weights: x,
        };
    }
    // The largest share β of clients that can get full answers: a full
    // answer gives each target at most 1/m of its clients, so we need
    // Σ min(x_i, β/m) ≥ β. With the h largest shares capped,
    // β = (sum of the rest) / (1 − h/m).
    let mut sorted = x.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut beta = 0.0;
    for h in 0..m {
        let rest: f64 = sorted[h..].iter().sum();
        let b = (rest / (1.0 - h as f64 / m as f64)).min(1.0);
        let capped_ok = h == 0 || sorted[h - 1] >= b / m as f64 - 1e-12;
        let rest_ok = sorted.get(h).is_none_or(|v| *v <= b / m as f64 + 1e-12);
        if capped_ok && rest_ok {
            beta = b;
            break;
        }
    }
    let full: Vec<f64> = x
        .iter()
        .map(|v| {
            if beta > 0.0 {
                v.min(beta / m as f64) / beta
            } else {
                0.0
            }
        })
        .collect();
    let short_share = (1.0 - beta).max(0.0);
    let short_weights: Vec<f64> = x
        .iter()
        .zip(&full)
        .map(|(v, f)| {
            if short_share > 1e-12 {
                ((v - beta * f) / short_share).max(0.0)
            } else {
                0.0
            }
        })
        .collect();
    AnswerMix {
        short_share: if short_share > 1e-9 { short_share } else { 0.0 },
        short_weights,
        full_weights: if beta > 0.0 {
            selection_weights(&full, k)
        } else {
            vec![1.0; n]
        },
    }
}

/// Delivered share of each target under `mix`. Sums to 1.
pub fn delivered_mix(mix: &AnswerMix, k: usize) -> Vec<f64> {
    let full = delivered(&mix.full_weights, k);
    let short_total: f64 = mix.short_weights.iter().sum();
    full.iter()
        .zip(&mix.short_weights)
        .map(|(f, y)| {
            let short = if short_total > 0.0 {
                y / short_total
            } else {
                0.0
            };
            (1.0 - mix.short_share) * f + mix.short_share * short
        })
        .collect()
}

/// Relative tolerance of [`selection_weights`] on inclusion probabilities.
const TOLERANCE: f64 = 1e-7;

/// Inclusion probability of each target when `k` of them are picked by
/// weighted rendezvous. Non-finite weights are "always picked" (they
/// outrank every finite score); non-positive ones count as the smallest
/// positive weight. The result sums to `min(k, n)`.
pub fn inclusion(weights: &[f64], k: usize) -> Vec<f64> {
    let n = weights.len();
    if k >= n {
        return vec![1.0; n];
    }
    if k == 0 {
        return vec![0.0; n];
    }
    // Targets with an infinite weight take the first slots (ties by
    // position, as the picker breaks them).
    let always: Vec<usize> = (0..n).filter(|&i| weights[i].is_infinite()).collect();
    if always.len() >= k {
        let mut out = vec![0.0; n];
        for &i in always.iter().take(k) {
            out[i] = 1.0;
        }
        return out;
    }
    let rest: Vec<usize> = (0..n).filter(|&i| !weights[i].is_infinite()).collect();
    let sub: Vec<f64> = rest.iter().map(|&i| weights[i]).collect();
    let sub_pi = finite_inclusion(&sub, k - always.len());
    let mut out = vec![1.0; n];
    for (j, &i) in rest.iter().enumerate() {
        out[i] = sub_pi[j];
    }
    out
}

/// Delivered share of each target: its inclusion probability over the
/// records an answer carries. Sums to 1 for a non-empty set.
pub fn delivered(weights: &[f64], k: usize) -> Vec<f64> {
    let per_answer = k.min(weights.len()).max(1) as f64;
    inclusion(weights, k)
        .into_iter()
        .map(|p| p / per_answer)
        .collect()
}

/// The nearest share vector the data plane can deliver with `k` records
/// per answer: a set of at most `k` targets is split evenly (every client
/// gets all of them); otherwise no target can exceed `1/k` (it is in at
/// most every answer), and what a target cannot take goes to the others in
/// proportion to their shares. Input shares need not sum to 1.
pub fn deliverable(shares: &[f64], k: usize) -> Vec<f64> {
    let n = shares.len();
    if n == 0 {
        return Vec::new();
    }
    let k = k.max(1);
    if n <= k {
        return vec![1.0 / n as f64; n];
    }
    let valid = shares.iter().all(|s| s.is_finite() && *s >= 0.0);
    let total: f64 = if valid { shares.iter().sum() } else { 0.0 };
    let mut x: Vec<f64> = if total > 0.0 {
        shares.iter().map(|s| s / total).collect()
    } else {
        vec![1.0 / n as f64; n]
    };
    let cap = 1.0 / k as f64;
    let mut capped = vec![false; n];
    // Each round caps at least one more target, so n rounds suffice.
    for _ in 0..n {
        let excess: f64 = x.iter().map(|v| (v - cap).max(0.0)).sum();
        if excess <= 1e-15 {
            break;
        }
        for (v, c) in x.iter_mut().zip(capped.iter_mut()) {
            if *v >= cap {
                *v = cap;
                *c = true;
            }
        }
        let free: f64 = x
            .iter()
            .zip(&capped)
            .filter(|(_, c)| !**c)
            .map(|(v, _)| v)
            .sum();
        let uncapped = capped.iter().filter(|c| !**c).count();
        for (v, c) in x.iter_mut().zip(&capped) {
            if !*c {
                *v += if free > 0.0 {
                    excess * *v / free
                } else {
                    excess / uncapped.max(1) as f64
                };
            }
        }
    }
    x
}

/// Selection weights that make weighted rendezvous with `k` records per
/// answer deliver `shares` (made [`deliverable`] first). Targets that must
/// be in every answer get an infinite weight. With `k = 1` the weights are
/// the shares; with at most `k` targets every weight is 1.
pub fn selection_weights(shares: &[f64], k: usize) -> Vec<f64> {
    let n = shares.len();
    let k = k.max(1);
    if n <= k {
        return vec![1.0; n];
    }
    let x = deliverable(shares, k);
    if k == 1 {
        return x;
    }
    let cap = 1.0 / k as f64;
    let always: Vec<bool> = x.iter().map(|v| *v >= cap * (1.0 - 1e-9)).collect();
    let picks = k - always.iter().filter(|a| **a).count();
    let rest: Vec<usize> = (0..n).filter(|&i| !always[i]).collect();
    let mut out = vec![f64::INFINITY; n];
    if picks == 0 {
        for &i in &rest {
            out[i] = 1.0;
        }
        return out;
    }
    // Inclusion targets of the rest: k·x, summing to `picks`.
    let goal: Vec<f64> = rest.iter().map(|&i| (x[i] * k as f64).max(1e-12)).collect();
    let w = solve(&goal, picks);
    for (j, &i) in rest.iter().enumerate() {
        out[i] = w[j];
    }
    out
}

/// Weights whose inclusion probabilities with `k` picks are `goal`
/// (each in (0, 1), summing to `k`, more targets than `k`).
///
/// A damped multiplicative fixed-point update settles most sets in a few
/// steps. Inclusion saturates for a goal near 1 (a share just under the
/// `1/k` cap), where that update crawls, so after a few steps Newton's
/// method on the log-weights finishes: the Jacobian is taken by
/// differences; it is singular along "scale every weight" (inclusion does
/// not change) and its columns sum to zero (the picks are always `k`), so
/// the step is solved with that direction pinned. Sets too large for a
/// dense step keep the fixed-point update.
fn solve(goal: &[f64], k: usize) -> Vec<f64> {
    if k == 1 {
        return goal.to_vec();
    }
    let n = goal.len();
    let mut w: Vec<f64> = goal.to_vec();
    let mut pi = finite_inclusion(&w, k);
    let mut err = worst_error(&pi, goal);
    // Cheap fixed-point steps first: they settle most sets; Newton
    // finishes the ones they crawl on.
    let mut fixed_steps = 0;
    while err >= TOLERANCE && fixed_steps < 500 {
        if fixed_steps == FIXED_BEFORE_NEWTON && n <= NEWTON_MAX_TARGETS {
            newton(&mut w, &mut pi, &mut err, goal, k);
            if err < TOLERANCE {
                break;
            }
        }
        for ((wi, p), g) in w.iter_mut().zip(&pi).zip(goal) {
            // Damped: the full step can overshoot for targets near 1.
            *wi *= (g / p.max(1e-300)).powf(0.9);
        }
        let total: f64 = w.iter().sum();
        if total > 0.0 && total.is_finite() {
            for wi in &mut w {
                *wi /= total;
            }
        }
        pi = finite_inclusion(&w, k);
        err = worst_error(&pi, goal);
        fixed_steps += 1;
    }
    w
}

/// Fixed-point steps [`solve`] takes before switching to Newton.
const FIXED_BEFORE_NEWTON: usize = 25;

/// Newton steps on the log-weights from `w`, each accepted only when it
/// lowers the worst error; updates `w`, `pi` and `err` in place.
fn newton(w: &mut Vec<f64>, pi: &mut Vec<f64>, err: &mut f64, goal: &[f64], k: usize) {
    let mut u: Vec<f64> = w.iter().map(|x| x.max(1e-300).ln()).collect();
    for _ in 0..40 {
        if *err < TOLERANCE {
            break;
        }
        let Some(step) = newton_step(&u, pi, goal, k) else {
            break;
        };
        // Backtrack until the worst error falls.
        let mut scale = 1.0;
        let mut improved = false;
        for _ in 0..30 {
            let trial: Vec<f64> = u.iter().zip(&step).map(|(a, d)| a + scale * d).collect();
            let trial_pi = finite_inclusion(&exp_all(&trial), k);
            let trial_err = worst_error(&trial_pi, goal);
            if trial_err < *err {
                u = trial;
                *pi = trial_pi;
                *err = trial_err;
                improved = true;
                break;
            }
            scale *= 0.5;
        }
        if !improved {
            break;
        }
    }
    *w = exp_all(&u);
}

/// Largest set [`solve`] takes dense Newton steps for (each step costs
/// `n` inclusion evaluations and an `n³` elimination).
const NEWTON_MAX_TARGETS: usize = 48;

fn exp_all(u: &[f64]) -> Vec<f64> {
    // Shifted so the largest weight is 1: only ratios matter.
    let top = u.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    u.iter().map(|x| (x - top).exp()).collect()
}

fn worst_error(pi: &[f64], goal: &[f64]) -> f64 {
    pi.iter()
        .zip(goal)
        .map(|(p, g)| ((p - g) / g).abs())
        .fold(0.0, f64::max)
}

/// The Newton step `Δu` with `J·Δu = goal − π` and `Σ Δu = 0`, or `None`
/// when the system is singular.
fn newton_step(u: &[f64], pi: &[f64], goal: &[f64], k: usize) -> Option<Vec<f64>> {
    let n = u.len();
    let h = 1e-6;
    // Row-major [n][n + 1]: J + 1·1ᵀ/n, then the residual.
    let mut a = vec![0.0; n * (n + 1)];
    let mut probe = u.to_vec();
    for j in 0..n {
        probe[j] = u[j] + h;
        let shifted = finite_inclusion(&exp_all(&probe), k);
        probe[j] = u[j];
        for i in 0..n {
            a[i * (n + 1) + j] = (shifted[i] - pi[i]) / h + 1.0 / n as f64;
        }
    }
    for i in 0..n {
        a[i * (n + 1) + n] = goal[i] - pi[i];
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| {
            a[x * (n + 1) + col]
                .abs()
                .total_cmp(&a[y * (n + 1) + col].abs())
        })?;
        if a[pivot * (n + 1) + col].abs() < 1e-14 {
            return None;
        }
        if pivot != col {
            for c in 0..=n {
                a.swap(pivot * (n + 1) + c, col * (n + 1) + c);
            }
        }
        let d = a[col * (n + 1) + col];
        for row in col + 1..n {
            let f = a[row * (n + 1) + col] / d;
            if f != 0.0 {
                for c in col..=n {
                    a[row * (n + 1) + c] -= f * a[col * (n + 1) + c];
                }
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let mut v = a[row * (n + 1) + n];
        for c in row + 1..n {
            v -= a[row * (n + 1) + c] * x[c];
        }
        x[row] = v / a[row * (n + 1) + row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Inclusion probabilities of finite weights, `0 < k < n`.
fn finite_inclusion(weights: &[f64], k: usize) -> Vec<f64> {
    let n = weights.len();
    if k >= n {
        return vec![1.0; n];
    }
    let total: f64 = weights
        .iter()
        .map(|w| if w.is_finite() && *w > 0.0 { *w } else { 0.0 })
        .sum();
    if total <= 0.0 {
        return vec![k as f64 / n as f64; n];
    }
    // Normalised, with a floor so no weight is exactly zero.
    let p: Vec<f64> = weights
        .iter()
        .map(|w| {
            let w = if w.is_finite() && *w > 0.0 { *w } else { 0.0 };
            (w / total).max(1e-12)
        })
        .collect();
    match k {
        1 => {
            let s: f64 = p.iter().sum();
            p.iter().map(|x| x / s).collect()
        }
        2 => {
            // π_i = p_i + Σ_{j≠i} p_j · p_i / (1 − p_j).
            let s: f64 = p.iter().map(|x| x / (1.0 - x).max(1e-300)).sum();
            p.iter()
                .map(|&x| (x * (1.0 + s - x / (1.0 - x).max(1e-300))).min(1.0))
                .collect()
        }
        _ => race_inclusion(&p, k),
    }
}

/// Inclusion by the exponential race: target i (rate p_i) is picked when
/// fewer than k others arrived before it, so
/// π_i = ∫ p_i e^{−p_i t} P(N_{−i}(t) < k) dt, integrated on a log scale
/// of t (smooth there, so the trapezoid rule is very accurate).
fn race_inclusion(p: &[f64], k: usize) -> Vec<f64> {
    let n = p.len();
    let (z0, z1, steps) = (-16.0f64, 31.0f64, 1400usize);
    let dz = (z1 - z0) / steps as f64;
    let mut out = vec![0.0; n];
    // prefix[j]: distribution of arrivals among targets < j, counts < k.
    let mut prefix = vec![vec![0.0; k]; n + 1];
    let mut suffix = vec![vec![0.0; k]; n + 1];
    for s in 0..=steps {
        let t = (z0 + dz * s as f64).exp();
        let q: Vec<f64> = p.iter().map(|x| -(-x * t).exp_m1()).collect();
        prefix[0].iter_mut().for_each(|v| *v = 0.0);
        prefix[0][0] = 1.0;
        for j in 0..n {
            for c in 0..k {
                let stay = prefix[j][c] * (1.0 - q[j]);
                let came = if c > 0 { prefix[j][c - 1] * q[j] } else { 0.0 };
                prefix[j + 1][c] = stay + came;
            }
        }
        suffix[n].iter_mut().for_each(|v| *v = 0.0);
        suffix[n][0] = 1.0;
        for j in (0..n).rev() {
            for c in 0..k {
                let stay = suffix[j + 1][c] * (1.0 - q[j]);
                let came = if c > 0 {
                    suffix[j + 1][c - 1] * q[j]
                } else {
                    0.0
                };
                suffix[j][c] = stay + came;
            }
        }
        let edge = if s == 0 || s == steps { 0.5 } else { 1.0 };
        for i in 0..n {
            let left = &prefix[i];
            let right = &suffix[i + 1];
            let fewer: f64 = left
                .iter()
                .enumerate()
                .map(|(a, l)| l * right.iter().take(k - a).sum::<f64>())
                .sum();
            let density = p[i] * (-p[i] * t).exp() * t;
            out[i] += edge * dz * density * fewer;
        }
    }
    // The picks sum to k exactly; remove the quadrature's tiny drift.
    let sum: f64 = out.iter().sum();
    if sum > 0.0 {
        for v in &mut out {
            *v = (*v * k as f64 / sum).min(1.0);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Exact inclusion by enumerating every ordered draw (small n only).
    fn exact(w: &[f64], k: usize) -> Vec<f64> {
        fn walk(w: &[f64], k: usize, used: &mut Vec<usize>, prob: f64, out: &mut [f64]) {
            if used.len() == k {
                for &i in used.iter() {
                    out[i] += prob;
                }
                return;
            }
            let left: f64 = (0..w.len())
                .filter(|i| !used.contains(i))
                .map(|i| w[i])
                .sum();
            for i in 0..w.len() {
                if used.contains(&i) {
                    continue;
                }
                used.push(i);
                walk(w, k, used, prob * w[i] / left, out);
                used.pop();
            }
        }
        let mut out = vec![0.0; w.len()];
        walk(w, k.min(w.len()), &mut Vec::new(), 1.0, &mut out);
        out
    }

    #[test]
    fn two_records_two_targets_split_evenly_whatever_the_weights() {
        assert_eq!(delivered(&[800.0, 200.0], 2), vec![0.5, 0.5]);
        assert_eq!(deliverable(&[0.8, 0.2], 2), vec![0.5, 0.5]);
    }

    #[test]
    fn a_skewed_pair_is_delivered_by_shortening_some_answers() {
        // 60% of clients get fra1 alone, 40% get both: 0.6 + 0.4/2 = 0.8.
        let m = mix(&[0.8, 0.2], 2);
        assert!((m.short_share - 0.6).abs() < 1e-12, "{m:?}");
        assert_eq!(m.short_weights[1], 0.0);
        let d = delivered_mix(&m, 2);
        assert!(
            (d[0] - 0.8).abs() < 1e-9 && (d[1] - 0.2).abs() < 1e-9,
            "{d:?}"
        );
        // Shares one answer can carry need no short answers.
        assert_eq!(mix(&[0.4, 0.3, 0.3], 2).short_share, 0.0);
        assert_eq!(mix(&[0.5, 0.5], 2).short_share, 0.0);
    }

    #[test]
    fn a_target_cannot_take_more_than_one_record_per_answer() {
        let x = deliverable(&[0.8, 0.1, 0.1], 2);
        assert!((x[0] - 0.5).abs() < 1e-12);
        assert!((x[1] - 0.25).abs() < 1e-12 && (x[2] - 0.25).abs() < 1e-12);
        let w = selection_weights(&[0.8, 0.1, 0.1], 2);
        assert!(w[0].is_infinite());
        let d = delivered(&w, 2);
        assert!(
            (d[0] - 0.5).abs() < 1e-9 && (d[1] - 0.25).abs() < 1e-6,
            "{d:?}"
        );
    }

    #[test]
    fn quadrature_matches_enumeration() {
        let cases: &[(&[f64], usize)] = &[
            (&[0.5, 0.3, 0.1, 0.1], 3),
            (&[0.97, 0.01, 0.01, 0.005, 0.005], 3),
            (&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 4),
            (&[0.001, 0.001, 5.0, 0.001, 0.3, 2.0], 3),
        ];
        for (w, k) in cases {
            let got = race_inclusion(
                &w.iter()
                    .map(|x| x / w.iter().sum::<f64>())
                    .collect::<Vec<_>>(),
                *k,
            );
            let want = exact(w, *k);
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() < 1e-6, "{w:?} k={k}: {got:?} vs {want:?}");
            }
        }
        let w = [0.4, 0.3, 0.2, 0.1];
        let got = finite_inclusion(&w, 2);
        for (g, e) in got.iter().zip(exact(&w, 2)) {
            assert!((g - e).abs() < 1e-12);
        }
    }

    /// Shares just under the `1/k` cap need weights far above the rest;
    /// the solver still delivers them (a fixed-point update alone ended
    /// 1e-4 off here).
    #[test]
    fn shares_just_under_the_cap_are_delivered() {
        for (k, top) in [
            (2usize, 0.49999f64),
            (3, 0.33332),
            (4, 0.24995),
            (4, 0.2499),
        ] {
            let rest = 6;
            let mut x = vec![top];
            x.extend((0..rest).map(|i| (1.0 - top) * (1.0 + i as f64) / 21.0));
            let x = deliverable(&x, k);
            let d = delivered(&selection_weights(&x, k), k);
            for (got, want) in d.iter().zip(&x) {
                assert!((got - want).abs() < 1e-6, "k={k} top={top}: {x:?} -> {d:?}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Planned shares that are deliverable are what clients send.
        #[test]
        fn selection_weights_deliver_the_shares(
            raw in proptest::collection::vec(0.01f64..10.0, 1..9),
            k in 1usize..5,
        ) {
            let x = deliverable(&raw, k);
            let sum: f64 = x.iter().sum();
            prop_assert!((sum - 1.0).abs() < 1e-9);
            let n = raw.len();
            for v in &x {
                prop_assert!(*v <= 1.0 / k.min(n) as f64 + 1e-12);
            }
            let w = selection_weights(&x, k);
            let d = delivered(&w, k);
            for (got, want) in d.iter().zip(&x) {
                prop_assert!((got - want).abs() < 1e-4, "{x:?} k={k}: {d:?}");
            }
        }

        /// Any share vector is what clients send under its mix.
        #[test]
        fn every_plan_is_delivered(
            raw in proptest::collection::vec(0.001f64..10.0, 1..9),
            k in 1usize..5,
        ) {
            let total: f64 = raw.iter().sum();
            let m = mix(&raw, k);
            prop_assert!((0.0..=1.0).contains(&m.short_share));
            let d = delivered_mix(&m, k);
            for (got, want) in d.iter().zip(&raw) {
                prop_assert!((got - want / total).abs() < 1e-4, "{raw:?} k={k}: {m:?} {d:?}");
            }
        }

        /// Deliverable shares are left alone.
        #[test]
        fn deliverable_is_idempotent(
            raw in proptest::collection::vec(0.01f64..10.0, 1..9),
            k in 1usize..5,
        ) {
            let x = deliverable(&raw, k);
            let y = deliverable(&x, k);
            for (a, b) in x.iter().zip(&y) {
                prop_assert!((a - b).abs() < 1e-12);
            }
        }
    }
}
