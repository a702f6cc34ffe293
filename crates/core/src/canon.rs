//! Canonical values: one form per logical type ([`SqlType`]) that two engines'
//! renderings of the same value are both brought to, so `reconcile` can
//! compare a source and a destination without trusting either engine's text
//! output (Postgres prints `1.50`, `2024-01-01 00:00:00+00`, `\x00ff`;
//! DuckDB and Snowflake print the same values differently).
//!
//! The mapping of DESIGN.md §5 is applied first: a source value is
//! canonicalised as the value the destination is supposed to hold.

use crate::error::{Error, Result};
use crate::row_id::decimal_text;
use crate::schema::SqlType;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use std::fmt;
use std::hash::{Hash, Hasher};

/// A value in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Canon {
    Null,
    Bool(bool),
    /// Integers of any width.
    Int(i128),
    /// An exact decimal in its shortest form (see [`canon_decimal`]).
    Decimal(String),
    /// The bit pattern of the value as an f64 (f32 values widened exactly);
    /// every NaN is the same NaN.
    Float(u64),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since midnight.
    Time(i64),
    /// Microseconds since 1970-01-01 00:00:00 (UTC for timestamptz).
    Timestamp(i64),
    Uuid(u128),
    /// JSON in canonical form (see [`canon_json`]).
    Json(String),
}

impl Canon {
    pub fn float(v: f64) -> Canon {
        Canon::Float(if v.is_nan() { f64::NAN.to_bits() } else { v.to_bits() })
    }

    /// A 64-bit hash of the value, stable within one process.
    pub fn hash64(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Canon::Null)
    }
}

impl fmt::Display for Canon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Canon::Null => f.write_str("NULL"),
            Canon::Bool(b) => write!(f, "{b}"),
            Canon::Int(i) => write!(f, "{i}"),
            Canon::Decimal(d) => f.write_str(d),
            Canon::Float(bits) => write!(f, "{}", f64::from_bits(*bits)),
            Canon::Text(s) => write!(f, "{s:?}"),
            Canon::Bytes(b) => {
                f.write_str("\\x")?;
                b.iter().try_for_each(|x| write!(f, "{x:02x}"))
            }
            Canon::Date(d) => f.write_str(&iso_date(*d as i64)),
            Canon::Time(us) => f.write_str(&iso_time(*us)),
            Canon::Timestamp(us) => {
                let (days, tod) = (us.div_euclid(86_400_000_000), us.rem_euclid(86_400_000_000));
                write!(f, "{}T{}", iso_date(days), iso_time(tod))
            }
            Canon::Uuid(u) => f.write_str(&uuid_text(*u)),
            Canon::Json(j) => f.write_str(j),
        }
    }
}

/// The canonical text of a UUID (lower-case, hyphenated).
pub fn uuid_text(u: u128) -> String {
    let h = format!("{u:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Parses a UUID in any of the usual text forms (hyphens optional, braces allowed).
pub fn parse_uuid(s: &str) -> Option<u128> {
    let hex: String = s.trim_matches(|c| c == '{' || c == '}').chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

/// Year, month, day of a day number (days since 1970-01-01, proleptic
/// Gregorian, astronomical years: year 0 is 1 BC).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a (proleptic Gregorian, astronomical) date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// ISO 8601 date with astronomical years (`0000` is 1 BC, `-0001` 2 BC).
pub fn iso_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    if y < 0 { format!("-{:04}-{m:02}-{d:02}", -y) } else { format!("{y:04}-{m:02}-{d:02}") }
}

/// `HH:MM:SS[.ffffff]` of microseconds since midnight (24:00:00 allowed).
pub fn iso_time(us: i64) -> String {
    let s = us / 1_000_000;
    let frac = us % 1_000_000;
    let base = format!("{:02}:{:02}:{:02}", s / 3600, s % 3600 / 60, s % 60);
    if frac == 0 { base } else { format!("{base}.{frac:06}") }
}

/// The shortest exact form of a decimal number written as
/// `[-+]digits[.digits]`: no leading zeros, no trailing fractional zeros,
/// no sign on zero. `None` if it is not such a number (NaN, Infinity, …).
pub fn canon_decimal(s: &str) -> Option<String> {
    let s = s.trim();
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(s.len());
    if neg && !(int.is_empty() && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

/// Canonical JSON: no insignificant whitespace, object members sorted by key
/// (stably, so duplicate keys keep their order), strings with only `"`, `\`
/// and control characters escaped, numbers exact as `digits` or
/// `digitsE±exp` with no trailing zeros in the digits (`1.50`, `15e-1` and
/// `0.15E1` are all `15E-1`). Numbers are never rounded through a float.
pub fn canon_json(s: &str) -> Result<String> {
    let mut p = JsonParser { s: s.as_bytes(), i: 0 };
    let mut out = String::with_capacity(s.len());
    p.ws();
    p.value(&mut out, 0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.error("trailing characters"));
    }
    Ok(out)
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn error(&self, what: &str) -> Error {
        Error::data(format!("invalid JSON at byte {}: {what}", self.i))
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, b: u8) -> Result<()> {
        if self.peek() == Some(b) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", b as char)))
        }
    }

    fn value(&mut self, out: &mut String, depth: usize) -> Result<()> {
        if depth > 512 {
            return Err(self.error("nested too deeply"));
        }
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut members: Vec<(String, String)> = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        let mut key = String::new();
                        self.string(&mut key)?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                        let mut v = String::new();
                        self.value(&mut v, depth + 1)?;
                        members.push((key, v));
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.error("expected `,` or `}`")),
                        }
                    }
                }
                members.sort_by(|a, b| a.0.cmp(&b.0));
                out.push('{');
                for (n, (k, v)) in members.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push(':');
                    out.push_str(v);
                }
                out.push('}');
            }
            Some(b'[') => {
                self.i += 1;
                out.push('[');
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    let mut first = true;
                    loop {
                        self.ws();
                        if !first {
                            out.push(',');
                        }
                        first = false;
                        self.value(out, depth + 1)?;
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.error("expected `,` or `]`")),
                        }
                    }
                }
                out.push(']');
            }
            Some(b'"') => self.string(out)?,
            Some(b't') => self.literal("true", out)?,
            Some(b'f') => self.literal("false", out)?,
            Some(b'n') => self.literal("null", out)?,
            Some(b'-' | b'0'..=b'9') => self.number(out)?,
            _ => return Err(self.error("expected a value")),
        }
        Ok(())
    }

    fn literal(&mut self, word: &str, out: &mut String) -> Result<()> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            out.push_str(word);
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let h = self.s.get(self.i..self.i + 4).ok_or_else(|| self.error("short \\u escape"))?;
        let v = std::str::from_utf8(h)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.error("bad \\u escape"))?;
        self.i += 4;
        Ok(v)
    }

    /// Parses a string and writes it in canonical (re-escaped) form.
    fn string(&mut self, out: &mut String) -> Result<()> {
        self.expect(b'"')?;
        let mut text = String::new();
        loop {
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != b'"' && self.s[self.i] != b'\\' {
                self.i += 1;
            }
            text.push_str(std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.error("invalid UTF-8"))?);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.peek().ok_or_else(|| self.error("unterminated escape"))?;
                    self.i += 1;
                    match c {
                        b'"' => text.push('"'),
                        b'\\' => text.push('\\'),
                        b'/' => text.push('/'),
                        b'b' => text.push('\u{8}'),
                        b'f' => text.push('\u{c}'),
                        b'n' => text.push('\n'),
                        b'r' => text.push('\r'),
                        b't' => text.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    self.i = save;
                                    hi
                                }
                            } else {
                                hi
                            };
                            match char::from_u32(cp) {
                                Some(ch) => text.push(ch),
                                // A lone surrogate: keep it visible and distinct.
                                None => text.push_str(&format!("\\u{cp:04x}")),
                            }
                        }
                        _ => return Err(self.error("bad escape")),
                    }
                }
                _ => return Err(self.error("unterminated string")),
            }
        }
        out.push('"');
        for ch in text.chars() {
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        Ok(())
    }

    fn number(&mut self, out: &mut String) -> Result<()> {
        let neg = self.peek() == Some(b'-');
        if neg {
            self.i += 1;
        }
        let digits_from = |p: &mut Self| {
            let start = p.i;
            while p.i < p.s.len() && p.s[p.i].is_ascii_digit() {
                p.i += 1;
            }
            std::str::from_utf8(&p.s[start..p.i]).unwrap_or("").to_owned()
        };
        let int = digits_from(self);
        if int.is_empty() {
            return Err(self.error("bad number"));
        }
        let frac = if self.peek() == Some(b'.') {
            self.i += 1;
            let f = digits_from(self);
            if f.is_empty() {
                return Err(self.error("bad number"));
            }
            f
        } else {
            String::new()
        };
        let mut exp: i64 = 0;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            let eneg = match self.peek() {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let e = digits_from(self);
            let e: i64 = e.parse().map_err(|_| self.error("bad exponent"))?;
            exp = if eneg { -e } else { e };
        }
        // value = digits(int ++ frac) × 10^(exp − len(frac))
        let mut digits = format!("{int}{frac}");
        let mut exp = exp - frac.len() as i64;
        let lead = digits.len() - digits.trim_start_matches('0').len();
        digits.drain(..lead);
        if digits.is_empty() {
            out.push('0');
            return Ok(());
        }
        let trimmed = digits.trim_end_matches('0').len();
        exp += (digits.len() - trimmed) as i64;
        digits.truncate(trimmed);
        if neg {
            out.push('-');
        }
        out.push_str(&digits);
        if exp != 0 {
            out.push_str(&format!("E{exp}"));
        }
        Ok(())
    }
}

/// Canonicalises the value at `row` of an Arrow array read back from a
/// destination, for a column of logical type `t`. Accepts the Arrow types
/// engines actually return (any integer width, any time unit, string and
/// binary views), so a destination needs no conversion of its own.
pub fn canon_from_arrow(a: &ArrayRef, row: usize, t: SqlType) -> Result<Canon> {
    if a.is_null(row) {
        return Ok(Canon::Null);
    }
    let dt = a.data_type();
    let bad = || Error::internal(format!("reconcile: a {} column came back as Arrow {dt}", t.name()));
    let int = |a: &ArrayRef| -> Option<i128> {
        Some(match a.data_type() {
            DataType::Int8 => a.as_primitive::<Int8Type>().value(row) as i128,
            DataType::Int16 => a.as_primitive::<Int16Type>().value(row) as i128,
            DataType::Int32 => a.as_primitive::<Int32Type>().value(row) as i128,
            DataType::Int64 => a.as_primitive::<Int64Type>().value(row) as i128,
            DataType::UInt8 => a.as_primitive::<UInt8Type>().value(row) as i128,
            DataType::UInt16 => a.as_primitive::<UInt16Type>().value(row) as i128,
            DataType::UInt32 => a.as_primitive::<UInt32Type>().value(row) as i128,
            DataType::UInt64 => a.as_primitive::<UInt64Type>().value(row) as i128,
            DataType::Decimal128(_, 0) => a.as_primitive::<Decimal128Type>().value(row),
            _ => return None,
        })
    };
    let text = |a: &ArrayRef| -> Option<String> {
        Some(match a.data_type() {
            DataType::Utf8 => a.as_string::<i32>().value(row).to_owned(),
            DataType::LargeUtf8 => a.as_string::<i64>().value(row).to_owned(),
            DataType::Utf8View => a.as_string_view().value(row).to_owned(),
            _ => return None,
        })
    };
    let bytes = |a: &ArrayRef| -> Option<Vec<u8>> {
        Some(match a.data_type() {
            DataType::Binary => a.as_binary::<i32>().value(row).to_vec(),
            DataType::LargeBinary => a.as_binary::<i64>().value(row).to_vec(),
            DataType::BinaryView => a.as_binary_view().value(row).to_vec(),
            DataType::FixedSizeBinary(_) => a.as_fixed_size_binary().value(row).to_vec(),
            _ => return None,
        })
    };
    let micros = |v: i64, unit: &TimeUnit| -> i64 {
        match unit {
            TimeUnit::Second => v * 1_000_000,
            TimeUnit::Millisecond => v * 1_000,
            TimeUnit::Microsecond => v,
            TimeUnit::Nanosecond => v.div_euclid(1_000),
        }
    };
    Ok(match t {
        SqlType::Int16 | SqlType::Int32 | SqlType::Int64 => Canon::Int(int(a).ok_or_else(bad)?),
        SqlType::Decimal { .. } => match dt {
            DataType::Decimal128(_, s) => {
                Canon::Decimal(decimal_text(a.as_primitive::<Decimal128Type>().value(row), *s))
            }
            _ => match int(a) {
                Some(i) => Canon::Decimal(i.to_string()),
                None => {
                    let s = text(a).ok_or_else(bad)?;
                    canon_decimal(&s).map(Canon::Decimal).unwrap_or(Canon::Text(s))
                }
            },
        },
        SqlType::Float32 | SqlType::Float64 => match dt {
            DataType::Float32 => Canon::float(a.as_primitive::<Float32Type>().value(row) as f64),
            DataType::Float64 => Canon::float(a.as_primitive::<Float64Type>().value(row)),
            _ => return Err(bad()),
        },
        SqlType::Text => Canon::Text(text(a).ok_or_else(bad)?),
        SqlType::Boolean => match dt {
            DataType::Boolean => Canon::Bool(a.as_boolean().value(row)),
            _ => return Err(bad()),
        },
        SqlType::Date => match dt {
            DataType::Date32 => Canon::Date(a.as_primitive::<Date32Type>().value(row)),
            DataType::Date64 => Canon::Date(a.as_primitive::<Date64Type>().value(row).div_euclid(86_400_000) as i32),
            _ => return Err(bad()),
        },
        SqlType::Timestamp | SqlType::TimestampTz => match dt {
            DataType::Timestamp(unit, _) => {
                let v = match unit {
                    TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(row),
                    TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(row),
                    TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(row),
                    TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(row),
                };
                Canon::Timestamp(micros(v, unit))
            }
            _ => return Err(bad()),
        },
        SqlType::Time => match dt {
            DataType::Time64(TimeUnit::Microsecond) => {
                Canon::Time(a.as_primitive::<Time64MicrosecondType>().value(row))
            }
            DataType::Time64(TimeUnit::Nanosecond) => {
                Canon::Time(a.as_primitive::<Time64NanosecondType>().value(row) / 1_000)
            }
            DataType::Time32(TimeUnit::Millisecond) => {
                Canon::Time(a.as_primitive::<Time32MillisecondType>().value(row) as i64 * 1_000)
            }
            DataType::Time32(TimeUnit::Second) => {
                Canon::Time(a.as_primitive::<Time32SecondType>().value(row) as i64 * 1_000_000)
            }
            _ => return Err(bad()),
        },
        SqlType::Uuid => {
            if let Some(s) = text(a) {
                parse_uuid(&s).map(Canon::Uuid).unwrap_or(Canon::Text(s))
            } else {
                let b = bytes(a).ok_or_else(bad)?;
                let arr: [u8; 16] = b.as_slice().try_into().map_err(|_| bad())?;
                Canon::Uuid(u128::from_be_bytes(arr))
            }
        }
        SqlType::Json => {
            let s = text(a).ok_or_else(bad)?;
            // Text that is not JSON stays text, so it shows up as a difference.
            canon_json(&s).map(Canon::Json).unwrap_or(Canon::Text(s))
        }
        SqlType::Binary => Canon::Bytes(bytes(a).ok_or_else(bad)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::*;
    use std::sync::Arc;

    #[test]
    fn decimals_are_shortest_and_exact() {
        assert_eq!(canon_decimal("1.50").as_deref(), Some("1.5"));
        assert_eq!(canon_decimal("-0.00").as_deref(), Some("0"));
        assert_eq!(canon_decimal("007").as_deref(), Some("7"));
        assert_eq!(canon_decimal("-.5").as_deref(), Some("-0.5"));
        let big = "123456789012345678901234567890123456789012345678901234567890.000";
        assert_eq!(canon_decimal(big).as_deref(), Some(&big[..60]));
        assert_eq!(canon_decimal("NaN"), None);
        assert_eq!(canon_decimal("Infinity"), None);
        assert_eq!(canon_decimal(""), None);
        assert_eq!(canon_decimal("1e5"), None);
    }

    #[test]
    fn json_is_canonical_and_exact() {
        assert_eq!(
            canon_json(r#" { "b" : [1, 2.50, -0.0, 1e2], "a": "x\u00e9\n" } "#).unwrap(),
            r#"{"a":"xé\u000a","b":[1,25E-1,0,1E2]}"#
        );
        assert_eq!(canon_json(r#"{"a":1}"#).unwrap(), canon_json("{\"a\" :\n 1.0}").unwrap());
        // 60 significant digits survive.
        let n = "123456789012345678901234567890.123456789012345678901234567891";
        assert!(canon_json(n).unwrap().starts_with("123456789012345678901234567890123456789012345678901234567891"));
        assert_eq!(canon_json(r#""\ud83d\ude00""#).unwrap(), "\"😀\"");
        assert_eq!(canon_json(r#"{"k":1,"k":2}"#).unwrap(), r#"{"k":1,"k":2}"#);
        assert!(canon_json("{").is_err());
        assert!(canon_json("[1,]").is_err());
        assert!(canon_json("01x").is_err());
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-2_440_588 - 10, -719_528, -1, 0, 1, 11_016, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(days_from_civil(-4712, 1, 1)), "-4712-01-01");
        assert_eq!(iso_time(86_400_000_000), "24:00:00");
        assert_eq!(Canon::Timestamp(1_500_000).to_string(), "1970-01-01T00:00:01.500000");
    }

    #[test]
    fn arrow_values_canonicalise_by_logical_type() {
        let d: ArrayRef = Arc::new(Decimal128Array::from(vec![150]).with_precision_and_scale(12, 2).unwrap());
        assert_eq!(
            canon_from_arrow(&d, 0, SqlType::Decimal { precision: 12, scale: 2 }).unwrap(),
            Canon::Decimal("1.5".into())
        );
        let f: ArrayRef = Arc::new(Float32Array::from(vec![f32::NAN, 0.1]));
        assert_eq!(canon_from_arrow(&f, 0, SqlType::Float32).unwrap(), Canon::float(f64::NAN));
        assert_eq!(canon_from_arrow(&f, 1, SqlType::Float32).unwrap(), Canon::float(0.1f32 as f64));
        let u: ArrayRef = Arc::new(StringArray::from(vec!["A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"]));
        assert_eq!(canon_from_arrow(&u, 0, SqlType::Uuid).unwrap().to_string(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        let ts: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![Some(2_000), None]));
        assert_eq!(canon_from_arrow(&ts, 0, SqlType::TimestampTz).unwrap(), Canon::Timestamp(2));
        assert_eq!(canon_from_arrow(&ts, 1, SqlType::TimestampTz).unwrap(), Canon::Null);
        let j: ArrayRef = Arc::new(StringArray::from(vec![r#"{"b": 1, "a": [true]}"#, "not json"]));
        assert_eq!(canon_from_arrow(&j, 0, SqlType::Json).unwrap(), Canon::Json(r#"{"a":[true],"b":1}"#.into()));
        assert_eq!(canon_from_arrow(&j, 1, SqlType::Json).unwrap(), Canon::Text("not json".into()));
        let i: ArrayRef = Arc::new(Int64Array::from(vec![5]));
        assert!(canon_from_arrow(&i, 0, SqlType::Date).is_err());
    }
}
