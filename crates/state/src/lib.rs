//! The checkpoint store on SQLite (`.simplyload/state.db` by default).
//!
//! Durability: WAL journal with `synchronous = FULL`, so every committed
//! write survives a power cut; each trait call is one SQLite transaction.
//! The schema is versioned with `PRAGMA user_version` and migrated forward
//! on open; a file written by a newer SimplyLoad is refused rather than
//! misread.

mod legacy;

use rusqlite::{Connection, OptionalExtension, params};
use simplyload_core::batch::{BatchManifest, BatchState};
use simplyload_core::checkpoint::{
    BatchRecord, Checkpoint, CheckpointStore, FeedRecord, LoadedStream, RowChanges, StreamState, SyncRecord,
};
use simplyload_core::{Error, ErrorKind, Result, StagedBatch, SyncReport};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use uuid::Uuid;

/// One step of the schema: SQL, or code for what SQL cannot say.
enum Migration {
    Sql(&'static str),
    Code(fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>),
}

/// Schema migrations, in order; the index + 1 is the schema version.
const MIGRATIONS: &[Migration] = &[
    // 1: pipelines, streams, batches, syncs.
    Migration::Sql(
        r#"
    CREATE TABLE pipelines (
        name          TEXT PRIMARY KEY,
        pipeline_id   TEXT NOT NULL UNIQUE,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE streams (
        pipeline            TEXT NOT NULL REFERENCES pipelines(name),
        stream              TEXT NOT NULL,
        mode                TEXT,
        table_name          TEXT,
        next_batch_id       INTEGER NOT NULL DEFAULT 1,
        checkpoint_batch_id INTEGER,
        checkpoint_position TEXT,
        last_sync_id        INTEGER,
        last_loaded_at_ms   INTEGER,
        last_rows           INTEGER NOT NULL DEFAULT 0,
        destination_rows    INTEGER,
        last_error          TEXT,
        PRIMARY KEY (pipeline, stream)
    );
    CREATE TABLE batches (
        pipeline      TEXT NOT NULL,
        stream        TEXT NOT NULL,
        batch_id      INTEGER NOT NULL,
        sync_id       INTEGER NOT NULL,
        state         TEXT NOT NULL CHECK (state IN ('staging', 'staged', 'loaded', 'abandoned')),
        manifest      TEXT,
        row_count     INTEGER,
        byte_count    INTEGER,
        created_at_ms INTEGER NOT NULL,
        staged_at_ms  INTEGER,
        loaded_at_ms  INTEGER,
        PRIMARY KEY (pipeline, stream, batch_id)
    );
    CREATE INDEX batches_by_state ON batches (pipeline, state);
    CREATE TABLE syncs (
        sync_id        INTEGER PRIMARY KEY AUTOINCREMENT,
        pipeline       TEXT NOT NULL,
        started_at_ms  INTEGER NOT NULL,
        finished_at_ms INTEGER,
        status         TEXT NOT NULL,
        rows           INTEGER NOT NULL DEFAULT 0,
        error          TEXT,
        report         TEXT
    );
    CREATE INDEX syncs_by_pipeline ON syncs (pipeline, sync_id);
    "#,
    ),
    // 2: what each load did; staged files removed by `staging gc`.
    Migration::Sql(
        r#"
    ALTER TABLE streams ADD COLUMN last_changes TEXT;
    ALTER TABLE batches ADD COLUMN files_removed_at_ms INTEGER;
    "#,
    ),
    // 3: each pipeline's change feed (its name, the position last confirmed).
    Migration::Sql(
        r#"
    CREATE TABLE feeds (
        pipeline      TEXT PRIMARY KEY REFERENCES pipelines(name),
        name          TEXT NOT NULL,
        confirmed     TEXT,
        updated_at_ms INTEGER NOT NULL
    );
    "#,
    ),
    // 4: change-feed positions of release 0.1 (`lsn`) in today's shape.
    Migration::Code(upgrade_legacy_positions),
];

/// Migration 4: see [`legacy`].
fn upgrade_legacy_positions(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let rows: Vec<(String, String, String)> = {
        let mut st = tx.prepare(
            "SELECT pipeline, stream, checkpoint_position FROM streams WHERE checkpoint_position IS NOT NULL",
        )?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?
    };
    for (pipeline, stream, text) in rows {
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        if legacy::upgrade_position(&mut v) {
            tx.execute(
                "UPDATE streams SET checkpoint_position = ?1 WHERE pipeline = ?2 AND stream = ?3",
                params![v.to_string(), pipeline, stream],
            )?;
        }
    }
    let rows: Vec<(String, String, i64, String)> = {
        let mut st =
            tx.prepare("SELECT pipeline, stream, batch_id, manifest FROM batches WHERE manifest IS NOT NULL")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<rusqlite::Result<_>>()?
    };
    for (pipeline, stream, batch_id, text) in rows {
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        if legacy::upgrade_manifest(&mut v) {
            tx.execute(
                "UPDATE batches SET manifest = ?1 WHERE pipeline = ?2 AND stream = ?3 AND batch_id = ?4",
                params![v.to_string(), pipeline, stream, batch_id],
            )?;
        }
    }
    Ok(())
}

/// The SQLite checkpoint store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn db_error(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| {
        let kind = match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                ErrorKind::Busy
            }
            _ => ErrorKind::Internal,
        };
        Error::new(kind, format!("state file {}: {e}", path.display()))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates a state file.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::from(e).context(format!("cannot create the state folder {}", dir.display())))?;
        }
        let err = db_error(path);
        let mut conn = Connection::open(path).map_err(&err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(&err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(&err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(&err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(&err)?;
        migrate(&mut conn, path)?;
        Ok(SqliteStore { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    /// Opens a state file that must already exist (for read-only commands).
    pub fn open_existing(path: &Path) -> Result<Option<SqliteStore>> {
        if !path.exists() {
            return Ok(None);
        }
        Self::open(path).map(Some)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64> {
        let conn = self.conn.lock().expect("state lock");
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db_error(&self.path))
    }

    /// A checkpoint position as stored.
    fn position(&self, stream: &str, text: &str) -> Result<simplyload_core::Position> {
        serde_json::from_str(text).map_err(|e| self.unreadable(&format!("the checkpoint of {stream}"), e))
    }

    fn unreadable(&self, what: &str, e: serde_json::Error) -> Error {
        Error::internal(format!("state file {}: {what} is unreadable: {e}", self.path.display()))
            .with_hint("the file was changed by hand or by a newer SimplyLoad; restore it or point `state:` elsewhere")
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().map_err(|_| Error::internal("state store lock poisoned"))?;
        f(&mut conn).map_err(db_error(&self.path))
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let err = db_error(path);
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(&err)?;
    let latest = MIGRATIONS.len() as i64;
    if version > latest {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "state file {} has schema version {version}, newer than this SimplyLoad knows ({latest})",
                path.display()
            ),
        )
        .with_hint("upgrade SimplyLoad, or point `state:` at another file"));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(&err)?;
        match step {
            Migration::Sql(sql) => tx.execute_batch(sql).map_err(&err)?,
            Migration::Code(run) => run(&tx).map_err(&err)?,
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(&err)?;
        tx.commit().map_err(&err)?;
        tracing::debug!(path = %path.display(), version = i + 1, "state schema migrated");
    }
    Ok(())
}

fn ensure_stream(tx: &rusqlite::Transaction<'_>, pipeline: &str, stream: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO streams (pipeline, stream) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![pipeline, stream],
    )?;
    Ok(())
}

fn ensure_pipeline(tx: &rusqlite::Transaction<'_>, pipeline: &str) -> rusqlite::Result<String> {
    if let Some(id) = tx
        .query_row("SELECT pipeline_id FROM pipelines WHERE name = ?1", [pipeline], |r| r.get::<_, String>(0))
        .optional()?
    {
        return Ok(id);
    }
    let id = Uuid::new_v4().to_string();
    tx.execute(
        "INSERT INTO pipelines (name, pipeline_id, created_at_ms) VALUES (?1, ?2, ?3)",
        params![pipeline, id, now_ms()],
    )?;
    Ok(id)
}

#[async_trait::async_trait]
impl CheckpointStore for SqliteStore {
    async fn pipeline_id(&self, pipeline: &str) -> Result<Uuid> {
        let id = self.with(|c| {
            let tx = c.transaction()?;
            let id = ensure_pipeline(&tx, pipeline)?;
            tx.commit()?;
            Ok(id)
        })?;
        Uuid::parse_str(&id).map_err(|e| Error::internal(format!("state file: bad pipeline id {id}: {e}")))
    }

    async fn begin_sync(&self, pipeline: &str) -> Result<i64> {
        self.with(|c| {
            let tx = c.transaction()?;
            ensure_pipeline(&tx, pipeline)?;
            // A sync still `running` here was killed: its process is gone.
            tx.execute(
                "UPDATE syncs SET status = 'interrupted', error = 'the process stopped before the sync finished'
                 WHERE pipeline = ?1 AND status = 'running'",
                [pipeline],
            )?;
            tx.execute(
                "INSERT INTO syncs (pipeline, started_at_ms, status) VALUES (?1, ?2, 'running')",
                params![pipeline, now_ms()],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(id)
        })
    }

    async fn finish_sync(&self, report: &SyncReport) -> Result<()> {
        let json = serde_json::to_string(report).map_err(|e| Error::internal(e.to_string()))?;
        let status = if report.succeeded() { "succeeded" } else { "failed" };
        let error = report.error.clone().or_else(|| {
            let failed: Vec<String> = report
                .streams
                .iter()
                .filter(|s| s.status == "failed")
                .map(|s| format!("{}: {}", s.stream, s.error.as_deref().unwrap_or("failed")))
                .collect();
            if failed.is_empty() { None } else { Some(failed.join("; ")) }
        });
        self.with(|c| {
            c.execute(
                "UPDATE syncs SET finished_at_ms = ?1, status = ?2, rows = ?3, error = ?4, report = ?5 WHERE sync_id = ?6",
                params![now_ms(), status, report.rows() as i64, error, json, report.sync_id],
            )?;
            Ok(())
        })
    }

    async fn allocate_batch(&self, pipeline: &str, stream: &str, sync_id: i64) -> Result<u64> {
        self.with(|c| {
            let tx = c.transaction()?;
            ensure_pipeline(&tx, pipeline)?;
            ensure_stream(&tx, pipeline, stream)?;
            let id: i64 = tx.query_row(
                "UPDATE streams SET next_batch_id = next_batch_id + 1 WHERE pipeline = ?1 AND stream = ?2
                 RETURNING next_batch_id - 1",
                params![pipeline, stream],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO batches (pipeline, stream, batch_id, sync_id, state, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, 'staging', ?5)",
                params![pipeline, stream, id, sync_id, now_ms()],
            )?;
            tx.commit()?;
            Ok(id as u64)
        })
    }

    async fn record_staged(&self, manifest: &BatchManifest) -> Result<()> {
        let json = serde_json::to_string(manifest).map_err(|e| Error::internal(e.to_string()))?;
        let changed = self.with(|c| {
            c.execute(
                "UPDATE batches SET state = 'staged', manifest = ?1, row_count = ?2, byte_count = ?3, staged_at_ms = ?4
                 WHERE pipeline = ?5 AND stream = ?6 AND batch_id = ?7 AND state = 'staging'",
                params![
                    json,
                    manifest.row_count as i64,
                    manifest.byte_count() as i64,
                    now_ms(),
                    manifest.pipeline,
                    manifest.stream,
                    manifest.batch_id as i64
                ],
            )
        })?;
        if changed != 1 {
            return Err(Error::internal(format!(
                "batch {} of {} is not in state `staging`; cannot record it as staged",
                manifest.batch_id, manifest.stream
            )));
        }
        Ok(())
    }

    async fn abandon_batch(&self, pipeline: &str, stream: &str, batch_id: u64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE batches SET state = 'abandoned' WHERE pipeline = ?1 AND stream = ?2 AND batch_id = ?3
                 AND state IN ('staging', 'staged')",
                params![pipeline, stream, batch_id as i64],
            )?;
            Ok(())
        })
    }

    async fn mark_loaded(&self, l: LoadedStream<'_>) -> Result<()> {
        let position = match &l.checkpoint.position {
            Some(p) => Some(serde_json::to_string(p).map_err(|e| Error::internal(e.to_string()))?),
            None => None,
        };
        let changes = match &l.changes {
            Some(c) => Some(serde_json::to_string(c).map_err(|e| Error::internal(e.to_string()))?),
            None => None,
        };
        self.with(|c| {
            let tx = c.transaction()?;
            ensure_pipeline(&tx, l.pipeline)?;
            ensure_stream(&tx, l.pipeline, l.stream)?;
            let now = now_ms();
            let mut newly_loaded = 0;
            for id in l.batch_ids {
                newly_loaded += tx.execute(
                    "UPDATE batches SET state = 'loaded', loaded_at_ms = ?1
                     WHERE pipeline = ?2 AND stream = ?3 AND batch_id = ?4 AND state <> 'loaded'",
                    params![now, l.pipeline, l.stream, *id as i64],
                )?;
            }
            // Forward only: an older batch never moves the checkpoint back.
            tx.execute(
                "UPDATE streams SET checkpoint_batch_id = ?1, checkpoint_position = ?2
                 WHERE pipeline = ?3 AND stream = ?4
                   AND (checkpoint_batch_id IS NULL OR checkpoint_batch_id < ?1)",
                params![l.checkpoint.batch_id as i64, position, l.pipeline, l.stream],
            )?;
            if newly_loaded == 0 && !l.batch_ids.is_empty() {
                // Marked loaded before: its counts were added the first time.
                return tx.commit();
            }
            // The loads of one sync (a first read in parts) add up: the
            // stream shows what its last sync did, not its last part.
            let (prev_sync, prev_rows, prev_changes): (Option<i64>, i64, Option<String>) = tx.query_row(
                "SELECT last_sync_id, last_rows, last_changes FROM streams WHERE pipeline = ?1 AND stream = ?2",
                params![l.pipeline, l.stream],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            let same_sync = prev_sync == Some(l.sync_id);
            let rows = if same_sync { prev_rows + l.rows as i64 } else { l.rows as i64 };
            let changes = match (&l.changes, prev_changes.and_then(|p| serde_json::from_str::<RowChanges>(&p).ok())) {
                (Some(now), Some(before)) if same_sync => Some(
                    serde_json::to_string(&RowChanges {
                        inserted: before.inserted + now.inserted,
                        updated: before.updated + now.updated,
                        deleted: before.deleted + now.deleted,
                    })
                    .expect("changes serialize"),
                ),
                _ => changes.clone(),
            };
            tx.execute(
                "UPDATE streams SET mode = ?1, table_name = ?2, last_sync_id = ?3, last_loaded_at_ms = ?4,
                        last_rows = ?5, destination_rows = COALESCE(?6, destination_rows), last_error = NULL,
                        last_changes = COALESCE(?9, last_changes)
                 WHERE pipeline = ?7 AND stream = ?8",
                params![
                    l.mode,
                    l.table,
                    l.sync_id,
                    now,
                    rows,
                    l.destination_rows.map(|r| r as i64),
                    l.pipeline,
                    l.stream,
                    changes
                ],
            )?;
            tx.commit()
        })
    }

    async fn record_stream_error(&self, pipeline: &str, stream: &str, error: &str) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            ensure_pipeline(&tx, pipeline)?;
            ensure_stream(&tx, pipeline, stream)?;
            tx.execute(
                "UPDATE streams SET last_error = ?1 WHERE pipeline = ?2 AND stream = ?3",
                params![error, pipeline, stream],
            )?;
            tx.commit()
        })
    }

    async fn request_resync(&self, pipeline: &str, stream: &str) -> Result<bool> {
        self.with(|c| {
            let n = c.execute(
                "UPDATE streams SET checkpoint_position = NULL
                 WHERE pipeline = ?1 AND stream = ?2 AND checkpoint_batch_id IS NOT NULL",
                params![pipeline, stream],
            )?;
            Ok(n > 0)
        })
    }

    async fn batches_to_clean(&self, pipeline: &str, before_ms: i64) -> Result<Vec<StagedBatch>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT stream, batch_id, loaded_at_ms, COALESCE(byte_count, 0) FROM batches
                 WHERE pipeline = ?1 AND state = 'loaded' AND files_removed_at_ms IS NULL AND loaded_at_ms < ?2
                 ORDER BY stream, batch_id",
            )?;
            let rows = st
                .query_map(params![pipeline, before_ms], |r| {
                    Ok(StagedBatch {
                        stream: r.get(0)?,
                        batch_id: r.get::<_, i64>(1)? as u64,
                        loaded_at_ms: r.get(2)?,
                        byte_count: r.get::<_, i64>(3)? as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }

    async fn mark_files_removed(&self, pipeline: &str, stream: &str, batch_id: u64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE batches SET files_removed_at_ms = ?1 WHERE pipeline = ?2 AND stream = ?3 AND batch_id = ?4",
                params![now_ms(), pipeline, stream, batch_id as i64],
            )?;
            Ok(())
        })
    }

    async fn last_loaded_table(&self, pipeline: &str, stream: &str) -> Result<Option<simplyload_core::TableSpec>> {
        let manifest: Option<String> = self.with(|c| {
            c.query_row(
                "SELECT manifest FROM batches WHERE pipeline = ?1 AND stream = ?2 AND state = 'loaded'
                 ORDER BY batch_id DESC LIMIT 1",
                [pipeline, stream],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
        })?;
        manifest
            .map(|m| {
                serde_json::from_str::<BatchManifest>(&m).map(|m| m.table).map_err(|e| {
                    Error::internal(format!("state file: the last manifest of {stream} is unreadable: {e}"))
                })
            })
            .transpose()
    }

    async fn unfinished_batches(&self, pipeline: &str) -> Result<Vec<BatchRecord>> {
        let rows = self.with(|c| {
            let mut st = c.prepare(
                "SELECT stream, batch_id, sync_id, state, manifest FROM batches
                 WHERE pipeline = ?1 AND state IN ('staging', 'staged') ORDER BY stream, batch_id",
            )?;
            let rows = st
                .query_map([pipeline], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(stream, batch_id, sync_id, state, manifest)| {
                let state = BatchState::parse(&state)
                    .ok_or_else(|| Error::internal(format!("state file: unknown batch state {state}")))?;
                let manifest = match manifest {
                    Some(m) => Some(serde_json::from_str(&m).map_err(|e| {
                        Error::internal(format!(
                            "state file: manifest of batch {batch_id} of {stream} is unreadable: {e}"
                        ))
                    })?),
                    None => None,
                };
                Ok(BatchRecord {
                    pipeline: pipeline.to_owned(),
                    stream,
                    batch_id: batch_id as u64,
                    sync_id,
                    state,
                    manifest,
                })
            })
            .collect()
    }

    async fn streams(&self, pipeline: &str) -> Result<Vec<StreamState>> {
        let rows = self.with(|c| {
            let mut st = c.prepare(
                "SELECT stream, mode, table_name, checkpoint_batch_id, checkpoint_position, last_sync_id,
                        last_loaded_at_ms, last_rows, destination_rows, last_error, last_changes
                 FROM streams WHERE pipeline = ?1 ORDER BY stream",
            )?;
            let rows = st
                .query_map([pipeline], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, i64>(7)?,
                        r.get::<_, Option<i64>>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(
                |(
                    stream,
                    mode,
                    table,
                    cp_batch,
                    cp_pos,
                    last_sync_id,
                    loaded_at,
                    last_rows,
                    dest_rows,
                    last_error,
                    changes,
                )| {
                    let position = cp_pos.map(|p| self.position(&stream, &p)).transpose()?;
                    Ok(StreamState {
                        mode: mode.unwrap_or_default(),
                        table: table.unwrap_or_default(),
                        checkpoint: cp_batch.map(|b| Checkpoint { batch_id: b as u64, position }),
                        last_sync_id,
                        last_loaded_at_ms: loaded_at,
                        last_rows: last_rows as u64,
                        destination_rows: dest_rows.map(|r| r as u64),
                        last_error,
                        last_changes: changes.and_then(|c| serde_json::from_str(&c).ok()),
                        stream,
                    })
                },
            )
            .collect()
    }

    async fn feed(&self, pipeline: &str) -> Result<Option<FeedRecord>> {
        let row: Option<(String, Option<String>)> = self.with(|c| {
            c.query_row("SELECT name, confirmed FROM feeds WHERE pipeline = ?1", [pipeline], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })?;
        let Some((name, confirmed)) = row else { return Ok(None) };
        let confirmed = confirmed
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(|e| self.unreadable(&format!("the change feed position of pipeline {pipeline}"), e))?;
        Ok(Some(FeedRecord { name, confirmed }))
    }

    async fn record_feed(&self, pipeline: &str, feed: &FeedRecord) -> Result<()> {
        let confirmed = feed
            .confirmed
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| Error::internal(e.to_string()))?;
        self.with(|c| {
            let tx = c.transaction()?;
            ensure_pipeline(&tx, pipeline)?;
            tx.execute(
                "INSERT INTO feeds (pipeline, name, confirmed, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pipeline) DO UPDATE SET name = ?2, confirmed = ?3, updated_at_ms = ?4",
                params![pipeline, feed.name, confirmed, now_ms()],
            )?;
            tx.commit()
        })
    }

    async fn pipelines(&self) -> Result<Vec<(String, Option<FeedRecord>)>> {
        let names: Vec<String> = self.with(|c| {
            let mut st = c.prepare("SELECT name FROM pipelines ORDER BY name")?;
            let rows = st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let feed = self.feed(&name).await?;
            out.push((name, feed));
        }
        Ok(out)
    }

    async fn forget_feed(&self, pipeline: &str) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM feeds WHERE pipeline = ?1", [pipeline])?;
            tx.execute(
                "UPDATE streams SET checkpoint_position = NULL
                  WHERE pipeline = ?1 AND json_extract(checkpoint_position, '$.mode') IN ('cdc', 'cdc_snapshot')",
                [pipeline],
            )?;
            tx.commit()
        })
    }

    async fn forget_pipeline(&self, pipeline: &str) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            for table in ["feeds", "streams", "batches", "syncs"] {
                tx.execute(&format!("DELETE FROM {table} WHERE pipeline = ?1"), [pipeline])?;
            }
            tx.execute("DELETE FROM pipelines WHERE name = ?1", [pipeline])?;
            tx.commit()
        })
    }

    async fn syncs(&self, pipeline: &str, limit: usize) -> Result<Vec<SyncRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT sync_id, started_at_ms, finished_at_ms, status, rows, error FROM syncs
                 WHERE pipeline = ?1 ORDER BY sync_id DESC LIMIT ?2",
            )?;
            let rows = st
                .query_map(params![pipeline, limit as i64], |r| {
                    Ok(SyncRecord {
                        sync_id: r.get(0)?,
                        pipeline: pipeline.to_owned(),
                        started_at_ms: r.get(1)?,
                        finished_at_ms: r.get(2)?,
                        status: r.get(3)?,
                        rows: r.get::<_, i64>(4)? as u64,
                        error: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
    }
}
