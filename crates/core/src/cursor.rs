//! Cursor values for `mode: incremental` (DESIGN.md §6): what a stream's
//! checkpoint holds, how the next read's lower bound is found (checkpoint
//! minus the lookback), and the highest value seen in staged Arrow batches.

use crate::error::{Error, Result};
use crate::schema::SqlType;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A cursor value in the unit it is compared in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CursorValue {
    /// Microseconds since 1970-01-01 (UTC for timestamptz, wall clock for timestamp).
    Micros {
        value: i64,
    },
    Int {
        value: i64,
    },
    /// A decimal's unscaled value (as text, exact) and its scale.
    Decimal {
        unscaled: String,
        scale: i8,
    },
}

impl CursorValue {
    fn decimal_parts(&self) -> Option<(i128, i8)> {
        match self {
            CursorValue::Decimal { unscaled, scale } => unscaled.parse().ok().map(|u| (u, *scale)),
            _ => None,
        }
    }

    /// Compares two values of the same kind; `None` for different kinds.
    pub fn compare(&self, other: &CursorValue) -> Option<Ordering> {
        match (self, other) {
            (CursorValue::Micros { value: a }, CursorValue::Micros { value: b }) => Some(a.cmp(b)),
            (CursorValue::Int { value: a }, CursorValue::Int { value: b }) => Some(a.cmp(b)),
            _ => {
                let (a, sa) = self.decimal_parts()?;
                let (b, sb) = other.decimal_parts()?;
                (sa == sb).then(|| a.cmp(&b))
            }
        }
    }

    /// The smaller of two values of the same kind (`self` if they differ in kind).
    pub fn min(self, other: CursorValue) -> CursorValue {
        match self.compare(&other) {
            Some(Ordering::Greater) => other,
            _ => self,
        }
    }

    /// The larger of two values of the same kind (`self` if they differ in kind).
    pub fn max(self, other: CursorValue) -> CursorValue {
        match self.compare(&other) {
            Some(Ordering::Less) => other,
            _ => self,
        }
    }

    /// The value `lookback` before this one: a duration for time cursors, a
    /// count (in whole units) for numbers.
    pub fn minus(&self, lookback: &Lookback) -> CursorValue {
        match (self, lookback) {
            (CursorValue::Micros { value }, Lookback::Micros(us)) => {
                CursorValue::Micros { value: value.saturating_sub(*us) }
            }
            (CursorValue::Int { value }, Lookback::Count(n)) => CursorValue::Int { value: value.saturating_sub(*n) },
            (CursorValue::Decimal { scale, .. }, Lookback::Count(n)) => {
                let (u, _) = self.decimal_parts().unwrap_or((0, *scale));
                let step = (*n as i128).saturating_mul(10i128.saturating_pow(scale.max(&0).unsigned_abs() as u32));
                CursorValue::Decimal { unscaled: u.saturating_sub(step).to_string(), scale: *scale }
            }
            _ => self.clone(),
        }
    }

    /// As a canonical value (for rendering it in the source's SQL).
    pub fn to_canon(&self) -> crate::canon::Canon {
        use crate::canon::Canon;
        match self {
            CursorValue::Micros { value } => Canon::Timestamp(*value),
            CursorValue::Int { value } => Canon::Int(*value as i128),
            CursorValue::Decimal { scale, .. } => {
                let (u, _) = self.decimal_parts().unwrap_or((0, *scale));
                Canon::Decimal(crate::row_id::decimal_text(u, *scale))
            }
        }
    }
}

impl std::fmt::Display for CursorValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CursorValue::Micros { value } => write!(f, "{}", crate::canon::Canon::Timestamp(*value)),
            other => write!(f, "{}", other.to_canon()),
        }
    }
}

/// How far back an incremental read reaches, in the cursor's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookback {
    Micros(i64),
    Count(i64),
}

/// Default lookback for time cursors (DESIGN.md §6).
pub const DEFAULT_LOOKBACK_SECS: u64 = 300;

/// Whether a column of this type can be a cursor.
pub fn cursor_type_ok(t: SqlType) -> bool {
    matches!(
        t,
        SqlType::Timestamp
            | SqlType::TimestampTz
            | SqlType::Int16
            | SqlType::Int32
            | SqlType::Int64
            | SqlType::Decimal { .. }
    )
}

/// The lookback for a cursor type from the stream's setting.
pub fn lookback_for(t: SqlType, configured: Option<&simplyload_config::Lookback>) -> Result<Lookback> {
    use simplyload_config::Lookback as L;
    let time = matches!(t, SqlType::Timestamp | SqlType::TimestampTz);
    Ok(match (time, configured) {
        (true, None) => Lookback::Micros(DEFAULT_LOOKBACK_SECS as i64 * 1_000_000),
        (true, Some(L::Duration(d))) => Lookback::Micros(d.as_micros().min(i64::MAX as u128) as i64),
        (false, None) => Lookback::Count(0),
        (false, Some(L::Count(n))) => Lookback::Count((*n).min(i64::MAX as u64) as i64),
        (true, Some(L::Count(n))) => {
            return Err(Error::config(format!(
                "lookback: {n} is a count, but the cursor is a timestamp; give a duration like `5m`"
            )));
        }
        (false, Some(L::Duration(d))) => {
            return Err(Error::config(format!(
                "lookback: {} is a duration, but the cursor is a number; give a count like `100`",
                humanize(*d)
            )));
        }
    })
}

fn humanize(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// The highest non-NULL value of a cursor column in an Arrow array, and how
/// many values were NULL.
pub fn max_cursor(a: &ArrayRef) -> Result<(Option<CursorValue>, u64)> {
    let nulls = a.null_count() as u64;
    let max = match a.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => a
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .flatten()
            .max()
            .map(|value| CursorValue::Micros { value }),
        DataType::Int16 => {
            a.as_primitive::<Int16Type>().iter().flatten().max().map(|v| CursorValue::Int { value: v as i64 })
        }
        DataType::Int32 => {
            a.as_primitive::<Int32Type>().iter().flatten().max().map(|v| CursorValue::Int { value: v as i64 })
        }
        DataType::Int64 => a.as_primitive::<Int64Type>().iter().flatten().max().map(|value| CursorValue::Int { value }),
        DataType::Decimal128(_, scale) => a
            .as_primitive::<Decimal128Type>()
            .iter()
            .flatten()
            .max()
            .map(|u| CursorValue::Decimal { unscaled: u.to_string(), scale: *scale }),
        other => return Err(Error::internal(format!("a cursor column cannot be of Arrow type {other}"))),
    };
    Ok((max, nulls))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Decimal128Array, Int32Array, TimestampMicrosecondArray};
    use std::sync::Arc;

    #[test]
    fn max_and_lookback() {
        let a: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![Some(5), None, Some(9), Some(-3)]));
        let (m, nulls) = max_cursor(&a).unwrap();
        assert_eq!((m.clone(), nulls), (Some(CursorValue::Micros { value: 9 }), 1));
        assert_eq!(m.unwrap().minus(&Lookback::Micros(10)), CursorValue::Micros { value: -1 });
        let i: ArrayRef = Arc::new(Int32Array::from(vec![1, 7]));
        assert_eq!(max_cursor(&i).unwrap().0, Some(CursorValue::Int { value: 7 }));
        let d: ArrayRef = Arc::new(Decimal128Array::from(vec![150, 1250]).with_precision_and_scale(10, 2).unwrap());
        let dm = max_cursor(&d).unwrap().0.unwrap();
        assert_eq!(dm, CursorValue::Decimal { unscaled: "1250".into(), scale: 2 });
        assert_eq!(dm.minus(&Lookback::Count(2)), CursorValue::Decimal { unscaled: "1050".into(), scale: 2 });
        assert_eq!(dm.to_string(), "12.5");
    }

    #[test]
    fn min_max_and_json_round_trip() {
        let a = CursorValue::Micros { value: 1 };
        let b = CursorValue::Micros { value: 2 };
        assert_eq!(a.clone().min(b.clone()), a);
        assert_eq!(a.clone().max(b.clone()), b);
        let j = serde_json::to_value(&b).unwrap();
        assert_eq!(j, serde_json::json!({"type": "micros", "value": 2}));
        assert_eq!(serde_json::from_value::<CursorValue>(j).unwrap(), b);
    }

    #[test]
    fn lookback_units_must_match_the_cursor() {
        use simplyload_config::Lookback as L;
        assert_eq!(lookback_for(SqlType::TimestampTz, None).unwrap(), Lookback::Micros(300_000_000));
        assert_eq!(lookback_for(SqlType::Int64, None).unwrap(), Lookback::Count(0));
        assert!(lookback_for(SqlType::Int64, Some(&L::Duration(std::time::Duration::from_secs(60)))).is_err());
        assert!(lookback_for(SqlType::Timestamp, Some(&L::Count(5))).unwrap_err().message().contains("duration"));
    }
}
