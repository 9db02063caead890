//! Durations in config files and flags: jiff's friendly format (`30s`, `2m`, `1h 30m`).

use std::time::Duration;

/// Parses a positive duration; the error says what was expected.
pub fn parse(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a duration ({e}); expected e.g. 30s, 2m or 1h30m"))?;
    if d.is_negative() || d.is_zero() {
        return Err(format!("{s:?} must be a positive duration"));
    }
    Duration::try_from(d).map_err(|e| format!("{s:?}: {e}"))
}

/// serde adapter for `Duration` fields written as friendly strings.
pub mod serde_friendly {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Deserializes `"30s"` into a `Duration`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse(&s).map_err(serde::de::Error::custom)
    }

    /// The same for optional fields.
    pub mod option {
        use super::*;

        /// Deserializes `"30s"` into `Some(Duration)`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendly() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse("ten").unwrap_err().contains("expected"));
        assert!(parse("0s").is_err());
    }
}
