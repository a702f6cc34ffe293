//! Postgres types → SimplyLoad types (DESIGN.md §5), and how each is read.
//!
//! Most types are read in their binary wire form and decoded straight into
//! Arrow. A few are read through a cast in the `SELECT`, because their
//! binary form would only be re-implementing Postgres's own text output:
//! * `::text` for cidr/macaddr, timetz, xml, `"char"` and every type we
//!   do not know (PostGIS, tsvector, bit, …) — exact, as Postgres prints it;
//! * `abbrev(…)` for inet: its `::text` cast always adds the netmask
//!   (`10.1.1.1/32`) where Postgres prints a host as `10.1.1.1`; `abbrev`
//!   is the type's own output (`10.1.0.0/16` keeps its mask);
//! * `to_jsonb(…)` for arrays, composites, ranges, multiranges and hstore —
//!   DESIGN.md asks for exactly `to_jsonb()`'s rendering;
//! * `::numeric` for money, then decoded as decimal(19,2).

use simplyload_core::SqlType;

/// How a column is selected in the snapshot query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAs {
    Native,
    Text,
    /// `abbrev(inet)`: what inet's output function prints.
    Abbrev,
    ToJsonb,
    Numeric,
}

/// How a column's binary value is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    /// numeric → Decimal128(precision, scale).
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// numeric → its exact text.
    NumericText,
    /// Text-like binary (text, varchar, bpchar, name, enum labels, json, citext).
    Text,
    /// jsonb: a version byte, then text.
    Jsonb,
    Uuid,
    Date,
    Timestamp,
    TimestampTz,
    Time,
    /// interval → ISO 8601 text.
    Interval,
    Bytea,
}

/// The plan for one column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypePlan {
    pub sql_type: SqlType,
    pub read: ReadAs,
    pub decoder: Decoder,
}

const fn native(sql_type: SqlType, decoder: Decoder) -> TypePlan {
    TypePlan { sql_type, read: ReadAs::Native, decoder }
}

const AS_TEXT: TypePlan = TypePlan { sql_type: SqlType::Text, read: ReadAs::Text, decoder: Decoder::Text };
const AS_JSON: TypePlan = TypePlan { sql_type: SqlType::Json, read: ReadAs::ToJsonb, decoder: Decoder::Jsonb };

/// What the catalog says about a column's (domain-resolved) base type.
#[derive(Debug, Clone)]
pub struct BaseType<'a> {
    pub oid: u32,
    pub name: &'a str,
    /// `b` base, `c` composite, `d` domain, `e` enum, `p` pseudo, `r` range, `m` multirange.
    pub typtype: &'a str,
    /// `A` for arrays.
    pub category: &'a str,
    pub typmod: i32,
}

/// Decides how a column of this type is staged and read.
pub fn plan(t: &BaseType<'_>) -> TypePlan {
    match t.oid {
        16 => native(SqlType::Boolean, Decoder::Bool),
        17 => native(SqlType::Binary, Decoder::Bytea),
        19 | 25 | 1042 | 1043 => native(SqlType::Text, Decoder::Text),
        20 => native(SqlType::Int64, Decoder::Int8),
        21 => native(SqlType::Int16, Decoder::Int2),
        23 => native(SqlType::Int32, Decoder::Int4),
        114 => native(SqlType::Json, Decoder::Text),
        3802 => native(SqlType::Json, Decoder::Jsonb),
        700 => native(SqlType::Float32, Decoder::Float4),
        701 => native(SqlType::Float64, Decoder::Float8),
        790 => TypePlan {
            sql_type: SqlType::Decimal { precision: 19, scale: 2 },
            read: ReadAs::Numeric,
            decoder: Decoder::Decimal { precision: 19, scale: 2 },
        },
        1082 => native(SqlType::Date, Decoder::Date),
        1114 => native(SqlType::Timestamp, Decoder::Timestamp),
        1184 => native(SqlType::TimestampTz, Decoder::TimestampTz),
        1083 => native(SqlType::Time, Decoder::Time),
        1186 => native(SqlType::Text, Decoder::Interval),
        1700 => numeric(t.typmod),
        2950 => native(SqlType::Uuid, Decoder::Uuid),
        869 => TypePlan { sql_type: SqlType::Text, read: ReadAs::Abbrev, decoder: Decoder::Text },
        _ if t.category == "A" => AS_JSON,
        _ => match t.typtype {
            "e" => native(SqlType::Text, Decoder::Text),
            "c" | "r" | "m" => AS_JSON,
            _ if t.name == "citext" => native(SqlType::Text, Decoder::Text),
            _ if t.name == "hstore" => AS_JSON,
            _ => AS_TEXT,
        },
    }
}

/// Precision and scale from a numeric typmod; `None` for unbounded numeric.
/// Since Postgres 15 the scale may be negative or larger than the precision.
pub fn numeric_typmod(typmod: i32) -> Option<(i32, i32)> {
    if typmod < 4 {
        return None;
    }
    let t = typmod - 4;
    let precision = (t >> 16) & 0xffff;
    let scale = ((t & 0x7ff) ^ 1024) - 1024;
    Some((precision, scale))
}

fn numeric(typmod: i32) -> TypePlan {
    let as_text = native(SqlType::Text, Decoder::NumericText);
    let Some((p, s)) = numeric_typmod(typmod) else { return as_text };
    // A Decimal wide enough to hold every value of numeric(p,s) exactly.
    let (precision, scale) = if s < 0 {
        (p - s, 0)
    } else if s > p {
        (s, s)
    } else {
        (p, s)
    };
    if !(1..=38).contains(&precision) {
        return as_text;
    }
    let (precision, scale) = (precision as u8, scale as i8);
    native(SqlType::Decimal { precision, scale }, Decoder::Decimal { precision, scale })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(oid: u32, typmod: i32) -> BaseType<'static> {
        BaseType { oid, name: "x", typtype: "b", category: "N", typmod }
    }

    fn typmod(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7ff)) + 4
    }

    #[test]
    fn numeric_typmods_map_to_wide_enough_decimals() {
        assert_eq!(numeric_typmod(typmod(12, 2)), Some((12, 2)));
        assert_eq!(numeric_typmod(typmod(5, -2)), Some((5, -2)));
        assert_eq!(numeric_typmod(-1), None);
        assert_eq!(plan(&base(1700, typmod(12, 2))).sql_type, SqlType::Decimal { precision: 12, scale: 2 });
        assert_eq!(plan(&base(1700, typmod(38, 10))).sql_type, SqlType::Decimal { precision: 38, scale: 10 });
        assert_eq!(plan(&base(1700, typmod(5, -2))).sql_type, SqlType::Decimal { precision: 7, scale: 0 });
        assert_eq!(plan(&base(1700, typmod(3, 5))).sql_type, SqlType::Decimal { precision: 5, scale: 5 });
        assert_eq!(plan(&base(1700, typmod(39, 2))).sql_type, SqlType::Text);
        assert_eq!(plan(&base(1700, -1)).decoder, Decoder::NumericText);
    }

    #[test]
    fn structured_types_read_as_jsonb_and_unknown_types_as_text() {
        let arr = BaseType { oid: 1007, name: "_int4", typtype: "b", category: "A", typmod: -1 };
        assert_eq!(plan(&arr).read, ReadAs::ToJsonb);
        let range = BaseType { oid: 3904, name: "int4range", typtype: "r", category: "R", typmod: -1 };
        assert_eq!(plan(&range).sql_type, SqlType::Json);
        let inet = BaseType { oid: 869, name: "inet", typtype: "b", category: "I", typmod: -1 };
        assert_eq!(plan(&inet).read, ReadAs::Abbrev);
        let en = BaseType { oid: 99999, name: "mood", typtype: "e", category: "E", typmod: -1 };
        assert_eq!(plan(&en), native(SqlType::Text, Decoder::Text));
    }
}
