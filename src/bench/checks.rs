//! Checks of the command-line values every mode shares: durations and
//! counts within their bounds, with a message that names the flag.

use std::time::Duration;

use super::error::BenchError;
use super::limits::MAX_SECS;

/// A positive, finite duration of at most a day.
pub fn check_secs(flag: &str, secs: f64) -> Result<Duration, BenchError> {
    if !(secs.is_finite() && secs > 0.0 && secs <= MAX_SECS) {
        return Err(BenchError::InvalidArgs(format!(
            "{flag} {secs} must be a number of seconds above 0 and at most {MAX_SECS}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A count between 1 and `max`.
pub fn check_count(flag: &str, value: usize, max: usize) -> Result<usize, BenchError> {
    if value == 0 || value > max {
        return Err(BenchError::InvalidArgs(format!(
            "{flag} {value} must be between 1 and {max}"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_must_be_positive_and_bounded() {
        assert_eq!(
            check_secs("--secs", 2.5).unwrap(),
            Duration::from_millis(2500)
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            let err = check_secs("--secs", bad).unwrap_err();
            assert!(err.to_string().starts_with("--secs"), "{err}");
        }
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(check_count("--conns", 5, 10).unwrap(), 5);
        assert!(check_count("--conns", 0, 10).is_err());
        let err = check_count("--inflight", 11, 10).unwrap_err();
        assert_eq!(err.to_string(), "--inflight 11 must be between 1 and 10");
    }
}
