//! The edge-value table: one column per Postgres type of DESIGN.md §5 and
//! rows of the values that break replication tools. Any destination test
//! can create it, sync it, and compare every value with [`COLUMNS`].

/// Creates the types, extensions and the `edge` table with its rows.
pub const SETUP_SQL: &str = r#"
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'très 😀 happy');
CREATE DOMAIN positive_amount AS numeric(12,2) CHECK (VALUE > 0);
CREATE DOMAIN short_text AS varchar(20);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE edge (
  id            int PRIMARY KEY,
  c_int2        smallint,
  c_int4        integer,
  c_int8        bigint,
  c_num         numeric(38,10),
  c_num_small   numeric(12,2),
  c_num_free    numeric,
  c_num_neg     numeric(5,-2),
  c_num_tiny    numeric(3,5),
  c_real        real,
  c_double      double precision,
  c_text        text,
  c_varchar     varchar(10),
  c_char        char(5),
  c_citext      citext,
  c_name        name,
  c_enum        mood,
  c_domain      positive_amount,
  c_domain_text short_text,
  c_bool        boolean,
  c_date        date,
  c_ts          timestamp,
  c_tstz        timestamptz,
  c_time        time,
  c_timetz      timetz,
  c_interval    interval,
  c_uuid        uuid,
  c_json        json,
  c_jsonb       jsonb,
  c_bytea       bytea,
  c_money       money,
  c_int_arr     int[],
  c_text_arr    text[],
  c_float_arr   float8[],
  c_composite   pair,
  c_range       int4range,
  c_tsrange     tstzrange,
  c_hstore      hstore,
  c_inet        inet,
  c_cidr        cidr,
  c_macaddr     macaddr,
  c_xml         xml,
  c_bit         bit(4),
  c_point       point
);
SET TimeZone = 'UTC';
INSERT INTO edge VALUES
(1, 7, 42, 9000000000, 1234.5, 19.99, 3.14159, 12300, 0.00123, 1.5, 0.1,
 'hello', 'short', 'ab', 'CaseLess', 'a_name', 'ok', 10.50, 'dom',
 true, '2024-02-29', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789012+01', '12:34:56.5', '12:34:56+05:30', '1 year 2 mons 3 days 04:05:06.5',
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1,   "a": [1, 2.50, null]}', '{"b": 1, "a": [1, 2.50, null], "n": {"deep": {"er": true}}}',
 '\x0001ff', 12.34, '{1,2,3}', '{"a","b c","\"q\""}', '{1.5,NaN,Infinity}', ROW(1, 'x'), '[1,10)', '["2024-01-01 00:00+00","2024-06-01 00:00+00")',
 'a=>1, b=>NULL', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '<a>b</a>', B'1010', '(1.5,-2)'),
(2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
(3, -32768, -2147483648, -9223372036854775808, -9999999999999999999999999999.9999999999, 'NaN',
 '-123456789012345678901234567890123456789012345678901234567890.5', -9999900, -0.00999, '-Infinity', 'NaN',
 '', '', '', '', '', 'sad', 0.01, '',
 false, '-infinity', '4713-01-01 00:00:00 BC', '-infinity', '00:00:00', '00:00:00-15:59', '-1 years -2 mons +3 days -04:05:06.5',
 '00000000-0000-0000-0000-000000000000', '[]', '{}',
 '\x00', -92233720368547758.08, '{NULL,1,NULL}', '{NULL,""}', '{}', ROW(NULL, NULL), 'empty', '(,)',
 '', '::1', '::/0', '00:00:00:00:00:00', '', B'0000', '(0,0)'),
(4, 32767, 2147483647, 9223372036854775807, 9999999999999999999999999999.9999999999, 9999999999.99,
 'Infinity', 9999900, 0.00999, 3.4028235e38, 1.7976931348623157e308,
 'zwölf 🦀 𝄞 日本語 🏳️‍🌈', 'ünï😀', 'é', 'ÇİTEXT', 'ñ', 'très 😀 happy', 9999999999.99, '😀😀',
 true, 'infinity', 'infinity', 'infinity', '24:00:00', '24:00:00+15:59', '178000000 years',
 'ffffffff-ffff-ffff-ffff-ffffffffffff', '{"n": 12345678901234567890123, "u": "\u00e9\ud83e\udd80", "dup": 1, "dup": 2}',
 '{"n": 12345678901234567890123.000, "f": 1e400, "s": "😀"}',
 '\x00000000ff00', 92233720368547758.07, '{{1,2},{3,4}}', '{"ü","😀"}', '{-0,1e-300,-Infinity}', ROW(-1, 'y,"z"'),
 '[-2147483648,2147483647)', '["2024-03-31 00:59:59+00","2024-10-27 02:30:00+01"]',
 '"k y"=>"v\"al", "😀"=>"x"', '2001:db8::1', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', '<?xml version="1.0"?><r a="1">é</r>', B'1111', '(-1e300,1e-300)'),
(5, 1, 1, 1, 'NaN', -0.01, 'NaN', 0, 0, -0, 'Infinity',
 repeat('x', 5 * 1024 * 1024), 'x', 'abcde', 'x', repeat('n', 63), 'ok', 0.01, 'x',
 true, '4713-11-24 BC', '294276-12-31 23:59:59.999999', '2024-03-31 01:59:59.999999+01', '23:59:59.999999', '23:59:59.999999-00:00:01', '-178000000 years',
 '12345678-1234-1234-1234-123456789abc', '"just a string"', '"just a string"',
 decode(repeat('00ff', 1000), 'hex'), 0, '{}', '{}', '{}', ROW(0, ''), '(,5]', 'empty',
 '', '0.0.0.0/0', '0.0.0.0/0', '01:02:03:04:05:06', '<x/>', B'0001', '(0,-0)'),
(6, 2, 2, 2, 0.0000000001, 0.5, '-Infinity', -100, 0.00001, 1.17549435e-38, 5e-324,
 E'tab\there\nnewline "quotes" \\backslash', 'a''b', 'x', 'x', 'x', 'sad', 1, 'x',
 false, '2024-03-31', '1970-01-01 00:00:00', '2024-10-27 02:30:00 Europe/Berlin', '00:00:00.000001', '00:00:00+00', '0',
 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', 'null', 'null',
 '', 0.01, '{-2147483648}', '{NULL}', '{NaN}', NULL, '[0,0]', '[-infinity,infinity]', NULL,
 '127.0.0.1', '127.0.0.1/32', 'ab:cd:ef:01:23:45', NULL, B'0101', NULL);
"#;

/// How a column's two renderings are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// The two texts must be equal.
    Exact,
    /// Both parse as f64 with the same bits (NaN equals NaN).
    Float64,
    /// Both parse as f32 with the same bits.
    Float32,
    /// Hex strings, compared case-insensitively.
    Hex,
    /// Decimal text; DuckDB prints `DECIMAL(5,5)` without the leading zero
    /// (`.00123`), which is the same value.
    Decimal,
}

/// One column of the edge table: how to render it in Postgres and in DuckDB
/// so that equal values render equally.
#[derive(Debug, Clone, Copy)]
pub struct EdgeColumn {
    pub name: &'static str,
    pub pg: &'static str,
    pub duckdb: &'static str,
    pub compare: Compare,
}

const fn col(name: &'static str, pg: &'static str, duckdb: &'static str, compare: Compare) -> EdgeColumn {
    EdgeColumn { name, pg, duckdb, compare }
}

const TEXT: &str = "CAST({} AS VARCHAR)";

/// Every column of the edge table. `{}` is replaced by the quoted column.
pub const COLUMNS: &[EdgeColumn] = &[
    col("c_int2", "{}::text", TEXT, Compare::Exact),
    col("c_int4", "{}::text", TEXT, Compare::Exact),
    col("c_int8", "{}::text", TEXT, Compare::Exact),
    col("c_num", "CASE WHEN {} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE {}::text END", TEXT, Compare::Exact),
    col(
        "c_num_small",
        "CASE WHEN {} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE {}::text END",
        TEXT,
        Compare::Exact,
    ),
    col("c_num_free", "{}::text", TEXT, Compare::Exact),
    col("c_num_neg", "{}::text", TEXT, Compare::Exact),
    col("c_num_tiny", "{}::text", TEXT, Compare::Decimal),
    col("c_real", "{}::text", TEXT, Compare::Float32),
    col("c_double", "{}::text", TEXT, Compare::Float64),
    col("c_text", "{}::text", TEXT, Compare::Exact),
    col("c_varchar", "{}::text", TEXT, Compare::Exact),
    col("c_char", "CASE WHEN {} IS NOT NULL THEN format('%s', {}) END", TEXT, Compare::Exact),
    col("c_citext", "{}::text", TEXT, Compare::Exact),
    col("c_name", "{}::text", TEXT, Compare::Exact),
    col("c_enum", "{}::text", TEXT, Compare::Exact),
    col("c_domain", "{}::text", TEXT, Compare::Exact),
    col("c_domain_text", "{}::text", TEXT, Compare::Exact),
    col("c_bool", "{}::text", TEXT, Compare::Exact),
    col(
        "c_date",
        "CASE WHEN isfinite({}) THEN ({} - date '1970-01-01')::text END",
        "CAST({} - DATE '1970-01-01' AS VARCHAR)",
        Compare::Exact,
    ),
    col(
        "c_ts",
        "CASE WHEN isfinite({}) AND {} < '294247-01-01' THEN (extract(epoch FROM {}) * 1000000)::numeric(30,0)::text END",
        "CAST(epoch_us({}) AS VARCHAR)",
        Compare::Exact,
    ),
    col(
        "c_tstz",
        "CASE WHEN isfinite({}) THEN (extract(epoch FROM {}) * 1000000)::numeric(30,0)::text END",
        "CAST(epoch_us({}) AS VARCHAR)",
        Compare::Exact,
    ),
    col("c_time", "{}::text", TEXT, Compare::Exact),
    col("c_timetz", "{}::text", TEXT, Compare::Exact),
    col("c_interval", "{}::text", TEXT, Compare::Exact),
    col("c_uuid", "{}::text", TEXT, Compare::Exact),
    col("c_json", "{}::text", TEXT, Compare::Exact),
    col("c_jsonb", "{}::text", TEXT, Compare::Exact),
    col("c_bytea", "encode({}, 'hex')", "hex({})", Compare::Hex),
    col("c_money", "{}::numeric::text", TEXT, Compare::Exact),
    col("c_int_arr", "to_jsonb({})::text", TEXT, Compare::Exact),
    col("c_text_arr", "to_jsonb({})::text", TEXT, Compare::Exact),
    col("c_float_arr", "to_jsonb({})::text", TEXT, Compare::Exact),
    col("c_composite", "to_jsonb({})::text", TEXT, Compare::Exact),
    col("c_range", "to_jsonb({})::text", TEXT, Compare::Exact),
    col("c_tsrange", "to_jsonb({})::text", TEXT, Compare::Exact),
    col("c_hstore", "to_jsonb({})::text", TEXT, Compare::Exact),
    // inet as its output function prints it (a host without `/32`).
    col("c_inet", "CASE WHEN {} IS NOT NULL THEN format('%s', {}) END", TEXT, Compare::Exact),
    col("c_cidr", "{}::text", TEXT, Compare::Exact),
    col("c_macaddr", "{}::text", TEXT, Compare::Exact),
    col("c_xml", "{}::text", TEXT, Compare::Exact),
    col("c_bit", "{}::text", TEXT, Compare::Exact),
    col("c_point", "{}::text", TEXT, Compare::Exact),
];

/// (column, id) of every value the destination cannot hold: they must
/// arrive as NULL and be counted.
pub const UNREPRESENTABLE: &[(&str, i32)] = &[
    ("c_num", 5),       // NaN (±Infinity cannot be stored in a numeric with a typmod)
    ("c_num_small", 3), // NaN
    ("c_date", 3),      // -infinity
    ("c_date", 4),      // infinity
    ("c_ts", 4),        // infinity
    ("c_ts", 5),        // 294276 AD: beyond 64-bit microseconds since 1970
    ("c_tstz", 3),      // -infinity
    ("c_tstz", 4),      // infinity
];

/// Renders a column expression template.
pub fn render(template: &str, quoted_column: &str) -> String {
    template.replace("{}", quoted_column)
}

/// Compares two renderings of one value.
pub fn same(compare: Compare, a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => match compare {
            Compare::Exact => a == b,
            Compare::Hex => a.eq_ignore_ascii_case(b),
            Compare::Decimal => leading_zero(a) == leading_zero(b),
            Compare::Float64 => match (parse_f64(a), parse_f64(b)) {
                (Some(x), Some(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                _ => false,
            },
            Compare::Float32 => match (parse_f64(a), parse_f64(b)) {
                (Some(x), Some(y)) => {
                    let (x, y) = (x as f32, y as f32);
                    x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
                }
                _ => false,
            },
        },
        _ => false,
    }
}

fn leading_zero(s: &str) -> String {
    match s.strip_prefix('-') {
        Some(r) if r.starts_with('.') => format!("-0{r}"),
        _ if s.starts_with('.') => format!("0{s}"),
        _ => s.to_owned(),
    }
}

fn parse_f64(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}
