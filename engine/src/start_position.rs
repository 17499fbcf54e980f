//! Where a reader starts in a partition: `earliest`, `latest`, an offset,
//! or a time (`@MILLIS` since the epoch or RFC 3339), meaning the first
//! record at or after it.
//!
//! One definition for `sluice consume`, `sluice group reset-offsets` and a
//! processor's `from` (CLI flag and `PUT /v1/processors/{name}`). The RFC
//! 3339 parser is strict: fixed positions, ASCII digits only, real
//! calendar days (no 2026-02-31), a four-digit year, and a zone (`Z` or
//! `±HH:MM`); anything else is refused with a message, never guessed.
//! Its inverse, [`format_rfc3339`], is how the CLI prints times.

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartPosition {
    /// The log start offset.
    Earliest,
    /// The end of the log (the high watermark, or the last stable offset
    /// for a read_committed reader): only records produced from now on.
    Latest,
    /// This offset, clamped to [log start offset, high watermark].
    Offset(i64),
    /// The first record with a timestamp at or after this (ms since epoch).
    Timestamp(i64),
}

impl StartPosition {
    /// `earliest`, `latest`, `OFFSET`, `@MILLIS` or an RFC 3339 time.
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        match raw {
            "earliest" | "beginning" => return Ok(Self::Earliest),
            "latest" | "end" => return Ok(Self::Latest),
            _ => {}
        }
        if let Ok(offset) = raw.parse::<i64>() {
            return match offset >= 0 {
                true => Ok(Self::Offset(offset)),
                false => Err(format!("offset {offset} is negative")),
            };
        }
        if let Some(millis) = raw.strip_prefix('@') {
            return millis
                .parse::<i64>()
                .ok()
                .filter(|ms| *ms >= 0)
                .map(Self::Timestamp)
                .ok_or_else(|| format!("{raw:?}: expected @MILLISECONDS since the epoch"));
        }
        parse_rfc3339(raw).map(Self::Timestamp).ok_or_else(|| {
            format!(
                "{raw:?}: expected earliest, latest, an offset, @MILLISECONDS or an RFC 3339 \
                 time such as 2026-11-23T10:00:00Z"
            )
        })
    }
}

/// Milliseconds since the epoch of an RFC 3339 time
/// (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`).
fn parse_rfc3339(raw: &str) -> Option<i64> {
    let bytes = raw.as_bytes();
    let number = |from: usize, to: usize| -> Option<i64> {
        let digits = raw.get(from..to)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if bytes.len() < 20 || separators.iter().any(|(at, c)| bytes[*at] != *c) {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &raw[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (hours, minutes) = (number_in(rest, 1, 3)?, number_in(rest, 4, 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 60 + minutes)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

fn number_in(raw: &str, from: usize, to: usize) -> Option<i64> {
    let digits = raw.get(from..to)?;
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())?
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `2026-11-23T10:00:00.123Z` for milliseconds since the epoch.
pub(crate) fn format_rfc3339(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let seconds = ms_of_day / 1_000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60,
        ms_of_day % 1_000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, the inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The canonical form, which [`StartPosition::parse`] reads back: RFC 3339
/// times are given as `@MILLIS`.
impl std::fmt::Display for StartPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Latest => f.write_str("latest"),
            Self::Offset(offset) => write!(f, "{offset}"),
            Self::Timestamp(ms) => write!(f, "@{ms}"),
        }
    }
}

impl std::str::FromStr for StartPosition {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        Self::parse(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!(
            StartPosition::parse("earliest"),
            Ok(StartPosition::Earliest)
        );
        assert_eq!(StartPosition::parse("latest"), Ok(StartPosition::Latest));
        assert_eq!(StartPosition::parse("42"), Ok(StartPosition::Offset(42)));
        assert_eq!(
            StartPosition::parse("@1700000000000"),
            Ok(StartPosition::Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            StartPosition::parse("2023-11-14T22:13:20Z"),
            Ok(StartPosition::Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            StartPosition::parse("2023-11-14T23:13:20.5+01:00"),
            Ok(StartPosition::Timestamp(1_700_000_000_500))
        );
        assert_eq!(
            StartPosition::parse("1970-01-01T00:00:00Z"),
            Ok(StartPosition::Timestamp(0))
        );
        for bad in [
            "-1",
            "@x",
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:13:20",
            "soon",
        ] {
            assert!(StartPosition::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_canonical_form_reads_back() {
        for raw in ["earliest", "latest", "42", "@1700000000000"] {
            assert_eq!(StartPosition::parse(raw).unwrap().to_string(), raw);
        }
        let time = StartPosition::parse("2023-11-14T22:13:20Z").unwrap();
        assert_eq!(time.to_string(), "@1700000000000");
    }

    /// Malformed times are refused with a message naming them, never a
    /// panic or a guess: non-ASCII where digits belong, impossible
    /// calendar days, years that do not fit, negative epoch times.
    #[test]
    fn malformed_times_are_refused() {
        for bad in [
            "2026-01-01T00:00:00.ééZ",
            "2026-01-01T00:00:00.5éZ",
            "2026-01-01T00:00:0éZ",
            "é026-01-01T00:00:00Z",
            "2026-02-31T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "99999999999999999-01-01T00:00:00Z",
            "+99999-01-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00.Z",
            "@-5",
            "@99999999999999999999",
        ] {
            let error = StartPosition::parse(bad).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
        assert!(StartPosition::parse("2024-02-29T00:00:00Z").is_ok());
    }
}
