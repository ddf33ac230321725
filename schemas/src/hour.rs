//! UTC hours: the unit of bucketing, auditing and closing.

use time::OffsetDateTime;

const MS_PER_HOUR: i64 = 3_600_000;

/// The last millisecond evd accepts in a decoded timestamp: 9999-12-31T23:59:59.999Z.
/// Every decoder refuses later (and negative) times, so no hour past `Hour::MAX` is
/// ever built from input.
pub const MAX_UNIX_MS: i64 = 253_402_300_800_000 - 1;

/// An hour as whole hours since the Unix epoch (UTC). `Hour(0)` is 1970-01-01T00.
///
/// Every method is total over `u32` (printing an hour past year 9999 shows a
/// five- or six-digit year), but only `Hour(0)..=Hour::MAX` is valid input: decoders,
/// `parse` and `checked` refuse the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hour(pub u32);

impl Hour {
    /// 9999-12-31T23, the last valid hour.
    pub const MAX: Hour = Hour(((MAX_UNIX_MS + 1) / MS_PER_HOUR - 1) as u32);

    /// `Hour(n)` when `n` is a valid hour (at most `Hour::MAX`).
    pub fn checked(n: u32) -> Option<Hour> {
        (n <= Hour::MAX.0).then_some(Hour(n))
    }

    /// Whether `unix_ms` is a time decoders accept: 1970 up to the end of year 9999.
    pub fn valid_unix_ms(unix_ms: i64) -> bool {
        (0..=MAX_UNIX_MS).contains(&unix_ms)
    }

    /// The hour containing `unix_ms`. Times before 1970 map to hour 0.
    pub fn from_unix_ms(unix_ms: i64) -> Hour {
        Hour(u32::try_from(unix_ms.max(0) / MS_PER_HOUR).unwrap_or(u32::MAX))
    }

    pub fn from_unix_us(unix_us: i64) -> Hour {
        Hour::from_unix_ms(unix_us.div_euclid(1000))
    }

    pub fn start_ms(self) -> i64 {
        i64::from(self.0) * MS_PER_HOUR
    }

    /// First millisecond of the next hour.
    pub fn end_ms(self) -> i64 {
        self.start_ms() + MS_PER_HOUR
    }

    /// The following hour; saturates at `u32::MAX`.
    pub fn next(self) -> Hour {
        Hour(self.0.saturating_add(1))
    }

    /// `YYYY-MM-DD`, the `date=` partition value.
    pub fn date(self) -> String {
        let (year, month, day) = civil_date(i64::from(self.0 / 24));
        format!("{year:04}-{month:02}-{day:02}")
    }

    /// `0..=23`, the `hour=` partition value.
    pub fn hour_of_day(self) -> u8 {
        (self.0 % 24) as u8
    }

    /// The Hive-style partition path `date=YYYY-MM-DD/hour=HH`.
    pub fn partition_path(self) -> String {
        format!("date={}/hour={:02}", self.date(), self.hour_of_day())
    }

    /// Parses `YYYY-MM-DDTHH` (as printed by `Display`) or a plain hour number; `None`
    /// for anything else, including hours past `Hour::MAX` and times before 1970.
    pub fn parse(text: &str) -> Option<Hour> {
        if let Ok(n) = text.parse::<u32>() {
            return Hour::checked(n);
        }
        if text.len() > 16 {
            return None;
        }
        let full = format!("{text}:00:00Z");
        let dt =
            OffsetDateTime::parse(&full, &time::format_description::well_known::Rfc3339).ok()?;
        let ms = dt.unix_timestamp().checked_mul(1000)?;
        Hour::valid_unix_ms(ms).then(|| Hour::from_unix_ms(ms))
    }
}

/// The proleptic Gregorian `(year, month, day)` of `days` since 1970-01-01, for any
/// non-negative day count (era arithmetic over 400-year cycles of 146,097 days).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days since 0000-03-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl std::fmt::Display for Hour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}T{:02}", self.date(), self.hour_of_day())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_path_is_hive_style() {
        // 2026-11-21T10:30:00Z
        let h = Hour::from_unix_ms(1_795_257_000_000);
        assert_eq!(h.partition_path(), "date=2026-11-21/hour=10");
        assert_eq!(h.to_string(), "2026-11-21T10");
        assert_eq!(Hour::parse("2026-11-21T10"), Some(h));
        assert_eq!(Hour::parse(&h.0.to_string()), Some(h));
        assert!(h.start_ms() <= 1_795_257_000_000 && 1_795_257_000_000 < h.end_ms());
    }

    #[test]
    fn every_u32_hour_prints_and_only_valid_ones_parse() {
        assert_eq!(Hour::MAX.to_string(), "9999-12-31T23");
        assert_eq!(Hour::parse("9999-12-31T23"), Some(Hour::MAX));
        assert_eq!(Hour::checked(Hour::MAX.0 + 1), None);
        assert_eq!(Hour::parse(&(Hour::MAX.0 + 1).to_string()), None);
        assert_eq!(Hour(u32::MAX).next(), Hour(u32::MAX));
        for n in [Hour::MAX.0 + 1, u32::MAX - 1, u32::MAX] {
            let text = Hour(n).to_string();
            assert!(text.ends_with(&format!("T{:02}", n % 24)), "{text}");
            assert_eq!(Hour::parse(&text), None, "{text}");
        }
        assert_eq!(Hour(0).to_string(), "1970-01-01T00");
        assert_eq!(Hour::parse("1969-12-31T23"), None);
    }

    proptest::proptest! {
        /// The hand-written calendar agrees with the `time` crate wherever it reaches.
        #[test]
        fn the_calendar_matches_the_time_crate(n in 0..=Hour::MAX.0) {
            let dt = OffsetDateTime::from_unix_timestamp(Hour(n).start_ms() / 1000).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}",
                dt.year(),
                u8::from(dt.month()),
                dt.day(),
                dt.hour()
            );
            proptest::prop_assert_eq!(Hour(n).to_string(), expected.clone());
            proptest::prop_assert_eq!(Hour::parse(&expected), Some(Hour(n)));
        }
    }
}
