//! `_simplyload_id`: the identity of a row in a table without a primary key.
//!
//! The id is a hash of the row's non-NULL (column, value) pairs, taken in
//! column-name order, so adding a nullable column changes no existing id and
//! column order does not matter. Values are hashed in a canonical form of
//! their Arrow value (integers widened to 64 bits, floats to 64-bit bit
//! patterns, decimals as their shortest exact text), so a widened column type
//! keeps ids stable and a snapshot and a change stream of the same row agree.
//! Identical rows share an id; destinations tell them apart with
//! `_simplyload_index`.

use crate::error::{Error, Result};
use crate::schema::TableSpec;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, TimeUnit};
use sha2::{Digest, Sha256};

/// Computes `_simplyload_id` for every row of `batch` (whose columns are the
/// table's data columns, in order).
pub fn row_ids(table: &TableSpec, batch: &RecordBatch) -> Result<StringArray> {
    let mut order: Vec<usize> = (0..table.columns.len()).collect();
    order.sort_by(|a, b| table.columns[*a].source_name.cmp(&table.columns[*b].source_name));
    let arrays: Vec<&ArrayRef> = order.iter().map(|i| batch.column(*i)).collect();
    let names: Vec<&[u8]> = order.iter().map(|i| table.columns[*i].source_name.as_bytes()).collect();
    let mut out = arrow_array::builder::StringBuilder::with_capacity(batch.num_rows(), batch.num_rows() * 32);
    let mut value = Vec::with_capacity(64);
    let mut hex = String::with_capacity(32);
    for row in 0..batch.num_rows() {
        let mut h = Sha256::new();
        for (a, name) in arrays.iter().zip(&names) {
            if a.is_null(row) {
                continue;
            }
            value.clear();
            canonical_value(a, row, &mut value)?;
            h.update((name.len() as u32).to_le_bytes());
            h.update(name);
            h.update((value.len() as u32).to_le_bytes());
            h.update(&value);
        }
        let digest = h.finalize();
        hex.clear();
        for b in &digest[..16] {
            use std::fmt::Write;
            let _ = write!(hex, "{b:02x}");
        }
        out.append_value(&hex);
    }
    Ok(out.finish())
}

fn canonical_value(a: &ArrayRef, row: usize, out: &mut Vec<u8>) -> Result<()> {
    match a.data_type() {
        DataType::Boolean => out.push(a.as_boolean().value(row) as u8),
        DataType::Int16 => out.extend((a.as_primitive::<Int16Type>().value(row) as i64).to_le_bytes()),
        DataType::Int32 => out.extend((a.as_primitive::<Int32Type>().value(row) as i64).to_le_bytes()),
        DataType::Int64 => out.extend(a.as_primitive::<Int64Type>().value(row).to_le_bytes()),
        DataType::Float32 => out.extend((a.as_primitive::<Float32Type>().value(row) as f64).to_bits().to_le_bytes()),
        DataType::Float64 => out.extend(a.as_primitive::<Float64Type>().value(row).to_bits().to_le_bytes()),
        DataType::Decimal128(_, scale) => {
            let v = a.as_primitive::<Decimal128Type>().value(row);
            out.extend(decimal_text(v, *scale).as_bytes());
        }
        DataType::Date32 => out.extend((a.as_primitive::<Date32Type>().value(row) as i64).to_le_bytes()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            out.extend(a.as_primitive::<TimestampMicrosecondType>().value(row).to_le_bytes())
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            out.extend(a.as_primitive::<Time64MicrosecondType>().value(row).to_le_bytes())
        }
        DataType::Utf8 => out.extend(a.as_string::<i32>().value(row).as_bytes()),
        DataType::Binary => out.extend(a.as_binary::<i32>().value(row)),
        other => return Err(Error::internal(format!("row id: no canonical form for {other}"))),
    }
    Ok(())
}

/// Eight hex digits of a SHA-256, for short stable names.
pub fn short_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The shortest exact text of a scaled decimal (`1.50` at scale 2 → `1.5`).
pub fn decimal_text(v: i128, scale: i8) -> String {
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    let (int, frac) = if digits.len() > scale { digits.split_at(digits.len() - scale) } else { ("0", digits.as_str()) };
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push_str(int);
    let frac = format!("{:0>width$}", frac, width = scale);
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        s.push('.');
        s.push_str(frac);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::StreamName;
    use crate::schema::{Column, SqlType};
    use arrow_array::{Int32Array, Int64Array};
    use std::sync::Arc;

    fn spec(cols: &[(&str, SqlType)]) -> TableSpec {
        TableSpec {
            stream: StreamName::new("public", "t"),
            name: "t".into(),
            columns: cols
                .iter()
                .map(|(n, t)| Column {
                    source_name: n.to_string(),
                    name: n.to_string(),
                    sql_type: *t,
                    source_type: String::new(),
                    nullable: true,
                })
                .collect(),
            key: vec![],
            hashed: Vec::new(),
        }
    }

    #[test]
    fn decimal_text_is_shortest_exact() {
        assert_eq!(decimal_text(150, 2), "1.5");
        assert_eq!(decimal_text(-5, 3), "-0.005");
        assert_eq!(decimal_text(1200, 2), "12");
        assert_eq!(decimal_text(0, 2), "0");
        assert_eq!(decimal_text(42, 0), "42");
    }

    #[test]
    fn ids_ignore_nulls_column_order_and_integer_width() {
        let a = spec(&[("a", SqlType::Int32), ("b", SqlType::Text)]);
        let ba = RecordBatch::try_new(
            a.source_schema(),
            vec![
                Arc::new(Int32Array::from(vec![1, 1, 2])),
                Arc::new(StringArray::from(vec![Some("x"), Some("x"), None])),
            ],
        )
        .unwrap();
        let ids = row_ids(&a, &ba).unwrap();
        assert_eq!(ids.value(0), ids.value(1), "identical rows share an id");
        assert_ne!(ids.value(0), ids.value(2));
        assert_eq!(ids.value(0).len(), 32);

        // Same values, columns reversed, a NULL column added, int widened.
        let b = spec(&[("c", SqlType::Text), ("b", SqlType::Text), ("a", SqlType::Int64)]);
        let bb = RecordBatch::try_new(
            b.source_schema(),
            vec![
                Arc::new(StringArray::from(vec![None::<&str>, None])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let idb = row_ids(&b, &bb).unwrap();
        assert_eq!(idb.value(0), ids.value(0));
        assert_eq!(idb.value(1), ids.value(2));
    }
}
