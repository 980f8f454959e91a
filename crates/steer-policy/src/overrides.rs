//! Operator weight overrides: pin one PoP's share of an answer set.

use steer_types::PERMILLE;

use crate::apportion;

/// Pins the given targets' weights and shares what is left among the rest
/// in proportion to their computed weights. Targets pinned to 0 leave the
/// set's traffic entirely (weight 0 is dropped by the caller).
pub(crate) fn apply_overrides(weights: &[u32], pinned: &[(usize, u32)]) -> Vec<u32> {
    let others: Vec<usize> = (0..weights.len())
        .filter(|i| pinned.iter().all(|&(j, _)| j != *i))
        .collect();
    let mut out = vec![0; weights.len()];
    if others.is_empty() {
        // Only pinned targets: keep their proportions, fill the set.
        let shares: Vec<f64> = pinned.iter().map(|&(_, w)| f64::from(w.max(1))).collect();
        for (k, w) in apportion(&shares).into_iter().enumerate() {
            out[pinned[k].0] = w;
        }
        return out;
    }
    let mut budget = PERMILLE;
    for &(i, w) in pinned {
        let w = w.min(budget);
        out[i] = w;
        budget -= w;
    }
    let shares: Vec<f64> = others.iter().map(|&i| f64::from(weights[i])).collect();
    let spread = apportion(&shares);
    // apportion fills PERMILLE; rescale to the budget, largest remainder.
    let exact: Vec<f64> = spread
        .iter()
        .map(|&w| f64::from(w) * f64::from(budget) / f64::from(PERMILLE))
        .collect();
    let mut given = 0;
    for (k, &i) in others.iter().enumerate() {
        out[i] = exact[k].floor() as u32;
        given += out[i];
    }
    let mut order: Vec<usize> = (0..others.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    for k in order.into_iter().take((budget - given) as usize) {
        out[others[k]] += 1;
    }
    out
}
