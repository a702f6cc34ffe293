//! Types and table shapes (DESIGN.md §4, §5).
//!
//! A [`SqlType`] is the logical type a column has after the mapping in
//! DESIGN.md §5; it decides the Arrow type in staging and the column type in
//! every destination. Sources map their own types onto it; destinations map
//! it onto theirs. A value that cannot be carried exactly is never bent: it
//! becomes NULL and is counted ([`crate::report`]), or the sync fails.

use crate::naming::StreamName;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Names of the columns SimplyLoad adds to every destination table.
pub mod meta {
    /// TIMESTAMPTZ: when this row version was written to the destination.
    pub const SYNCED_AT: &str = "_simplyload_synced_at";
    /// BOOLEAN: the row was deleted in the source (soft delete).
    pub const DELETED: &str = "_simplyload_deleted";
    /// DECIMAL(38,0): ordering key; a row is applied only if its version is ≥ the stored one.
    pub const VERSION: &str = "_simplyload_version";
    /// VARCHAR: for tables without a primary key, a hash of the row's non-NULL values.
    pub const ID: &str = "_simplyload_id";
    /// BIGINT: for tables without a primary key, the occurrence number among identical rows.
    pub const INDEX: &str = "_simplyload_index";
    /// Staged only: the columns a CDC update left unchanged (TOAST values
    /// Postgres did not send), as `,a,b,`; NULL when every value is present.
    pub const UNCHANGED: &str = "_simplyload_unchanged";
    /// The destination table recording every loaded batch.
    pub const BATCHES_TABLE: &str = "_simplyload_batches";
    /// Precision of the version column.
    pub const VERSION_PRECISION: u8 = 38;
}

/// The logical type of a column (DESIGN.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SqlType {
    Int16,
    Int32,
    Int64,
    /// Exact decimal; `precision` ≤ 38, 0 ≤ `scale` ≤ `precision`.
    Decimal {
        precision: u8,
        scale: i8,
    },
    Float32,
    Float64,
    /// Text, also used for values kept exactly in their text form (unbounded
    /// numeric, interval, timetz, inet, …).
    Text,
    Boolean,
    Date,
    /// Timestamp without time zone, microseconds.
    Timestamp,
    /// Timestamp with time zone, microseconds, stored in UTC.
    TimestampTz,
    /// Time of day, microseconds.
    Time,
    /// A UUID in its canonical lower-case text form.
    Uuid,
    /// JSON text (json, jsonb, and arrays/composites/ranges rendered as JSON).
    Json,
    Binary,
}

impl SqlType {
    /// The Arrow (and so Parquet) type values of this type are staged as.
    pub fn arrow_type(&self) -> DataType {
        match self {
            SqlType::Int16 => DataType::Int16,
            SqlType::Int32 => DataType::Int32,
            SqlType::Int64 => DataType::Int64,
            SqlType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            SqlType::Float32 => DataType::Float32,
            SqlType::Float64 => DataType::Float64,
            SqlType::Text | SqlType::Uuid | SqlType::Json => DataType::Utf8,
            SqlType::Boolean => DataType::Boolean,
            SqlType::Date => DataType::Date32,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            SqlType::Time => DataType::Time64(TimeUnit::Microsecond),
            SqlType::Binary => DataType::Binary,
        }
    }

    /// Whether every value of `self` is exactly a value of `to` (so a
    /// destination column can be altered from one to the other in place).
    pub fn widens_to(&self, to: &SqlType) -> bool {
        use SqlType::*;
        let int_digits = |t: &SqlType| match t {
            Int16 => Some(5),
            Int32 => Some(10),
            Int64 => Some(19),
            _ => None,
        };
        match (self, to) {
            (a, b) if a == b => true,
            (Int16, Int32 | Int64) | (Int32, Int64) | (Float32, Float64) => true,
            (Int16 | Int32 | Int64, Decimal { precision, scale }) => {
                int_digits(self).is_some_and(|d| (*precision as i32 - *scale as i32) >= d)
            }
            (Decimal { precision: p1, scale: s1 }, Decimal { precision: p2, scale: s2 }) => {
                s2 >= s1 && (*p2 as i32 - *s2 as i32) >= (*p1 as i32 - *s1 as i32)
            }
            _ => false,
        }
    }

    /// A short name for reports (`decimal(12,2)`, `timestamptz`, …).
    pub fn name(&self) -> String {
        match self {
            SqlType::Int16 => "int16".into(),
            SqlType::Int32 => "int32".into(),
            SqlType::Int64 => "int64".into(),
            SqlType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            SqlType::Float32 => "float32".into(),
            SqlType::Float64 => "float64".into(),
            SqlType::Text => "text".into(),
            SqlType::Boolean => "boolean".into(),
            SqlType::Date => "date".into(),
            SqlType::Timestamp => "timestamp".into(),
            SqlType::TimestampTz => "timestamptz".into(),
            SqlType::Time => "time".into(),
            SqlType::Uuid => "uuid".into(),
            SqlType::Json => "json".into(),
            SqlType::Binary => "binary".into(),
        }
    }
}

/// One column of a destination table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The name in the source, exactly as spelled there.
    pub source_name: String,
    /// The destination name (normalised, see [`crate::naming`]).
    pub name: String,
    pub sql_type: SqlType,
    /// The source's own type, as the source prints it (`numeric(12,2)`).
    pub source_type: String,
    pub nullable: bool,
}

/// The shape of one destination table: what a batch is staged as and what a
/// destination creates. Recorded with every batch, so a batch staged before a
/// schema change is still loaded with the shape it was written in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    pub stream: StreamName,
    /// Destination table name (normalised, lower case).
    pub name: String,
    pub columns: Vec<Column>,
    /// Destination names of the key columns; empty for a table without a
    /// primary key, which is keyed by [`meta::ID`] and [`meta::INDEX`].
    pub key: Vec<String>,
    /// Destination names of the text columns stored as pseudonyms
    /// (`hash_columns:`, see [`crate::pseudonym`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashed: Vec<String>,
}

impl TableSpec {
    pub fn has_key(&self) -> bool {
        !self.key.is_empty()
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The Arrow schema of staged files: the data columns, then
    /// `_simplyload_deleted`, `_simplyload_version` and, for tables without
    /// a key, `_simplyload_id`.
    pub fn staged_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                let mut md = HashMap::new();
                md.insert("simplyload.type".to_owned(), c.sql_type.name());
                md.insert("simplyload.source_name".to_owned(), c.source_name.clone());
                Field::new(&c.name, c.sql_type.arrow_type(), true).with_metadata(md)
            })
            .collect();
        fields.push(Field::new(meta::DELETED, DataType::Boolean, false));
        fields.push(Field::new(meta::VERSION, DataType::Decimal128(meta::VERSION_PRECISION, 0), false));
        if !self.has_key() {
            fields.push(Field::new(meta::ID, DataType::Utf8, false));
        }
        fields.push(Field::new(meta::UNCHANGED, DataType::Utf8, true));
        Arc::new(Schema::new(fields))
    }

    /// The Arrow schema a source produces for this table: the data columns only.
    pub fn source_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns.iter().map(|c| Field::new(&c.name, c.sql_type.arrow_type(), true)).collect::<Vec<_>>(),
        ))
    }
}

/// The range of values a destination can hold, in the units Arrow stages
/// them in. A value outside is unrepresentable (DESIGN.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueLimits {
    /// Smallest and largest timestamp, microseconds since 1970-01-01.
    pub timestamp_us: (i64, i64),
    /// Smallest and largest date, days since 1970-01-01.
    pub date_days: (i32, i32),
}

impl ValueLimits {
    /// What staging itself can carry (Arrow's i64 microseconds, i32 days).
    pub const STAGING: ValueLimits =
        ValueLimits { timestamp_us: (i64::MIN, i64::MAX), date_days: (i32::MIN, i32::MAX) };

    pub fn timestamp_ok(&self, us: i64) -> bool {
        us >= self.timestamp_us.0 && us <= self.timestamp_us.1
    }

    pub fn date_ok(&self, days: i32) -> bool {
        days >= self.date_days.0 && days <= self.date_days.1
    }
}

impl Default for ValueLimits {
    fn default() -> Self {
        Self::STAGING
    }
}
