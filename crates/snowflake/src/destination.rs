//! The Snowflake destination (DESIGN.md §4, §5, §7): the same contract as
//! DuckDB, on Snowflake's terms.
//!
//! One load (the batches of one stream):
//! 1. DDL first, because DDL commits implicitly in Snowflake: the target
//!    table (`CREATE TABLE IF NOT EXISTS`, `ALTER TABLE … ADD COLUMN`), and a
//!    transient load table shaped like the staged files.
//! 2. The batches' files go to the stage — `PUT` to a temporary internal
//!    stage (default), or nothing to do for an external S3 stage over the
//!    staging bucket — and `COPY INTO` the load table
//!    (`MATCH_BY_COLUMN_NAME`, `USE_LOGICAL_TYPE`, `FORCE`: the load table
//!    is new, and `_SIMPLYLOAD_BATCHES` is what guards against doubles).
//! 3. One transaction: apply the rows (replace, or per key the newest
//!    `_SIMPLYLOAD_VERSION`), record the batches in `_SIMPLYLOAD_BATCHES`,
//!    count, commit. A failure inside rolls back.
//! 4. The load table and the stage folder are dropped.
//!
//! Rows are applied with `UPDATE … FROM` and `INSERT … WHERE NOT EXISTS`
//! rather than one `MERGE`: the effect is the same inside the transaction,
//! and the test server (fakesnow) cannot run a MERGE inside an explicit
//! transaction. Batches that only add keys skip the UPDATE.
//!
//! Warehouse efficiency: a session is opened on first need and kept for the
//! whole sync; a merge with no rows sends only metadata statements (DDL,
//! `DESCRIBE`), which do not resume the warehouse.

use crate::client::{Credentials, LoginOptions, QueryResult, Rows, Session};
use crate::put::{literal, put_file};
use crate::values;
use simplyload_core::canon::{Canon, uuid_text};
use simplyload_core::config::{Secret, SnowflakeDestinationConfig};
use simplyload_core::reconcile::{SCAN_BATCH, ScanRequest, ScanSender, ScannedRow};
use simplyload_core::report::Statement;
use simplyload_core::schema::meta;
use simplyload_core::{
    BatchManifest, CheckReport, Column, Destination, Error, ErrorKind, LoadKind, LoadMark, LoadOutcome, LoadRequest,
    Missing, Result, RowChanges, SqlType, TableSpec, ValueLimits,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The default database and schema (DESIGN.md §4).
pub const DEFAULT_DATABASE: &str = "RAW_DATA";
pub const DEFAULT_SCHEMA: &str = "SIMPLYLOAD";
/// The session's temporary internal stage (gone with the session).
pub const INTERNAL_STAGE: &str = "_SIMPLYLOAD_STAGE";

/// Where COPY reads batches from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageMode {
    /// PUT each file to the session's temporary internal stage.
    Internal,
    /// An external stage (its SQL name) whose URL is the staging root.
    External(String),
}

/// A Snowflake account as a destination.
pub struct SnowflakeDestination {
    opts: LoginOptions,
    database: String,
    schema: String,
    role: Option<String>,
    warehouse: Option<String>,
    stage: StageMode,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    tag: std::sync::Mutex<String>,
    /// Statements of sessions already closed in this sync.
    closed_log: std::sync::Mutex<Vec<(String, Duration)>>,
    /// The state folder, where the token of a session inside a load
    /// transaction is kept while the transaction is open (see
    /// [`SnowflakeDestination::with_state_dir`]).
    state_dir: Option<std::path::PathBuf>,
    /// The pipeline of the sync under way ([`Destination::begin_sync`]).
    pipeline: std::sync::Mutex<Option<String>>,
    /// Pipelines whose marker table this destination made or found.
    marked: tokio::sync::Mutex<std::collections::HashSet<Uuid>>,
}

/// The name of a pipeline's marker table ([`Destination::missing`]).
pub fn marker_table(pipeline_id: Uuid) -> String {
    format!("_simplyload_pipeline_{}", pipeline_id.simple())
}

impl std::fmt::Debug for SnowflakeDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnowflakeDestination").field("opts", &self.opts).field("stage", &self.stage).finish()
    }
}

/// A Snowflake identifier as written in the config: a plain name is
/// upper-cased as Snowflake resolves it; a `"quoted"` one is kept exactly.
pub fn config_ident(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        return s[1..s.len() - 1].replace("\"\"", "\"");
    }
    s.to_ascii_uppercase()
}

/// Quotes an identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The Snowflake name of a table or column: the upper-case form
/// (DESIGN.md §4), so analysts can write it unquoted. ASCII only, so the
/// lower-case name comes back exactly.
pub fn sf_name(name: &str) -> String {
    name.to_ascii_uppercase()
}

/// Snowflake's column type for a logical type (DESIGN.md §5).
pub fn sf_type(t: &SqlType) -> String {
    match t {
        SqlType::Int16 => "NUMBER(5,0)".into(),
        SqlType::Int32 => "NUMBER(10,0)".into(),
        SqlType::Int64 => "NUMBER(19,0)".into(),
        SqlType::Decimal { precision, scale } => format!("NUMBER({precision},{scale})"),
        SqlType::Float32 | SqlType::Float64 => "FLOAT".into(),
        SqlType::Text => "VARCHAR".into(),
        SqlType::Boolean => "BOOLEAN".into(),
        SqlType::Date => "DATE".into(),
        SqlType::Timestamp => "TIMESTAMP_NTZ(6)".into(),
        SqlType::TimestampTz => "TIMESTAMP_TZ(6)".into(),
        SqlType::Time => "TIME(6)".into(),
        SqlType::Uuid => "VARCHAR(36)".into(),
        SqlType::Json => "VARIANT".into(),
        SqlType::Binary => "BINARY".into(),
    }
}

/// The type a column has in the load table (what COPY reads from Parquet).
fn load_type(t: &SqlType) -> String {
    match t {
        SqlType::Json => "VARCHAR".into(),
        other => sf_type(other),
    }
}

/// A type as `DESCRIBE TABLE` prints it, reduced to what decides equality:
/// `NUMBER(p,s)`, `FLOAT`, `VARCHAR`, `TIMESTAMP_TZ`, ….
fn norm_type(t: &str) -> String {
    let t = t.trim().to_ascii_uppercase();
    let base = t.split('(').next().unwrap_or("").trim().to_owned();
    match base.as_str() {
        "NUMBER" | "DECIMAL" | "NUMERIC" => t.replace(' ', ""),
        "INT" | "INTEGER" | "BIGINT" | "SMALLINT" | "TINYINT" | "BYTEINT" => "NUMBER(38,0)".into(),
        "TEXT" | "STRING" | "CHAR" | "CHARACTER" => "VARCHAR".into(),
        "DOUBLE" | "DOUBLE PRECISION" | "REAL" | "FLOAT4" | "FLOAT8" => "FLOAT".into(),
        "TIMESTAMP" | "DATETIME" => "TIMESTAMP_NTZ".into(),
        "VARBINARY" => "BINARY".into(),
        _ => base,
    }
}

/// The logical type a `NUMBER(p,s)` column holds, for widening.
fn number_type(t: &str) -> Option<SqlType> {
    let t = norm_type(t);
    let inner = t.strip_prefix("NUMBER(")?.strip_suffix(')')?;
    let (p, s) = inner.split_once(',')?;
    let (p, s): (u8, i8) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
    Some(match (p, s) {
        (5, 0) => SqlType::Int16,
        (10, 0) => SqlType::Int32,
        (19, 0) => SqlType::Int64,
        _ => SqlType::Decimal { precision: p, scale: s },
    })
}

/// Whether a column may change from `have` to `want` in place: Snowflake
/// only raises a NUMBER's precision at the same scale, and widens VARCHAR.
fn alter_in_place(have: &str, want: &str) -> bool {
    let (h, w) = (norm_type(have), norm_type(want));
    if h == w {
        return true;
    }
    match (number_type(&h), number_type(&w)) {
        (Some(a), Some(b)) => {
            let parts = |t: SqlType| match t {
                SqlType::Int16 => (5, 0),
                SqlType::Int32 => (10, 0),
                SqlType::Int64 => (19, 0),
                SqlType::Decimal { precision, scale } => (precision as i32, scale as i32),
                _ => (0, -1),
            };
            let ((p1, s1), (p2, s2)) = (parts(a), parts(b));
            s1 == s2 && p2 >= p1
        }
        _ => false,
    }
}

/// Whether a statement needs a running warehouse. DDL, `DESCRIBE`, `SHOW`,
/// `USE`, `PUT`, `REMOVE` and transaction control are served by Snowflake's
/// cloud services alone.
pub fn uses_warehouse(sql: &str) -> bool {
    let first = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    !matches!(
        first.as_str(),
        "CREATE"
            | "ALTER"
            | "DROP"
            | "DESCRIBE"
            | "DESC"
            | "SHOW"
            | "USE"
            | "PUT"
            | "REMOVE"
            | "RM"
            | "BEGIN"
            | "COMMIT"
            | "ROLLBACK"
    )
}

/// A result's cells as text (JSON results as sent; Arrow ones converted).
pub fn result_rows(r: &QueryResult) -> Vec<Vec<Option<String>>> {
    match &r.rows {
        Rows::Json(rows) => rows.clone(),
        Rows::Arrow(batches) => {
            let mut out = Vec::new();
            for b in batches {
                let schema = b.schema();
                for row in 0..b.num_rows() {
                    out.push((0..b.num_columns()).map(|c| values::text(b.column(c), schema.field(c), row)).collect());
                }
            }
            out
        }
    }
}

/// The first cell of a result, as text.
fn first_cell(r: &QueryResult) -> Option<String> {
    result_rows(r).first().and_then(|row| row.first().cloned().flatten())
}

/// The first row of a result as numbers (0 where a cell is not one).
fn first_row_numbers(r: &QueryResult) -> Vec<u64> {
    result_rows(r)
        .first()
        .map(|row| row.iter().map(|c| c.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)).collect())
        .unwrap_or_default()
}

/// The index of a result column by name, case-insensitively.
fn column_index(r: &QueryResult, name: &str) -> Option<usize> {
    r.columns.iter().position(|c| c.name.eq_ignore_ascii_case(name))
}

impl SnowflakeDestination {
    pub fn new(opts: LoginOptions, stage: StageMode) -> SnowflakeDestination {
        let database = opts.database.clone().unwrap_or_else(|| DEFAULT_DATABASE.into());
        let schema = opts.schema.clone().unwrap_or_else(|| DEFAULT_SCHEMA.into());
        SnowflakeDestination {
            role: opts.role.clone(),
            warehouse: opts.warehouse.clone(),
            opts: LoginOptions { database: Some(database.clone()), schema: Some(schema.clone()), ..opts },
            database,
            schema,
            stage,
            session: tokio::sync::Mutex::new(None),
            tag: std::sync::Mutex::new("simplyload".into()),
            closed_log: std::sync::Mutex::new(Vec::new()),
            state_dir: None,
            pipeline: std::sync::Mutex::new(None),
            marked: Default::default(),
        }
    }

    /// Keeps, in `dir` (the state folder), the session token of a load while
    /// its transaction is open. A process killed inside the transaction
    /// leaves it behind; the next run ends that session, so Snowflake rolls
    /// the transaction back and releases its locks at once instead of when
    /// the abandoned session times out hours later.
    pub fn with_state_dir(mut self, dir: &Path) -> SnowflakeDestination {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    /// The open-transaction file of the sync under way: per pipeline (only
    /// one sync of a pipeline runs at a time), so another pipeline's sync or
    /// a `check` never ends a session that is still working.
    fn txn_file(&self) -> Option<std::path::PathBuf> {
        let dir = self.state_dir.as_ref()?;
        let pipeline = self.pipeline.lock().expect("pipeline lock").clone()?;
        let tag = simplyload_core::row_id::short_hash(
            format!(
                "{}|{}|{}|{}|{}|{pipeline}",
                self.opts.base_url, self.opts.account, self.opts.user, self.database, self.schema
            )
            .as_bytes(),
        );
        Some(dir.join(format!("snowflake-{tag}.open-transaction")))
    }

    fn note_open_transaction(&self, session: &Session) -> Result<()> {
        let Some(path) = self.txn_file() else { return Ok(()) };
        let path = &path;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::from(e).context(format!("creating {}", dir.display())))?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(|e| Error::from(e).context(format!("writing {}", path.display())))?;
        std::io::Write::write_all(&mut f, session.token().expose().as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::from(e).context(format!("writing {}", path.display())))
    }

    fn transaction_closed(&self) {
        if let Some(path) = self.txn_file() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Forgets the sync's session without sending anything more on it (its
    /// transaction is in an unknown state: no DDL may commit it). Its token
    /// file stays, so the next run ends it.
    async fn abandon_session(&self) {
        if let Some(s) = self.session.lock().await.take() {
            self.closed_log.lock().expect("log lock").extend(s.statements());
        }
    }

    /// Ends the session an earlier process left inside a load transaction.
    async fn end_abandoned_session(&self) {
        let Some(path) = self.txn_file() else { return };
        let path = &path;
        let Ok(token) = std::fs::read_to_string(path) else { return };
        match Session::end(&self.opts.base_url, &Secret::new(token.trim()), Duration::from_secs(60)).await {
            Ok(()) => {
                tracing::info!("ended the Snowflake session an interrupted sync left inside a load transaction");
                let _ = std::fs::remove_file(path);
            }
            Err(e) => tracing::warn!(error = %e, "could not end the session an interrupted sync left; its transaction \
                rolls back when Snowflake times it out"),
        }
    }

    /// From the config; `base_dir` resolves `private_key_path`.
    pub fn from_config(cfg: &SnowflakeDestinationConfig, base_dir: &Path) -> Result<SnowflakeDestination> {
        let credentials = match (&cfg.password, &cfg.private_key_path) {
            (Some(p), _) => Credentials::Password(p.clone()),
            (None, Some(path)) => {
                let p = Path::new(path);
                let p = if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) };
                let pem = std::fs::read_to_string(&p).map_err(|e| {
                    Error::config(format!("destination snowflake: cannot read private_key_path {}: {e}", p.display()))
                        .with_hint("`simplyload setup-sql snowflake` shows how to make the key pair")
                })?;
                // Read it now, so a bad key is named before anything connects.
                crate::jwt::read_key(&pem, cfg.private_key_passphrase.as_ref().map(|s| s.expose()))
                    .map_err(|e| e.context(format!("destination snowflake: private_key_path {}", p.display())))?;
                Credentials::KeyPair {
                    private_key_pem: Secret::new(pem),
                    passphrase: cfg.private_key_passphrase.clone(),
                }
            }
            (None, None) => return Err(Error::config("destination snowflake: set private_key_path or password")),
        };
        let opts = LoginOptions {
            base_url: cfg.base_url.clone().unwrap_or_else(|| LoginOptions::default_base_url(&cfg.account)),
            account: cfg.account.clone(),
            user: cfg.user.clone(),
            role: cfg.role.as_deref().map(config_ident),
            warehouse: cfg.warehouse.as_deref().map(config_ident),
            database: Some(config_ident(cfg.database.as_deref().unwrap_or(DEFAULT_DATABASE))),
            schema: Some(config_ident(cfg.schema.as_deref().unwrap_or(DEFAULT_SCHEMA))),
            credentials,
            session_parameters: Default::default(),
            timeout: Duration::from_secs(cfg.statement_timeout_s.unwrap_or(3600)),
        };
        let stage = match cfg.stage.as_deref().map(str::trim) {
            None | Some("") | Some("internal") => StageMode::Internal,
            Some(name) => StageMode::External(name.trim_start_matches('@').to_owned()),
        };
        Ok(SnowflakeDestination::new(opts, stage))
    }

    /// `"DB"."SCHEMA"."TABLE"` for a destination table name.
    pub fn qualified(&self, table: &str) -> String {
        format!("{}.{}.{}", ident(&self.database), ident(&self.schema), ident(&sf_name(table)))
    }

    fn batches_table(&self) -> String {
        self.qualified(meta::BATCHES_TABLE)
    }

    /// The session of this sync, logged in on first need.
    pub async fn session(&self) -> Result<Arc<Session>> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let mut opts = self.opts.clone();
        let tag = self.tag.lock().expect("tag lock").clone();
        opts.session_parameters.insert("QUERY_TAG".into(), tag.into());
        opts.session_parameters.insert("TIMEZONE".into(), "UTC".into());
        // Never wait hours on a lock (Snowflake's default is 12 h): fail, retry at the next sync.
        opts.session_parameters.insert("LOCK_TIMEOUT".into(), 600.into());
        self.end_abandoned_session().await;
        let s = Arc::new(Session::login(opts).await.map_err(|e| self.fill_hint(e))?);
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Runs a statement on the sync's session, with the hint naming this
    /// destination's objects.
    async fn run(&self, sql: &str) -> Result<QueryResult> {
        let s = self.session().await?;
        s.query(sql, &[]).await.map_err(|e| self.fill_hint(e))
    }

    /// Puts this destination's names into a hint's placeholders.
    fn fill_hint(&self, e: Error) -> Error {
        let Some(h) = e.hint().map(str::to_owned) else { return e };
        let role = self.role.clone().unwrap_or_else(|| "<role>".into());
        let filled = h
            .replace("<role>", &role)
            .replace("<user>", &self.opts.user)
            .replace("<warehouse>", self.warehouse.as_deref().unwrap_or("<warehouse>"))
            .replace("<database>.<schema>", &format!("{}.{}", self.database, self.schema))
            .replace("<database>", &self.database)
            .replace("<schema>", &self.schema);
        e.with_hint(filled)
    }

    /// The columns of a table as (name as stored, type as DESCRIBE prints it); `None` if it does not exist.
    async fn describe(&self, table: &str) -> Result<Option<Vec<(String, String)>>> {
        match self.run(&format!("DESCRIBE TABLE {}", self.qualified(table))).await {
            Ok(r) => {
                let (n, t) = (column_index(&r, "name").unwrap_or(0), column_index(&r, "type").unwrap_or(1));
                Ok(Some(
                    result_rows(&r)
                        .into_iter()
                        .filter_map(|row| Some((row.get(n)?.clone()?, row.get(t)?.clone().unwrap_or_default())))
                        .collect(),
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn meta_columns(table: &TableSpec) -> Vec<(&'static str, &'static str)> {
        let mut cols =
            vec![(meta::SYNCED_AT, "TIMESTAMP_TZ(6)"), (meta::DELETED, "BOOLEAN"), (meta::VERSION, "NUMBER(38,0)")];
        if !table.has_key() {
            cols.push((meta::ID, "VARCHAR"));
            cols.push((meta::INDEX, "NUMBER(19,0)"));
        }
        cols
    }

    /// `CREATE TABLE IF NOT EXISTS` for a table spec.
    pub fn create_table_sql(&self, table: &TableSpec) -> String {
        let mut cols: Vec<String> =
            table.columns.iter().map(|c| format!("{} {}", ident(&sf_name(&c.name)), sf_type(&c.sql_type))).collect();
        cols.extend(Self::meta_columns(table).into_iter().map(|(n, t)| format!("{} {t}", ident(&sf_name(n)))));
        format!("CREATE TABLE IF NOT EXISTS {} (\n  {}\n)", self.qualified(&table.name), cols.join(",\n  "))
    }

    /// Brings the target table to the spec's shape (DDL, before the transaction).
    async fn shape_table(&self, table: &TableSpec, kind: LoadKind) -> Result<()> {
        self.run(&self.create_table_sql(table)).await?;
        let existing = self.describe(&table.name).await?.unwrap_or_default();
        let mut wanted: Vec<(String, String, Option<&Column>)> =
            table.columns.iter().map(|c| (sf_name(&c.name), sf_type(&c.sql_type), Some(c))).collect();
        wanted.extend(Self::meta_columns(table).into_iter().map(|(n, t)| (sf_name(n), t.to_owned(), None)));
        let target = self.qualified(&table.name);
        for (name, ty, col) in &wanted {
            match existing.iter().find(|(n, _)| n == name) {
                None => {
                    self.run(&format!("ALTER TABLE {target} ADD COLUMN {} {ty}", ident(name))).await?;
                }
                Some((_, have)) if norm_type(have) == norm_type(ty) => {}
                Some((_, have)) if alter_in_place(have, ty) => {
                    self.run(&format!("ALTER TABLE {target} ALTER COLUMN {} SET DATA TYPE {ty}", ident(name))).await?;
                }
                Some((_, have)) => {
                    let c = col.map(|c| c.name.clone()).unwrap_or_else(|| name.clone());
                    if kind != LoadKind::Replace {
                        return Err(Error::new(
                            ErrorKind::Unsupported,
                            format!(
                                "column {c} of {} is {have} in Snowflake but the source now stages {ty}",
                                table.name
                            ),
                        )
                        .with_hint("run a full refresh of this stream"));
                    }
                    // A full refresh rewrites every row: the column is made
                    // again with the new type (never a cast of old values).
                    // DDL cannot join the transaction, so until it commits
                    // the column reads NULL.
                    tracing::warn!(table = %table.name, column = %c, from = %have, to = %ty,
                        "full refresh recreates a column whose type changed");
                    self.run(&format!("ALTER TABLE {target} DROP COLUMN {}", ident(name))).await?;
                    self.run(&format!("ALTER TABLE {target} ADD COLUMN {} {ty}", ident(name))).await?;
                }
            }
        }
        Ok(())
    }

    /// The tables of the destination's schema (none when it does not exist yet).
    async fn table_names(&self) -> Result<std::collections::HashSet<String>> {
        let sql = format!("SHOW TERSE TABLES IN SCHEMA {}.{}", ident(&self.database), ident(&self.schema));
        match self.run(&sql).await {
            Ok(r) => {
                let n = column_index(&r, "name").unwrap_or(1);
                Ok(result_rows(&r).into_iter().filter_map(|row| row.get(n).cloned().flatten()).collect())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(e),
        }
    }

    /// The streams `_simplyload_batches` has any record of for a pipeline.
    async fn recorded_streams(&self, pipeline_id: Uuid) -> Result<std::collections::HashSet<String>> {
        let sql = format!(
            "SELECT DISTINCT STREAM FROM {} WHERE PIPELINE_ID = {}",
            self.batches_table(),
            literal(&pipeline_id.to_string())
        );
        match self.run(&sql).await {
            Ok(r) => Ok(result_rows(&r).into_iter().filter_map(|row| row.first().cloned().flatten()).collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(e),
        }
    }

    /// The pipeline's marker table: it says, in metadata a sync reads
    /// without the warehouse, that this pipeline's loads are recorded here.
    async fn ensure_marker(&self, pipeline_id: Uuid) -> Result<()> {
        let mut marked = self.marked.lock().await;
        if !marked.contains(&pipeline_id) {
            self.run(&format!(
                "CREATE TABLE IF NOT EXISTS {} (PIPELINE_ID VARCHAR) COMMENT = {}",
                self.qualified(&marker_table(pipeline_id)),
                literal(&format!(
                    "SimplyLoad: the loads of pipeline id {pipeline_id} are recorded in _simplyload_batches"
                ))
            ))
            .await?;
            marked.insert(pipeline_id);
        }
        Ok(())
    }

    async fn ensure_batches_table(&self) -> Result<()> {
        self.run(&format!(
            "CREATE TABLE IF NOT EXISTS {} (PIPELINE_ID VARCHAR NOT NULL, STREAM VARCHAR NOT NULL, \
             BATCH_ID NUMBER(19,0) NOT NULL, ROW_COUNT NUMBER(19,0) NOT NULL, LOADED_AT TIMESTAMP_TZ NOT NULL)",
            self.batches_table()
        ))
        .await
        .map(|_| ())
    }

    async fn loaded_ids(&self, pipeline_id: Uuid, stream: &str, ids: &[u64]) -> Result<Vec<u64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let sql = format!(
            "SELECT DISTINCT BATCH_ID FROM {} WHERE PIPELINE_ID = {} AND STREAM = {} AND BATCH_ID IN ({}) ORDER BY 1",
            self.batches_table(),
            literal(&pipeline_id.to_string()),
            literal(stream),
            list.join(", ")
        );
        match self.run(&sql).await {
            Ok(r) => Ok(result_rows(&r)
                .into_iter()
                .filter_map(|row| row.first().cloned().flatten()?.parse::<u64>().ok())
                .collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    async fn count_live(&self, table: &str) -> Result<u64> {
        let r = self
            .run(&format!(
                "SELECT COUNT(*) FROM {} WHERE NOT COALESCE({}, FALSE)",
                self.qualified(table),
                ident(&sf_name(meta::DELETED))
            ))
            .await?;
        first_cell(&r).and_then(|v| v.parse().ok()).ok_or_else(|| Error::data("Snowflake: COUNT(*) answered no number"))
    }

    /// The name of the transient table a load of `table` stages into.
    fn load_table(&self, pipeline_id: Uuid, table: &str) -> String {
        let tag = simplyload_core::row_id::short_hash(format!("{pipeline_id}/{table}").as_bytes());
        format!(
            "{}.{}.{}",
            ident(&self.database),
            ident(&self.schema),
            ident(&format!("_SIMPLYLOAD_LOAD_{}", tag.to_ascii_uppercase()))
        )
    }

    /// Copies the staged files of `batches` into the load table; returns the rows loaded.
    async fn copy_batches(
        &self,
        request: &LoadRequest<'_>,
        todo: &[&BatchManifest],
        load: &str,
        folder: &str,
    ) -> Result<u64> {
        let session = self.session().await?;
        let mut loaded = 0u64;
        for b in todo.iter().filter(|b| !b.files.is_empty()) {
            if self.stage == StageMode::Internal {
                let dir = internal_dir(folder, b.batch_id);
                for f in &b.files {
                    let local = request.staging.local_file(&f.key).await?;
                    put_file(&session, &local.path, &dir).await.map_err(|e| self.fill_hint(e))?;
                }
            }
            let r = self.run(&copy_sql(&self.stage, load, b, folder)).await?;
            let idx = column_index(&r, "rows_loaded");
            let status = column_index(&r, "status");
            for row in result_rows(&r) {
                if let Some(s) = status.and_then(|i| row.get(i).cloned().flatten())
                    && !s.eq_ignore_ascii_case("LOADED")
                {
                    return Err(Error::data(format!("Snowflake COPY of batch {} reported {s}: {row:?}", b.batch_id)));
                }
                loaded +=
                    idx.and_then(|i| row.get(i).cloned().flatten()).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        Ok(loaded)
    }

    /// The rows of a load, per key only the newest version (see
    /// [`simplyload_core::cdc::latest_per_key_sql`]).
    fn latest(table: &TableSpec, load: &str, with_unchanged: bool) -> String {
        let sql =
            simplyload_core::cdc::latest_per_key_sql(table, load, with_unchanged, |n| ident(&sf_name(n)), literal);
        format!("({sql})")
    }

    /// The statements of the transaction that applies a load; returns what they did.
    async fn apply(
        &self,
        table: &TableSpec,
        kind: LoadKind,
        load: &str,
        rows_staged: u64,
        truncated_at: Option<i128>,
    ) -> Result<RowChanges> {
        let target = self.qualified(&table.name);
        let value = |c: &Column| {
            let q = format!("s.{}", ident(&sf_name(&c.name)));
            if c.sql_type == SqlType::Json { format!("PARSE_JSON({q})") } else { q }
        };
        let (d, v, at) =
            (ident(&sf_name(meta::DELETED)), ident(&sf_name(meta::VERSION)), ident(&sf_name(meta::SYNCED_AT)));
        let mut cols: Vec<String> = table.columns.iter().map(|c| ident(&sf_name(&c.name))).collect();
        cols.extend([at.clone(), d.clone(), v.clone()]);
        let mut vals: Vec<String> = table.columns.iter().map(value).collect();
        vals.extend(["CURRENT_TIMESTAMP()".to_owned(), format!("s.{d}"), format!("s.{v}")]);
        match kind {
            LoadKind::Append if !table.has_key() => {
                Err(Error::internal(format!("{}: an appended part of a table without a key", table.name)))
            }
            LoadKind::Replace | LoadKind::Append => {
                if !table.has_key() {
                    let id = ident(&sf_name(meta::ID));
                    cols.extend([id.clone(), ident(&sf_name(meta::INDEX))]);
                    vals.extend([
                        format!("s.{id}"),
                        format!("ROW_NUMBER() OVER (PARTITION BY s.{id} ORDER BY s.{v}) - 1"),
                    ]);
                }
                // The later parts of a full refresh add to what its first part put in.
                if kind == LoadKind::Replace {
                    self.run(&format!("DELETE FROM {target}")).await?;
                }
                if rows_staged > 0 {
                    self.run(&format!(
                        "INSERT INTO {target} ({}) SELECT {} FROM {load} s",
                        cols.join(", "),
                        vals.join(", ")
                    ))
                    .await?;
                }
                Ok(RowChanges { inserted: rows_staged, updated: 0, deleted: 0 })
            }
            LoadKind::Merge if !table.has_key() => {
                if rows_staged == 0 {
                    return Ok(RowChanges::default());
                }
                let v = ident(&sf_name(meta::VERSION));
                let r = self.run(&format!("SELECT TO_VARCHAR(COALESCE(MAX({v}), -1)) FROM {target}")).await?;
                let watermark =
                    first_cell(&r).ok_or_else(|| Error::data("Snowflake: MAX(version) answered nothing"))?;
                // Changes before a truncate in the load are gone with it.
                let watermark = match (watermark.parse::<i128>(), truncated_at) {
                    (Ok(w), Some(t)) => w.max(t).to_string(),
                    _ => watermark,
                };
                let watermark = format!("CAST({watermark} AS NUMBER(38,0))");
                let (d, id) = (ident(&sf_name(meta::DELETED)), ident(&sf_name(meta::ID)));
                let r = self
                    .run(&format!(
                        "SELECT COALESCE(SUM(IFF(delta > 0, delta, 0)), 0), COALESCE(SUM(IFF(delta < 0, -delta, 0)), 0)
                         FROM (SELECT SUM(IFF({d}, -1, 1)) AS delta FROM {load} WHERE {v} > {watermark} GROUP BY {id})"
                    ))
                    .await?;
                let counts: Vec<u64> = first_row_numbers(&r);
                let [delete, insert] = simplyload_core::cdc::keyless_apply_sql(
                    table,
                    &target,
                    load,
                    &watermark,
                    "CURRENT_TIMESTAMP()",
                    |n| ident(&sf_name(n)),
                    value,
                );
                self.run(&delete).await?;
                self.run(&insert).await?;
                Ok(RowChanges {
                    inserted: counts.first().copied().unwrap_or(0),
                    updated: 0,
                    deleted: counts.get(1).copied().unwrap_or(0),
                })
            }
            LoadKind::Merge => {
                if rows_staged == 0 {
                    return Ok(RowChanges::default());
                }
                let u = ident(&sf_name(meta::UNCHANGED));
                let r = self.run(&format!("SELECT COUNT(*) FROM {load} WHERE {u} IS NOT NULL")).await?;
                let with_unchanged = first_cell(&r).is_some_and(|n| n != "0");
                let latest = Self::latest(table, load, with_unchanged);
                let key_eq = |a: &str, b: &str| -> String {
                    table
                        .key
                        .iter()
                        .map(|k| {
                            let q = ident(&sf_name(k));
                            let nullable = table.column(k).is_none_or(|c| c.nullable);
                            if nullable {
                                format!("{a}.{q} IS NOT DISTINCT FROM {b}.{q}")
                            } else {
                                format!("{a}.{q} = {b}.{q}")
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" AND ")
                };
                // Whether a stored row matched: its version is never NULL (a key column may be).
                let first_key = ident(&sf_name(meta::VERSION));
                // A row read again with the values it has (an incremental
                // lookback) is applied but is not an update.
                let differs: Vec<String> = std::iter::once(format!("COALESCE(t.{d}, FALSE)"))
                    .chain(
                        table
                            .columns
                            .iter()
                            .filter(|c| !table.key.contains(&c.name))
                            .map(|c| format!("t.{} IS DISTINCT FROM {}", ident(&sf_name(&c.name)), value(c))),
                    )
                    .collect();
                let r = self
                    .run(&format!(
                        "SELECT COUNT_IF(t.{first_key} IS NULL AND NOT s.{d}), \
                                COUNT_IF(t.{first_key} IS NOT NULL AND s.{v} >= t.{v} AND NOT s.{d} AND ({})), \
                                COUNT_IF(s.{d} AND (t.{first_key} IS NULL OR (s.{v} >= t.{v} AND NOT COALESCE(t.{d}, FALSE)))), \
                                COUNT_IF(t.{first_key} IS NOT NULL AND s.{v} >= t.{v}) \
                         FROM {latest} s LEFT JOIN {target} t ON {}",
                        differs.join(" OR "),
                        key_eq("t", "s")
                    ))
                    .await?;
                let counts: Vec<u64> = first_row_numbers(&r);
                let (inserted, updated, deleted, matched) = match counts[..] {
                    [a, b, c, m] => (a, b, c, m),
                    _ => return Err(Error::data("Snowflake: the change counts came back malformed")),
                };
                if matched > 0 {
                    // A delete that carries only its key keeps the stored values.
                    let non_key: Vec<String> = table
                        .columns
                        .iter()
                        .filter(|c| !table.key.contains(&c.name))
                        .map(|c| format!("s.{} IS NULL", ident(&sf_name(&c.name))))
                        .collect();
                    let key_only =
                        if non_key.is_empty() { "TRUE".to_owned() } else { format!("({})", non_key.join(" AND ")) };
                    self.run(&format!(
                        "UPDATE {target} t SET {d} = TRUE, {v} = s.{v}, {at} = CURRENT_TIMESTAMP() FROM {latest} s \
                         WHERE {} AND s.{v} >= t.{v} AND s.{d} AND {key_only}",
                        key_eq("t", "s")
                    ))
                    .await?;
                    // A column an update left unchanged (TOAST) keeps the stored value.
                    let set_all: Vec<String> = table
                        .columns
                        .iter()
                        .map(|c| {
                            let q = ident(&sf_name(&c.name));
                            if with_unchanged && !table.key.contains(&c.name) {
                                let marker = literal(&format!(",{},", c.name));
                                format!("{q} = CASE WHEN s.{u} IS NOT NULL AND CONTAINS(s.{u}, {marker}) THEN t.{q} ELSE {} END", value(c))
                            } else {
                                format!("{q} = {}", value(c))
                            }
                        })
                        .chain([format!("{at} = CURRENT_TIMESTAMP()"), format!("{d} = s.{d}"), format!("{v} = s.{v}")])
                        .collect();
                    self.run(&format!(
                        "UPDATE {target} t SET {} FROM {latest} s WHERE {} AND s.{v} >= t.{v} AND NOT (s.{d} AND {key_only})",
                        set_all.join(", "),
                        key_eq("t", "s")
                    ))
                    .await?;
                }
                self.run(&format!(
                    "INSERT INTO {target} ({}) SELECT {} FROM {latest} s WHERE NOT EXISTS (SELECT 1 FROM {target} x WHERE {})",
                    cols.join(", "),
                    vals.join(", "),
                    key_eq("x", "s")
                ))
                .await?;
                Ok(RowChanges { inserted, updated, deleted })
            }
        }
    }

    async fn load_inner(&self, request: &LoadRequest<'_>) -> Result<LoadOutcome> {
        let table = request.table;
        let stream = request.batches.first().map(|b| b.stream.clone()).unwrap_or_default();
        self.shape_table(table, request.kind).await?;
        // Nothing to apply: no warehouse statement (a merge of no rows is a no-op).
        if request.kind == LoadKind::Merge
            && request.batches.iter().all(|b| b.row_count == 0 && b.truncated_at.is_none() && !b.complete)
        {
            return Ok(LoadOutcome::default());
        }
        self.ensure_batches_table().await?;
        self.ensure_marker(request.pipeline_id).await?;
        let ids: Vec<u64> = request.batches.iter().map(|b| b.batch_id).collect();
        let already = self.loaded_ids(request.pipeline_id, &stream, &ids).await?;
        let todo: Vec<&BatchManifest> = request.batches.iter().filter(|b| !already.contains(&b.batch_id)).collect();
        if todo.is_empty() {
            return Ok(LoadOutcome { already_loaded: already, ..Default::default() });
        }
        // The load table, shaped like the staged files.
        let load = self.load_table(request.pipeline_id, &table.name);
        let mut cols: Vec<String> =
            table.columns.iter().map(|c| format!("{} {}", ident(&sf_name(&c.name)), load_type(&c.sql_type))).collect();
        cols.push(format!("{} BOOLEAN", ident(&sf_name(meta::DELETED))));
        cols.push(format!("{} NUMBER(38,0)", ident(&sf_name(meta::VERSION))));
        if !table.has_key() {
            cols.push(format!("{} VARCHAR", ident(&sf_name(meta::ID))));
        }
        cols.push(format!("{} VARCHAR", ident(&sf_name(meta::UNCHANGED))));
        self.run(&format!("CREATE OR REPLACE TRANSIENT TABLE {load} ({})", cols.join(", "))).await?;
        let folder = Uuid::new_v4().simple().to_string();
        let mut abandoned = false;
        let result = async {
            let rows_staged = self.copy_batches(request, &todo, &load, &folder).await?;
            let expected: u64 = todo.iter().map(|b| b.row_count).sum();
            if rows_staged != expected {
                return Err(Error::data(format!(
                    "{stream}: Snowflake loaded {rows_staged} rows from the staged files but the manifests say {expected}"
                )));
            }
            self.note_open_transaction(&*self.session().await?)?;
            self.run("BEGIN").await?;
            let applied = async {
                let truncated_at = todo.iter().filter_map(|b| b.truncate_version()).max();
                let mut changes = self.apply(table, request.kind, &load, rows_staged, truncated_at).await?;
                // A complete snapshot merged: stored rows whose key it lacks are deleted.
                if request.kind == LoadKind::Merge
                    && table.has_key()
                    && let Some(at) = todo.iter().filter_map(|b| b.complete_version()).max()
                {
                    let target = self.qualified(&table.name);
                    let (d, v, sa) = (ident(&sf_name(meta::DELETED)), ident(&sf_name(meta::VERSION)), ident(&sf_name(meta::SYNCED_AT)));
                    let on: Vec<String> = table
                        .key
                        .iter()
                        .map(|k| format!("s.{q} IS NOT DISTINCT FROM t.{q}", q = ident(&sf_name(k))))
                        .collect();
                    let missing = format!(
                        "NOT COALESCE(t.{d}, FALSE) AND t.{v} < {at} AND NOT EXISTS (SELECT 1 FROM {load} s WHERE {})",
                        on.join(" AND ")
                    );
                    let r = self.run(&format!("SELECT COUNT(*) FROM {target} t WHERE {missing}")).await?;
                    changes.deleted += first_cell(&r).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                    self.run(&format!(
                        "UPDATE {target} t SET {d} = TRUE, {v} = {at}, {sa} = CURRENT_TIMESTAMP() WHERE {missing}"
                    ))
                    .await?;
                }
                // A truncate in the source: every stored row older than it is deleted.
                if let Some(at) = todo.iter().filter_map(|b| b.truncate_version()).max() {
                    let target = self.qualified(&table.name);
                    let (d, v, sa) = (ident(&sf_name(meta::DELETED)), ident(&sf_name(meta::VERSION)), ident(&sf_name(meta::SYNCED_AT)));
                    let r = self.run(&format!("SELECT COUNT(*) FROM {target} WHERE {v} < {at} AND NOT COALESCE({d}, FALSE)")).await?;
                    changes.deleted += first_cell(&r).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                    self.run(&format!(
                        "UPDATE {target} SET {d} = TRUE, {v} = {at}, {sa} = CURRENT_TIMESTAMP() WHERE {v} < {at}"
                    ))
                    .await?;
                }
                for b in &todo {
                    self.run(&format!(
                        "INSERT INTO {} (PIPELINE_ID, STREAM, BATCH_ID, ROW_COUNT, LOADED_AT) \
                         VALUES ({}, {}, {}, {}, CURRENT_TIMESTAMP())",
                        self.batches_table(),
                        literal(&request.pipeline_id.to_string()),
                        literal(&b.stream),
                        b.batch_id,
                        b.row_count
                    ))
                    .await?;
                }
                let rows_after = self.count_live(&table.name).await?;
                simplyload_core::failpoint::failpoint("during_load");
                self.run("COMMIT").await?;
                Ok::<_, Error>((changes, rows_after))
            }
            .await;
            match applied {
                Ok((changes, rows_after)) => {
                    self.transaction_closed();
                    Ok(LoadOutcome {
                    rows_staged,
                    rows_after: Some(rows_after),
                    already_loaded: already.clone(),
                    changes,
                    })
                }
                Err(e) => {
                    match self.run("ROLLBACK").await {
                        Ok(_) => self.transaction_closed(),
                        Err(rb) => {
                            // The transaction may still be open: a DDL (the
                            // cleanup below) would commit half a load.
                            tracing::warn!(error = %rb, "ROLLBACK after a failed load failed; abandoning the session");
                            self.abandon_session().await;
                            abandoned = true;
                        }
                    }
                    Err(e)
                }
            }
        }
        .await;
        if abandoned {
            return result;
        }
        // Clean up whatever happened (the next load replaces the table anyway).
        if let Err(e) = self.run(&format!("DROP TABLE IF EXISTS {load}")).await {
            tracing::warn!(error = %e, "could not drop the load table");
        }
        if self.stage == StageMode::Internal
            && let Err(e) = self.run(&format!("REMOVE @{INTERNAL_STAGE}/{folder}/")).await
        {
            tracing::debug!(error = %e, "could not clear the stage folder (it goes with the session)");
        }
        result
    }
}

/// The internal stage folder one batch of one load is PUT to.
fn internal_dir(folder: &str, batch_id: u64) -> String {
    format!("@{INTERNAL_STAGE}/{folder}/{batch_id:012}/")
}

/// The COPY of one batch into the load table. From the internal stage the
/// folder holds exactly the batch's files; from an external stage (whose URL
/// is the staging root) `FILES` names exactly the manifest's files.
pub fn copy_sql(stage: &StageMode, load: &str, b: &BatchManifest, folder: &str) -> String {
    let format = "FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE BINARY_AS_TEXT = FALSE) \
                  MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE";
    match stage {
        StageMode::Internal => format!("COPY INTO {load} FROM {} {format}", internal_dir(folder, b.batch_id)),
        StageMode::External(stage) => {
            let prefix = simplyload_core::batch::batch_prefix(&b.pipeline, &b.stream, b.batch_id);
            let files: Vec<String> =
                b.files.iter().map(|f| literal(f.key.rsplit('/').next().unwrap_or(&f.key))).collect();
            format!("COPY INTO {load} FROM @{stage}/{prefix}/ FILES = ({}) {format}", files.join(", "))
        }
    }
}

/// A key value as a Snowflake literal of the key column's type.
fn key_literal(v: &Canon, t: SqlType) -> Result<String> {
    Ok(match (v, t) {
        (Canon::Int(i), _) => i.to_string(),
        (Canon::Decimal(d), SqlType::Decimal { precision, scale }) => {
            format!("CAST({} AS NUMBER({precision},{scale}))", literal(d))
        }
        (Canon::Text(s), _) => literal(s),
        (Canon::Bool(b), _) => b.to_string().to_ascii_uppercase(),
        (Canon::Uuid(u), _) => literal(&uuid_text(*u)),
        (Canon::Date(d), _) => format!("DATEADD(day, {d}, DATE '1970-01-01')"),
        (Canon::Timestamp(us), SqlType::TimestampTz) => format!("TO_TIMESTAMP_TZ({us}, 6)"),
        (Canon::Timestamp(us), _) => format!("TO_TIMESTAMP_NTZ({us}, 6)"),
        (other, t) => {
            return Err(Error::internal(format!("reconcile: cannot use {other} as a {} key bound", t.name())));
        }
    })
}

/// `key > bound`, lexicographically over the key columns.
fn key_greater(keys: &[(String, SqlType)], bound: &[Canon]) -> Result<String> {
    let mut ors = Vec::new();
    for i in 0..keys.len() {
        let mut ands = Vec::new();
        for (j, (k, t)) in keys.iter().enumerate().take(i) {
            ands.push(format!("{} = {}", ident(&sf_name(k)), key_literal(&bound[j], *t)?));
        }
        ands.push(format!("{} > {}", ident(&sf_name(&keys[i].0)), key_literal(&bound[i], keys[i].1)?));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    Ok(format!("({})", ors.join(" OR ")))
}

#[async_trait::async_trait]
impl Destination for SnowflakeDestination {
    fn kind(&self) -> &'static str {
        "snowflake"
    }

    fn limits(&self) -> ValueLimits {
        // Years 1 to 9999 (DESIGN.md §5: Snowflake cannot hold years beyond 9999).
        ValueLimits {
            timestamp_us: (-62_135_596_800_000_000, 253_402_300_799_999_999),
            date_days: (-719_162, 2_932_896),
        }
    }

    fn begin_sync(&self, pipeline: &str, sync_id: i64) {
        *self.tag.lock().expect("tag lock") = format!("simplyload:{pipeline}:sync-{sync_id}");
        *self.pipeline.lock().expect("pipeline lock") = Some(pipeline.to_owned());
    }

    async fn end_sync(&self) -> Vec<Statement> {
        let session = self.session.lock().await.take();
        let mut log = std::mem::take(&mut *self.closed_log.lock().expect("log lock"));
        if let Some(s) = session {
            log.extend(s.statements());
            match s.close().await {
                // Closing ends any transaction the session still had.
                Ok(()) => self.transaction_closed(),
                Err(e) => tracing::debug!(error = %e, "closing the Snowflake session"),
            }
        }
        log.into_iter()
            .map(|(sql, elapsed)| Statement {
                uses_warehouse: uses_warehouse(&sql),
                sql,
                elapsed_ms: elapsed.as_millis() as u64,
            })
            .collect()
    }

    async fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let session = match self.session().await {
            Ok(s) => {
                report.pass("login", format!("logged in to {} as {}", self.opts.base_url, self.opts.user));
                s
            }
            Err(e) => {
                report.fail("login", e.to_string(), None);
                return Ok(report);
            }
        };
        let (db, schema) = (ident(&self.database), ident(&self.schema));
        let role = self.role.clone().unwrap_or_else(|| "<role>".into());
        let step = |sql: String| {
            let s = session.clone();
            async move { s.query(&sql, &[]).await }
        };
        match step(format!("USE SCHEMA {db}.{schema}")).await {
            Ok(_) => report.pass("schema", format!("schema {}.{} is usable", self.database, self.schema)),
            Err(e) => {
                report.fail(
                    "schema",
                    e.to_string(),
                    Some(format!(
                        "GRANT USAGE ON DATABASE {d} TO ROLE {role};\nGRANT USAGE ON SCHEMA {d}.{s} TO ROLE {role};",
                        d = self.database,
                        s = self.schema
                    )),
                );
                return Ok(report);
            }
        }
        match step(format!(
            "CREATE TABLE IF NOT EXISTS {} (PIPELINE_ID VARCHAR NOT NULL, STREAM VARCHAR NOT NULL, \
             BATCH_ID NUMBER(19,0) NOT NULL, ROW_COUNT NUMBER(19,0) NOT NULL, LOADED_AT TIMESTAMP_TZ NOT NULL)",
            self.batches_table()
        ))
        .await
        {
            Ok(_) => report.pass("create", format!("the role can create tables in {}.{}", self.database, self.schema)),
            Err(e) => report.fail(
                "create",
                e.to_string(),
                Some(format!(
                    "GRANT CREATE TABLE, CREATE STAGE ON SCHEMA {}.{} TO ROLE {role};",
                    self.database, self.schema
                )),
            ),
        }
        match &self.warehouse {
            Some(w) => match step(format!("USE WAREHOUSE {}", ident(w))).await {
                Ok(_) => report.pass("warehouse", format!("warehouse {w} is usable (not resumed by this check)")),
                Err(e) => report.fail(
                    "warehouse",
                    e.to_string(),
                    Some(format!("GRANT USAGE ON WAREHOUSE {w} TO ROLE {role};")),
                ),
            },
            None => report.fail(
                "warehouse",
                "no warehouse is configured: set `warehouse:` on the destination (`simplyload setup-sql snowflake` creates one)"
                    .to_owned(),
                None,
            ),
        }
        if let StageMode::Internal = self.stage {
            match step(format!("CREATE TEMPORARY STAGE IF NOT EXISTS {INTERNAL_STAGE}")).await {
                Ok(_) => report.pass("stage", "the role can create the temporary load stage".to_owned()),
                Err(e) => report.fail(
                    "stage",
                    e.to_string(),
                    Some(format!("GRANT CREATE STAGE ON SCHEMA {}.{} TO ROLE {role};", self.database, self.schema)),
                ),
            }
        }
        Ok(report)
    }

    async fn loaded_batches(&self, pipeline_id: Uuid, stream: &str, batch_ids: &[u64]) -> Result<Vec<u64>> {
        self.loaded_ids(pipeline_id, stream, batch_ids).await
    }

    /// From metadata, so an empty sync stays off the warehouse: one `SHOW
    /// TERSE TABLES` finds the tables and the pipeline's marker table
    /// (made by its first load). Without a marker — a destination this
    /// pipeline never loaded, or one loaded before markers existed — the
    /// batch records are asked once (a warehouse statement) and the marker
    /// made when they are there.
    async fn missing(&self, pipeline_id: Uuid, streams: &[LoadMark<'_>]) -> Result<Vec<(String, Missing)>> {
        let tables = self.table_names().await?;
        let (present, gone): (Vec<&LoadMark>, Vec<&LoadMark>) =
            streams.iter().partition(|m| tables.contains(&sf_name(m.table)));
        let mut missing: Vec<(String, Missing)> = gone.iter().map(|m| (m.stream.to_owned(), Missing::Table)).collect();
        if tables.contains(&sf_name(&marker_table(pipeline_id))) {
            self.marked.lock().await.insert(pipeline_id);
            return Ok(missing);
        }
        if present.is_empty() {
            return Ok(missing);
        }
        let recorded = self.recorded_streams(pipeline_id).await?;
        for m in &present {
            if !recorded.contains(m.stream) {
                missing.push((m.stream.to_owned(), Missing::Record));
            }
        }
        if present.iter().any(|m| recorded.contains(m.stream)) {
            self.ensure_marker(pipeline_id).await?;
        }
        Ok(missing)
    }

    async fn load(&self, request: LoadRequest<'_>) -> Result<LoadOutcome> {
        if self.stage == StageMode::Internal {
            self.run(&format!("CREATE TEMPORARY STAGE IF NOT EXISTS {INTERNAL_STAGE}")).await?;
        }
        self.load_inner(&request).await
    }

    async fn row_count(&self, table: &str) -> Result<Option<u64>> {
        match self.count_live(table).await {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn columns(&self, table: &str) -> Result<Option<Vec<String>>> {
        Ok(self.describe(table).await?.map(|cols| cols.into_iter().map(|(n, _)| n.to_ascii_lowercase()).collect()))
    }

    async fn scan(&self, request: ScanRequest, out: ScanSender) -> Result<()> {
        let table = &request.table;
        let Some(existing) = self.describe(&table.name).await? else { return Ok(()) };
        let existing: Vec<String> = existing.into_iter().map(|(n, _)| n).collect();
        let mut select: Vec<String> = table
            .columns
            .iter()
            .map(|c| {
                let n = sf_name(&c.name);
                if !existing.contains(&n) {
                    format!("CAST(NULL AS {})", load_type(&c.sql_type))
                } else if c.sql_type == SqlType::Json {
                    // VARIANT as its JSON text.
                    format!("TO_JSON({})", ident(&n))
                } else {
                    ident(&n)
                }
            })
            .collect();
        select.push(format!("COALESCE({}, FALSE)", ident(&sf_name(meta::DELETED))));
        let keys: Vec<(String, SqlType)> = table
            .key
            .iter()
            .map(|k| {
                table
                    .column(k)
                    .map(|c| (c.name.clone(), c.sql_type))
                    .ok_or_else(|| Error::internal(format!("reconcile: key {k} is not a column of {}", table.name)))
            })
            .collect::<Result<_>>()?;
        let key_idx: Vec<usize> =
            table.key.iter().filter_map(|k| table.columns.iter().position(|c| &c.name == k)).collect();
        let mut predicates = Vec::new();
        if let Some(after) = &request.range.after {
            predicates.push(key_greater(&keys, after)?);
        }
        if let Some(upto) = &request.range.upto {
            predicates.push(format!("NOT {}", key_greater(&keys, upto)?));
        }
        let mut sql = format!("SELECT {} FROM {}", select.join(", "), self.qualified(&table.name));
        if !predicates.is_empty() {
            sql.push_str(&format!(" WHERE {}", predicates.join(" AND ")));
        }
        let r = self.run(&sql).await?;
        let Rows::Arrow(batches) = &r.rows else {
            return Err(Error::data("Snowflake answered a SELECT without Arrow rows"));
        };
        let closed = || Error::internal("reconcile stopped reading");
        let mut group = Vec::with_capacity(SCAN_BATCH);
        for batch in batches {
            let schema = batch.schema();
            let flag_col = table.columns.len();
            for row in 0..batch.num_rows() {
                let mut hashes = Vec::with_capacity(table.columns.len());
                let mut key = vec![Canon::Null; key_idx.len()];
                for (i, c) in table.columns.iter().enumerate() {
                    let v = values::canon(batch.column(i), schema.field(i), row, c.sql_type)
                        .map_err(|e| e.context(format!("{}.{}", table.name, c.name)))?;
                    hashes.push(v.hash64());
                    if let Some(k) = key_idx.iter().position(|k| *k == i) {
                        key[k] = v;
                    }
                }
                let flag = matches!(
                    values::canon(batch.column(flag_col), schema.field(flag_col), row, SqlType::Boolean)?,
                    Canon::Bool(true)
                );
                group.push(ScannedRow { key, hashes, flag });
                if group.len() >= SCAN_BATCH {
                    out.send(std::mem::take(&mut group)).await.map_err(|_| closed())?;
                }
            }
        }
        if !group.is_empty() {
            out.send(group).await.map_err(|_| closed())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_names_exactly_the_manifests_files() {
        use simplyload_core::{StagedFile, StreamName};
        let table = TableSpec {
            stream: StreamName::new("public", "orders"),
            name: "orders".into(),
            columns: vec![],
            key: vec![],
            hashed: Vec::new(),
        };
        let file = |n: u32| StagedFile {
            key: simplyload_core::batch::file_key("main", "public.orders", 7, n),
            row_count: 1,
            byte_count: 1,
        };
        let b = BatchManifest {
            pipeline: "main".into(),
            stream: "public.orders".into(),
            batch_id: 7,
            sync_id: 1,
            kind: LoadKind::Merge,
            table,
            files: vec![file(0), file(1)],
            row_count: 2,
            start_position: None,
            end_position: None,
            truncated_at: None,
            complete: false,
        };
        let ext = copy_sql(&StageMode::External("RAW_DATA.SIMPLYLOAD.SIMPLYLOAD_S3".into()), "L", &b, "f");
        assert_eq!(
            ext,
            "COPY INTO L FROM @RAW_DATA.SIMPLYLOAD.SIMPLYLOAD_S3/main/public.orders/000000000007/ \
             FILES = ('part-00000.parquet', 'part-00001.parquet') FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE \
             BINARY_AS_TEXT = FALSE) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE"
        );
        let int = copy_sql(&StageMode::Internal, "L", &b, "f00d");
        assert!(int.starts_with("COPY INTO L FROM @_SIMPLYLOAD_STAGE/f00d/000000000007/ FILE_FORMAT"), "{int}");
    }

    #[test]
    fn names_types_and_warehouse_use() {
        assert_eq!(config_ident("raw_data"), "RAW_DATA");
        assert_eq!(config_ident("\"My Db\""), "My Db");
        assert_eq!(ident("WE\"IRD"), "\"WE\"\"IRD\"");
        assert_eq!(sf_name("order_id"), "ORDER_ID");
        assert_eq!(sf_type(&SqlType::Decimal { precision: 12, scale: 2 }), "NUMBER(12,2)");
        assert_eq!(norm_type("VARCHAR(16777216)"), "VARCHAR");
        assert_eq!(norm_type("TIMESTAMP_TZ(6)"), "TIMESTAMP_TZ");
        assert_eq!(norm_type("NUMBER(38, 0)"), "NUMBER(38,0)");
        assert!(alter_in_place("NUMBER(10,0)", "NUMBER(19,0)"));
        assert!(!alter_in_place("NUMBER(12,2)", "NUMBER(12,4)"));
        assert!(!alter_in_place("VARCHAR", "NUMBER(12,4)"));
        assert!(!uses_warehouse("CREATE TABLE IF NOT EXISTS x (a INT)"));
        assert!(!uses_warehouse("describe table x"));
        assert!(uses_warehouse("SELECT 1"));
        assert!(uses_warehouse("COPY INTO x FROM @s"));
    }
}
