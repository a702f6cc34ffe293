//! Logical replication plumbing: slot and publication management, the
//! `check` readiness report, and a raw pgoutput change stream.
//!
//! The replication protocol itself comes from `pgwire-replication`
//! (tokio-postgres 0.7 has no `CopyBoth`/replication support). It runs the
//! walsender session on a background task, so keep-alive requests from the
//! server are answered while the caller is busy or idle, and WAL does not pile
//! up behind an unanswered walsender.
//!
//! TLS: the crate's own TLS feature turns on rustls' default crypto provider
//! (aws-lc-rs), so it is not used. For every `sslmode` except `disable` (and
//! for Unix sockets) the replication session goes through a small in-process
//! relay instead: the crate connects to a Unix socket in a private temporary
//! directory (mode 0700, removed as soon as the one connection is accepted),
//! and the relay speaks `SSLRequest` + TLS to the server with the same rustls
//! configuration (ring provider, same `sslmode` semantics) as every other
//! connection of this crate.
//!
//! Names: slot and publication are both `simplyload_<pipeline>`
//! ([`slot_name`]). The stream asks pgoutput for `proto_version '1'`,
//! `publication_names '<publication>'` and `binary 'true'` (the crate adds
//! `messages 'true'`; logical decoding messages are dropped here).
//!
//! Confirmation: a position is confirmed to the server only through
//! [`ChangeStream::confirm`], which the caller invokes after the destination
//! committed everything up to it.

use crate::connect::{ConnectOptions, SslMode, pg_error, quote_ident, quote_literal};
use bytes::{BufMut, Bytes, BytesMut};
use pgwire_replication::{PgWireError, ReplicationClient, ReplicationConfig, ReplicationEvent};
use simplyload_core::{Error, ErrorKind, Result};
use std::time::Duration;
use tokio_postgres::Client;
use tokio_postgres::config::Host;

/// A WAL position.
pub type Lsn = u64;

/// `16/B374D848`.
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Parses `16/B374D848`.
pub fn parse_lsn(s: &str) -> Result<Lsn> {
    let bad = || Error::data(format!("`{s}` is not a WAL position (expected hex/hex, such as 16/B374D848)"));
    let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
    let part = |p: &str| -> Result<u64> {
        if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        u64::from_str_radix(p, 16).map_err(|_| bad())
    };
    Ok((part(hi)? << 32) | part(lo)?)
}

/// The slot and publication name of a pipeline whose state began before
/// names carried the state's identity: `simplyload_` + the pipeline name
/// lower-cased, every character outside `[a-z0-9_]` replaced by `_`, cut to
/// 63 bytes (Postgres' identifier limit). Such pipelines go on with it.
pub fn slot_name(pipeline: &str) -> String {
    let mut name = String::from("simplyload_");
    name.push_str(&sanitized(pipeline));
    name.truncate(63);
    name
}

/// The slot and publication name of a pipeline for the state that owns
/// it: `simplyload_<pipeline>_<8 hex of a hash of pipeline_id>`, the
/// pipeline part sanitised like [`slot_name`] and cut so the whole stays
/// within 63 bytes. Two states (two deployments of one config, one pipeline
/// name on two databases of a server) never share a slot.
pub fn owned_slot_name(pipeline: &str, pipeline_id: uuid::Uuid) -> String {
    let tag = simplyload_core::row_id::short_hash(pipeline_id.as_bytes());
    let mut name = String::from("simplyload_");
    let room = 63 - name.len() - 1 - tag.len();
    name.extend(sanitized(pipeline).chars().take(room));
    format!("{name}_{tag}")
}

fn sanitized(pipeline: &str) -> String {
    pipeline
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' })
        .collect()
}

/// Slot names go into replication commands unquoted: only `[a-z0-9_]`.
fn check_slot_name(slot: &str) -> Result<()> {
    if slot.is_empty()
        || slot.len() > 63
        || !slot.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(Error::config(format!(
            "`{slot}` is not a valid replication slot name (1 to 63 characters of a-z, 0-9 and _)"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Readiness (`check`)
// ---------------------------------------------------------------------------

/// What the server and role allow, for `check`. Each missing item adds the
/// exact SQL the customer must run to [`fixes`](Self::fixes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationReadiness {
    pub wal_level_logical: bool,
    /// `rolreplication` or superuser.
    pub can_replicate: bool,
    pub publication_exists: bool,
    /// Tables the publication does not (yet) publish; all of them when it is missing.
    pub publication_missing_tables: Vec<(String, String)>,
    /// Tables whose UPDATE/DELETE cannot be published: no primary key and no
    /// other replica identity. Publishing them would make the customer's own
    /// UPDATE and DELETE statements on them fail.
    pub tables_without_replica_identity: Vec<(String, String)>,
    pub slot: Option<SlotInfo>,
    /// Exact SQL lines to run (as a superuser or the tables' owner), in order.
    pub fixes: Vec<String>,
}

impl ReplicationReadiness {
    /// Nothing to fix: replication can start (the slot may still have to be created).
    pub fn is_ready(&self) -> bool {
        self.fixes.is_empty()
    }
}

/// A replication slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub name: String,
    /// The walsender holding the slot, if any.
    pub active_pid: Option<i32>,
    pub confirmed_flush_lsn: Option<Lsn>,
    pub restart_lsn: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost` (Postgres 13+).
    pub wal_status: Option<String>,
    /// WAL the server keeps for this slot beyond what was confirmed.
    pub lag_bytes: Option<u64>,
    /// `logical` or `physical`.
    pub slot_type: String,
    pub plugin: Option<String>,
    /// The database of a logical slot.
    pub database: Option<String>,
}

/// The server's settings and the role's rights for logical replication.
struct ServerReadiness {
    wal_level: String,
    can_replicate: bool,
    /// SQL that fixes what is missing, in order.
    fixes: Vec<String>,
}

async fn server_readiness(client: &Client) -> Result<ServerReadiness> {
    let row = client
        .query_one(
            "SELECT current_setting('wal_level'),
                    coalesce((SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), false),
                    current_user::text,
                    current_setting('max_replication_slots')::int,
                    current_setting('max_wal_senders')::int",
            &[],
        )
        .await
        .map_err(|e| pg_error(&e, "reading replication settings"))?;
    let wal_level: String = row.get(0);
    let can_replicate: bool = row.get(1);
    let user: String = row.get(2);
    let (max_slots, max_senders): (i32, i32) = (row.get(3), row.get(4));
    let mut fixes = Vec::new();
    if wal_level != "logical" {
        fixes.push("ALTER SYSTEM SET wal_level = logical; -- then restart Postgres".to_owned());
    }
    if max_slots < 1 {
        fixes.push("ALTER SYSTEM SET max_replication_slots = 10; -- then restart Postgres".to_owned());
    }
    if max_senders < 1 {
        fixes.push("ALTER SYSTEM SET max_wal_senders = 10; -- then restart Postgres".to_owned());
    }
    if !can_replicate {
        fixes.push(format!("ALTER ROLE {} REPLICATION;", quote_ident(&user)));
    }
    Ok(ServerReadiness { wal_level, can_replicate, fixes })
}

/// Refuses, before anything is made, a server or role that cannot
/// replicate, with the SQL `check` prints for it.
pub async fn ensure_server_ready(client: &Client) -> Result<()> {
    let ready = server_readiness(client).await?;
    if ready.fixes.is_empty() {
        return Ok(());
    }
    let mut why = Vec::new();
    if ready.wal_level != "logical" {
        why.push(format!("wal_level is {} (logical decoding needs logical)", ready.wal_level));
    }
    if !ready.can_replicate {
        why.push("the role may not replicate".to_owned());
    }
    if why.is_empty() {
        why.push("the server allows no replication slots or WAL senders".to_owned());
    }
    Err(Error::config(format!("this Postgres server cannot stream changes: {}", why.join("; "))).with_hint(format!(
        "run as an administrator: {} (on RDS and Aurora set rds.logical_replication = 1 in the parameter group instead \
         of wal_level); `simplyload check` checks it",
        ready.fixes.join(" ")
    )))
}

/// What the server and role allow for logical replication of `tables` with
/// slot and publication `slot`.
pub async fn readiness(client: &Client, slot: &str, tables: &[(String, String)]) -> Result<ReplicationReadiness> {
    let server = server_readiness(client).await?;
    let publication_exists: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", &[&slot])
        .await
        .map_err(|e| pg_error(&e, "reading publications"))?
        .get(0);
    let wal_level_logical = server.wal_level == "logical";
    let can_replicate = server.can_replicate;
    let mut fixes = server.fixes;

    let tables_without_replica_identity = without_replica_identity(client, tables).await?;
    for (s, t) in &tables_without_replica_identity {
        fixes.push(format!("ALTER TABLE {}.{} REPLICA IDENTITY FULL;", quote_ident(s), quote_ident(t)));
    }

    let publication_missing_tables =
        if publication_exists { unpublished(client, slot, tables).await? } else { tables.to_vec() };
    if !publication_exists {
        fixes.push(create_publication_sql(slot, tables));
    } else if !publication_missing_tables.is_empty() {
        fixes.push(add_tables_sql(slot, &publication_missing_tables));
    }

    let slot_info = slot_info(client, slot).await?;
    if let Some(info) = &slot_info {
        let db: String = client
            .query_one("SELECT current_database()::text", &[])
            .await
            .map_err(|e| pg_error(&e, "reading the database name"))?
            .get(0);
        let wrong = info.slot_type != "logical"
            || info.plugin.as_deref() != Some("pgoutput")
            || info.database.as_deref() != Some(db.as_str());
        if wrong || info.wal_status.as_deref() == Some("lost") {
            // A slot of that name that we cannot use, or one whose WAL is gone:
            // it must be dropped (the next sync then starts with a fresh snapshot).
            fixes.push(format!("SELECT pg_drop_replication_slot({});", quote_literal(slot)));
        }
    }

    Ok(ReplicationReadiness {
        wal_level_logical,
        can_replicate,
        publication_exists,
        publication_missing_tables,
        tables_without_replica_identity,
        slot: slot_info,
        fixes,
    })
}

fn table_list(tables: &[(String, String)]) -> String {
    tables.iter().map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t))).collect::<Vec<_>>().join(", ")
}

fn create_publication_sql(name: &str, tables: &[(String, String)]) -> String {
    if tables.is_empty() {
        format!("CREATE PUBLICATION {};", quote_ident(name))
    } else {
        format!("CREATE PUBLICATION {} FOR TABLE {};", quote_ident(name), table_list(tables))
    }
}

fn add_tables_sql(name: &str, tables: &[(String, String)]) -> String {
    format!("ALTER PUBLICATION {} ADD TABLE {};", quote_ident(name), table_list(tables))
}

/// `tables` the publication does not publish (explicitly, through a schema, or FOR ALL TABLES).
async fn unpublished(client: &Client, publication: &str, tables: &[(String, String)]) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text
               FROM pg_publication p
               JOIN pg_publication_rel pr ON pr.prpubid = p.oid
               JOIN pg_class c ON c.oid = pr.prrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE p.pubname = $1
             UNION
             SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1",
            &[&publication],
        )
        .await
        .map_err(|e| pg_error(&e, &format!("reading the tables of publication {publication}")))?;
    let published: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(tables.iter().filter(|t| !published.contains(t)).cloned().collect())
}

/// Tables (of those that exist) without a usable replica identity.
pub async fn without_replica_identity(client: &Client, tables: &[(String, String)]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (schema, table) in tables {
        let row = client
            .query_opt(
                "SELECT c.relreplident::text,
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2",
                &[schema, table],
            )
            .await
            .map_err(|e| pg_error(&e, &format!("reading the replica identity of {schema}.{table}")))?;
        let Some(row) = row else { continue };
        let ident: String = row.get(0);
        let has_pk: bool = row.get(1);
        let has_index: bool = row.get(2);
        let ok = match ident.as_str() {
            "f" => true,
            "d" => has_pk,
            "i" => has_index,
            _ => false,
        };
        if !ok {
            out.push((schema.clone(), table.clone()));
        }
    }
    Ok(out)
}

/// The error for tables that cannot be published, with the SQL that fixes it.
pub fn no_replica_identity(tables: &[(String, String)]) -> Error {
    let fix: Vec<String> = tables
        .iter()
        .map(|(s, t)| format!("ALTER TABLE {}.{} REPLICA IDENTITY FULL;", quote_ident(s), quote_ident(t)))
        .collect();
    Error::config(format!(
        "cannot replicate {}: no primary key or replica identity, so Postgres cannot publish its updates and deletes \
         (and would refuse them once the table is in a publication)",
        table_list(tables)
    ))
    .with_hint(format!("add a primary key, or run: {}", fix.join(" ")))
}

/// `CREATE PUBLICATION <name> FOR TABLE …` when it is missing, or `ALTER
/// PUBLICATION … ADD TABLE` for the tables it lacks. Refuses tables without a
/// replica identity (publishing them would break the customer's UPDATE and
/// DELETE statements). When the role may not, the error carries the exact SQL.
pub async fn ensure_publication(client: &Client, name: &str, tables: &[(String, String)]) -> Result<()> {
    let no_identity = without_replica_identity(client, tables).await?;
    if !no_identity.is_empty() {
        return Err(no_replica_identity(&no_identity));
    }
    let exists: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", &[&name])
        .await
        .map_err(|e| pg_error(&e, "reading publications"))?
        .get(0);
    let sql = if !exists {
        create_publication_sql(name, tables)
    } else {
        let missing = unpublished(client, name, tables).await?;
        if missing.is_empty() {
            return Ok(());
        }
        add_tables_sql(name, &missing)
    };
    tracing::debug!(sql = %sql, "publication");
    client.batch_execute(&sql).await.map_err(|e| {
        let err = pg_error(&e, &format!("cannot {} publication {name}", if exists { "extend" } else { "create" }));
        if err.kind() == ErrorKind::Permission {
            err.with_hint(format!("run this as the tables' owner or a superuser: {sql}"))
        } else {
            err
        }
    })
}

// ---------------------------------------------------------------------------
// Slots
// ---------------------------------------------------------------------------

/// The slot `slot`, if it exists.
pub async fn slot_info(client: &Client, slot: &str) -> Result<Option<SlotInfo>> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| pg_error(&e, "reading the server version"))?
        .get(0);
    let wal_status = if version >= 130000 { "wal_status::text" } else { "NULL::text" };
    let sql = format!(
        "SELECT slot_name::text, active_pid, confirmed_flush_lsn::text, restart_lsn::text, {wal_status},
                pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
                                confirmed_flush_lsn)::bigint,
                slot_type::text, plugin::text, database::text
           FROM pg_replication_slots WHERE slot_name = $1"
    );
    let row = client
        .query_opt(&sql, &[&slot])
        .await
        .map_err(|e| pg_error(&e, &format!("reading replication slot {slot}")))?;
    let Some(row) = row else { return Ok(None) };
    let lsn = |i: usize| -> Result<Option<Lsn>> { row.get::<_, Option<String>>(i).map(|s| parse_lsn(&s)).transpose() };
    Ok(Some(SlotInfo {
        name: row.get(0),
        active_pid: row.get(1),
        confirmed_flush_lsn: lsn(2)?,
        restart_lsn: lsn(3)?,
        wal_status: row.get(4),
        lag_bytes: row.get::<_, Option<i64>>(5).map(|b| b.max(0) as u64),
        slot_type: row.get(6),
        plugin: row.get(7),
        database: row.get(8),
    }))
}

/// Drops the slot if it exists; a walsender still holding it (ours, after a
/// crash) is ended first.
pub async fn drop_slot(client: &Client, slot: &str) -> Result<()> {
    if slot_info(client, slot).await?.is_none() {
        return Ok(());
    }
    release_stale_slot(client, slot).await?;
    client
        .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map_err(|e| pg_error(&e, &format!("cannot drop replication slot {slot}")))?;
    Ok(())
}

/// Ends a walsender still holding OUR slot (after a crash the old session can
/// outlive its process for a while): `pg_terminate_backend(active_pid)`, then
/// waits (up to ~10 s) until the slot is inactive.
pub async fn release_stale_slot(client: &Client, slot: &str) -> Result<()> {
    let Some(pid) = slot_holder(client, slot).await? else { return Ok(()) };
    tracing::info!(slot, pid, "ending the stale walsender that still holds the replication slot");
    client.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.map_err(|e| {
        let err = pg_error(&e, &format!("cannot end the session (PID {pid}) that still holds replication slot {slot}"));
        if err.kind() == ErrorKind::Permission {
            err.with_hint(format!("a superuser can run: SELECT pg_terminate_backend({pid});"))
        } else {
            err
        }
    })?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match slot_holder(client, slot).await? {
            None => return Ok(()),
            Some(p) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::new(ErrorKind::Busy, format!("replication slot {slot} is still in use by PID {p}"))
                    .with_hint("another sync of this pipeline may be running; try again later"));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn slot_holder(client: &Client, slot: &str) -> Result<Option<i32>> {
    client
        .query_opt("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .map(|r| r.and_then(|r| r.get::<_, Option<i32>>(0)))
        .map_err(|e| pg_error(&e, &format!("reading replication slot {slot}")))
}

/// A slot just created, with the snapshot exported at its consistent point.
/// The replication session that created it stays open while this value
/// lives: the snapshot is valid only until then. Import it with
/// `BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '<name>';`
/// on a normal connection (after the import the snapshot no longer depends on
/// this session), then [`release`](Self::release).
pub struct CreatedSlot {
    pub slot: String,
    pub consistent_point: Lsn,
    pub snapshot_name: String,
    /// The PID of the replication session holding the snapshot.
    pub backend_pid: i32,
    session: ReplicationClient,
    _relay: Option<Relay>,
}

impl std::fmt::Debug for CreatedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedSlot")
            .field("slot", &self.slot)
            .field("consistent_point", &format_lsn(self.consistent_point))
            .field("snapshot_name", &self.snapshot_name)
            .field("backend_pid", &self.backend_pid)
            .finish()
    }
}

impl CreatedSlot {
    /// Ends the replication session (a temporary slot goes with it).
    pub async fn release(self) -> Result<()> {
        let CreatedSlot { session, _relay, .. } = self;
        // Dropping a session that never started replication sends Terminate.
        drop(session);
        // Give the worker the chance to write it before the relay (if any) goes.
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// Creates the logical slot `slot` (pgoutput) with `EXPORT_SNAPSHOT` and
/// keeps its replication session open (see [`CreatedSlot`]). `temporary`: a
/// slot dropped when that session ends.
pub async fn create_slot(opts: &ConnectOptions, slot: &str, temporary: bool) -> Result<CreatedSlot> {
    check_slot_name(slot)?;
    let (cfg, relay) = session_config(opts, slot, slot).await?;
    let what = format!("cannot create replication slot {slot}");
    let mut session =
        ReplicationClient::connect_gated(cfg).await.map_err(|e| wire_error(e, &what, opts, relay.as_ref()))?;
    let timeout = connect_timeout(opts);
    let pid = tokio::time::timeout(timeout, backend_pid(&mut session))
        .await
        .map_err(|_| timed_out(opts, &what))?
        .map_err(|e| wire_error(e, &what, opts, relay.as_ref()))?;
    let temp = if temporary { " TEMPORARY" } else { "" };
    let rows = session
        .simple_query(&format!("CREATE_REPLICATION_SLOT {slot}{temp} LOGICAL pgoutput EXPORT_SNAPSHOT"))
        .await
        .map_err(|e| wire_error(e, &what, opts, relay.as_ref()))?;
    let row = rows
        .into_iter()
        .next()
        .filter(|r| r.len() >= 3)
        .ok_or_else(|| Error::internal(format!("{what}: CREATE_REPLICATION_SLOT returned no slot")))?;
    let text = |i: usize| row[i].as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    let consistent_point = parse_lsn(&text(1))?;
    let snapshot_name = text(2);
    if snapshot_name.is_empty() {
        return Err(Error::internal(format!("{what}: the server exported no snapshot")));
    }
    tracing::info!(slot, temporary, consistent_point = %format_lsn(consistent_point), "created replication slot");
    Ok(CreatedSlot { slot: slot.to_owned(), consistent_point, snapshot_name, backend_pid: pid, session, _relay: relay })
}

async fn backend_pid(session: &mut ReplicationClient) -> std::result::Result<i32, PgWireError> {
    let rows = session.simple_query("SELECT pg_backend_pid()").await?;
    rows.first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|b| std::str::from_utf8(&b).ok().and_then(|s| s.parse().ok()))
        .ok_or_else(|| PgWireError::Protocol("SELECT pg_backend_pid() returned no PID".into()))
}

// ---------------------------------------------------------------------------
// The change stream
// ---------------------------------------------------------------------------

/// How often a raised confirmed position is sent (at most).
const STATUS_INTERVAL: Duration = Duration::from_millis(100);
/// How long the session may stay silent before it sends a status update on its own.
const IDLE_WAKEUP: Duration = Duration::from_secs(1);
/// Attempts to start when the slot is still held by a stale walsender.
const START_ATTEMPTS: u32 = 5;

/// A running pgoutput stream from a slot.
///
/// By default it drains up to the server's WAL end (flushed position) read
/// when the stream started: [`next`](Self::next) returns `None` once every
/// transaction committed before that point was delivered and the stream is
/// idle. [`set_stop_at`](Self::set_stop_at) moves that point, or removes it
/// to follow the WAL indefinitely.
pub struct ChangeStream {
    client: ReplicationClient,
    slot: String,
    pid: i32,
    start: Lsn,
    wal_end_at_start: Lsn,
    stop_at: Option<Lsn>,
    in_txn: bool,
    /// A commit at or past `stop_at` was delivered.
    reached: bool,
    finished: bool,
    /// The last keep-alive (without reply request) seen while idle, to tell a
    /// walsender waiting for WAL from one that is only busy.
    idle_keepalive: Option<Lsn>,
    /// A logical decoding message (prefix, content) written into the WAL
    /// at the stop point: the stream is drained exactly when it arrives
    /// (see [`ChangeStream::set_stop_marker`]).
    marker: Option<(String, Bytes)>,
    marker_reached: bool,
    confirmed: Lsn,
    opts: ConnectOptions,
    _relay: Option<Relay>,
}

impl std::fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStream")
            .field("slot", &self.slot)
            .field("pid", &self.pid)
            .field("start", &format_lsn(self.start))
            .field("stop_at", &self.stop_at.map(format_lsn))
            .field("confirmed", &format_lsn(self.confirmed))
            .finish()
    }
}

impl ChangeStream {
    /// Starts streaming slot `slot` from `start` (the position the caller
    /// holds as durably applied, normally the slot's confirmed point; 0 takes
    /// the slot's `confirmed_flush_lsn`). A slot still held by a stale
    /// walsender of ours is released and the start retried with backoff.
    pub async fn start(opts: &ConnectOptions, slot: &str, publication: &str, start: Lsn) -> Result<ChangeStream> {
        check_slot_name(slot)?;
        let mut start = start;
        if start == 0 {
            let client = opts.connect().await?;
            start = slot_info(&client, slot)
                .await?
                .and_then(|s| s.confirmed_flush_lsn)
                .ok_or_else(|| Error::not_found(format!("replication slot {slot} does not exist")))?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(opts, slot, publication, start).await {
                Ok(s) => return Ok(s),
                Err(e) if e.kind() == ErrorKind::Busy && attempt < START_ATTEMPTS => {
                    tracing::warn!(slot, attempt, error = %e, "replication slot busy; releasing it and retrying");
                    let client = opts.connect().await?;
                    if let Err(e) = release_stale_slot(&client, slot).await {
                        tracing::warn!(slot, error = %e, "could not release the replication slot");
                    }
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_start(opts: &ConnectOptions, slot: &str, publication: &str, start: Lsn) -> Result<ChangeStream> {
        let (cfg, relay) = session_config(opts, slot, publication).await?;
        let cfg = cfg
            .with_start_lsn(pgwire_replication::Lsn(start))
            .with_ack_lsn(pgwire_replication::Lsn(start))
            .with_binary(true)
            .with_status_interval(STATUS_INTERVAL)
            .with_wakeup_interval(IDLE_WAKEUP)
            .with_buffer_size(1024);
        let what = format!("cannot start replication from slot {slot}");
        let err = |e: PgWireError| wire_error(e, &what, opts, relay.as_ref());
        let mut client = ReplicationClient::connect_gated(cfg).await.map_err(err)?;
        let timeout = connect_timeout(opts);
        let (pid, system) = tokio::time::timeout(timeout, async {
            let pid = backend_pid(&mut client).await?;
            let system = client.identify_system().await?;
            client.start().await?;
            client.wait_started().await?;
            Ok::<_, PgWireError>((pid, system))
        })
        .await
        .map_err(|_| timed_out(opts, &what))?
        .map_err(err)?;
        let wal_end = system.xlogpos.as_u64();
        tracing::debug!(slot, pid, start = %format_lsn(start), wal_end = %format_lsn(wal_end), "replication started");
        Ok(ChangeStream {
            client,
            slot: slot.to_owned(),
            pid,
            start,
            wal_end_at_start: wal_end,
            stop_at: Some(wal_end),
            in_txn: false,
            reached: false,
            finished: wal_end <= start,
            idle_keepalive: None,
            marker: None,
            marker_reached: false,
            confirmed: start,
            opts: opts.clone(),
            _relay: relay,
        })
    }

    /// The server's flushed WAL position when the stream started.
    pub fn wal_end_at_start(&self) -> Lsn {
        self.wal_end_at_start
    }

    /// The position the stream started from.
    pub fn start_lsn(&self) -> Lsn {
        self.start
    }

    /// The walsender's PID.
    pub fn backend_pid(&self) -> i32 {
        self.pid
    }

    /// The last position confirmed to the server.
    pub fn confirmed(&self) -> Lsn {
        self.confirmed
    }

    /// Where [`next`](Self::next) ends: after the transactions committed
    /// before `lsn` (default: [`wal_end_at_start`](Self::wal_end_at_start),
    /// the flushed WAL). A point beyond the WAL flushed at start (e.g.
    /// `pg_current_wal_insert_lsn()` with asynchronous commits) is waited for
    /// until the server has flushed and decoded past it. `None`: follow the
    /// WAL until [`stop`](Self::stop).
    pub fn set_stop_at(&mut self, lsn: Option<Lsn>) {
        self.stop_at = lsn;
        self.reached = false;
        self.idle_keepalive = None;
        self.finished = matches!(lsn, Some(l) if l <= self.start);
    }

    /// Whether the stream ended at its marker (see [`set_stop_marker`](Self::set_stop_marker)):
    /// everything committed before the marker's position was delivered.
    pub fn reached_marker(&self) -> bool {
        self.marker_reached
    }

    /// Ends the stream exactly where a non-transactional logical decoding
    /// message with this prefix and content was written (at `lsn`, from
    /// `pg_logical_emit_message(false, prefix, content)`): the walsender
    /// sends it once it has decoded — and sent — every transaction that
    /// committed before it. Keep-alives then no longer end the stream: a
    /// walsender busy decoding a large transaction pings with a position it
    /// has read but not yet sent.
    pub fn set_stop_marker(&mut self, lsn: Lsn, prefix: &str, content: &[u8]) {
        self.marker = Some((prefix.to_owned(), Bytes::copy_from_slice(content)));
        self.set_stop_at(Some(lsn));
        self.finished = false;
    }

    /// The next raw pgoutput message with its WAL position, or `None` when the
    /// stream is drained up to its stop point (or was stopped).
    ///
    /// The position is the `XLogData` start of the message; for a Commit (`C`)
    /// that is the transaction's end LSN — what to [`confirm`](Self::confirm)
    /// once the destination committed it. The library underneath delivers
    /// Begin and Commit already parsed; they are re-encoded here byte for byte
    /// as pgoutput sends them (proto 1), and a Begin (`B`) carries its
    /// transaction's final LSN (its commit record) as position. Relation
    /// (`R`) and type (`Y`) messages come with the position the server gives
    /// them, which can be 0. Logical decoding messages (`M`) are not delivered.
    pub async fn next(&mut self) -> Result<Option<(Lsn, Bytes)>> {
        loop {
            if self.finished || (self.reached && !self.in_txn) {
                self.finished = true;
                return Ok(None);
            }
            let event =
                self.client.recv().await.map_err(|e| {
                    wire_error(e, &format!("replication from slot {} failed", self.slot), &self.opts, None)
                })?;
            let Some(event) = event else {
                self.finished = true;
                return Ok(None);
            };
            match event {
                ReplicationEvent::Begin { final_lsn, xid, commit_time_micros } => {
                    self.in_txn = true;
                    self.idle_keepalive = None;
                    let mut b = BytesMut::with_capacity(21);
                    b.put_u8(b'B');
                    b.put_u64(final_lsn.as_u64());
                    b.put_i64(commit_time_micros);
                    b.put_u32(xid);
                    return Ok(Some((final_lsn.as_u64(), b.freeze())));
                }
                ReplicationEvent::Commit { lsn, end_lsn, commit_time_micros } => {
                    self.in_txn = false;
                    self.idle_keepalive = None;
                    if self.stop_at.is_some_and(|s| end_lsn.as_u64() >= s) {
                        self.reached = true;
                    }
                    let mut b = BytesMut::with_capacity(26);
                    b.put_u8(b'C');
                    b.put_u8(0); // flags: none defined
                    b.put_u64(lsn.as_u64());
                    b.put_u64(end_lsn.as_u64());
                    b.put_i64(commit_time_micros);
                    return Ok(Some((end_lsn.as_u64(), b.freeze())));
                }
                ReplicationEvent::XLogData { wal_start, data, .. } => {
                    self.idle_keepalive = None;
                    return Ok(Some((wal_start.as_u64(), data)));
                }
                ReplicationEvent::KeepAlive { wal_end, reply_requested, .. } => {
                    // Answered by the session's worker; here it only tells how far
                    // the walsender got.
                    if self.marker.is_some() {
                        continue;
                    }
                    let Some(stop) = self.stop_at else { continue };
                    if self.in_txn {
                        continue;
                    }
                    let wal_end = wal_end.as_u64();
                    if wal_end >= stop {
                        self.finished = true;
                    } else if !reply_requested && stop <= self.wal_end_at_start {
                        // A walsender only pings unasked while it waits for WAL beyond
                        // what was flushed (which was at least `stop` when we started):
                        // everything committed before `stop` has been sent. Twice at
                        // the same place rules out other pings. (A stop point beyond
                        // the flushed WAL at start ends only once the walsender
                        // reports having read past it.)
                        if self.idle_keepalive == Some(wal_end) {
                            self.finished = true;
                        } else {
                            self.idle_keepalive = Some(wal_end);
                        }
                    }
                }
                ReplicationEvent::Message { prefix, content, .. } => {
                    if self.marker.as_ref().is_some_and(|(p, c)| *p == prefix && *c == content) {
                        self.finished = true;
                        self.marker_reached = true;
                        return Ok(None);
                    }
                }
                ReplicationEvent::StoppedAt { .. } => {}
            }
        }
    }

    /// Tells the server everything up to `lsn` is durably applied (a standby
    /// status update with write = flush = apply = `lsn`), and waits until that
    /// update was sent. The server may then recycle the WAL before it.
    /// Keep-alive requests are answered with the last confirmed position.
    pub async fn confirm(&mut self, lsn: Lsn) -> Result<()> {
        if lsn <= self.confirmed {
            return Ok(());
        }
        self.client.update_applied_lsn(pgwire_replication::Lsn(lsn));
        let metrics = self.client.metrics();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while metrics.last_applied_lsn().as_u64() < lsn {
            if !self.client.is_running() {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!(
                        "the replication connection of slot {} closed before {} was confirmed",
                        self.slot,
                        format_lsn(lsn)
                    ),
                ));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!("confirming {} to replication slot {} timed out", format_lsn(lsn), self.slot),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.confirmed = lsn;
        Ok(())
    }

    /// Ends the stream cleanly (CopyDone), then waits (up to ~10 s) until the
    /// server released the slot, so the confirmed position is visible and the
    /// next start does not find the slot busy.
    pub async fn stop(self) -> Result<()> {
        let ChangeStream { mut client, slot, pid, opts, _relay, .. } = self;
        let result = client.shutdown().await;
        drop(client);
        let waited = async {
            let c = opts.connect().await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let held = c
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active_pid = $2)",
                        &[&slot, &pid],
                    )
                    .await
                    .map_err(|e| pg_error(&e, "reading replication slots"))?
                    .get::<_, bool>(0);
                if !held || tokio::time::Instant::now() >= deadline {
                    return Ok::<_, Error>(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if let Err(e) = waited.await {
            tracing::debug!(slot = %slot, error = %e, "could not wait for the slot to be released");
        }
        match result {
            Ok(()) => Ok(()),
            // The server closing the connection after CopyDone is not a failure.
            Err(PgWireError::Io(_)) => Ok(()),
            Err(e) => Err(wire_error(e, &format!("stopping replication from slot {slot}"), &opts, None)),
        }
    }
}

// ---------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------

fn connect_timeout(opts: &ConnectOptions) -> Duration {
    opts.config.get_connect_timeout().copied().unwrap_or(Duration::from_secs(15)).max(Duration::from_secs(1))
}

fn timed_out(opts: &ConnectOptions, what: &str) -> Error {
    Error::new(ErrorKind::Transient, format!("{what}: no answer from {} in time", opts.target()))
        .with_hint(format!("check that Postgres is reachable at the host and port in sources.{}.url", opts.source))
}

/// The replication session's settings from the source's connection options;
/// with a TLS relay unless `sslmode=disable` or a Unix socket.
async fn session_config(
    opts: &ConnectOptions,
    slot: &str,
    publication: &str,
) -> Result<(ReplicationConfig, Option<Relay>)> {
    let config = &opts.config;
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => Target::Tcp(h.clone()),
        Some(Host::Unix(p)) => Target::Unix(p.display().to_string()),
        None => match config.get_hostaddrs().first() {
            Some(ip) => Target::Tcp(ip.to_string()),
            None => Target::Tcp("localhost".into()),
        },
    };
    let password = match config.get_password() {
        Some(p) => String::from_utf8(p.to_vec())
            .map_err(|_| Error::config(format!("sources.{}.url: the password is not UTF-8", opts.source)))?,
        None => String::new(),
    };
    let (host, relay) = match host {
        Target::Unix(dir) => (dir, None),
        Target::Tcp(h) if opts.ssl == SslMode::Disable => (h, None),
        Target::Tcp(h) => {
            let relay = Relay::start(opts, &h, port)?;
            (relay.dir(), Some(relay))
        }
    };
    let mut cfg = ReplicationConfig::new(host, opts.user(), password, opts.database(), slot, publication)
        .with_port(port)
        .with_application_name(config.get_application_name().unwrap_or("simplyload"));
    if let Some(o) = config.get_options() {
        cfg = cfg.with_options(o);
    }
    Ok((cfg, relay))
}

enum Target {
    Tcp(String),
    Unix(String),
}

/// Turns a replication-session error into ours (never with the password).
fn wire_error(e: PgWireError, what: &str, opts: &ConnectOptions, relay: Option<&Relay>) -> Error {
    // A failed TLS relay shows up as a closed socket: its own error says why.
    if let Some(err) = relay.and_then(Relay::failure) {
        return err.context(what);
    }
    let target = opts.target();
    match e {
        PgWireError::Server(msg) => {
            let code = msg
                .split_once("(SQLSTATE ")
                .map(|(_, rest)| rest.chars().take(5).collect::<String>())
                .unwrap_or_default();
            let kind = match code.as_str() {
                "28P01" | "28000" => ErrorKind::Auth,
                "42501" => ErrorKind::Permission,
                "42704" | "3D000" => ErrorKind::NotFound,
                "55006" | "42710" | "55P03" => ErrorKind::Busy,
                "53400" => ErrorKind::Config,
                c if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") => ErrorKind::Transient,
                _ => ErrorKind::Internal,
            };
            let err = Error::new(kind, format!("{what}: {msg}"));
            match kind {
                ErrorKind::Permission if msg.contains("replication") => err.with_hint(format!(
                    "the role needs the REPLICATION attribute; a superuser can run: ALTER ROLE {} REPLICATION;",
                    quote_ident(&opts.user())
                )),
                ErrorKind::Auth if msg.contains("replication") => err.with_hint(format!(
                    "pg_hba.conf must allow replication connections for {target} (a `host replication <user> <address> scram-sha-256` line)"
                )),
                ErrorKind::Auth => err.with_hint(format!("check the user and password in sources.{}.url", opts.source)),
                ErrorKind::Config if msg.contains("max_") => {
                    err.with_hint("raise max_replication_slots / max_wal_senders (ALTER SYSTEM SET …; then restart Postgres)")
                }
                _ => err,
            }
        }
        PgWireError::Auth(msg) => {
            Error::new(ErrorKind::Auth, format!("{what}: authentication failed at {target}: {msg}"))
                .with_hint(format!("check the user and password in sources.{}.url", opts.source))
        }
        PgWireError::Io(io) => Error::new(ErrorKind::Transient, format!("{what}: connection to {target} lost: {io}"))
            .with_hint(format!(
                "check that Postgres is running and reachable at the host and port in sources.{}.url",
                opts.source
            )),
        PgWireError::Tls(msg) => Error::new(ErrorKind::Transient, format!("{what}: TLS with {target}: {msg}")),
        PgWireError::MessageTooLarge { payload_bytes, limit_bytes } => Error::data(format!(
            "{what}: a replication message of {payload_bytes} bytes is over the limit of {limit_bytes}"
        )),
        other => Error::internal(format!("{what}: {other}")),
    }
}

// ---------------------------------------------------------------------------
// TLS relay
// ---------------------------------------------------------------------------

/// Carries one replication session from a Unix socket in a private temporary
/// directory to the server, over TLS negotiated with our rustls configuration.
struct Relay {
    dir: String,
    failed: std::sync::Arc<std::sync::Mutex<Option<Error>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    fn start(opts: &ConnectOptions, host: &str, port: u16) -> Result<Relay> {
        let tls = opts.tls_config()?;
        let dir = tempfile::Builder::new().prefix("simplyload-repl-").tempdir()?;
        let listener = tokio::net::UnixListener::bind(dir.path().join(format!(".s.PGSQL.{port}")))?;
        let dir_name = dir.path().display().to_string();
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
        let report = failed.clone();
        let timeout = connect_timeout(opts);
        let ssl = opts.ssl;
        let host = host.to_owned();
        let target = opts.target();
        let task = tokio::spawn(async move {
            let accepted = tokio::time::timeout(timeout, listener.accept()).await;
            // One connection only: nobody else can come in through the socket.
            drop(listener);
            drop(dir);
            let mut local = match accepted {
                Ok(Ok((local, _))) => local,
                _ => return, // the session never came; it reports its own error
            };
            let result = relay(&mut local, &host, port, ssl, tls, timeout, &target).await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "replication TLS relay failed");
                // Recorded before the session sees its socket close.
                *report.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
            drop(local);
        });
        Ok(Relay { dir: dir_name, failed, task })
    }

    fn dir(&self) -> String {
        self.dir.clone()
    }

    /// Why the relay failed, if it did.
    fn failure(&self) -> Option<Error> {
        let guard = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|e| {
            let mut err = Error::new(e.kind(), e.message().to_owned());
            if let Some(h) = e.hint() {
                err = err.with_hint(h.to_owned());
            }
            err
        })
    }
}

/// Connects to the server, negotiates TLS, and carries bytes both ways until
/// either side closes.
async fn relay(
    local: &mut tokio::net::UnixStream,
    host: &str,
    port: u16,
    ssl: SslMode,
    tls: rustls::ClientConfig,
    timeout: Duration,
    target: &str,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut remote = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
        .await
        .map_err(|_| Error::new(ErrorKind::Transient, format!("connecting to {target} timed out")))?
        .map_err(|e| Error::new(ErrorKind::Transient, format!("cannot connect to {target}: {e}")))?;
    remote.set_nodelay(true)?;
    // SSLRequest: length 8, code 80877103.
    remote.write_all(&[0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F]).await?;
    let mut answer = [0u8; 1];
    remote.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {
            use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
            let mut make = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
            let connect = MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut make, host)
                .map_err(|e| Error::internal(format!("TLS setup: {e}")))?;
            let mut secure = tokio::time::timeout(timeout, connect.connect(remote))
                .await
                .map_err(|_| Error::new(ErrorKind::Transient, format!("TLS handshake with {target} timed out")))?
                .map_err(|e| Error::new(ErrorKind::Transient, format!("TLS handshake with {target} failed: {e}")))?;
            let _ = tokio::io::copy_bidirectional(local, &mut secure).await;
            Ok(())
        }
        b'N' if ssl == SslMode::Prefer => {
            let _ = tokio::io::copy_bidirectional(local, &mut remote).await;
            Ok(())
        }
        b'N' => Err(Error::config(format!("the server at {target} does not accept TLS connections"))
            .with_hint("set sslmode=prefer or sslmode=disable in the URL, or enable ssl on the server")),
        other => Err(Error::new(
            ErrorKind::Transient,
            format!("unexpected answer 0x{other:02x} from {target} to the TLS request"),
        )),
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Still waiting for a session that never came: stop listening. A relay
        // that carries a session ends with it.
        if !self.task.is_finished() && std::fs::metadata(&self.dir).is_ok() {
            self.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names() {
        let lsn = parse_lsn("16/B374D848").unwrap();
        assert_eq!(lsn, 0x16_B374_D848);
        assert_eq!(format_lsn(lsn), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
        assert!(parse_lsn("16B374D848").is_err() && parse_lsn("x/1").is_err());
        assert_eq!(slot_name("orders"), "simplyload_orders");
        let id = uuid::Uuid::from_u128(7);
        let owned = owned_slot_name("orders", id);
        assert!(owned.starts_with("simplyload_orders_") && owned.len() == "simplyload_orders_".len() + 8, "{owned}");
        assert_ne!(owned, owned_slot_name("orders", uuid::Uuid::from_u128(8)), "another state, another slot");
        let long = owned_slot_name(&"Ü".repeat(100), id);
        assert_eq!(long.len(), 63);
        assert!(check_slot_name(&long).is_ok() && long.ends_with(&owned[owned.len() - 9..]));
        assert_eq!(slot_name("Shop-Orders v2"), "simplyload_shop_orders_v2");
        assert_eq!(slot_name("café"), "simplyload_caf_");
        let long = slot_name(&"x".repeat(100));
        assert_eq!(long.len(), 63);
        assert!(long.starts_with("simplyload_xxx"));
        assert!(check_slot_name(&slot_name("Ünïcode / weird \"name\"")).is_ok());
        assert!(check_slot_name("Bad-Name").is_err());
    }

    #[test]
    fn lsn_round_trip() {
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert_eq!(parse_lsn("0/0").unwrap(), 0);
        for lsn in [0u64, 1, 0xFFFF_FFFF, 0x1_0000_0000, u64::MAX, 0x0000_0001_0000_00AB] {
            assert_eq!(parse_lsn(&format_lsn(lsn)).unwrap(), lsn);
        }
        assert_eq!(parse_lsn("16/b374d848").unwrap(), 0x16_B374_D848);
        for bad in ["", "16", "/1", "1/", "x/1", "1/123456789", "1/2/3", "-1/0"] {
            assert!(parse_lsn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn publication_sql_quotes_identifiers() {
        let t = vec![("public".to_owned(), "Orders".to_owned()), ("s\"x".to_owned(), "t".to_owned())];
        assert_eq!(
            create_publication_sql("simplyload_p", &t),
            r#"CREATE PUBLICATION "simplyload_p" FOR TABLE "public"."Orders", "s""x"."t";"#
        );
        assert_eq!(
            add_tables_sql("simplyload_p", &t[..1]),
            r#"ALTER PUBLICATION "simplyload_p" ADD TABLE "public"."Orders";"#
        );
    }
}
