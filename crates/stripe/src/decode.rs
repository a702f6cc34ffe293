//! Stripe objects (JSON) into Arrow batches of a planned table's shape.
//!
//! One decoder serves the first listing, the events feed and reconcile, so
//! an object gives the same row whichever way it arrived. A value that does
//! not fit its typed column (a fraction in an amount, a timestamp beyond the
//! destination's range) is never bent: it is NULL and counted, or the read
//! fails, as `on_unrepresentable` says. `_raw` always holds the object as
//! Stripe sent it.

use crate::objects::{API_VERSION, Field, ObjectType, Pick, RAW};
use arrow_array::builder::{BooleanBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use serde_json::Value;
use simplyload_core::config::OnUnrepresentable;
use simplyload_core::report::UnrepresentableTally;
use simplyload_core::schema::{SqlType, TableSpec, ValueLimits};
use simplyload_core::{Error, Result};
use std::sync::Arc;

/// What a column of the planned table is filled from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Field(Field),
    Raw,
    ApiVersion,
}

enum Builder {
    Text(StringBuilder),
    Int(Int64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMicrosecondBuilder),
}

/// Builds batches of one table from objects of one type.
pub struct Decoder {
    table: TableSpec,
    columns: Vec<(Source, Builder)>,
    limits: ValueLimits,
    on_unrepresentable: OnUnrepresentable,
    tally: UnrepresentableTally,
    rows: usize,
    bytes: usize,
}

/// One object to decode, with the API version it is rendered in.
pub struct Object<'a> {
    pub value: &'a Value,
    pub api_version: &'a str,
}

impl Decoder {
    /// A decoder for `table`, a plan of `object`'s stream: every column must
    /// be one the stream has (a plan made from an older `discover` that no
    /// longer matches is [`simplyload_core::ErrorKind::StalePlan`]).
    pub fn new(
        object: &ObjectType,
        table: &TableSpec,
        limits: ValueLimits,
        on_unrepresentable: OnUnrepresentable,
    ) -> Result<Decoder> {
        let mut columns = Vec::with_capacity(table.columns.len());
        for c in &table.columns {
            let source = match c.source_name.as_str() {
                RAW => Source::Raw,
                API_VERSION => Source::ApiVersion,
                name => match object.fields.iter().find(|f| f.name == name) {
                    Some(f) => Source::Field(*f),
                    None => {
                        return Err(Error::new(
                            simplyload_core::ErrorKind::StalePlan,
                            format!("stripe stream {} has no column `{name}`", object.stream),
                        ));
                    }
                },
            };
            columns.push((source, builder(c.sql_type, &c.name)?));
        }
        Ok(Decoder {
            table: table.clone(),
            columns,
            limits,
            on_unrepresentable,
            tally: UnrepresentableTally::default(),
            rows: 0,
            bytes: 0,
        })
    }

    /// Adds one object as a row.
    pub fn push(&mut self, object: Object<'_>) -> Result<()> {
        let id = object.value.get("id").and_then(Value::as_str).unwrap_or("");
        for i in 0..self.columns.len() {
            let (source, _) = self.columns[i];
            let value = match source {
                Source::Raw => Cell::Text(Some(object.value.to_string())),
                Source::ApiVersion => Cell::Text(Some(object.api_version.to_owned())),
                Source::Field(f) => self.cell(&f, object.value, id)?,
            };
            if let Cell::Text(Some(t)) = &value {
                self.bytes += t.len();
            }
            append(&mut self.columns[i].1, value);
        }
        self.rows += 1;
        self.bytes += 8 * self.columns.len();
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// About how many bytes the rows held so far take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The rows so far as one batch (data columns only); the decoder is
    /// empty afterwards.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|(_, b)| finish(b)).collect();
        self.rows = 0;
        self.bytes = 0;
        Ok(RecordBatch::try_new(self.table.source_schema(), arrays)?)
    }

    /// The values written as NULL so far.
    pub fn take_tally(&mut self) -> UnrepresentableTally {
        std::mem::take(&mut self.tally)
    }

    fn cell(&mut self, field: &Field, object: &Value, id: &str) -> Result<Cell> {
        let value = pick(field.pick, object);
        let value = match value {
            None | Some(Value::Null) => return Ok(Cell::null(field.sql_type)),
            Some(v) => v,
        };
        match convert(field.sql_type, value, &self.limits) {
            Ok(cell) => Ok(cell),
            Err(reason) => {
                let column = self.table.columns.iter().find(|c| c.source_name == field.name);
                let column = column.map_or(field.name, |c| c.name.as_str()).to_owned();
                if self.on_unrepresentable == OnUnrepresentable::Fail {
                    return Err(Error::new(
                        simplyload_core::ErrorKind::Data,
                        format!("stripe {} {id}: `{}` {reason}", self.table.stream, field.name),
                    )
                    .with_hint("set `on_unrepresentable: report` to write NULL and count such values instead"));
                }
                self.tally.record(&column, &reason, || format!("id={id}"));
                Ok(Cell::null(field.sql_type))
            }
        }
    }
}

/// The value a [`Pick`] finds in an object.
pub fn pick(pick: Pick, object: &Value) -> Option<&Value> {
    match pick {
        Pick::EventObjectType => object.pointer("/data/object/object"),
        Pick::Path(paths) => paths.iter().filter_map(|p| path(object, p)).find(|v| !v.is_null()),
    }
}

fn path<'a>(object: &'a Value, dotted: &str) -> Option<&'a Value> {
    let mut at = object;
    for step in dotted.split('.') {
        at = match at {
            Value::Object(map) => map.get(step)?,
            Value::Array(items) => items.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(Option<bool>),
    Time(Option<i64>),
}

impl Cell {
    fn null(t: SqlType) -> Cell {
        match t {
            SqlType::Int64 => Cell::Int(None),
            SqlType::Boolean => Cell::Bool(None),
            SqlType::TimestampTz => Cell::Time(None),
            _ => Cell::Text(None),
        }
    }
}

/// A JSON value as a typed cell, or why it does not fit.
fn convert(t: SqlType, v: &Value, limits: &ValueLimits) -> std::result::Result<Cell, String> {
    match t {
        SqlType::Int64 => v.as_i64().map(|n| Cell::Int(Some(n))).ok_or_else(|| format!("{v} is not a whole number")),
        SqlType::Boolean => v.as_bool().map(|b| Cell::Bool(Some(b))).ok_or_else(|| format!("{v} is not true or false")),
        SqlType::TimestampTz => {
            let secs = v.as_i64().ok_or_else(|| format!("{v} is not a Unix time in seconds"))?;
            let micros = secs.checked_mul(1_000_000).filter(|us| limits.timestamp_ok(*us));
            micros.map(|us| Cell::Time(Some(us))).ok_or_else(|| format!("{secs} is out of the destination's range"))
        }
        SqlType::Json => Ok(Cell::Text(Some(v.to_string()))),
        _ => Ok(Cell::Text(Some(text(v)))),
    }
}

/// A value for a text column: strings as they are, an expanded object by
/// its id, anything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => v.to_string(),
        },
        other => other.to_string(),
    }
}

fn builder(t: SqlType, column: &str) -> Result<Builder> {
    Ok(match t {
        SqlType::Text | SqlType::Json => Builder::Text(StringBuilder::new()),
        SqlType::Int64 => Builder::Int(Int64Builder::new()),
        SqlType::Boolean => Builder::Bool(BooleanBuilder::new()),
        SqlType::TimestampTz => Builder::Time(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
        other => {
            return Err(Error::internal(format!("stripe column {column}: no decoder for {}", other.name())));
        }
    })
}

fn append(b: &mut Builder, cell: Cell) {
    match (b, cell) {
        (Builder::Text(b), Cell::Text(v)) => b.append_option(v),
        (Builder::Int(b), Cell::Int(v)) => b.append_option(v),
        (Builder::Bool(b), Cell::Bool(v)) => b.append_option(v),
        (Builder::Time(b), Cell::Time(v)) => b.append_option(v),
        (Builder::Text(b), _) => b.append_null(),
        (Builder::Int(b), _) => b.append_null(),
        (Builder::Bool(b), _) => b.append_null(),
        (Builder::Time(b), _) => b.append_null(),
    }
}

fn finish(b: &mut Builder) -> ArrayRef {
    match b {
        Builder::Text(b) => Arc::new(b.finish()),
        Builder::Int(b) => Arc::new(b.finish()),
        Builder::Bool(b) => Arc::new(b.finish()),
        Builder::Time(b) => Arc::new(b.finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ToSpec;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMicrosecondType};
    use serde_json::json;

    fn table(object: &ObjectType) -> TableSpec {
        crate::catalog::table_info(object).to_spec()
    }

    #[test]
    fn typed_columns_raw_and_version_come_from_the_object() {
        let o = crate::objects::by_stream("invoices").unwrap();
        let t = table(o);
        let mut d = Decoder::new(o, &t, ValueLimits::STAGING, OnUnrepresentable::Report).unwrap();
        let newer = json!({"id": "in_1", "object": "invoice", "created": 1_700_000_000, "amount_due": 1250,
            "customer": {"id": "cus_9", "object": "customer"}, "metadata": {"k": "v"},
            "parent": {"subscription_details": {"subscription": "sub_1"}}});
        d.push(Object { value: &newer, api_version: "2025-03-31.basil" }).unwrap();
        let b = d.finish().unwrap();
        let col = |n: &str| b.column(t.columns.iter().position(|c| c.name == n).unwrap()).clone();
        assert_eq!(col("id").as_string::<i32>().value(0), "in_1");
        assert_eq!(col("customer").as_string::<i32>().value(0), "cus_9", "an expanded reference is its id");
        assert_eq!(col("subscription").as_string::<i32>().value(0), "sub_1", "found where the newer shape keeps it");
        assert_eq!(col("amount_due").as_primitive::<Int64Type>().value(0), 1250);
        assert_eq!(col("created").as_primitive::<TimestampMicrosecondType>().value(0), 1_700_000_000_000_000);
        assert_eq!(col("metadata").as_string::<i32>().value(0), r#"{"k":"v"}"#);
        assert_eq!(col("_stripe_api_version").as_string::<i32>().value(0), "2025-03-31.basil");
        let raw: Value = serde_json::from_str(col("_raw").as_string::<i32>().value(0)).unwrap();
        assert_eq!(raw, newer);
        assert!(col("amount_paid").is_null(0));
    }

    #[test]
    fn a_value_that_does_not_fit_is_null_and_counted_or_fails() {
        let o = crate::objects::by_stream("charges").unwrap();
        let t = table(o);
        let odd = json!({"id": "ch_1", "created": 1, "amount": 12.5, "paid": "yes"});
        let mut d = Decoder::new(o, &t, ValueLimits::STAGING, OnUnrepresentable::Report).unwrap();
        d.push(Object { value: &odd, api_version: "v" }).unwrap();
        let b = d.finish().unwrap();
        let amount = t.columns.iter().position(|c| c.name == "amount").unwrap();
        assert!(b.column(amount).is_null(0));
        let tally = d.take_tally();
        assert_eq!(tally.total(), 2);
        assert_eq!(tally.entries()[0].sample_keys, vec!["id=ch_1".to_owned()]);
        let mut strict = Decoder::new(o, &t, ValueLimits::STAGING, OnUnrepresentable::Fail).unwrap();
        let e = strict.push(Object { value: &odd, api_version: "v" }).unwrap_err();
        assert!(e.to_string().contains("ch_1") && e.to_string().contains("amount"), "{e}");
    }
}
