//! From configuration and a source's catalog to the exact shape of every
//! destination table.

use crate::catalog::{Catalog, ColumnInfo, Selection, TableInfo};
use crate::error::{Error, ErrorKind, Result};
use crate::naming::{self, Rename, StreamName, TableNameParts, pattern_matches};
use crate::schema::{Column, SqlType, TableSpec};
use crate::source::Source;
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
    /// Source names of the columns that have a default (see [`SchemaChange::Added`]).
    pub defaults: Vec<String>,
}

/// How a stream's table changed since its last load (DESIGN.md §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    /// A new source column; earlier rows hold NULL in it — unless it came
    /// with a default, which gave existing rows values without touching
    /// their cursor, so they are read again.
    Added { column: String, with_default: bool },
    /// Gone from the source: the destination column stays and is no longer filled.
    Dropped { column: String },
    /// A wider type holds every old value exactly: the column is altered in place.
    Widened { column: String, from: SqlType, to: SqlType },
    /// Any other type change: the old column keeps its data, the new values
    /// go to a new column, and the stream is read again to fill it.
    Diverted { column: String, from: SqlType, to: SqlType, into: String },
}

impl SchemaChange {
    /// Whether existing rows got values their cursor does not show.
    pub fn needs_reread(&self) -> bool {
        matches!(self, SchemaChange::Added { with_default: true, .. } | SchemaChange::Diverted { .. })
    }
}

impl std::fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaChange::Added { column, with_default: false } => write!(f, "column {column} added"),
            SchemaChange::Added { column, with_default: true } => {
                write!(f, "column {column} added with a default; existing rows are read again")
            }
            SchemaChange::Dropped { column } => {
                write!(f, "column {column} dropped in the source; kept in the destination, no longer filled")
            }
            SchemaChange::Widened { column, from, to } => {
                write!(f, "column {column} widened from {} to {}", from.name(), to.name())
            }
            SchemaChange::Diverted { column, from, to, into } => write!(
                f,
                "column {column} changed type from {} to {}; old values stay in {column}, values are now written to {into} (rows read again)",
                from.name(),
                to.name()
            ),
        }
    }
}

/// Brings a freshly planned table in line with what was loaded before:
/// unchanged columns keep their destination names, widened ones are altered,
/// and an incompatible type change goes to a new column `<name>__<type>`.
pub fn evolve(previous: &TableSpec, planned: &mut TableSpec, defaults: &[String]) -> Vec<SchemaChange> {
    let mut changes = Vec::new();
    let mut taken: Vec<String> = previous.columns.iter().map(|c| c.name.clone()).collect();
    let mut renamed: Vec<(String, String)> = Vec::new();
    for i in 0..planned.columns.len() {
        let c = planned.columns[i].clone();
        match previous.columns.iter().find(|p| p.source_name == c.source_name) {
            None => {
                // A new column must not take the name of one still in the destination.
                let mut name = c.name.clone();
                let mut n = 2;
                while taken.contains(&name)
                    && !previous.columns.iter().any(|p| p.name == name && p.source_name == c.source_name)
                {
                    name = format!("{}_{n}", c.name);
                    n += 1;
                }
                taken.push(name.clone());
                if name != c.name {
                    renamed.push((c.name.clone(), name.clone()));
                    planned.columns[i].name = name.clone();
                }
                changes.push(SchemaChange::Added { column: name, with_default: defaults.contains(&c.source_name) });
            }
            Some(p) if p.sql_type == c.sql_type || p.sql_type.widens_to(&c.sql_type) => {
                if p.name != c.name {
                    renamed.push((c.name.clone(), p.name.clone()));
                    planned.columns[i].name = p.name.clone();
                }
                if p.sql_type != c.sql_type {
                    changes.push(SchemaChange::Widened { column: p.name.clone(), from: p.sql_type, to: c.sql_type });
                }
            }
            Some(p) => {
                let base = format!("{}__{}", c.name, crate::naming::normalize(&c.sql_type.name()));
                let mut into = base.clone();
                let mut n = 2;
                while taken.contains(&into) {
                    into = format!("{base}_{n}");
                    n += 1;
                }
                taken.push(into.clone());
                renamed.push((c.name.clone(), into.clone()));
                planned.columns[i].name = into.clone();
                changes.push(SchemaChange::Diverted { column: p.name.clone(), from: p.sql_type, to: c.sql_type, into });
            }
        }
    }
    for k in &mut planned.key {
        if let Some((_, to)) = renamed.iter().find(|(from, _)| from == k) {
            *k = to.clone();
        }
    }
    for p in &previous.columns {
        if !planned.columns.iter().any(|c| c.source_name == p.source_name) {
            changes.push(SchemaChange::Dropped { column: p.name.clone() });
        }
    }
    changes
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

/// The stream's excluded columns with its `columns:` allow-list applied:
/// every column not listed is excluded too. A listed column must exist,
/// and the key, cursor and soft-delete columns must be listed.
fn allowed_columns(key: &str, stream: &StreamConfig, info: &TableInfo) -> Result<Vec<String>> {
    let Some(allow) = &stream.columns else { return Ok(stream.exclude_columns.clone()) };
    if let Some(c) = allow.iter().find(|c| !info.columns.iter().any(|x| &x.name == *c)) {
        return Err(unknown_column(key, "columns", c, info));
    }
    let pk = stream.primary_key.as_ref().unwrap_or(&info.primary_key);
    let needed = pk.iter().map(|c| ("primary key", c)).chain(
        [("cursor", &stream.cursor), ("soft_delete", &stream.soft_delete)]
            .into_iter()
            .filter_map(|(what, c)| c.as_ref().map(|c| (what, c))),
    );
    for (what, c) in needed {
        if !allow.contains(c) {
            return Err(Error::config(format!("{key}.columns: the {what} column `{c}` must be listed")));
        }
    }
    let mut excluded = stream.exclude_columns.clone();
    excluded.extend(info.columns.iter().filter(|c| !allow.contains(&c.name)).map(|c| c.name.clone()));
    Ok(excluded)
}

/// The destination names of a stream's `hash_columns`: kept text columns
/// that are not its key, cursor or soft-delete column, with the salt set.
fn hashed_columns(
    key: &str,
    stream: &StreamConfig,
    source_key: &[String],
    columns: &[Column],
    info: &TableInfo,
) -> Result<Vec<String>> {
    if stream.hash_columns.is_empty() {
        return Ok(Vec::new());
    }
    crate::pseudonym::salt().map_err(|e| e.context(format!("{key}.hash_columns")))?;
    let mut out = Vec::new();
    for c in &stream.hash_columns {
        let Some(col) = columns.iter().find(|x| &x.source_name == c) else {
            if info.columns.iter().any(|x| &x.name == c) {
                return Err(Error::config(format!("{key}.hash_columns: column `{c}` is not copied (excluded)")));
            }
            return Err(unknown_column(key, "hash_columns", c, info));
        };
        let role = if source_key.contains(c) {
            Some("the key")
        } else if stream.cursor.as_ref() == Some(c) {
            Some("the cursor")
        } else if stream.soft_delete.as_ref() == Some(c) {
            Some("the soft-delete column")
        } else {
            None
        };
        if let Some(role) = role {
            return Err(Error::config(format!("{key}.hash_columns: column `{c}` is {role} and cannot be hashed")));
        }
        if col.sql_type != SqlType::Text {
            return Err(Error::config(format!(
                "{key}.hash_columns: column `{c}` is {} ({}); only text columns can be hashed",
                col.source_type,
                col.sql_type.name()
            ))
            .with_hint("exclude it (exclude_columns) if it must not be copied"));
        }
        out.push(col.name.clone());
    }
    Ok(out)
}

/// Parses a stream's configured name (in the source's default namespace
/// when it names none), naming the key on error.
pub fn stream_name(
    pipeline: &str,
    index: usize,
    stream: &StreamConfig,
    default_namespace: Option<&str>,
) -> Result<StreamName> {
    StreamName::parse(&stream.name)
        .map(|n| n.qualified(default_namespace))
        .map_err(|m| Error::config(format!("pipelines.{pipeline}.streams[{index}]: {m}")))
}

/// A configured name or pattern, in the source's default namespace when it names none.
fn parse_qualified(name: &str, default_namespace: Option<&str>) -> Option<StreamName> {
    StreamName::parse(name).ok().map(|n| n.qualified(default_namespace))
}

/// Destination names for the kept columns: normalised, except the
/// source's own `verbatim` columns, which keep their spelling.
fn destination_columns(kept: &[&ColumnInfo]) -> (Vec<String>, Vec<Rename>) {
    let plain = kept.iter().filter(|c| !c.verbatim).map(|c| c.name.as_str());
    let (names, renames) = naming::column_names(plain);
    let mut names = names.into_iter();
    let all = kept.iter().map(|c| if c.verbatim { c.name.clone() } else { names.next().unwrap_or_default() }).collect();
    (all, renames)
}

/// The destination table a stream maps to.
pub fn destination_table(pipeline: &PipelineConfig, source: &str, database: &str, stream: &StreamName) -> String {
    let parts = TableNameParts { source, database, schema: stream.namespace_or_empty(), table: &stream.name };
    // The default `{source}_{database}_{table}` says a name once when the
    // source is named like its database (`playground_orders`, not
    // `playground_playground_orders`).
    let template = match &pipeline.table_name {
        None if naming::normalize(source) == naming::normalize(database) => DEFAULT_TABLE_NAME_ONCE,
        _ => pipeline.table_name_template(),
    };
    naming::table_name(template, &parts)
}

/// The planned streams named in `select` (`public.orders`, or `orders` in
/// the source's default namespace); all of them when it is empty. A name
/// the pipeline does not have is a config error listing the ones it has.
pub fn select_planned(
    pipeline: &str,
    select: &[String],
    default_namespace: Option<&str>,
    planned: Vec<(String, Result<StreamPlan>)>,
) -> Result<Vec<(String, Result<StreamPlan>)>> {
    if select.is_empty() {
        return Ok(planned);
    }
    let mut wanted = Vec::new();
    for s in select {
        let name = StreamName::parse(s).map_err(|m| Error::config(format!("--select {s}: {m}")))?;
        wanted.push(name.qualified(default_namespace).to_string());
    }
    let labels: Vec<&str> = planned.iter().map(|(l, _)| l.as_str()).collect();
    if let Some(unknown) = wanted.iter().find(|w| !labels.contains(&w.as_str())) {
        return Err(Error::config(format!("pipeline {pipeline} has no stream {unknown}"))
            .with_hint(format!("its streams are: {}", labels.join(", "))));
    }
    Ok(planned.into_iter().filter(|(l, _)| wanted.contains(l)).collect())
}

/// The default table name when the source's name is its database's.
const DEFAULT_TABLE_NAME_ONCE: &str = "{source}_{table}";

/// Streams already loaded under the default name of releases before 0.2
/// (`{source}_{database}_{table}` even when source and database share a
/// name) keep the table they are in, so an upgrade never moves them.
/// `loaded_table` gives the table a stream was last loaded into.
pub fn keep_loaded_tables(
    pipeline: &PipelineConfig,
    database: &str,
    planned: &mut [(String, Result<StreamPlan>)],
    loaded_table: impl Fn(&str) -> Option<String>,
) {
    if pipeline.table_name.is_some() {
        return;
    }
    for (label, plan) in planned.iter_mut() {
        let Ok(plan) = plan else { continue };
        let stream = &plan.table.stream;
        let parts = TableNameParts {
            source: &pipeline.source,
            database,
            schema: stream.namespace_or_empty(),
            table: &stream.name,
        };
        let before = naming::table_name(simplyload_config::DEFAULT_TABLE_NAME, &parts);
        if before != plan.table.name && loaded_table(label).as_deref() == Some(before.as_str()) {
            plan.table.name = before;
        }
    }
}

/// What a `discover` for this pipeline must describe: its streams' names
/// and patterns.
pub fn selection(pipeline: &PipelineConfig, default_namespace: Option<&str>) -> Selection {
    Selection::of(pipeline.streams.iter().filter_map(|s| parse_qualified(&s.name, default_namespace)))
}

/// Discovers `selection`, with the source's default namespace and
/// capabilities in the catalog (planning needs both).
pub async fn discover(source: &dyn Source, selection: &Selection) -> Result<Catalog> {
    let mut catalog = source.discover(selection).await?;
    catalog.default_namespace = source.default_namespace().map(str::to_owned);
    catalog.capabilities = source.capabilities();
    Ok(catalog)
}

/// What naming a source's streams needs, known without connecting.
#[derive(Debug, Clone)]
pub struct SourceNaming {
    /// `{database}` in table names.
    pub database: String,
    pub default_namespace: Option<String>,
}

/// Rejects two streams that would land in one destination table, within a
/// pipeline or across pipelines writing to the same destination.
/// `database` gives each source's database name.
pub fn check_table_names(config: &Config, naming: impl Fn(&str) -> Option<SourceNaming>) -> Result<()> {
    // (destination, pipeline schema, table) → "pipelines.p.streams[i] (schema.table)"
    let mut seen: HashMap<(String, String, String), String> = HashMap::new();
    for (pname, p) in &config.pipelines {
        let Some(names) = naming(&p.source) else { continue };
        for (i, s) in p.streams.iter().enumerate().filter(|(_, s)| !s.is_pattern()) {
            let name = stream_name(pname, i, s, names.default_namespace.as_deref())?;
            let table = destination_table(p, &p.source, &names.database, &name);
            let here = format!("pipelines.{pname}.streams[{i}] ({name})");
            let place = (p.destination.clone(), p.schema.clone().unwrap_or_default(), table.clone());
            if let Some(first) = seen.insert(place, here.clone()) {
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

/// Whether the pipeline's config selects this stream (by name or pattern),
/// known without the source's catalog.
pub fn selects(pipeline: &PipelineConfig, stream: &StreamName, default_namespace: Option<&str>) -> bool {
    pipeline.streams.iter().any(|s| match parse_qualified(&s.name, default_namespace) {
        Some(n) if !s.is_pattern() => &n == stream,
        Some(p) => {
            pattern_matches(&p, stream)
                && !s
                    .exclude
                    .iter()
                    .filter_map(|e| parse_qualified(e, default_namespace))
                    .any(|e| pattern_matches(&e, stream))
        }
        None => false,
    })
}

/// The pipeline's streams with every pattern (`public.*`) replaced by the
/// tables of the catalog it matches (minus its `exclude` list and tables
/// listed on their own), each with the pattern's settings. Tables created
/// later are picked up the next time this runs. The index is the stream's
/// position in the config, for error messages.
pub fn expand_streams(pipeline_name: &str, pipeline: &PipelineConfig, catalog: &Catalog) -> Vec<(usize, StreamConfig)> {
    let ns = catalog.default_namespace.as_deref();
    let explicit: Vec<StreamName> =
        pipeline.streams.iter().filter(|s| !s.is_pattern()).filter_map(|s| parse_qualified(&s.name, ns)).collect();
    let mut out: Vec<(usize, StreamConfig)> = Vec::new();
    for (i, s) in pipeline.streams.iter().enumerate() {
        if !s.is_pattern() {
            out.push((i, s.clone()));
            continue;
        }
        let Some(pattern) = parse_qualified(&s.name, ns) else {
            out.push((i, s.clone()));
            continue;
        };
        let excludes: Vec<StreamName> = s.exclude.iter().filter_map(|e| parse_qualified(e, ns)).collect();
        let mut matched: Vec<&StreamName> = catalog
            .tables
            .iter()
            .map(|t| &t.name)
            .filter(|n| pattern_matches(&pattern, n))
            .filter(|n| !excludes.iter().any(|e| pattern_matches(e, n)))
            .filter(|n| !explicit.contains(n))
            .filter(|n| !out.iter().any(|(_, o)| parse_qualified(&o.name, ns).as_ref() == Some(*n)))
            .collect();
        matched.sort_by_key(|n| n.to_string());
        tracing::debug!(pipeline = pipeline_name, pattern = %s.name, tables = matched.len(), "pattern expanded");
        for n in matched {
            let mut c = s.clone();
            c.name = n.to_string();
            c.exclude.clear();
            out.push((i, c));
        }
    }
    out
}

/// Plans every stream of a pipeline against the source's catalog. Each
/// stream gets its own result: one missing table does not stop the others.
/// Patterns are expanded first ([`expand_streams`]); two streams that would
/// land in one destination table fail with a config error naming both.
pub fn plan_pipeline(
    pipeline_name: &str,
    pipeline: &PipelineConfig,
    catalog: &Catalog,
) -> Vec<(String, Result<StreamPlan>)> {
    let mut plans: Vec<(String, Result<StreamPlan>)> = expand_streams(pipeline_name, pipeline, catalog)
        .into_iter()
        .map(|(i, s)| {
            let label = match parse_qualified(&s.name, catalog.default_namespace.as_deref()) {
                Some(n) => n.to_string(),
                None => s.name.clone(),
            };
            (label, plan_stream(pipeline_name, pipeline, i, &s, catalog))
        })
        .collect();
    // Tables reached through a pattern can collide where explicit names could not be checked.
    for a in 0..plans.len() {
        let Ok(pa) = &plans[a].1 else { continue };
        let table = pa.table.name.clone();
        let first = plans[a].0.clone();
        for other in plans.iter_mut().skip(a + 1) {
            let collides = matches!(&other.1, Ok(pb) if pb.table.name == table);
            if collides {
                let here = other.0.clone();
                other.1 = Err(Error::config(format!(
                    "pipelines.{pipeline_name}: streams {first} and {here} both map to table `{table}`"
                ))
                .with_hint(format!(
                    "give pipelines.{pipeline_name} a table_name template that tells them apart, e.g. \"{{source}}_{{database}}_{{schema}}_{{table}}\""
                )));
            }
        }
    }
    plans
}

fn plan_stream(
    pipeline_name: &str,
    pipeline: &PipelineConfig,
    index: usize,
    stream: &StreamConfig,
    catalog: &Catalog,
) -> Result<StreamPlan> {
    let key = format!("pipelines.{pipeline_name}.streams[{index}]");
    let name = stream_name(pipeline_name, index, stream, catalog.default_namespace.as_deref())?;
    let info = catalog.table(&name).ok_or_else(|| missing_table(&name, pipeline, catalog))?;
    let mode = stream.mode.unwrap_or(pipeline.mode);
    check_mode(&key, &name, mode, pipeline, catalog)?;
    if mode == SyncMode::Cdc && (stream.cursor.is_some() || stream.soft_delete.is_some()) {
        return Err(Error::config(format!(
            "{key}: `cursor` and `soft_delete` are for `mode: incremental`; `mode: cdc` sees every change and delete itself"
        )));
    }
    let allowed = allowed_columns(&key, stream, info)?;
    let stream = &StreamConfig { exclude_columns: allowed, ..stream.clone() };
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
                    return Err(Error::config(format!("{key}.primary_key: column `{c}` is also in exclude_columns")));
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
    let (dest_names, renames) = destination_columns(&kept);
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
    let hashed = hashed_columns(&key, stream, &source_key, &columns, info)?;
    let table = TableSpec {
        name: destination_table(pipeline, &pipeline.source, &catalog.database, &name),
        stream: name,
        columns,
        key: key_cols,
        hashed,
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
    let defaults = info.columns.iter().filter(|c| c.has_default).map(|c| c.name.clone()).collect();
    Ok(StreamPlan {
        config: stream.clone(),
        mode,
        table,
        renames,
        estimated_rows: info.estimated_rows,
        cursor,
        soft_delete,
        defaults,
    })
}

/// A mode the source cannot serve is a config error naming what it can do.
fn check_mode(
    key: &str,
    name: &StreamName,
    mode: SyncMode,
    pipeline: &PipelineConfig,
    catalog: &Catalog,
) -> Result<()> {
    let caps = catalog.capabilities;
    let missing = match mode {
        SyncMode::Incremental if !caps.cursor => "cursor reads",
        SyncMode::Cdc if !caps.change_feed => "a change feed",
        _ => return Ok(()),
    };
    let mut modes = vec!["full_refresh"];
    if caps.cursor {
        modes.push("incremental");
    }
    if caps.change_feed {
        modes.push("cdc");
    }
    Err(Error::new(
        ErrorKind::Config,
        format!("{key}: stream {name} is `mode: {mode}`, but source `{}` has no {missing}", pipeline.source),
    )
    .with_hint(format!("its streams can use `mode: {}`", modes.join("`, `mode: "))))
}

fn missing_table(name: &StreamName, pipeline: &PipelineConfig, catalog: &Catalog) -> Error {
    let similar: Vec<String> = catalog
        .tables
        .iter()
        .filter(|t| t.name.name.eq_ignore_ascii_case(&name.name))
        .map(|t| t.name.to_string())
        .collect();
    let hint = if similar.is_empty() {
        format!("run `simplyload discover {}` to list the tables SimplyLoad can read", pipeline.source)
    } else {
        format!("names are case-sensitive; did you mean {}?", similar.join(" or "))
    };
    Error::not_found(format!("table {name} not found in source `{}` (database {})", pipeline.source, catalog.database))
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
    use crate::naming::glob_match;
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
        let col = |n: &str, t: SqlType| ColumnInfo {
            name: n.into(),
            type_name: "x".into(),
            sql_type: t,
            nullable: true,
            has_default: false,
            verbatim: false,
        };
        Catalog {
            database: "shop".into(),
            default_namespace: Some("public".into()),
            capabilities: crate::catalog::Capabilities { cursor: true, change_feed: true, scan: true },
            tables: vec![
                TableInfo {
                    name: StreamName::new("public", "orders"),
                    kind: "table".into(),
                    columns: vec![
                        col("id", SqlType::Int64),
                        col("Amount", SqlType::Text),
                        col("amount", SqlType::Text),
                        col("secret", SqlType::Text),
                    ],
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
    fn a_sources_own_columns_keep_their_spelling() {
        let mut cat = catalog();
        let raw = ColumnInfo {
            name: "_raw".into(),
            type_name: "object".into(),
            sql_type: SqlType::Json,
            nullable: false,
            has_default: false,
            verbatim: true,
        };
        cat.tables[0].columns.push(raw);
        let cfg = config("    streams: [public.orders]\n");
        let plans = plan_pipeline("p", &cfg.pipelines["p"], &cat);
        let plan = plans[0].1.as_ref().unwrap();
        let names: Vec<_> = plan.table.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["id", "amount", "amount_2", "secret", "_raw"]);
    }

    #[test]
    fn missing_table_suggests_discover() {
        let cfg = config("    streams: [public.nope, Orders]\n");
        let plans = plan_pipeline("p", &cfg.pipelines["p"], &catalog());
        let e = plans[0].1.as_ref().unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::NotFound);
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
        assert!(
            e.message().contains("pipelines.p.streams[0].primary_key: table sales.orders has no column `idd`"),
            "{e}"
        );
    }

    #[test]
    fn a_column_allow_list_keeps_only_its_columns() {
        let plan = |stream: &str| {
            let cfg = config(&format!("    streams:\n      - {stream}\n"));
            plan_pipeline("p", &cfg.pipelines["p"], &catalog()).remove(0).1
        };
        let kept = plan("{name: public.orders, columns: [id, amount, secret], exclude_columns: [secret]}").unwrap();
        let kept: Vec<&str> = kept.table.columns.iter().map(|c| c.source_name.as_str()).collect();
        assert_eq!(kept, vec!["id", "amount"], "listed, minus excluded, in table order");
        let e = plan("{name: orders, columns: [Amount]}").unwrap_err();
        assert!(e.message().contains("columns: the primary key column `id` must be listed"), "{e}");
        let e = plan("{name: orders, columns: [id, nope]}").unwrap_err();
        assert!(e.message().contains("columns: table public.orders has no column `nope`"), "{e}");
    }

    #[test]
    fn evolution_keeps_names_widens_and_diverts() {
        let col = |n: &str, t: SqlType| Column {
            source_name: n.into(),
            name: n.to_lowercase(),
            sql_type: t,
            source_type: "x".into(),
            nullable: true,
        };
        let spec = |cols: Vec<Column>| TableSpec {
            stream: StreamName::new("public", "t"),
            name: "t".into(),
            columns: cols,
            key: vec!["id".into()],
            hashed: Vec::new(),
        };
        let previous = spec(vec![
            col("id", SqlType::Int32),
            col("amount", SqlType::Decimal { precision: 10, scale: 2 }),
            col("code", SqlType::Int32),
            col("gone", SqlType::Text),
        ]);
        let mut planned = spec(vec![
            col("id", SqlType::Int64),
            col("amount", SqlType::Decimal { precision: 12, scale: 3 }),
            col("code", SqlType::Text),
            col("new", SqlType::Text),
            col("filled", SqlType::Int32),
        ]);
        let changes = evolve(&previous, &mut planned, &["filled".into()]);
        let names: Vec<_> = planned.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "amount", "code__text", "new", "filled"]);
        assert_eq!(planned.key, ["id"]);
        let text: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            text,
            [
                "column id widened from int32 to int64",
                "column amount widened from decimal(10,2) to decimal(12,3)",
                "column code changed type from int32 to text; old values stay in code, values are now written to code__text (rows read again)",
                "column new added",
                "column filled added with a default; existing rows are read again",
                "column gone dropped in the source; kept in the destination, no longer filled",
            ]
        );
        assert!(changes.iter().filter(|c| c.needs_reread()).count() == 2);
        // Loaded once diverted, the column stays diverted.
        let again = planned.clone();
        let mut replanned = spec(vec![
            col("id", SqlType::Int64),
            col("amount", SqlType::Decimal { precision: 12, scale: 3 }),
            col("code", SqlType::Text),
            col("new", SqlType::Text),
            col("filled", SqlType::Int32),
        ]);
        assert!(evolve(&again, &mut replanned, &[]).is_empty());
        assert_eq!(replanned.columns[2].name, "code__text");
        assert!(!SqlType::Decimal { precision: 10, scale: 2 }.widens_to(&SqlType::Decimal { precision: 10, scale: 3 }));
        assert!(SqlType::Int32.widens_to(&SqlType::Decimal { precision: 12, scale: 2 }));
        assert!(!SqlType::Int64.widens_to(&SqlType::Int32));
    }

    #[test]
    fn patterns_expand_against_the_catalog() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("order_?", "order_1") && !glob_match("order_?", "order_12"));
        assert!(glob_match("a*b*c", "aXXbYc") && !glob_match("a*b*c", "aXXbY"));
        let cfg = config(
            "    table_name: \"{schema}_{table}\"\n    streams:\n      - {name: \"*.orders\", exclude: [sales.*]}\n      - {name: \"public.*\", exclude_columns: []}\n      - public.orders\n",
        );
        let expanded = expand_streams("p", &cfg.pipelines["p"], &catalog());
        let names: Vec<_> = expanded.iter().map(|(i, s)| (*i, s.name.as_str())).collect();
        // public.orders is listed on its own, so neither pattern takes it.
        assert_eq!(names, [(2, "public.orders")]);
        let cfg = config("    table_name: \"{schema}_{table}\"\n    streams:\n      - \"*.*\"\n");
        let plans = plan_pipeline("p", &cfg.pipelines["p"], &catalog());
        let labels: Vec<_> = plans.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["public.orders", "sales.orders"]);
        // Without {schema} the two collide: a config error naming both.
        let cfg = config("    streams:\n      - \"*.orders\"\n");
        let plans = plan_pipeline("p", &cfg.pipelines["p"], &catalog());
        let e = plans[1].1.as_ref().unwrap_err();
        assert!(
            e.message().contains("streams public.orders and sales.orders both map to table `app_shop_orders`"),
            "{e}"
        );
    }

    #[test]
    fn two_streams_on_one_table_are_a_config_error() {
        let cfg = config("    streams: [public.orders, sales.orders]\n");
        let naming = |_: &str| Some(SourceNaming { database: "shop".into(), default_namespace: Some("public".into()) });
        let e = check_table_names(&cfg, naming).unwrap_err();
        assert!(e.message().contains("streams[0] (public.orders) and pipelines.p.streams[1] (sales.orders)"), "{e}");
        assert!(e.message().contains("app_shop_orders"), "{e}");
        assert!(e.hint().unwrap().contains("{schema}"));
        let cfg = config("    table_name: \"{schema}_{table}\"\n    streams: [public.orders, sales.orders]\n");
        check_table_names(&cfg, naming).unwrap();
    }
}
