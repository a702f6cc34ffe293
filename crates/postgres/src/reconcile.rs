//! The source side of `reconcile`: rows read in Postgres's own text output
//! (not through the COPY-binary decoder the snapshot uses, so a decoding bug
//! cannot hide itself) and brought to canonical form.
//!
//! Key ranges order text keys with `COLLATE "C"` (byte order, as DuckDB and
//! Snowflake compare strings); keys whose order cannot agree that way
//! (`char(n)`, enums, citext, unbounded numeric, …) are refused for ranges
//! and compared in hash partitions instead.

use crate::connect::{pg_error, quote_ident};
use crate::discover::{self, PgColumn};
use crate::types::ReadAs;
use crate::{PostgresSource, read_error};
use futures::StreamExt;
use simplyload_core::canon::{
    Canon, canon_decimal, canon_json, civil_from_days, days_from_civil, parse_uuid, uuid_text,
};
use simplyload_core::reconcile::{KeyRange, SCAN_BATCH, ScanRequest, ScanSender, ScannedRow};
use simplyload_core::{Error, ErrorKind, Result, SqlType, TableSpec, ValueLimits};

/// Session settings for reconcile reads: the same pinned renderings as a snapshot.
const SETTINGS: &str = "SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'iso_8601';
SET extra_float_digits = 1;
SET bytea_output = 'hex';
SET row_security = off;
SET statement_timeout = 0;";

/// Base types whose order matches byte order / numeric order everywhere.
fn orderable(c: &PgColumn) -> bool {
    matches!(c.base_oid, 16 | 20 | 21 | 23 | 25 | 19 | 1043 | 2950 | 1082 | 1114 | 1184)
        || (c.base_oid == 1700 && matches!(c.plan.sql_type, SqlType::Decimal { .. }))
}

fn is_text(c: &PgColumn) -> bool {
    matches!(c.base_oid, 25 | 19 | 1043)
}

async fn table_columns(
    source: &PostgresSource,
    client: &tokio_postgres::Client,
    table: &TableSpec,
) -> Result<Vec<PgColumn>> {
    let stream = &table.stream;
    let found = discover::discover(client, discover::Scope::Table(stream)).await?;
    let t = found
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found(format!("table {stream} does not exist in source `{}`", source.name)))?;
    Ok(t.columns)
}

pub(crate) async fn key_ranges_agree(source: &PostgresSource, table: &TableSpec) -> Result<bool> {
    let client = source.connect().await?;
    let cols = table_columns(source, &client, table).await?;
    Ok(table.key.iter().all(|k| {
        table.column(k).and_then(|c| cols.iter().find(|p| p.info.name == c.source_name)).is_some_and(orderable)
    }))
}

/// The text Postgres parses back into a key value of this logical type.
pub(crate) fn bound_text(v: &Canon, t: SqlType) -> Result<String> {
    let ts = |us: i64, tz: bool| {
        let days = us.div_euclid(86_400_000_000);
        let tod = us.rem_euclid(86_400_000_000);
        let (y, m, d) = civil_from_days(days);
        let (s, f) = (tod / 1_000_000, tod % 1_000_000);
        let (year, bc) = if y <= 0 { (1 - y, " BC") } else { (y, "") };
        format!(
            "{year:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{f:06}{}{bc}",
            s / 3600,
            s % 3600 / 60,
            s % 60,
            if tz { "+00" } else { "" }
        )
    };
    Ok(match (v, t) {
        (Canon::Int(i), _) => i.to_string(),
        (Canon::Decimal(d), _) => d.clone(),
        (Canon::Text(s), _) => s.clone(),
        (Canon::Bool(b), _) => b.to_string(),
        (Canon::Uuid(u), _) => uuid_text(*u),
        (Canon::Date(d), _) => {
            let (y, m, dd) = civil_from_days(*d as i64);
            let (year, bc) = if y <= 0 { (1 - y, " BC") } else { (y, "") };
            format!("{year:04}-{m:02}-{dd:02}{bc}")
        }
        (Canon::Timestamp(us), SqlType::TimestampTz) => ts(*us, true),
        (Canon::Timestamp(us), _) => ts(*us, false),
        (other, _) => return Err(Error::internal(format!("reconcile: cannot use {other} as a key bound"))),
    })
}

pub(crate) async fn scan(source: &PostgresSource, request: ScanRequest, out: ScanSender) -> Result<()> {
    let table = &request.table;
    let stream = &table.stream;
    let client = source.connect().await?;
    client.batch_execute(SETTINGS).await.map_err(|e| pg_error(&e, "pinning session settings"))?;
    let cols = table_columns(source, &client, table).await?;
    let mut select = Vec::with_capacity(table.columns.len() + 1);
    let mut types = Vec::with_capacity(table.columns.len());
    let mut pg_cols = Vec::with_capacity(table.columns.len());
    for c in &table.columns {
        let pg = cols.iter().find(|p| p.info.name == c.source_name).ok_or_else(|| {
            Error::new(
                ErrorKind::StalePlan,
                format!("column {} of {stream} no longer exists in the source", c.source_name),
            )
        })?;
        if pg.plan.sql_type != c.sql_type {
            return Err(Error::new(
                ErrorKind::StalePlan,
                format!("column {} of {stream} changed type while reconciling", c.source_name),
            ));
        }
        let q = quote_ident(&c.source_name);
        select.push(match pg.plan.read {
            ReadAs::ToJsonb => format!("to_jsonb({q})::text"),
            ReadAs::Numeric => format!("{q}::numeric::text"),
            ReadAs::Abbrev => format!("abbrev({q})"),
            // `::text` would strip char(n)'s padding, which the staged value keeps.
            ReadAs::Native if pg.base_oid == 1042 => format!("{q}::bpchar"),
            ReadAs::Native | ReadAs::Text => format!("{q}::text"),
        });
        types.push(c.sql_type);
        pg_cols.push(pg);
    }
    let flag = match &request.flag_column {
        Some(f) => {
            if !cols.iter().any(|p| &p.info.name == f) {
                return Err(Error::config(format!("soft-delete column `{f}` does not exist in {stream}")));
            }
            select.push(format!("({} IS NOT NULL)::text", quote_ident(f)));
            true
        }
        None => false,
    };
    let key_idx: Vec<usize> = table
        .key
        .iter()
        .map(|k| {
            table
                .columns
                .iter()
                .position(|c| &c.name == k)
                .ok_or_else(|| Error::internal(format!("reconcile: key column {k} is not a column of {stream}")))
        })
        .collect::<Result<_>>()?;
    let key_expr: Vec<String> = key_idx
        .iter()
        .map(|i| {
            let q = quote_ident(&table.columns[*i].source_name);
            if is_text(pg_cols[*i]) { format!("{q} COLLATE \"C\"") } else { q }
        })
        .collect();
    let mut params: Vec<String> = Vec::new();
    let mut predicates = Vec::new();
    let bound = |vals: &Vec<Canon>, op: &str, params: &mut Vec<String>| -> Result<String> {
        let mut rhs = Vec::new();
        for (v, i) in vals.iter().zip(&key_idx) {
            params.push(bound_text(v, types[*i])?);
            rhs.push(format!("${}::text::{}", params.len(), pg_cols[*i].info.type_name));
        }
        Ok(format!("({}) {op} ({})", key_expr.join(", "), rhs.join(", ")))
    };
    let KeyRange { after, upto } = &request.range;
    if let Some(a) = after {
        predicates.push(bound(a, ">", &mut params)?);
    }
    if let Some(u) = upto {
        predicates.push(bound(u, "<=", &mut params)?);
    }
    // Output columns get neutral names: `ORDER BY "id"` must mean the
    // table's column, not a same-named `"id"::text` in the select list.
    let select: Vec<String> = select.iter().enumerate().map(|(i, e)| format!("{e} AS c{i}")).collect();
    let mut sql = format!("SELECT {} FROM {}", select.join(", "), crate::qualified_name(stream));
    if !predicates.is_empty() {
        sql.push_str(&format!(" WHERE {}", predicates.join(" AND ")));
    }
    if let Some(limit) = request.limit {
        if key_expr.is_empty() {
            return Err(Error::internal("reconcile: a limited scan needs a key"));
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", key_expr.join(", ")));
    }
    tracing::debug!(stream = %stream, sql = %sql, "reconcile source query");
    let rows =
        client.query_raw(sql.as_str(), params.iter()).await.map_err(|e| read_error(&e, stream, &source.opts.user()))?;
    futures::pin_mut!(rows);
    let mut batch = Vec::with_capacity(SCAN_BATCH);
    let closed = || Error::internal("reconcile stopped reading");
    let hashed: Vec<bool> = table.columns.iter().map(|c| table.hashed.contains(&c.name)).collect();
    let salt = if table.hashed.is_empty() { String::new() } else { simplyload_core::pseudonym::salt()? };
    let pseudonym = simplyload_core::pseudonym::pseudonym;
    while let Some(row) = rows.next().await {
        let row = row.map_err(|e| read_error(&e, stream, &source.opts.user()))?;
        let mut hashes = Vec::with_capacity(types.len());
        let mut key = vec![Canon::Null; key_idx.len()];
        for (i, t) in types.iter().enumerate() {
            let text: Option<&str> = row.get(i);
            let v = match text {
                None => Canon::Null,
                // Stored as a pseudonym: compared as one.
                Some(s) if hashed[i] => Canon::Text(pseudonym(&salt, s)),
                Some(s) => canon_from_pg_text(s, *t, &request.limits)
                    .map_err(|e| e.context(format!("{stream}, column {}", table.columns[i].source_name)))?,
            };
            hashes.push(v.hash64());
            if let Some(k) = key_idx.iter().position(|k| *k == i) {
                key[k] = v;
            }
        }
        let deleted = flag && row.get::<_, Option<&str>>(types.len()) == Some("true");
        batch.push(ScannedRow { key, hashes, flag: deleted });
        if batch.len() >= SCAN_BATCH {
            out.send(std::mem::take(&mut batch)).await.map_err(|_| closed())?;
        }
    }
    if !batch.is_empty() {
        out.send(batch).await.map_err(|_| closed())?;
    }
    Ok(())
}

/// Postgres's text output of a value (with the session settings above)
/// → the canonical value the destination should hold.
pub fn canon_from_pg_text(s: &str, t: SqlType, limits: &ValueLimits) -> Result<Canon> {
    let bad = || Error::data(format!("unexpected {} text from Postgres: {:?}", t.name(), truncate(s)));
    Ok(match t {
        SqlType::Int16 | SqlType::Int32 | SqlType::Int64 => Canon::Int(s.parse().map_err(|_| bad())?),
        // NaN and ±Infinity cannot be held in a decimal column: NULL (§5).
        SqlType::Decimal { .. } => canon_decimal(s).map(Canon::Decimal).unwrap_or(Canon::Null),
        SqlType::Float32 => Canon::float(parse_float(s).ok_or_else(bad)? as f32 as f64),
        SqlType::Float64 => Canon::float(parse_float(s).ok_or_else(bad)?),
        SqlType::Text => Canon::Text(s.to_owned()),
        SqlType::Boolean => match s {
            "true" => Canon::Bool(true),
            "false" => Canon::Bool(false),
            _ => return Err(bad()),
        },
        SqlType::Date => {
            if s.ends_with("infinity") {
                Canon::Null
            } else {
                let d = parse_date(s).ok_or_else(bad)?;
                if d >= limits.date_days.0 as i64 && d <= limits.date_days.1 as i64 {
                    Canon::Date(d as i32)
                } else {
                    Canon::Null
                }
            }
        }
        SqlType::Timestamp | SqlType::TimestampTz => {
            if s.ends_with("infinity") {
                Canon::Null
            } else {
                let us = parse_timestamp(s).ok_or_else(bad)?;
                match i64::try_from(us) {
                    Ok(us) if limits.timestamp_ok(us) => Canon::Timestamp(us),
                    _ => Canon::Null,
                }
            }
        }
        SqlType::Time => Canon::Time(parse_time(s).ok_or_else(bad)?),
        SqlType::Uuid => Canon::Uuid(parse_uuid(s).ok_or_else(bad)?),
        SqlType::Json => Canon::Json(canon_json(s)?),
        SqlType::Binary => {
            let hex = s.strip_prefix("\\x").ok_or_else(bad)?;
            if hex.len() % 2 != 0 {
                return Err(bad());
            }
            let bytes: Option<Vec<u8>> =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect();
            Canon::Bytes(bytes.ok_or_else(bad)?)
        }
    })
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// `YYYY-MM-DD[ BC]` → days since 1970-01-01.
fn parse_date(s: &str) -> Option<i64> {
    let (body, bc) = match s.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (s, false),
    };
    let mut it = body.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if bc { 1 - y } else { y };
    Some(days_from_civil(y, m, d))
}

/// `HH:MM:SS[.ffffff]` → microseconds.
fn parse_time(s: &str) -> Option<i64> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut it = hms.splitn(3, ':');
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let sec: i64 = it.next()?.parse().ok()?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let f: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().ok()? };
    Some(((h * 60 + m) * 60 + sec) * 1_000_000 + f)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM[:SS]]][ BC]` → microseconds since
/// the epoch (UTC when an offset is given), as i128 so years beyond what
/// 64 bits of microseconds hold are still read (and then reported as NULL).
fn parse_timestamp(s: &str) -> Option<i128> {
    let (body, bc) = match s.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (s, false),
    };
    let (date, rest) = body.split_once(' ')?;
    let days = parse_date(&format!("{date}{}", if bc { " BC" } else { "" }))?;
    let split = rest.find(['+', '-']).unwrap_or(rest.len());
    let (time, offset) = rest.split_at(split);
    let tod = parse_time(time)?;
    let off_secs: i64 = if offset.is_empty() {
        0
    } else {
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let mut parts = offset[1..].split(':');
        let h: i64 = parts.next()?.parse().ok()?;
        let m: i64 = parts.next().map(|x| x.parse().ok()).unwrap_or(Some(0))?;
        let sec: i64 = parts.next().map(|x| x.parse().ok()).unwrap_or(Some(0))?;
        sign * (h * 3600 + m * 60 + sec)
    };
    Some(days as i128 * 86_400_000_000 + tod as i128 - off_secs as i128 * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: ValueLimits = ValueLimits::STAGING;

    #[test]
    fn postgres_text_canonicalises() {
        assert_eq!(
            canon_from_pg_text("12.30", SqlType::Decimal { precision: 12, scale: 2 }, &L).unwrap(),
            Canon::Decimal("12.3".into())
        );
        assert_eq!(canon_from_pg_text("NaN", SqlType::Decimal { precision: 12, scale: 2 }, &L).unwrap(), Canon::Null);
        assert_eq!(canon_from_pg_text("-Infinity", SqlType::Float64, &L).unwrap(), Canon::float(f64::NEG_INFINITY));
        assert_eq!(canon_from_pg_text("0.1", SqlType::Float32, &L).unwrap(), Canon::float(0.1f32 as f64));
        assert_eq!(canon_from_pg_text("1970-01-02", SqlType::Date, &L).unwrap(), Canon::Date(1));
        assert_eq!(canon_from_pg_text("infinity", SqlType::Date, &L).unwrap(), Canon::Null);
        assert_eq!(
            canon_from_pg_text("4713-01-01 BC", SqlType::Date, &L).unwrap(),
            Canon::Date(days_from_civil(-4712, 1, 1) as i32)
        );
        assert_eq!(
            canon_from_pg_text("1970-01-01 00:00:01.5+00", SqlType::TimestampTz, &L).unwrap(),
            Canon::Timestamp(1_500_000)
        );
        assert_eq!(
            canon_from_pg_text("1970-01-01 01:00:00+01", SqlType::TimestampTz, &L).unwrap(),
            Canon::Timestamp(0)
        );
        assert_eq!(
            canon_from_pg_text("1970-01-01 00:00:00-05:30", SqlType::TimestampTz, &L).unwrap(),
            Canon::Timestamp(19_800_000_000)
        );
        assert_eq!(canon_from_pg_text("294276-12-31 23:59:59", SqlType::Timestamp, &L).unwrap(), Canon::Null);
        assert_eq!(canon_from_pg_text("24:00:00", SqlType::Time, &L).unwrap(), Canon::Time(86_400_000_000));
        assert_eq!(canon_from_pg_text("\\x00ff", SqlType::Binary, &L).unwrap(), Canon::Bytes(vec![0, 255]));
        assert!(canon_from_pg_text("\\x0", SqlType::Binary, &L).is_err());
        assert!(canon_from_pg_text("maybe", SqlType::Boolean, &L).is_err());
    }

    #[test]
    fn key_bounds_parse_back() {
        let ts = Canon::Timestamp(-62_135_596_800_000_000 - 86_400_000_000); // 0001-12-31 BC
        let text = bound_text(&ts, SqlType::TimestampTz).unwrap();
        assert_eq!(text, "0001-12-31 00:00:00.000000+00 BC");
        assert_eq!(canon_from_pg_text(&text, SqlType::TimestampTz, &L).unwrap(), ts);
        let d = Canon::Date(-1);
        assert_eq!(canon_from_pg_text(&bound_text(&d, SqlType::Date).unwrap(), SqlType::Date, &L).unwrap(), d);
    }
}
