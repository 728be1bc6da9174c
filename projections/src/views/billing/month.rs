//! [`Month`]: a calendar month in UTC, the billing period.

use std::fmt;
use std::str::FromStr;

use consign_schemas::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ProjectionError;

/// A calendar month of the proleptic Gregorian calendar, in UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Month {
    year: i16,
    month: u8,
}

impl Month {
    /// Builds the month `month` (1 to 12) of `year` (-9999 to 9999).
    ///
    /// # Errors
    ///
    /// [`ProjectionError::InvalidMonth`] outside those ranges.
    pub fn new(year: i16, month: u8) -> Result<Self, ProjectionError> {
        if !(1..=12).contains(&month) || !(-9999..=9999).contains(&year) {
            return Err(ProjectionError::InvalidMonth {
                text: format!("{year:04}-{month:02}"),
            });
        }
        Ok(Self { year, month })
    }

    /// Returns the UTC calendar month that contains `time`.
    ///
    /// # Errors
    ///
    /// [`ProjectionError::TimeOutOfRange`] outside the years -9999 to 9999.
    pub fn of(time: Timestamp) -> Result<Self, ProjectionError> {
        let micros = time.as_micros();
        let instant = jiff::Timestamp::from_microsecond(micros)
            .map_err(|_| ProjectionError::TimeOutOfRange { micros })?;
        let date = instant.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
        let month = u8::try_from(date.month()).expect("jiff months are 1 to 12");
        Ok(Self {
            year: date.year(),
            month,
        })
    }

    pub fn year(self) -> i16 {
        self.year
    }

    /// Returns the month number, 1 to 12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// Encodes the month so that byte order is month order: the year as a big-endian
    /// `u16` with the sign bit flipped, then the month.
    pub(crate) fn to_key(self) -> [u8; 3] {
        let [high, low] = ((self.year as u16) ^ (1 << 15)).to_be_bytes();
        [high, low, self.month]
    }

    /// Decodes [`Self::to_key`], or `None` for bytes no month encodes to.
    pub(crate) fn from_key(bytes: [u8; 3]) -> Option<Self> {
        let year = (u16::from_be_bytes([bytes[0], bytes[1]]) ^ (1 << 15)) as i16;
        Self::new(year, bytes[2]).ok()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = ProjectionError;

    /// Parses `YYYY-MM`, such as `2026-03`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ProjectionError::InvalidMonth {
            text: text.to_owned(),
        };
        let (year, month) = text.rsplit_once('-').ok_or_else(invalid)?;
        // Digits only: `parse` would take a sign, as in `-2026-03`.
        let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if year.len() < 4 || month.len() != 2 || !digits(year) || !digits(month) {
            return Err(invalid());
        }
        let year = year.parse::<i16>().map_err(|_| invalid())?;
        let month = month.parse::<u8>().map_err(|_| invalid())?;
        Self::new(year, month).map_err(|_| invalid())
    }
}

impl Serialize for Month {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_of_utc_boundaries() {
        // 2026-03-31T23:59:59.999999Z and 2026-04-01T00:00:00Z.
        let last_march = Timestamp::from_micros(1_775_001_599_999_999);
        let first_april = Timestamp::from_micros(1_775_001_600_000_000);

        assert_eq!(Month::of(last_march).unwrap(), Month::new(2026, 3).unwrap());
        assert_eq!(
            Month::of(first_april).unwrap(),
            Month::new(2026, 4).unwrap()
        );
        assert_eq!(
            Month::of(Timestamp::from_micros(-1)).unwrap(),
            Month::new(1969, 12).unwrap()
        );
    }

    #[test]
    fn month_of_rejects_far_times() {
        let error = Month::of(Timestamp::from_micros(i64::MAX)).unwrap_err();

        assert!(
            matches!(error, ProjectionError::TimeOutOfRange { .. }),
            "{error}"
        );
    }

    #[test]
    fn month_parses_and_prints() {
        let month: Month = "2026-03".parse().unwrap();

        assert_eq!(month, Month::new(2026, 3).unwrap());
        assert_eq!(month.to_string(), "2026-03");
        for invalid in [
            "2026-13", "2026-00", "2026-3", "26-03", "2026/03", "march", "-2026-03", "+2026-03",
            "2026-+3",
        ] {
            assert!(invalid.parse::<Month>().is_err(), "{invalid}");
        }
    }

    #[test]
    fn month_key_orders_like_months() {
        let months = [
            (-5, 12),
            (-1, 1),
            (0, 1),
            (1969, 12),
            (2026, 3),
            (2026, 4),
            (9999, 12),
        ];
        let keys: Vec<_> = months
            .iter()
            .map(|&(year, month)| Month::new(year, month).unwrap().to_key())
            .collect();

        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        for ((year, month), key) in months.iter().zip(keys) {
            assert_eq!(
                Month::from_key(key),
                Some(Month::new(*year, *month).unwrap())
            );
        }
    }
}
