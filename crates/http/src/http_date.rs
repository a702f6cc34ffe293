//! HTTP dates (`Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`).
//!
//! RFC 9110 §5.6.7: senders write IMF-fixdate; recipients also accept the
//! obsolete RFC 850 (`Wednesday, 21-Oct-15 07:28:00 GMT`) and asctime
//! (`Wed Oct 21 07:28:00 2015`) forms. All three carry the same pieces in
//! the same order — day, month, year around an `hh:mm:ss` — so one tolerant
//! reader handles them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/// The moment an HTTP date names, or `None` if it is not one.
pub fn parse(text: &str) -> Option<SystemTime> {
    let mut numbers = Vec::new();
    let (mut month, mut time) = (None, None);
    for token in text.split([' ', ',', '-']).filter(|t| !t.is_empty()) {
        if token.contains(':') {
            time = Some(parse_time(token)?);
        } else if token.bytes().all(|b| b.is_ascii_digit()) {
            numbers.push((token.parse::<i64>().ok()?, token.len()));
        } else if let Some(m) = MONTHS.iter().position(|m| token.eq_ignore_ascii_case(m)) {
            month = Some(m as i64 + 1);
        }
    }
    let [(day, _), (year, year_digits)] = numbers[..] else { return None };
    let year = match year_digits {
        2 if year < 70 => 2000 + year,
        2 => 1900 + year,
        4 => year,
        _ => return None,
    };
    if !(1..=31).contains(&day) {
        return None;
    }
    let secs = days_from_civil(year, month?, day) * 86_400 + time?;
    u64::try_from(secs).ok().map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// `hh:mm:ss` → seconds into the day.
fn parse_time(token: &str) -> Option<i64> {
    let mut parts = token.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_name_the_same_moment() {
        let want = UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37 UTC
        for text in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            assert_eq!(parse(text), Some(want), "{text}");
        }
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_164_800); // 2024-02-29 00:00:00 UTC
        assert_eq!(parse("Thu, 29 Feb 2024 00:00:00 GMT"), Some(leap));
    }

    #[test]
    fn other_text_is_not_a_date() {
        for text in
            ["", "soon", "120", "Sun, 06 Nov 1994", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:00:00 GMT"]
        {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
