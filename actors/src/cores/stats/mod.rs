//! Statistics over repetitions, sans-IO: a description of a sample ([`describe`]: n, mean,
//! median, sample standard deviation, min, max, coefficient of variation) and Welch's t-test of
//! two samples ([`welch`]), with its p-value from the Student t distribution ([`distribution`]).
//!
//! Welch's test, not Student's: two runs of a benchmark need not vary alike (a 2× slower run
//! often varies 2× more), and Welch's does not assume they do.

pub mod distribution;

use herd_bus::MetricStats;

/// Describes `values` (in repetition order, kept in the answer); None when there are none.
/// Non-finite values are not numbers a task measured, and are left out.
pub fn describe(values: &[f64]) -> Option<MetricStats> {
    let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let (min, max) = (sorted[0], sorted[n - 1]);
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    // Equal values have no spread at all: stated exactly, not as rounding noise, so that
    // a comparison sees zero variance for what it is.
    let (mean, stddev) = if min == max {
        (min, 0.0)
    } else {
        let mean = values.iter().sum::<f64>() / n as f64;
        let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        let stddev = if n > 1 {
            (squares / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        (mean, stddev)
    };
    let cv = (mean != 0.0).then(|| stddev / mean.abs());
    Some(MetricStats {
        n: n as u32,
        mean,
        median,
        stddev,
        min,
        max,
        cv,
        values,
    })
}

/// The outcome of Welch's t-test of two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Welch {
    /// The t statistic (b − a over its standard error), the Welch–Satterthwaite degrees of
    /// freedom, and the two-sided p-value.
    Tested { t: f64, df: f64, p: f64 },
    /// Neither sample varies: every repetition of each gave one value. The means are equal
    /// (p = 1) or they differ beyond any doubt the samples can express (p = 0).
    NoVariance { p: f64 },
    /// A sample has fewer than two values: its variance is unknown, so no test.
    TooFew,
    /// The t distribution could not be evaluated (never expected; kept as an answer rather
    /// than a panic).
    Failed(distribution::DistributionError),
}

/// Welch's unequal-variances t-test of the means of `a` and `b`, two-sided.
pub fn welch(a: &MetricStats, b: &MetricStats) -> Welch {
    if a.n < 2 || b.n < 2 {
        return Welch::TooFew;
    }
    let (na, nb) = (f64::from(a.n), f64::from(b.n));
    let (va, vb) = (a.stddev * a.stddev / na, b.stddev * b.stddev / nb);
    let se2 = va + vb;
    if se2 == 0.0 {
        return Welch::NoVariance {
            p: if a.mean == b.mean { 1.0 } else { 0.0 },
        };
    }
    let t = (b.mean - a.mean) / se2.sqrt();
    // A sample without variance contributes nothing to the denominator.
    let df = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    match distribution::student_t_two_sided(t, df) {
        Ok(p) => Welch::Tested {
            t,
            df,
            p: p.clamp(0.0, 1.0),
        },
        Err(e) => Welch::Failed(e),
    }
}

#[cfg(test)]
mod tests;
