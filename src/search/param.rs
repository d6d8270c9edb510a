//! `NAME=VALUE` assignments of ranking parameters, as evaluation sweeps pass
//! them on the command line (`--fusion bm25=0.3`, `--file-param test_prior=1`).
//! Every weight, prior and count is a non-negative finite number: a NaN or
//! infinite weight would make every score incomparable, not just odd.

/// Splits `assignment` into a trimmed name and value.
pub(crate) fn split(assignment: &str) -> Result<(&str, &str), String> {
    let (name, value) = assignment
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got {assignment:?}"))?;
    Ok((name.trim(), value.trim()))
}

/// `value` as a weight: a finite number of at least zero.
pub(crate) fn weight(name: &str, value: &str) -> Result<f32, String> {
    value
        .parse()
        .ok()
        .filter(|n: &f32| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{name}: {value:?} is not a non-negative number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_trimmed() {
        assert_eq!(split(" bm25 = 0.3 ").unwrap(), ("bm25", "0.3"));
        assert!(split("bm25").unwrap_err().contains("NAME=VALUE"));
    }

    #[test]
    fn weights_are_finite_and_not_negative() {
        assert_eq!(weight("k", "60").unwrap(), 60.0);
        assert_eq!(weight("k", "0").unwrap(), 0.0);
        for bad in ["-1", "NaN", "inf", "x", ""] {
            assert!(weight("k", bad).unwrap_err().contains("non-negative number"), "{bad}");
        }
    }
}
