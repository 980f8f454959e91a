//! Turning real-valued shares into integer per-mille weights.

use steer_types::PERMILLE;

/// Splits [`PERMILLE`] in proportion to `shares` with the largest-remainder
/// method. Every entry gets at least 1 (a listed target is never weight 0),
/// the sum is exactly `PERMILLE` when there are at most `PERMILLE` entries,
/// and non-finite or non-positive shares count as equal shares.
pub fn apportion(shares: &[f64]) -> Vec<u32> {
    let n = shares.len();
    if n == 0 {
        return Vec::new();
    }
    let valid = shares.iter().all(|s| s.is_finite() && *s > 0.0);
    let shares: Vec<f64> = if valid { shares.to_vec() } else { vec![1.0; n] };
    let total: f64 = shares.iter().sum();
    // Reserve 1 per entry, distribute the rest proportionally.
    let reserve = u32::try_from(n).unwrap_or(u32::MAX).min(PERMILLE);
    let spread = f64::from(PERMILLE - reserve);
    let exact: Vec<f64> = shares.iter().map(|s| s / total * spread).collect();
    let mut out: Vec<u32> = exact.iter().map(|e| e.floor() as u32 + 1).collect();
    let assigned: u32 = out.iter().sum();
    let mut left = PERMILLE.saturating_sub(assigned);
    let mut order: Vec<usize> = (0..n).collect();
    // Largest remainder first; ties by position, for determinism.
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}
