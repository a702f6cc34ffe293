//! From configuration and a source's catalog to the exact shape of every
//! destination table.

use crate::catalog::{Catalog, TableInfo};
use crate::error::{Error, ErrorKind, Result};
use crate::naming::{self, Rename, StreamName, TableNameParts};
use crate::schema::{Column, TableSpec};
use simplyload_config::{Config, PipelineConfig, StreamConfig, SyncMode};
use std::collections::HashMap;

/// One stream, ready to sync.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    pub config: StreamConfig,
    pub mode: SyncMode,
    pub table: TableSpec,
    /// Columns renamed to avoid collisions.
    pub renames: Vec<Rename>,
    pub estimated_rows: Option<u64>,
    /// `incremental`: the cursor column (index into `table.columns`) and lookback.
    pub cursor: Option<CursorPlan>,
    /// The column mapped onto `_simplyload_deleted` (index into `table.columns`).
    pub soft_delete: Option<usize>,
}

/// The cursor of an incremental stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorPlan {
    pub index: usize,
    pub lookback: crate::cursor::Lookback,
}

impl StreamPlan {
    pub fn stream(&self) -> String {
        self.table.stream.to_string()
    }
}

/// Parses a stream's configured name, naming the key on error.
pub fn stream_name(pipeline: &str, index: usize, stream: &StreamConfig) -> Result<StreamName> {
    StreamName::parse(&stream.name)
        .map_err(|m| Error::config(format!("pipelines.{pipeline}.streams[{index}]: {m}")))
}

/// The destination table a stream maps to.
pub fn destination_table(pipeline: &PipelineConfig, source: &str, database: &str, stream: &StreamName) -> String {
    naming::table_name(
        pipeline.table_name_template(),
        &TableNameParts { source, database, schema: &stream.schema, table: &stream.table },
    )
}

/// Rejects two streams that would land in one destination table, within a
/// pipeline or across pipelines writing to the same destination.
/// `database` gives each source's database name.
pub fn check_table_names(config: &Config, database: impl Fn(&str) -> Option<String>) -> Result<()> {
    // (destination, table) → "pipelines.p.streams[i] (schema.table)"
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    for (pname, p) in &config.pipelines {
        let Some(db) = database(&p.source) else { continue };
        for (i, s) in p.streams.iter().enumerate() {
            let name = stream_name(pname, i, s)?;
            let table = destination_table(p, &p.source, &db, &name);
            let here = format!("pipelines.{pname}.streams[{i}] ({name})");
            if let Some(first) = seen.insert((p.destination.clone(), table.clone()), here.clone()) {
                return Err(Error::config(format!(
                    "{first} and {here} both map to table `{table}` in destination `{}`",
                    p.destination
                ))
                .with_hint(format!(
                    "give pipelines.{pname} a table_name template that tells them apart, e.g. \"{{source}}_{{database}}_{{schema}}_{{table}}\""
                )));
            }
        }
    }
    Ok(())
}

/// Plans every stream of a pipeline against the source's catalog. Each
/// stream gets its own result: one missing table does not stop the others.
pub fn plan_pipeline(
    pipeline_name: &str,
    pipeline: &PipelineConfig,
    catalog: &Catalog,
) -> Vec<(String, Result<StreamPlan>)> {
    pipeline
        .streams
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let label = match StreamName::parse(&s.name) {
                Ok(n) => n.to_string(),
                Err(_) => s.name.clone(),
            };
            (label, plan_stream(pipeline_name, pipeline, i, s, catalog))
        })
        .collect()
}

fn plan_stream(
    pipeline_name: &str,
    pipeline: &PipelineConfig,
    index: usize,
    stream: &StreamConfig,
    catalog: &Catalog,
) -> Result<StreamPlan> {
    let key = format!("pipelines.{pipeline_name}.streams[{index}]");
    let name = stream_name(pipeline_name, index, stream)?;
    let info = catalog.table(&name).ok_or_else(|| missing_table(&name, pipeline, catalog))?;
    let mode = stream.mode.unwrap_or(pipeline.mode);
    if mode == SyncMode::Cdc {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("{key}: mode `{mode}` is not available in this build yet"),
        )
        .with_hint(format!(
            "set `mode: incremental` (with `cursor: updated_at`) or `mode: full_refresh` on pipelines.{pipeline_name} or on the stream"
        )));
    }
    for (field, col) in [("cursor", &stream.cursor), ("soft_delete", &stream.soft_delete)] {
        if let Some(c) = col {
            if !info.columns.iter().any(|x| &x.name == c) {
                return Err(unknown_column(&key, field, c, info));
            }
            if stream.exclude_columns.contains(c) {
                return Err(Error::config(format!("{key}.{field}: column `{c}` is also in exclude_columns")));
            }
        }
    }
    for ex in &stream.exclude_columns {
        if !info.columns.iter().any(|c| &c.name == ex) {
            return Err(unknown_column(&key, "exclude_columns", ex, info));
        }
    }
    let kept: Vec<_> = info.columns.iter().filter(|c| !stream.exclude_columns.contains(&c.name)).collect();
    if kept.is_empty() {
        return Err(Error::config(format!("{key}.exclude_columns: every column of {name} is excluded")));
    }
    let source_key: Vec<String> = match &stream.primary_key {
        Some(pk) => {
            for c in pk {
                if !info.columns.iter().any(|x| &x.name == c) {
                    return Err(unknown_column(&key, "primary_key", c, info));
                }
                if stream.exclude_columns.contains(c) {
                    return Err(Error::config(format!(
                        "{key}.primary_key: column `{c}` is also in exclude_columns"
                    )));
                }
            }
            pk.clone()
        }
        None => {
            if let Some(c) = info.primary_key.iter().find(|c| stream.exclude_columns.contains(c)) {
                return Err(Error::config(format!(
                    "{key}.exclude_columns: `{c}` is part of the primary key of {name} and cannot be excluded"
                )));
            }
            info.primary_key.clone()
        }
    };
    let (dest_names, renames) = naming::column_names(kept.iter().map(|c| c.name.as_str()));
    let columns: Vec<Column> = kept
        .iter()
        .zip(dest_names)
        .map(|(c, dest)| Column {
            source_name: c.name.clone(),
            name: dest,
            sql_type: c.sql_type,
            source_type: c.type_name.clone(),
            nullable: c.nullable,
        })
        .collect();
    let key_cols = source_key
        .iter()
        .map(|k| columns.iter().find(|c| &c.source_name == k).map(|c| c.name.clone()).expect("checked above"))
        .collect();
    let table = TableSpec {
        name: destination_table(pipeline, &pipeline.source, &catalog.database, &name),
        stream: name,
        columns,
        key: key_cols,
    };
    let index_of = |c: &str| table.columns.iter().position(|x| x.source_name == c).expect("checked above");
    let cursor = match (mode, &stream.cursor) {
        (SyncMode::Incremental, None) => {
            return Err(Error::config(format!("{key}: mode `incremental` needs a cursor column"))
                .with_hint(format!("add `cursor: updated_at` (a timestamp, timestamptz, integer or numeric column that grows on every change) to {key}")));
        }
        (SyncMode::Incremental, Some(c)) => {
            let index = index_of(c);
            let t = table.columns[index].sql_type;
            if !crate::cursor::cursor_type_ok(t) {
                return Err(Error::config(format!(
                    "{key}.cursor: column `{c}` is {} ({}); a cursor must be a timestamp, timestamptz, integer or numeric column",
                    table.columns[index].source_type,
                    t.name()
                )));
            }
            if !table.has_key() {
                return Err(Error::config(format!(
                    "{key}: table {} has no primary key, so changed rows cannot be matched to the rows already loaded",
                    table.stream
                ))
                .with_hint(format!("add `primary_key: [..]` to {key}, or use `mode: full_refresh`")));
            }
            let lookback = crate::cursor::lookback_for(t, stream.lookback.as_ref())
                .map_err(|e| Error::config(format!("{key}.{}", e.message())))?;
            Some(CursorPlan { index, lookback })
        }
        _ => None,
    };
    let soft_delete = stream.soft_delete.as_deref().map(index_of);
    Ok(StreamPlan { config: stream.clone(), mode, table, renames, estimated_rows: info.estimated_rows, cursor, soft_delete })
}

fn missing_table(name: &StreamName, pipeline: &PipelineConfig, catalog: &Catalog) -> Error {
    let similar: Vec<String> = catalog
        .tables
        .iter()
        .filter(|t| t.name.table.eq_ignore_ascii_case(&name.table))
        .map(|t| t.name.to_string())
        .collect();
    let hint = if similar.is_empty() {
        format!("run `simplyload discover {}` to list the tables SimplyLoad can read", pipeline.source)
    } else {
        format!("names are case-sensitive; did you mean {}?", similar.join(" or "))
    };
    Error::not_found(format!(
        "table {name} not found in source `{}` (database {})",
        pipeline.source, catalog.database
    ))
    .with_hint(hint)
}

fn unknown_column(key: &str, field: &str, column: &str, info: &TableInfo) -> Error {
    let cols: Vec<&str> = info.columns.iter().map(|c| c.name.as_str()).collect();
    Error::config(format!("{key}.{field}: table {} has no column `{column}`", info.name))
        .with_hint(format!("its columns are: {}", cols.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ColumnInfo;
    use crate::schema::SqlType;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"
sources: {{ app: {{ type: postgres, url: "postgres://u@h/shop" }} }}
destinations: {{ local: {{ type: duckdb, path: w.duckdb }} }}
pipelines:
  p:
    source: app
    destination: local
{extra}"#
        );
        Config::from_yaml_with_env(&text, |_| None).unwrap()
    }

    fn catalog() -> Catalog {
        let col = |n: &str, t: SqlType| ColumnInfo { name: n.into(), type_name: "x".into(), sql_type: t, nullable: true };
        Catalog {
            database: "shop".into(),
            tables: vec![
                TableInfo {
                    name: StreamName::new("public", "orders"),
                    kind: "table".into(),
                    columns: vec![col("id", SqlType::Int64), col("Amount", SqlType::Text), col("amount", SqlType::Text), col("secret", SqlType::Text)],
                    primary_key: vec!["id".into()],
                    estimated_rows: Some(10),
                    replica_identity: None,
                },
                TableInfo {
                    name: StreamName::new("sales", "orders"),
                    kind: "table".into(),
                    columns: vec![col("x", SqlType::Int32)],
                    primary_key: vec![],
                    estimated_rows: None,
                    replica_identity: None,
                },
            ],
        }
    }

    #[test]
    fn plans_names_keys_and_exclusions() {
        let cfg = config("    streams:\n      - name: public.orders\n        exclude_columns: [secret]\n");
        let plans = plan_pipeline("p", &cfg.pipelines["p"], &catalog());
        let plan = plans[0].1.as_ref().unwrap();
        assert_eq!(plan.table.name, "app_shop_orders");
        let names: Vec<_> = plan.table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["id", "amount", "amount_2"]);
        assert_eq!(plan.table.key, vec!["id"]);
        assert_eq!(plan.renames.len(), 1);
    }

    #[test]
    fn missing_table_suggests_discover() {
        let cfg = config("    streams: [public.nope, Orders]\n");
        let plans = plan_pipeline("p", &cfg.pipelines["p"], &catalog());
        let e = plans[0].1.as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("table public.nope not found in source `app`"), "{e}");
        assert!(e.hint().unwrap().contains("simplyload discover app"));
        let e = plans[1].1.as_ref().unwrap_err();
        assert!(e.hint().unwrap().contains("public.orders"), "{e}");
    }

    #[test]
    fn unknown_columns_are_named() {
        let cfg = config("    streams:\n      - name: sales.orders\n        primary_key: [idd]\n");
        let plans = plan_pipeline("p", &cfg.pipelines["p"], &catalog());
        let e = plans[0].1.as_ref().unwrap_err();
        assert!(e.message().contains("pipelines.p.streams[0].primary_key: table sales.orders has no column `idd`"), "{e}");
    }

    #[test]
    fn two_streams_on_one_table_are_a_config_error() {
        let cfg = config("    streams: [public.orders, sales.orders]\n");
        let e = check_table_names(&cfg, |_| Some("shop".into())).unwrap_err();
        assert!(e.message().contains("streams[0] (public.orders) and pipelines.p.streams[1] (sales.orders)"), "{e}");
        assert!(e.message().contains("app_shop_orders"), "{e}");
        assert!(e.hint().unwrap().contains("{schema}"));
        let cfg = config("    table_name: \"{schema}_{table}\"\n    streams: [public.orders, sales.orders]\n");
        check_table_names(&cfg, |_| Some("shop".into())).unwrap();
    }
}
