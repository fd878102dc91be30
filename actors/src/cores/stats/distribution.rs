//! The Student t distribution's tail, through the regularized incomplete beta function
//! (Numerical Recipes, 3rd ed., §6.4: a continued fraction evaluated by the modified Lentz
//! method) and the log-gamma function (Lanczos, g = 7, n = 9).

/// Relative precision at which the continued fraction stops.
const EPSILON: f64 = 1e-15;
/// Stands in for 0 in Lentz's method, so that no step divides by zero.
const TINY: f64 = 1e-300;
/// Enough for `a`, `b` up to ~10⁶ (the steps grow as √max(a, b)); the degrees of freedom of a
/// comparison of repetitions are far below.
const MAX_STEPS: usize = 10_000;

/// The incomplete beta function could not be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum DistributionError {
    #[error(
        "the incomplete beta function needs a, b > 0 and 0 ≤ x ≤ 1 (a = {a}, b = {b}, x = {x})"
    )]
    Domain { a: f64, b: f64, x: f64 },
    #[error("the incomplete beta continued fraction did not converge (a = {a}, b = {b}, x = {x})")]
    NoConvergence { a: f64, b: f64, x: f64 },
}

/// ln Γ(x) for x > 0 (Lanczos approximation; relative error below 1e-14).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin().abs()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The regularized incomplete beta function I_x(a, b).
pub fn incomplete_beta(a: f64, b: f64, x: f64) -> Result<f64, DistributionError> {
    if !(a > 0.0 && b > 0.0 && (0.0..=1.0).contains(&x)) {
        return Err(DistributionError::Domain { a, b, x });
    }
    if x == 0.0 || x == 1.0 {
        return Ok(x);
    }
    // x^a (1 − x)^b / (a B(a, b)), the factor in front of the continued fraction.
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The fraction converges fast for x < (a + 1) / (a + b + 2); past it, by symmetry,
    // I_x(a, b) = 1 − I_{1−x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0) {
        Ok(front * continued_fraction(a, b, x)? / a)
    } else {
        Ok(1.0 - front * continued_fraction(b, a, 1.0 - x)? / b)
    }
}

/// The continued fraction of I_x(a, b), by the modified Lentz method.
fn continued_fraction(a: f64, b: f64, x: f64) -> Result<f64, DistributionError> {
    let not_tiny = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / not_tiny(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..=MAX_STEPS {
        let m = m as f64;
        let m2 = 2.0 * m;
        // The even step of the recurrence…
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / not_tiny(1.0 + aa * d);
        c = not_tiny(1.0 + aa / c);
        h *= d * c;
        // …and the odd one.
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / not_tiny(1.0 + aa * d);
        c = not_tiny(1.0 + aa / c);
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < EPSILON {
            return Ok(h);
        }
    }
    Err(DistributionError::NoConvergence { a, b, x })
}

/// P(|T| ≥ |t|) for T Student-t distributed with `df` degrees of freedom (df > 0, may be
/// fractional, as Welch's are): I_{df/(df+t²)}(df/2, 1/2).
pub fn student_t_two_sided(t: f64, df: f64) -> Result<f64, DistributionError> {
    if t.is_infinite() {
        return Ok(0.0);
    }
    let x = df / (df + t * t);
    incomplete_beta(df / 2.0, 0.5, x)
}
