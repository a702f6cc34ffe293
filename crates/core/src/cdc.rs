//! Changes read from a change feed (DESIGN.md §3, §6), in their staged
//! form, and the SQL every destination uses to apply a stage of them.
//!
//! Each change carries its version ([`crate::version`]): replaying a feed
//! from any confirmed position never lets an older row version replace a
//! newer one, and rows of a snapshot read at the feed's start carry the
//! start's version, so every change delivered afterwards wins.

use crate::error::{Error, Result};
use crate::row_id;
use crate::schema::{TableSpec, meta};
use arrow_array::{ArrayRef, BooleanArray, Decimal128Array, RecordBatch};
use std::sync::Arc;

/// Appends the metadata columns to a group of changes of one table: each
/// row's version and delete flag, for tables without a key the row id, and
/// the columns each update left unchanged (`unchanged`: empty, or one list
/// per row of destination column names).
pub fn stage_changes(
    table: &TableSpec,
    data: RecordBatch,
    versions: &[i128],
    deleted: &[bool],
    unchanged: &[Vec<String>],
) -> Result<RecordBatch> {
    let data = crate::pseudonym::apply(table, data)?;
    let n = data.num_rows();
    if versions.len() != n || deleted.len() != n || !(unchanged.is_empty() || unchanged.len() == n) {
        return Err(Error::internal(format!(
            "{}: {n} changed rows but {} versions and {} delete flags",
            table.stream,
            versions.len(),
            deleted.len()
        )));
    }
    let mut columns: Vec<ArrayRef> = data.columns().to_vec();
    columns.push(Arc::new(BooleanArray::from(deleted.to_vec())));
    columns
        .push(Arc::new(Decimal128Array::from(versions.to_vec()).with_precision_and_scale(meta::VERSION_PRECISION, 0)?));
    if !table.has_key() {
        columns.push(Arc::new(row_id::row_ids(table, &data)?));
    }
    columns.push(Arc::new(
        (0..n)
            .map(|i| unchanged.get(i).filter(|u| !u.is_empty()).map(|u| unchanged_list(u)))
            .collect::<arrow_array::StringArray>(),
    ));
    Ok(RecordBatch::try_new(table.staged_schema(), columns)?)
}

/// `,a,b,`: the staged form of a list of unchanged columns (destination
/// column names never contain a comma: DESIGN.md §4 normalises them).
pub fn unchanged_list(columns: &[String]) -> String {
    format!(",{},", columns.join(","))
}

/// The SQL (DuckDB and Snowflake alike) that reduces a stage of changes to
/// one row per key: the newest version, where every column comes from the
/// newest change that carried it — an update that left a TOAST column
/// unchanged takes that column from an earlier change of the same key in
/// the stage — and `_simplyload_unchanged` lists the columns no change in
/// the stage carried, which the merge then keeps from the stored row.
///
/// `name` maps a destination column name to its name in the SQL (quoted),
/// `text` quotes a string literal. Without unchanged values in the stage
/// (`with_unchanged` false) it is the plain newest-row-per-key query.
pub fn latest_per_key_sql(
    table: &TableSpec,
    stage: &str,
    with_unchanged: bool,
    name: impl Fn(&str) -> String,
    text: impl Fn(&str) -> String,
) -> String {
    let keys: Vec<String> = table.key.iter().map(|k| name(k)).collect();
    let v = name(meta::VERSION);
    let newest = format!("ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {v} DESC) = 1", keys.join(", "));
    if !with_unchanged {
        return format!("SELECT * FROM {stage} QUALIFY {newest}");
    }
    let u = name(meta::UNCHANGED);
    let part = format!("PARTITION BY {}", keys.join(", "));
    let mut select: Vec<String> = Vec::new();
    let mut lists: Vec<String> = Vec::new();
    for c in &table.columns {
        let q = name(&c.name);
        if table.key.contains(&c.name) {
            select.push(q);
            continue;
        }
        let marker = text(&format!(",{},", c.name));
        let carried = format!("CASE WHEN {u} IS NULL OR NOT CONTAINS({u}, {marker}) THEN {v} END");
        select.push(format!("FIRST_VALUE({q}) OVER ({part} ORDER BY {carried} DESC NULLS LAST) AS {q}"));
        lists.push(format!(
            "CASE WHEN MAX({carried}) OVER ({part}) IS NULL THEN {} ELSE '' END",
            text(&format!("{},", c.name))
        ));
    }
    for m in [meta::DELETED, meta::VERSION] {
        select.push(name(m));
    }
    if !table.has_key() {
        select.push(name(meta::ID));
    }
    let list = if lists.is_empty() { "''".to_owned() } else { lists.join(" || ") };
    select.push(format!("CASE WHEN ({list}) = '' THEN NULL ELSE ',' || ({list}) END AS {u}"));
    format!("SELECT {} FROM {stage} QUALIFY {newest}", select.join(", "))
}

/// The statements (DuckDB and Snowflake alike) that apply a stage of
/// changes to a table without a key (DESIGN.md §4: rows are identified by
/// `_simplyload_id`, a hash of their values, and `_simplyload_index`, the
/// occurrence among identical rows). Each staged insert adds an occurrence,
/// each staged delete (`_simplyload_deleted`) removes one; only changes
/// newer than every version the table holds are applied (`watermark`), so a
/// replay after a crash applies nothing twice. Returns the statements: the
/// deletes (the newest occurrences first), then the inserts.
pub fn keyless_apply_sql(
    table: &TableSpec,
    target: &str,
    stage: &str,
    watermark: &str,
    now: &str,
    name: impl Fn(&str) -> String,
    cast: impl Fn(&crate::schema::Column) -> String,
) -> [String; 2] {
    let (id, idx, d, v, at) =
        (name(meta::ID), name(meta::INDEX), name(meta::DELETED), name(meta::VERSION), name(meta::SYNCED_AT));
    let fresh = format!("(SELECT * FROM {stage} WHERE {v} > {watermark})");
    let deltas = format!(
        "(SELECT {id} AS k, SUM(CASE WHEN {d} THEN -1 ELSE 1 END) AS delta, MAX({v}) AS mv FROM {fresh} f GROUP BY {id})"
    );
    let delete = format!(
        "UPDATE {target} AS t SET {d} = TRUE, {v} = x.mv, {at} = {now} FROM (
           SELECT o.{id} AS k, o.{idx} AS i, dl.mv FROM (
             SELECT {id}, {idx}, ROW_NUMBER() OVER (PARTITION BY {id} ORDER BY {idx} DESC) AS rn
               FROM {target} WHERE NOT COALESCE({d}, FALSE)) o
           JOIN {deltas} dl ON dl.k = o.{id}
          WHERE dl.delta < 0 AND o.rn <= -dl.delta) x
         WHERE t.{id} = x.k AND t.{idx} = x.i"
    );
    let mut cols: Vec<String> = table.columns.iter().map(|c| name(&c.name)).collect();
    cols.extend([at.clone(), d.clone(), v.clone(), id.clone(), idx.clone()]);
    let mut vals: Vec<String> = table.columns.iter().map(&cast).collect();
    vals.extend([
        now.to_owned(),
        "FALSE".to_owned(),
        "dl.mv".to_owned(),
        format!("s.{id}"),
        "COALESCE(m.top, -1) + s.rn".to_owned(),
    ]);
    let insert = format!(
        "INSERT INTO {target} ({}) SELECT {} FROM (
           SELECT f.*, ROW_NUMBER() OVER (PARTITION BY f.{id} ORDER BY f.{v} DESC) AS rn FROM {fresh} f WHERE NOT f.{d}) s
         JOIN {deltas} dl ON dl.k = s.{id}
         LEFT JOIN (SELECT {id} AS k, MAX({idx}) AS top FROM {target} GROUP BY {id}) m ON m.k = s.{id}
         WHERE dl.delta > 0 AND s.rn <= dl.delta",
        cols.join(", "),
        vals.join(", ")
    );
    [delete, insert]
}
