//! Latency statistics: the one nearest-rank quantile, and the percentiles the report shows
//! wherever it shows latency (`results.json`, the summary of `report.html`, the quantile
//! plot), so that the numbers and the picture can be read against each other.

/// The percentiles shown, with their names: p50, p90, p99, p99.9 and the maximum.
pub const PERCENTILES: [(f64, &str); 5] = [
    (0.5, "p50"),
    (0.9, "p90"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (1.0, "max"),
];

/// The nearest-rank `q`-quantile of `sorted` (ascending); `None` when it is empty.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        let at: Vec<u64> = PERCENTILES
            .iter()
            .filter_map(|(q, _)| quantile(&v, *q))
            .collect();
        assert_eq!(at, vec![500, 900, 990, 999, 1000]);
        assert_eq!(quantile(&[7.5], 0.5), Some(7.5));
        assert_eq!(quantile::<u64>(&[], 0.5), None);
    }
}
