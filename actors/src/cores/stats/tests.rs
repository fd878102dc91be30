//! Reference values from mpmath 1.3 at 30 digits (`betainc(a, b, 0, x, regularized=True)`) and
//! from closed forms.

use super::distribution::*;
use super::*;

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(f64::MIN_POSITIVE)
}

#[track_caller]
fn assert_close(got: f64, want: f64, rel: f64) {
    assert!(
        close(got, want, rel),
        "got {got}, want {want} (±{rel:e} relative)"
    );
}

#[test]
fn log_gamma_matches_factorials_and_half_integers() {
    for (x, factorial) in [(1.0, 1.0), (2.0, 1.0), (5.0, 24.0), (11.0, 3_628_800.0)] {
        assert_close(ln_gamma(x).exp(), factorial, 1e-13);
    }
    // Γ(1/2) = √π, Γ(3/2) = √π / 2, and one through the reflection: Γ(1/4) = 3.6256099082…
    let root_pi = std::f64::consts::PI.sqrt();
    assert_close(ln_gamma(0.5).exp(), root_pi, 1e-13);
    assert_close(ln_gamma(1.5).exp(), root_pi / 2.0, 1e-13);
    assert_close(ln_gamma(0.25).exp(), 3.625_609_908_221_908, 1e-13);
    assert_close(ln_gamma(100.0), 359.134_205_369_575_4, 1e-14);
}

#[test]
fn incomplete_beta_matches_references() {
    for (a, b, x, want) in [
        // Integer a, b: a binomial tail, 11/16.
        (2.0, 3.0, 0.5, 0.6875),
        (0.5, 0.5, 0.3, 0.369_010_119_565_545_4),
        (5.0, 2.5, 0.9, 0.944_666_181_391_490_2),
        // Large parameters, near the mean: many steps of the fraction.
        (100.0, 120.0, 0.45, 0.447_801_230_147_707_6),
    ] {
        assert_close(incomplete_beta(a, b, x).unwrap(), want, 1e-12);
    }
    assert_eq!(incomplete_beta(2.0, 3.0, 0.0), Ok(0.0));
    assert_eq!(incomplete_beta(2.0, 3.0, 1.0), Ok(1.0));
    for (a, b, x) in [
        (0.0, 1.0, 0.5),
        (1.0, -1.0, 0.5),
        (1.0, 1.0, 1.5),
        (1.0, 1.0, f64::NAN),
    ] {
        assert!(
            matches!(
                incomplete_beta(a, b, x),
                Err(DistributionError::Domain { .. })
            ),
            "{a} {b} {x}"
        );
    }
}

#[test]
fn student_t_tails_match_references() {
    for (t, df, want) in [
        (2.0, 10.0, 0.073_388_034_770_740_37),
        // Fractional degrees of freedom, as Welch's test has them.
        (3.5, 5.2, 0.016_208_091_475_602_63),
        (0.5, 2.5, 0.657_697_919_869_714_7),
        (10.0, 3.0, 0.002_128_399_058_414_15),
        // The 5 % critical value of t with 10 degrees of freedom.
        (2.228, 10.0, 0.050_011_771_817_111_37),
        (12.0, 7.9, 2.382_922_783_156_903e-6),
        // One degree of freedom is the Cauchy distribution: 1 − 2 atan(1) / π = 1/2.
        (1.0, 1.0, 0.5),
        (-1.0, 1.0, 0.5),
    ] {
        assert_close(student_t_two_sided(t, df).unwrap(), want, 1e-10);
    }
    // Two degrees of freedom: 1 − |t| / √(t² + 2).
    for t in [0.3, 1.7, 4.0, 25.0] {
        let want = 1.0 - t / (t * t + 2.0_f64).sqrt();
        assert_close(student_t_two_sided(t, 2.0).unwrap(), want, 1e-10);
    }
    assert_eq!(student_t_two_sided(0.0, 7.0), Ok(1.0));
    assert_eq!(student_t_two_sided(f64::INFINITY, 7.0), Ok(0.0));
}

#[test]
fn a_sample_is_described() {
    let s = describe(&[4.0, 1.0, 10.0, 3.0, 2.0]).unwrap();
    assert_eq!((s.n, s.min, s.max, s.median), (5, 1.0, 10.0, 3.0));
    assert_eq!(s.mean, 4.0);
    // Sample standard deviation (n − 1): √(50 / 4).
    assert_close(s.stddev, 3.535_533_905_932_737_6, 1e-15);
    assert_close(s.cv.unwrap(), 3.535_533_905_932_737_6 / 4.0, 1e-15);
    assert_eq!(
        s.values,
        [4.0, 1.0, 10.0, 3.0, 2.0],
        "repetition order is kept"
    );

    assert_eq!(describe(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
    let one = describe(&[7.5]).unwrap();
    assert_eq!(
        (one.n, one.mean, one.stddev, one.median),
        (1, 7.5, 0.0, 7.5)
    );
    // Equal values have no spread, exactly, however they round.
    let same = describe(&[0.1; 7]).unwrap();
    assert_eq!((same.mean, same.stddev, same.cv), (0.1, 0.0, Some(0.0)));
    // A mean of 0 has no coefficient of variation; a negative mean a positive one.
    assert_eq!(describe(&[-1.0, 1.0]).unwrap().cv, None);
    assert!(describe(&[-1.0, -3.0]).unwrap().cv.unwrap() > 0.0);
    assert_eq!(describe(&[]), None);
    assert_eq!(describe(&[f64::NAN, f64::INFINITY]), None);
    assert_eq!(describe(&[1.0, f64::NAN, 3.0]).unwrap().n, 2);
}

fn sample(values: &[f64]) -> MetricStats {
    describe(values).unwrap()
}

#[test]
fn welch_matches_references() {
    let a = sample(&[19.8, 20.4, 19.6, 17.8, 18.5, 18.9, 18.3, 18.9, 19.5, 22.0]);
    let b = sample(&[
        28.2, 26.6, 20.1, 23.3, 25.2, 22.1, 17.7, 27.6, 20.6, 13.7, 23.2, 17.5, 20.6, 18.0, 23.9,
        21.6, 24.3, 20.4, 23.9, 13.3,
    ]);
    let Welch::Tested { t, df, p } = welch(&a, &b) else {
        panic!("{:?}", welch(&a, &b))
    };
    assert_close(t, 2.225_512_039_969_852, 1e-12);
    assert_close(df, 24.524_634_944_257_343, 1e-12);
    assert_close(p, 0.035_484_530_830_010_31, 1e-9);
    // Swapped: the same p, t of the other sign.
    let Welch::Tested {
        t: back, p: p_back, ..
    } = welch(&b, &a)
    else {
        panic!()
    };
    assert_eq!((back, p_back), (-t, p));

    // Shifted by a tenth of a spread: no evidence of a difference.
    let Welch::Tested { t, df, p } = welch(
        &sample(&[1.0, 2.0, 3.0, 4.0, 5.0]),
        &sample(&[1.5, 2.5, 3.5, 4.5, 5.5]),
    ) else {
        panic!()
    };
    assert_eq!((t, df), (0.5, 8.0));
    assert_close(p, 0.630_536_075_556_976_3, 1e-10);
}

#[test]
fn five_repetitions_twice_as_fast_are_told_apart() {
    let a = sample(&[1000.0, 1011.0, 995.0, 1003.0, 998.0]);
    let b = sample(&[2003.0, 1990.0, 2011.0, 2006.0, 1995.0]);
    let Welch::Tested { p, .. } = welch(&a, &b) else {
        panic!()
    };
    assert_close(p, 4.199_862_084_979_883e-15, 1e-6);
}

#[test]
fn no_variance_and_too_few_values_are_said_so() {
    // One side without variance: the other's alone makes the standard error.
    let Welch::Tested { t, df, p } = welch(&sample(&[1.0, 2.0, 3.0]), &sample(&[5.0; 3])) else {
        panic!()
    };
    assert_close(t, 5.196_152_422_706_632, 1e-12);
    assert_close(df, 2.0, 1e-12);
    assert_close(p, 0.035_098_718_645_984_65, 1e-10);

    assert_eq!(
        welch(&sample(&[3.0; 5]), &sample(&[3.0; 4])),
        Welch::NoVariance { p: 1.0 }
    );
    assert_eq!(
        welch(&sample(&[3.0; 5]), &sample(&[3.5; 5])),
        Welch::NoVariance { p: 0.0 }
    );
    assert_eq!(
        welch(&sample(&[1.0]), &sample(&[1.0, 2.0, 3.0])),
        Welch::TooFew
    );
    assert_eq!(welch(&sample(&[1.0, 2.0]), &sample(&[9.0])), Welch::TooFew);
}
