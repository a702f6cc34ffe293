//! Discovery from `pg_catalog`: tables, columns, types (domains resolved to
//! their base type), primary keys, replica identity, estimated row counts.

use crate::connect::pg_error;
use crate::types::{self, BaseType, TypePlan};
use simplyload_core::{ColumnInfo, Result, Selection, StreamName, TableInfo};
use tokio_postgres::Client;

/// A column with everything needed to read it.
#[derive(Debug, Clone)]
pub struct PgColumn {
    pub info: ColumnInfo,
    pub plan: TypePlan,
    /// The oid of the column's base type (domains resolved).
    pub base_oid: u32,
}

/// A table with its columns' read plans.
#[derive(Debug, Clone)]
pub struct PgTable {
    pub info: TableInfo,
    pub columns: Vec<PgColumn>,
}

/// Resolves each domain to its final base type and the typmod in force.
const COLUMNS_SQL: &str = r#"
WITH RECURSIVE dom AS (
    SELECT t.oid AS start, t.oid AS cur, t.typtype, t.typbasetype, t.typtypmod AS typmod, 0 AS depth
    FROM pg_type t WHERE t.typtype = 'd'
  UNION ALL
    SELECT d.start, t.oid, t.typtype, t.typbasetype,
           CASE WHEN d.typmod <> -1 THEN d.typmod ELSE t.typtypmod END, d.depth + 1
    FROM dom d JOIN pg_type t ON t.oid = d.typbasetype
    WHERE d.typtype = 'd' AND d.depth < 32
),
resolved AS (
    SELECT start, cur AS base_oid, typmod FROM dom WHERE typtype <> 'd'
),
rels AS (
    SELECT c.oid, n.nspname, c.relname, c.relkind::text AS relkind, c.relreplident::text AS replident,
           CASE WHEN c.relkind = 'p' THEN
                (SELECT sum(GREATEST(pc.reltuples, 0))::float8 FROM pg_partition_tree(c.oid) pt
                   JOIN pg_class pc ON pc.oid = pt.relid WHERE pt.isleaf)
                ELSE c.reltuples::float8 END AS reltuples
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND NOT c.relispartition
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%'
      AND ($1::text IS NULL OR (n.nspname = $1 AND c.relname = $2))
      AND ($3::text[] IS NULL OR n.nspname = ANY($3))
)
SELECT r.oid::int8, r.nspname, r.relname, r.relkind, r.replident, r.reltuples,
       a.attnum::int4, a.attname, a.attnotnull, format_type(a.atttypid, a.atttypmod) AS type_name,
       (a.atthasdef OR a.atthasmissing OR a.attgenerated <> '') AS has_default,
       bt.oid::int8 AS base_oid, bt.typname, bt.typtype::text, bt.typcategory::text,
       CASE WHEN res.start IS NOT NULL AND a.atttypmod = -1 THEN res.typmod ELSE a.atttypmod END AS typmod
FROM rels r
JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN resolved res ON res.start = a.atttypid
JOIN pg_type bt ON bt.oid = COALESCE(res.base_oid, a.atttypid)
ORDER BY r.nspname, r.relname, a.attnum
"#;

const KEYS_SQL: &str = r#"
SELECT i.indrelid::int8, a.attname
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indisprimary
ORDER BY i.indrelid, k.ord
"#;

/// What part of the catalog to read.
#[derive(Debug, Clone)]
pub enum Scope<'a> {
    /// Every table.
    All,
    /// The tables of these schemas.
    Schemas(Vec<String>),
    /// One table.
    Table(&'a StreamName),
}

impl Scope<'_> {
    /// The smallest scope that holds every table a selection can match: its
    /// schemas, when each of its names and patterns names its schema
    /// literally (`public.*`, `sales.orders`); everything otherwise (`*.orders`).
    pub fn of(selection: &Selection) -> Scope<'static> {
        let Some(patterns) = selection.patterns() else { return Scope::All };
        let mut schemas = Vec::new();
        for p in patterns {
            let schema = p.namespace.as_deref().unwrap_or(crate::DEFAULT_SCHEMA);
            if schema.contains(['*', '?']) {
                return Scope::All;
            }
            if !schemas.iter().any(|s| s == schema) {
                schemas.push(schema.to_owned());
            }
        }
        Scope::Schemas(schemas)
    }
}

/// Reads the catalog, within `scope`.
pub async fn discover(client: &Client, scope: Scope<'_>) -> Result<Vec<PgTable>> {
    let (mut schema, mut table, mut schemas): (Option<&str>, Option<&str>, Option<Vec<String>>) = (None, None, None);
    match scope {
        Scope::All => {}
        Scope::Schemas(s) => schemas = Some(s),
        Scope::Table(n) => {
            let (s, t) = crate::schema_and_table(n);
            (schema, table) = (Some(s), Some(t));
        }
    }
    let rows = client
        .query(COLUMNS_SQL, &[&schema, &table, &schemas])
        .await
        .map_err(|e| pg_error(&e, "reading the catalog"))?;
    let keys = client.query(KEYS_SQL, &[]).await.map_err(|e| pg_error(&e, "reading primary keys"))?;
    let mut pk: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
    for k in keys {
        pk.entry(k.get(0)).or_default().push(k.get(1));
    }
    let mut tables: Vec<PgTable> = Vec::new();
    let mut current: Option<i64> = None;
    for r in rows {
        let oid: i64 = r.get(0);
        if current != Some(oid) {
            current = Some(oid);
            let relkind: String = r.get(3);
            let replident: String = r.get(4);
            let reltuples: Option<f64> = r.get(5);
            tables.push(PgTable {
                info: TableInfo {
                    name: StreamName::new(r.get::<_, String>(1), r.get::<_, String>(2)),
                    kind: match relkind.as_str() {
                        "r" => "table",
                        "p" => "partitioned table",
                        "v" => "view",
                        "m" => "materialized view",
                        "f" => "foreign table",
                        _ => "relation",
                    }
                    .into(),
                    columns: Vec::new(),
                    primary_key: pk.remove(&oid).unwrap_or_default(),
                    estimated_rows: reltuples.filter(|t| *t >= 0.0).map(|t| t.round() as u64),
                    replica_identity: Some(
                        match replident.as_str() {
                            "d" => "default",
                            "f" => "full",
                            "i" => "index",
                            "n" => "nothing",
                            _ => "unknown",
                        }
                        .into(),
                    ),
                },
                columns: Vec::new(),
            });
        }
        let base_oid: i64 = r.get(11);
        let typname: String = r.get(12);
        let typtype: String = r.get(13);
        let category: String = r.get(14);
        let typmod: i32 = r.get(15);
        let plan = types::plan(&BaseType {
            oid: base_oid as u32,
            name: &typname,
            typtype: &typtype,
            category: &category,
            typmod,
        });
        let info = ColumnInfo {
            name: r.get(7),
            type_name: r.get(9),
            sql_type: plan.sql_type,
            nullable: !r.get::<_, bool>(8),
            has_default: r.get(10),
            verbatim: false,
        };
        let t = tables.last_mut().expect("pushed above");
        t.info.columns.push(info.clone());
        t.columns.push(PgColumn { info, plan, base_oid: base_oid as u32 });
    }
    Ok(tables)
}
