//! The bench's arithmetic: latency percentiles of one cell (nearest rank, the report's own
//! [`quantile`]) and, over rounds, each figure's median and range.

use crate::report::stats::quantile;
use serde::Serialize;

/// Latency percentiles of one cell, in milliseconds (`None` when nothing completed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    /// The percentiles of `micros` (latencies in µs, in any order; sorted here).
    pub fn of(micros: &mut [u32]) -> Latency {
        micros.sort_unstable();
        let at = |q: f64| quantile(micros, q).map(|us| f64::from(us) / 1000.0);
        Latency {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }
}

/// One figure over the rounds: its median and range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The median (of an even count: the mean of the middle two), minimum and maximum of
    /// the values that are numbers; `None` when there is none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// `a / b` when both are known and `b` is not 0.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank_in_milliseconds() {
        let mut micros: Vec<u32> = (1..=1000).rev().map(|i| i * 1000).collect();
        let l = Latency::of(&mut micros);
        assert_eq!(l.p50_ms, Some(500.0));
        assert_eq!(l.p99_ms, Some(990.0));
        assert_eq!(l.p999_ms, Some(999.0));
        assert_eq!(l.max_ms, Some(1000.0));
        let one = Latency::of(&mut [1500]);
        assert_eq!((one.p50_ms, one.p999_ms), (Some(1.5), Some(1.5)));
        assert_eq!(Latency::of(&mut []), Latency::default());
    }

    #[test]
    fn median_and_range_over_rounds() {
        let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let even = Spread::of([4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((even.median, even.min, even.max), (3.0, 1.0, 10.0));
        assert_eq!(Spread::of([f64::NAN, 5.0]).unwrap().median, 5.0);
        assert!(Spread::of([]).is_none());
    }

    #[test]
    fn ratios_need_both_sides() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }
}
