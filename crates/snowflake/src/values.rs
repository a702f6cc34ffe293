//! Values in Snowflake's Arrow result format, read back exactly.
//!
//! Snowflake (and fakesnow, which mimics it) does not send plain Arrow
//! types: every field carries `logicalType`, `precision` and `scale` in its
//! metadata, FIXED numbers arrive as scaled integers (or Decimal128),
//! TIME as an integer of `10^-scale` seconds, and timestamps either as a
//! scaled Int64 or as a struct of `epoch` seconds, `fraction` nanoseconds
//! and, for TIMESTAMP_TZ, a `timezone` offset. This module turns one cell
//! into a [`Canon`] value (for reconcile) or into text (for metadata
//! queries).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Field};
use simplyload_core::canon::{Canon, canon_decimal, canon_json};
use simplyload_core::row_id::decimal_text;
use simplyload_core::{Error, Result, SqlType};

/// The Snowflake logical type of a result field (`FIXED`, `TEXT`, …).
fn logical(field: &Field) -> String {
    field.metadata().get("logicalType").map(|s| s.to_ascii_uppercase()).unwrap_or_default()
}

fn scale(field: &Field) -> i32 {
    field.metadata().get("scale").and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// An integer cell of any width (FIXED at scale 0, or the scaled integer of a FIXED/TIME/TIMESTAMP).
fn int_of(a: &ArrayRef, row: usize) -> Option<i128> {
    Some(match a.data_type() {
        DataType::Int8 => a.as_primitive::<Int8Type>().value(row) as i128,
        DataType::Int16 => a.as_primitive::<Int16Type>().value(row) as i128,
        DataType::Int32 => a.as_primitive::<Int32Type>().value(row) as i128,
        DataType::Int64 => a.as_primitive::<Int64Type>().value(row) as i128,
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(row) as i128,
        DataType::Decimal128(_, _) => a.as_primitive::<Decimal128Type>().value(row),
        _ => return None,
    })
}

/// The scale of a FIXED cell: from the Arrow type when it is a decimal, else from the metadata.
fn fixed_scale(a: &ArrayRef, field: &Field) -> i32 {
    match a.data_type() {
        DataType::Decimal128(_, s) => *s as i32,
        _ => scale(field),
    }
}

/// `v × 10^-from` expressed in units of `10^-to` (to ≤ 9), rounding toward −∞
/// (values we wrote never need rounding).
fn rescale(v: i128, from: i32, to: i32) -> i128 {
    if from == to {
        v
    } else if from > to {
        v.div_euclid(10i128.pow((from - to) as u32))
    } else {
        v * 10i128.pow((to - from) as u32)
    }
}

/// Microseconds since the epoch of a TIMESTAMP_* cell (struct or scaled integer).
fn timestamp_us(a: &ArrayRef, field: &Field, row: usize) -> Option<i64> {
    match a.data_type() {
        DataType::Struct(_) => {
            let s = a.as_struct();
            let epoch = s.column_by_name("epoch").and_then(|c| int_of(c, row))?;
            // Without a fraction child the epoch is in 10^-scale seconds.
            match s.column_by_name("fraction").and_then(|c| int_of(c, row)) {
                Some(nanos) => Some((epoch * 1_000_000 + nanos.div_euclid(1_000)) as i64),
                None => Some(rescale(epoch, scale(field), 6) as i64),
            }
        }
        DataType::Timestamp(unit, _) => Some(match unit {
            arrow_schema::TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(row) * 1_000_000,
            arrow_schema::TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(row) * 1_000,
            arrow_schema::TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(row),
            arrow_schema::TimeUnit::Nanosecond => {
                a.as_primitive::<TimestampNanosecondType>().value(row).div_euclid(1_000)
            }
        }),
        _ => int_of(a, row).map(|v| rescale(v, scale(field), 6) as i64),
    }
}

fn text_of(a: &ArrayRef, row: usize) -> Option<String> {
    Some(match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(row).to_owned(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(row).to_owned(),
        DataType::Utf8View => a.as_string_view().value(row).to_owned(),
        _ => return None,
    })
}

fn bytes_of(a: &ArrayRef, row: usize) -> Option<Vec<u8>> {
    Some(match a.data_type() {
        DataType::Binary => a.as_binary::<i32>().value(row).to_vec(),
        DataType::LargeBinary => a.as_binary::<i64>().value(row).to_vec(),
        DataType::BinaryView => a.as_binary_view().value(row).to_vec(),
        DataType::FixedSizeBinary(_) => a.as_fixed_size_binary().value(row).to_vec(),
        _ => return None,
    })
}

/// A scaled integer as decimal text with every digit of its scale (`1.50`).
pub fn scaled_text(v: i128, scale: i32) -> String {
    if scale <= 0 {
        return v.to_string();
    }
    let digits = format!("{:0>width$}", v.unsigned_abs(), width = scale as usize + 1);
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

/// Whether a cell is NULL; a timestamp struct may say so only through its
/// `epoch` child.
fn is_null(a: &ArrayRef, row: usize) -> bool {
    a.is_null(row)
        || matches!(a.data_type(), DataType::Struct(_))
            && a.as_struct().column_by_name("epoch").is_some_and(|c| c.is_null(row))
}

/// One cell as the canonical value of the column's logical type.
pub fn canon(a: &ArrayRef, field: &Field, row: usize, t: SqlType) -> Result<Canon> {
    if is_null(a, row) {
        return Ok(Canon::Null);
    }
    let bad =
        || Error::internal(format!("Snowflake sent a {} column as {} ({})", t.name(), logical(field), a.data_type()));
    Ok(match t {
        SqlType::Int16 | SqlType::Int32 | SqlType::Int64 => {
            let v = int_of(a, row).ok_or_else(bad)?;
            Canon::Int(rescale(v, fixed_scale(a, field), 0))
        }
        SqlType::Decimal { .. } => match int_of(a, row) {
            Some(v) => {
                let s = fixed_scale(a, field);
                let text = decimal_text(v, s.clamp(0, 76) as i8);
                Canon::Decimal(canon_decimal(&text).unwrap_or(text))
            }
            None => {
                let s = text_of(a, row).ok_or_else(bad)?;
                canon_decimal(&s).map(Canon::Decimal).unwrap_or(Canon::Text(s))
            }
        },
        SqlType::Float32 => match a.data_type() {
            DataType::Float64 => Canon::float(a.as_primitive::<Float64Type>().value(row) as f32 as f64),
            DataType::Float32 => Canon::float(a.as_primitive::<Float32Type>().value(row) as f64),
            _ => return Err(bad()),
        },
        SqlType::Float64 => match a.data_type() {
            DataType::Float64 => Canon::float(a.as_primitive::<Float64Type>().value(row)),
            DataType::Float32 => Canon::float(a.as_primitive::<Float32Type>().value(row) as f64),
            _ => return Err(bad()),
        },
        SqlType::Text => Canon::Text(text_of(a, row).ok_or_else(bad)?),
        SqlType::Uuid => {
            let s = text_of(a, row).ok_or_else(bad)?;
            match uuid::Uuid::parse_str(&s) {
                Ok(u) => Canon::Uuid(u.as_u128()),
                Err(_) => Canon::Text(s),
            }
        }
        SqlType::Json => {
            let s = text_of(a, row).ok_or_else(bad)?;
            canon_json(&s).map(Canon::Json).unwrap_or(Canon::Text(s))
        }
        SqlType::Boolean => match a.data_type() {
            DataType::Boolean => Canon::Bool(a.as_boolean().value(row)),
            _ => return Err(bad()),
        },
        SqlType::Date => match a.data_type() {
            DataType::Date32 => Canon::Date(a.as_primitive::<Date32Type>().value(row)),
            DataType::Date64 => Canon::Date(a.as_primitive::<Date64Type>().value(row).div_euclid(86_400_000) as i32),
            _ => Canon::Date(int_of(a, row).ok_or_else(bad)? as i32),
        },
        SqlType::Time => match a.data_type() {
            DataType::Time64(arrow_schema::TimeUnit::Microsecond) => {
                Canon::Time(a.as_primitive::<Time64MicrosecondType>().value(row))
            }
            DataType::Time64(arrow_schema::TimeUnit::Nanosecond) => {
                Canon::Time(a.as_primitive::<Time64NanosecondType>().value(row).div_euclid(1_000))
            }
            _ => Canon::Time(rescale(int_of(a, row).ok_or_else(bad)?, scale(field), 6) as i64),
        },
        SqlType::Timestamp | SqlType::TimestampTz => Canon::Timestamp(timestamp_us(a, field, row).ok_or_else(bad)?),
        SqlType::Binary => Canon::Bytes(bytes_of(a, row).ok_or_else(bad)?),
    })
}

/// One cell as text, for metadata results (names, counts, types).
pub fn text(a: &ArrayRef, field: &Field, row: usize) -> Option<String> {
    if is_null(a, row) {
        return None;
    }
    if let Some(s) = text_of(a, row) {
        return Some(s);
    }
    if let Some(v) = int_of(a, row) {
        return Some(scaled_text(v, fixed_scale(a, field)));
    }
    match a.data_type() {
        DataType::Boolean => Some(a.as_boolean().value(row).to_string()),
        DataType::Float64 => Some(a.as_primitive::<Float64Type>().value(row).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, Int64Array, StructArray};
    use std::collections::HashMap;
    use std::sync::Arc;

    fn field(name: &str, dt: DataType, logical: &str, scale: i32) -> Field {
        Field::new(name, dt, true).with_metadata(HashMap::from([
            ("logicalType".to_owned(), logical.to_owned()),
            ("scale".to_owned(), scale.to_string()),
        ]))
    }

    #[test]
    fn snowflake_arrow_cells_read_back_exactly() {
        // FIXED as a scaled integer.
        let a: ArrayRef = Arc::new(Int64Array::from(vec![-12345, 7]));
        let f = field("D", DataType::Int64, "FIXED", 2);
        assert_eq!(
            canon(&a, &f, 0, SqlType::Decimal { precision: 10, scale: 2 }).unwrap(),
            Canon::Decimal("-123.45".into())
        );
        assert_eq!(text(&a, &f, 1).as_deref(), Some("0.07"));
        assert_eq!(scaled_text(-5, 3), "-0.005");
        assert_eq!(scaled_text(12_345_000, 4), "1234.5000");
        // TIME in nanoseconds (scale 9).
        let t: ArrayRef = Arc::new(Int64Array::from(vec![45_296_789_000_000]));
        assert_eq!(
            canon(&t, &field("T", DataType::Int64, "TIME", 9), 0, SqlType::Time).unwrap(),
            Canon::Time(45_296_789_000)
        );
        // TIMESTAMP_TZ as a struct with a negative epoch and a positive fraction.
        let s: ArrayRef = Arc::new(StructArray::from(vec![
            (Arc::new(Field::new("epoch", DataType::Int64, false)), Arc::new(Int64Array::from(vec![-1])) as ArrayRef),
            (
                Arc::new(Field::new("fraction", DataType::Int32, false)),
                Arc::new(Int32Array::from(vec![999_999_000])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("timezone", DataType::Int32, false)),
                Arc::new(Int32Array::from(vec![1440])) as ArrayRef,
            ),
        ]));
        let f = field("TS", s.data_type().clone(), "TIMESTAMP_TZ", 9);
        assert_eq!(canon(&s, &f, 0, SqlType::TimestampTz).unwrap(), Canon::Timestamp(-1));
        // TIMESTAMP_NTZ as a scaled Int64 (scale 3).
        let n: ArrayRef = Arc::new(Int64Array::from(vec![1_500]));
        assert_eq!(
            canon(&n, &field("N", DataType::Int64, "TIMESTAMP_NTZ", 3), 0, SqlType::Timestamp).unwrap(),
            Canon::Timestamp(1_500_000)
        );
    }
}
