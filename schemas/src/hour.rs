//! UTC hours: the unit of bucketing, auditing and closing.

use time::OffsetDateTime;

const MS_PER_HOUR: i64 = 3_600_000;

/// An hour as whole hours since the Unix epoch (UTC). `Hour(0)` is 1970-01-01T00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hour(pub u32);

impl Hour {
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

    pub fn next(self) -> Hour {
        Hour(self.0 + 1)
    }

    fn datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.start_ms() / 1000)
            .expect("u32 hours stay within time's range")
    }

    /// `YYYY-MM-DD`, the `date=` partition value.
    pub fn date(self) -> String {
        let d = self.datetime();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    }

    /// `0..=23`, the `hour=` partition value.
    pub fn hour_of_day(self) -> u8 {
        self.datetime().hour()
    }

    /// The Hive-style partition path `date=YYYY-MM-DD/hour=HH`.
    pub fn partition_path(self) -> String {
        format!("date={}/hour={:02}", self.date(), self.hour_of_day())
    }

    /// Parses `YYYY-MM-DDTHH` (as printed by `Display`) or a plain hour number.
    pub fn parse(text: &str) -> Option<Hour> {
        if let Ok(n) = text.parse::<u32>() {
            return Some(Hour(n));
        }
        let full = format!("{text}:00:00Z");
        let dt =
            OffsetDateTime::parse(&full, &time::format_description::well_known::Rfc3339).ok()?;
        Some(Hour::from_unix_ms(dt.unix_timestamp() * 1000))
    }
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
}
