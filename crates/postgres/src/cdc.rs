//! Change data capture for the Postgres source (DESIGN.md §6): the
//! pipeline's publication and slot, the consistent start, and the change
//! read — pgoutput messages decoded with our own decoder (`pgoutput.rs`)
//! into Arrow with the same value decoders as the snapshot, each change
//! versioned by its commit LSN and position.

use crate::PostgresSource;
use crate::connect::{pg_error, quote_ident, quote_literal};
use crate::pgoutput::{self, ChangeBuilder, ChangeColumns, Datum, Message, Relation, Tuple};
use crate::replication::{self, ChangeStream, CreatedSlot, Lsn, format_lsn, parse_lsn};
use crate::types::ReadAs;
use simplyload_core::cdc::stage_changes;
use simplyload_core::config::OnUnrepresentable;
use simplyload_core::feed::{FeedOwner, FeedStatus, PrepareFeed, Prepared};
use simplyload_core::version::version;
use simplyload_core::{
    ChangeEvent, ChangeFeed, ChangesRead, ChangesRequest, CheckReport, Error, ErrorKind, FeedPosition, FeedStart,
    Result, StreamName, TableSpec,
};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// The version of the `seq`-th change of the transaction that committed at
/// `commit_lsn` (DESIGN.md §3): later commits win, then later changes.
pub fn change_version(commit_lsn: Lsn, seq: u32) -> i128 {
    version(commit_lsn, seq)
}

/// A WAL position as a change-feed position: its version is that of every
/// row read at it (a snapshot at a slot's consistent point).
pub fn feed_position(lsn: Lsn) -> FeedPosition {
    FeedPosition { version: version(lsn, 0), token: format_lsn(lsn) }
}

/// The WAL position of a change-feed position this source made.
pub fn position_lsn(position: &FeedPosition) -> Result<Lsn> {
    parse_lsn(&position.token)
}

/// A slot just made, holding its exported snapshot until released.
struct PgStart(CreatedSlot);

#[async_trait::async_trait]
impl FeedStart for PgStart {
    fn position(&self) -> FeedPosition {
        feed_position(self.0.consistent_point)
    }

    fn snapshot(&self) -> Option<String> {
        Some(self.0.snapshot_name.clone())
    }

    async fn release(self: Box<Self>) -> Result<()> {
        self.0.release().await
    }
}

fn tables_of(tables: &[TableSpec]) -> Vec<(String, String)> {
    tables.iter().map(|t| pair(&t.stream)).collect()
}

fn pair(s: &StreamName) -> (String, String) {
    let (schema, table) = crate::schema_and_table(s);
    (schema.to_owned(), table.to_owned())
}

/// The Postgres change feed: a logical replication slot (pgoutput, binary)
/// and a publication of the same name, named for the pipeline and its
/// state ([`replication::owned_slot_name`]).
#[async_trait::async_trait]
impl ChangeFeed for PostgresSource {
    fn feed_name(&self, owner: FeedOwner<'_>) -> Result<String> {
        Ok(match owner {
            FeedOwner::Pipeline { pipeline, pipeline_id } => replication::owned_slot_name(pipeline, pipeline_id),
            FeedOwner::Legacy { pipeline } => replication::slot_name(pipeline),
        })
    }

    async fn check(&self, feed: &str, streams: &[StreamName]) -> Result<CheckReport> {
        self.check_cdc_impl(feed, streams).await
    }

    async fn status(&self, feed: &str) -> Result<Option<FeedStatus>> {
        let client = self.connect().await?;
        Ok(replication::slot_info(&client, feed).await?.map(|s| FeedStatus {
            name: s.name,
            confirmed: s.confirmed_flush_lsn.map(feed_position),
            lag_bytes: s.lag_bytes,
            retained_bytes: match (s.lag_bytes, s.confirmed_flush_lsn, s.restart_lsn) {
                (Some(lag), Some(confirmed), Some(restart)) => Some(lag + confirmed.saturating_sub(restart)),
                _ => s.lag_bytes,
            },
            lost: s.wal_status.as_deref() == Some("lost"),
        }))
    }

    async fn unfit(&self, tables: &[TableSpec]) -> Result<Vec<(StreamName, Error)>> {
        let client = self.connect().await?;
        let pairs = tables_of(tables);
        let unfit = replication::without_replica_identity(&client, &pairs).await?;
        Ok(tables
            .iter()
            .zip(&pairs)
            .filter(|(_, p)| unfit.contains(p))
            .map(|(t, p)| (t.stream.clone(), replication::no_replica_identity(std::slice::from_ref(p))))
            .collect())
    }

    async fn prepare(&self, request: PrepareFeed<'_>) -> Result<Prepared> {
        self.cdc_prepare_impl(request).await
    }

    async fn read(&self, request: ChangesRequest, out: mpsc::Sender<ChangeEvent>) -> Result<ChangesRead> {
        self.read_changes_impl(request, out).await
    }

    async fn confirm(&self, feed: &str, position: &FeedPosition) -> Result<()> {
        self.confirm_changes_impl(feed, position_lsn(position)?).await
    }

    fn what(&self) -> &'static str {
        "replication slot"
    }

    fn describe(&self, position: &FeedPosition) -> String {
        format!("LSN {}", position.token)
    }

    /// Drops the slot (ending a walsender a crashed sync left holding it)
    /// and the publication of the same name.
    async fn remove(&self, feed: &str) -> Result<bool> {
        let client = self.connect().await?;
        let slot = replication::slot_info(&client, feed).await?.is_some();
        replication::drop_slot(&client, feed).await.map_err(|e| e.with_hint(self.removal_hint(feed)))?;
        let publication = client
            .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&feed])
            .await
            .map_err(|e| pg_error(&e, &format!("reading publication {feed}")))?
            .is_some();
        client
            .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(feed)))
            .await
            .map_err(|e| pg_error(&e, &format!("cannot drop publication {feed}")).with_hint(self.removal_hint(feed)))?;
        Ok(slot || publication)
    }

    fn removal_hint(&self, feed: &str) -> String {
        format!(
            "SELECT pg_drop_replication_slot({lit}); DROP PUBLICATION IF EXISTS {ident};",
            lit = quote_literal(feed),
            ident = quote_ident(feed)
        )
    }
}

/// The changes of one stream gathered during a read.
struct Pending {
    table: TableSpec,
    builder: Option<ChangeBuilder>,
    /// Positions of the key columns in the current Relation's tuples.
    key_positions: Vec<usize>,
    versions: Vec<i128>,
    deleted: Vec<bool>,
    unchanged: Vec<Vec<String>>,
    plan: ChangePlan,
}

/// How a stream's columns are read from changes.
struct ChangePlan {
    /// Per destination column, the snapshot decoder.
    decoders: Vec<crate::types::Decoder>,
    /// Columns the snapshot reads through a cast (`::text`, `to_jsonb`,
    /// `::numeric`): their replication binary form is not what those
    /// decoders read, so their values are read again from the table by key
    /// when the changes are flushed — with the snapshot's exact expression.
    reread: Vec<Reread>,
    /// Per key column: its Postgres type name (for literals) and decoder.
    key_types: Vec<(String, crate::types::Decoder)>,
    /// Every column the table had when the read started (excluded ones too).
    known: Vec<String>,
}

struct Reread {
    /// Index in the destination columns.
    index: usize,
    /// The snapshot's select expression.
    expr: String,
    decoder: crate::types::Decoder,
}

impl Pending {
    /// Sends what is gathered as one staged batch.
    async fn flush(&mut self, client: &tokio_postgres::Client, out: &mpsc::Sender<ChangeEvent>) -> Result<()> {
        let Some(b) = self.builder.as_mut() else { return Ok(()) };
        if b.rows() == 0 {
            return Ok(());
        }
        let mut data = b.finish()?;
        if !self.plan.reread.is_empty() {
            data = reread(client, &self.table, &self.plan, data).await?;
        }
        let batch = stage_changes(
            &self.table,
            data,
            &std::mem::take(&mut self.versions),
            &std::mem::take(&mut self.deleted),
            &std::mem::take(&mut self.unchanged),
        )?;
        out.send(ChangeEvent::Rows { stream: self.table.stream.to_string(), batch })
            .await
            .map_err(|_| Error::internal("the staging side stopped receiving changes"))
    }

    fn push(&mut self, tuple: &Tuple<'_>, version: i128, deleted: bool) -> Result<()> {
        let b = self.builder.as_mut().ok_or_else(|| {
            Error::data(format!("{}: a change arrived before its table's Relation message", self.table.stream))
        })?;
        let mut unchanged = b.push(tuple)?;
        // Columns read again by key are never "unchanged": they get the current value.
        unchanged.retain(|n| !self.plan.reread.iter().any(|r| self.table.columns[r.index].name == *n));
        self.versions.push(version);
        self.deleted.push(deleted);
        self.unchanged.push(unchanged);
        Ok(())
    }
}

impl PostgresSource {
    async fn check_cdc_impl(&self, slot: &str, streams: &[StreamName]) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let client = self.connect().await?;
        let tables: Vec<(String, String)> = streams.iter().map(pair).collect();
        let r = replication::readiness(&client, slot, &tables).await?;
        if r.wal_level_logical {
            report.pass("cdc: wal_level", "wal_level is logical");
        } else {
            report.fail(
                "cdc: wal_level",
                "wal_level is not logical",
                Some("ALTER SYSTEM SET wal_level = logical; -- then restart Postgres".into()),
            );
        }
        if r.can_replicate {
            report.pass("cdc: replication", "the role may stream changes (REPLICATION)");
        }
        // The first sync makes or extends the publication itself when the
        // role may (it owns the tables and may create in the database).
        let mut may_publish = true;
        for (schema, table) in &tables {
            let row = client
                .query_one(
                    "SELECT coalesce((SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c
                                       JOIN pg_namespace n ON n.oid = c.relnamespace
                                      WHERE n.nspname = $1 AND c.relname = $2), false)
                            AND has_database_privilege(current_database(), 'CREATE')",
                    &[schema, table],
                )
                .await
                .map_err(|e| pg_error(&e, "reading table ownership"))?;
            may_publish &= row.get::<_, bool>(0);
        }
        let fixes: Vec<&String> = r
            .fixes
            .iter()
            .filter(|f| !f.starts_with("ALTER SYSTEM SET wal_level"))
            .filter(|f| !(may_publish && (f.starts_with("CREATE PUBLICATION") || f.starts_with("ALTER PUBLICATION"))))
            .collect();
        if fixes.is_empty() {
            report.pass(
                "cdc: publication",
                format!("publication {slot} covers the streams (or will be created by the first sync)"),
            );
        } else {
            report.fail(
                "cdc: setup",
                format!("logical replication through {slot} needs {} change(s) as an administrator", fixes.len()),
                Some(fixes.iter().map(|f| f.as_str()).collect::<Vec<_>>().join("\n")),
            );
        }
        match &r.slot {
            Some(s) if s.wal_status.as_deref() == Some("lost") => report.fail(
                "cdc: slot",
                format!("replication slot {slot} was invalidated: changes were lost; the next sync re-creates it and snapshots again"),
                None,
            ),
            Some(s) => report.pass(
                "cdc: slot",
                format!(
                    "slot {slot}: confirmed at {}, {} behind",
                    s.confirmed_flush_lsn.map(format_lsn).unwrap_or_else(|| "-".into()),
                    s.lag_bytes.map(|b| format!("{b} bytes")).unwrap_or_else(|| "-".into())
                ),
            ),
            None => report.pass("cdc: slot", format!("slot {slot} does not exist yet; the first sync creates it")),
        }
        Ok(report)
    }

    async fn cdc_prepare_impl(&self, request: PrepareFeed<'_>) -> Result<Prepared> {
        let client = self.connect().await?;
        let slot = request.feed;
        replication::ensure_server_ready(&client).await?;
        replication::ensure_publication(&client, slot, &tables_of(request.tables)).await?;
        let created = |start: CreatedSlot, remade: bool| Prepared::Created { start: Box::new(PgStart(start)), remade };
        if request.joining {
            let name = format!("{}_j{}", &slot[..slot.len().min(48)], std::process::id());
            return Ok(created(replication::create_slot(self.options(), &name, true).await?, false));
        }
        match replication::slot_info(&client, slot).await? {
            Some(info) if info.wal_status.as_deref() == Some("lost") && !request.remake_lost => Err(Error::new(
                ErrorKind::Data,
                format!("replication slot {slot} was invalidated (its WAL was removed): changes were lost"),
            )
            .with_hint(format!(
                "set `on_slot_lost: resnapshot`, or drop it (`SELECT pg_drop_replication_slot('{slot}');`) and sync again: \
                 the next sync makes it again and reads every stream again"
            ))),
            Some(info) if info.wal_status.as_deref() == Some("lost") => {
                tracing::warn!(slot = %slot, "the replication slot was invalidated; making it again and reading every stream again");
                replication::drop_slot(&client, slot).await?;
                Ok(created(replication::create_slot(self.options(), slot, false).await?, true))
            }
            Some(info) => Ok(Prepared::Existing { confirmed: info.confirmed_flush_lsn.map(feed_position) }),
            None => {
                tracing::info!(slot = %slot, "creating the replication slot");
                Ok(created(replication::create_slot(self.options(), slot, false).await?, false))
            }
        }
    }

    /// The snapshot decoders of a table's columns, in the spec's order; CDC
    /// decodes the same binary values, so only natively read columns qualify.
    async fn change_decoders(&self, client: &tokio_postgres::Client, table: &TableSpec) -> Result<ChangePlan> {
        let found = crate::discover::discover(client, crate::discover::Scope::Table(&table.stream)).await?;
        let pg = found.into_iter().next().ok_or_else(|| {
            Error::not_found(format!("table {} no longer exists in source `{}`", table.stream, self.name))
        })?;
        let mut plan = ChangePlan {
            decoders: Vec::new(),
            reread: Vec::new(),
            key_types: Vec::new(),
            known: pg.columns.iter().map(|c| c.info.name.clone()).collect(),
        };
        for (index, c) in table.columns.iter().enumerate() {
            let col = pg.columns.iter().find(|p| p.info.name == c.source_name).ok_or_else(|| {
                Error::new(
                    ErrorKind::StalePlan,
                    format!("column {} of {} was dropped or renamed", c.source_name, table.stream),
                )
            })?;
            plan.decoders.push(col.plan.decoder);
            if col.plan.read != ReadAs::Native {
                if !table.has_key() || table.key.contains(&c.name) {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "{}: column {} is of type {}, which `mode: cdc` reads again by key — and this table {}",
                            table.stream,
                            c.source_name,
                            col.info.type_name,
                            if table.has_key() { "has it in its key" } else { "has no key" }
                        ),
                    )
                    .with_hint("exclude the column (exclude_columns) or use mode: incremental for this stream"));
                }
                plan.reread.push(Reread {
                    index,
                    expr: crate::select_expr(&c.source_name, col.plan.read),
                    decoder: col.plan.decoder,
                });
            }
        }
        for k in &table.key {
            let c = table.column(k).ok_or_else(|| Error::internal(format!("key {k} is not a column")))?;
            let col = pg.columns.iter().find(|p| p.info.name == c.source_name).ok_or_else(|| {
                Error::new(ErrorKind::StalePlan, format!("key column {} of {} is gone", c.source_name, table.stream))
            })?;
            plan.key_types.push((col.info.type_name.clone(), col.plan.decoder));
        }
        Ok(plan)
    }

    async fn read_changes_impl(&self, request: ChangesRequest, out: mpsc::Sender<ChangeEvent>) -> Result<ChangesRead> {
        let slot = request.feed.clone();
        let client = self.connect().await?;
        let mut pending: Vec<Pending> = Vec::new();
        for t in &request.tables {
            let plan = self.change_decoders(&client, t).await?;
            pending.push(Pending {
                table: t.clone(),
                builder: None,
                key_positions: Vec::new(),
                versions: Vec::new(),
                deleted: Vec::new(),
                unchanged: Vec::new(),
                plan,
            });
        }
        let by_name: HashMap<StreamName, usize> =
            request.tables.iter().enumerate().map(|(i, t)| (t.stream.clone(), i)).collect();
        // Relation oid → the stream it feeds (None: not one of ours).
        let mut relations: HashMap<u32, Option<usize>> = HashMap::new();
        // Drain up to what is committed now, exactly: a marker written into
        // the WAL arrives once every transaction committed before it was sent.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let token = format!("drain {} {nanos}", std::process::id());
        let marker =
            client.query_one("SELECT pg_logical_emit_message(false, 'simplyload', $1::text)::text", &[&token]).await;
        let mut stream = ChangeStream::start(self.options(), &slot, &slot, 0).await?;
        let mut read = ChangesRead::default();
        let mut marker_at = None;
        if let Some(info) = replication::slot_info(&client, &slot).await? {
            read.lag_bytes = info.lag_bytes;
            if let Some(lag) = info.lag_bytes.filter(|l| *l > request.max_lag_bytes) {
                let w = format!(
                    "replication slot {slot} holds {lag} bytes of WAL (more than max_lag_bytes {}): sync more often, or check that syncs succeed",
                    request.max_lag_bytes
                );
                tracing::warn!("{w}");
                read.warnings.push(w);
            }
        }
        match marker {
            Ok(row) => {
                let at = parse_lsn(&row.get::<_, String>(0))?;
                stream.set_stop_marker(at, "simplyload", token.as_bytes());
                marker_at = Some(at);
            }
            Err(e) => {
                // Without the marker (no EXECUTE on pg_logical_emit_message):
                // up to the WAL insert position.
                tracing::warn!(error = %e, "cannot write a drain marker; reading up to the current WAL position");
                let end: String = client
                    .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                    .await
                    .map_err(|e| pg_error(&e, "reading the WAL position"))?
                    .get(0);
                let end = parse_lsn(&end)?;
                stream.set_stop_at(Some(end.max(stream.start_lsn())));
            }
        }
        let (mut commit_lsn, mut seq) = (0u64, 0u32);
        // The end of the last transaction read: what to confirm once loaded.
        let mut confirm: Option<Lsn> = None;
        let fail = request.on_unrepresentable == OnUnrepresentable::Fail;
        let result = async {
            while let Some((_, bytes)) = stream.next().await? {
                read.source_bytes += bytes.len() as u64;
                match pgoutput::parse(&bytes)? {
                    Message::Begin { final_lsn, .. } => {
                        commit_lsn = final_lsn;
                        seq = 0;
                    }
                    Message::Commit { end_lsn, .. } => {
                        confirm = Some(end_lsn);
                        if read.changes >= request.max_changes {
                            read.more = true;
                            break;
                        }
                    }
                    Message::Relation(rel) => {
                        let target = by_name.get(&StreamName::new(rel.namespace.clone(), rel.name.clone())).copied();
                        if let Some(i) = target
                            && let Some(added) = self.added_since_plan(&client, &pending[i].plan.known, &rel).await?
                        {
                            // A column this sync's plan lacks: stop before this
                            // transaction; the next sync plans the column.
                            tracing::info!(stream = %pending[i].table.stream, column = %added,
                                "the table gained a column; reading stops here and the next sync adds it");
                            read.schema_changed = true;
                            break;
                        }
                        if let Some(i) = target {
                            // A changed relation: what was gathered goes out first.
                            pending[i].flush(&client, &out).await?;
                            pending[i].builder =
                                Some(builder(&pending[i].table, &rel, &pending[i].plan, &request, fail)?);
                            pending[i].key_positions = pending[i]
                                .table
                                .key
                                .iter()
                                .filter_map(|k| pending[i].table.column(k))
                                .filter_map(|c| rel.columns.iter().position(|rc| rc.name == c.source_name))
                                .collect();
                        }
                        relations.insert(rel.oid, target);
                    }
                    Message::Insert { relation, new } => {
                        if let Some(i) = route(&relations, relation)? {
                            seq += 1;
                            pending[i].push(&new, change_version(commit_lsn, seq), false)?;
                            read.changes += 1;
                        }
                    }
                    Message::Update { relation, old, new, .. } => {
                        if let Some(i) = route(&relations, relation)?
                            && !pending[i].table.has_key()
                        {
                            // No key: the old row (REPLICA IDENTITY FULL) goes, the
                            // new one comes; values not sent (TOAST) are the old ones.
                            let old = old.ok_or_else(|| {
                                Error::data(format!(
                                    "{}: an update without its old row; the table needs REPLICA IDENTITY FULL",
                                    pending[i].table.stream
                                ))
                            })?;
                            let mut new = new.clone();
                            for (k, datum) in new.columns.iter_mut().enumerate() {
                                if *datum == Datum::Unchanged {
                                    *datum = old.columns.get(k).copied().unwrap_or(Datum::Null);
                                }
                            }
                            seq += 1;
                            pending[i].push(&old, change_version(commit_lsn, seq), true)?;
                            seq += 1;
                            pending[i].push(&new, change_version(commit_lsn, seq), false)?;
                            read.changes += 1;
                        } else if let Some(i) = route(&relations, relation)? {
                            // A key that changed: the old key's row is deleted.
                            if let Some(old) = old.filter(|o| key_changed(&pending[i], o, &new)) {
                                seq += 1;
                                pending[i].push(&old, change_version(commit_lsn, seq), true)?;
                            }
                            seq += 1;
                            pending[i].push(&new, change_version(commit_lsn, seq), false)?;
                            read.changes += 1;
                        }
                    }
                    Message::Delete { relation, old, .. } => {
                        if let Some(i) = route(&relations, relation)? {
                            seq += 1;
                            pending[i].push(&old, change_version(commit_lsn, seq), true)?;
                            read.changes += 1;
                        }
                    }
                    Message::Truncate { relations: truncated, .. } => {
                        seq += 1;
                        for oid in truncated {
                            if let Some(i) = route(&relations, oid)? {
                                out.send(ChangeEvent::Truncate {
                                    stream: pending[i].table.stream.to_string(),
                                    version: change_version(commit_lsn, seq),
                                })
                                .await
                                .map_err(|_| Error::internal("the staging side stopped receiving changes"))?;
                                read.changes += 1;
                            }
                        }
                    }
                    Message::Type { .. } | Message::Origin { .. } | Message::LogicalMessage { .. } => {}
                }
                for p in pending.iter_mut() {
                    if p.builder.as_ref().is_some_and(|b| b.rows() >= request.batch_rows.max(1)) {
                        p.flush(&client, &out).await?;
                    }
                }
            }
            for p in pending.iter_mut() {
                p.flush(&client, &out).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        // Drained to the marker: every transaction before it was seen, so the
        // slot may move up to it even when none of them touched our tables
        // (WAL of other tables must not pile up behind an idle pipeline).
        if stream.reached_marker()
            && let Some(at) = marker_at
        {
            confirm = Some(confirm.map_or(at, |c| c.max(at)));
        }
        read.confirm = confirm.map(feed_position);
        let stopped = stream.stop().await;
        result?;
        stopped?;
        for p in &pending {
            if let Some(b) = &p.builder {
                for u in b.tally().entries() {
                    read.unrepresentable.push((p.table.stream.to_string(), u.clone()));
                }
            }
        }
        Ok(read)
    }

    /// A column of `rel` that the table did not have when the read started
    /// (`known`: excluded columns are known too) but has now. Columns
    /// dropped since are not counted.
    async fn added_since_plan(
        &self,
        client: &tokio_postgres::Client,
        known: &[String],
        rel: &Relation,
    ) -> Result<Option<String>> {
        let extra: Vec<&str> =
            rel.columns.iter().map(|c| c.name.as_str()).filter(|n| !known.iter().any(|k| k == n)).collect();
        if extra.is_empty() {
            return Ok(None);
        }
        let stream = StreamName::new(rel.namespace.clone(), rel.name.clone());
        let now = crate::discover::discover(client, crate::discover::Scope::Table(&stream)).await?;
        let Some(now) = now.into_iter().next() else { return Ok(None) };
        Ok(extra.into_iter().find(|e| now.columns.iter().any(|c| c.info.name == *e)).map(str::to_owned))
    }

    async fn confirm_changes_impl(&self, slot: &str, lsn: Lsn) -> Result<()> {
        let client = self.connect().await?;
        // Our own stream has stopped: a walsender still on the slot is one a
        // killed sync left.
        replication::release_stale_slot(&client, slot).await?;
        // Only forward: a position at or behind the confirmed one changes nothing.
        let info = replication::slot_info(&client, slot)
            .await?
            .ok_or_else(|| Error::not_found(format!("replication slot {slot} does not exist (it was dropped)")))?;
        if info.confirmed_flush_lsn.is_some_and(|c| c >= lsn) {
            return Ok(());
        }
        client
            .query_one("SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)::text", &[&slot, &format_lsn(lsn)])
            .await
            .map_err(|e| {
                pg_error(&e, &format!("confirming position {} of slot {}", format_lsn(lsn), quote_ident(slot)))
            })?;
        Ok(())
    }
}

fn builder(
    table: &TableSpec,
    rel: &Relation,
    plan: &ChangePlan,
    request: &ChangesRequest,
    fail: bool,
) -> Result<ChangeBuilder> {
    let names: Vec<String> = table.columns.iter().map(|c| c.source_name.clone()).collect();
    let skip: Vec<String> = plan.reread.iter().map(|r| table.columns[r.index].source_name.clone()).collect();
    let columns = ChangeColumns::with_skipped(rel, &names, &plan.decoders, &skip).map_err(|e| {
        e.context(format!(
            "{}: the table's columns changed in the source; schema changes under `mode: cdc` need a resync for now",
            table.stream
        ))
    })?;
    Ok(ChangeBuilder::new(
        &table.stream.to_string(),
        columns,
        table.source_schema(),
        request.limits,
        fail,
        request.batch_rows.clamp(1, 8192),
    ))
}

fn route(relations: &HashMap<u32, Option<usize>>, oid: u32) -> Result<Option<usize>> {
    relations
        .get(&oid)
        .copied()
        .ok_or_else(|| Error::data(format!("pgoutput: a change of relation {oid} arrived before its Relation message")))
}

/// Whether an update's old key differs from its new one (the key columns'
/// raw values; the old tuple carries the key, or the whole row).
fn key_changed(p: &Pending, old: &Tuple<'_>, new: &Tuple<'_>) -> bool {
    p.key_positions.iter().any(|&i| match (old.columns.get(i), new.columns.get(i)) {
        (Some(Datum::Binary(a)), Some(Datum::Binary(b))) => a != b,
        (Some(Datum::Text(a)), Some(Datum::Text(b))) => a != b,
        (Some(Datum::Null), Some(Datum::Null)) | (Some(Datum::Unchanged), _) | (_, Some(Datum::Unchanged)) => false,
        _ => true,
    })
}

/// Fills the columns read through a cast (see [`ChangePlan::reread`]) with
/// their current values, read by key with the snapshot's expressions. A row
/// changed again since is read newer than its change: the later change
/// arrives after it and reads the same, so the copy converges; a row gone
/// since keeps NULL there (it is deleted by a later change anyway).
async fn reread(
    client: &tokio_postgres::Client,
    table: &TableSpec,
    plan: &ChangePlan,
    data: arrow_array::RecordBatch,
) -> Result<arrow_array::RecordBatch> {
    use simplyload_core::canon::{Canon, canon_from_arrow};
    let key_idx: Vec<usize> =
        table.key.iter().filter_map(|k| table.columns.iter().position(|c| &c.name == k)).collect();
    // The key of every change row, and the literal list to look them up.
    let mut keys: Vec<Vec<Canon>> = Vec::with_capacity(data.num_rows());
    for row in 0..data.num_rows() {
        let mut k = Vec::with_capacity(key_idx.len());
        for &i in &key_idx {
            k.push(canon_from_arrow(data.column(i), row, table.columns[i].sql_type)?);
        }
        keys.push(k);
    }
    let mut distinct: Vec<&Vec<Canon>> = keys.iter().filter(|k| k.iter().all(|v| *v != Canon::Null)).collect();
    distinct.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    distinct.dedup();
    let key_cols: Vec<String> = key_idx.iter().map(|&i| quote_ident(&table.columns[i].source_name)).collect();
    let mut reads: Vec<crate::copy::ColumnRead> = Vec::new();
    let mut fields: Vec<arrow_schema::Field> = Vec::new();
    for (n, &i) in key_idx.iter().enumerate() {
        reads.push(crate::copy::ColumnRead { name: format!("k{n}"), decoder: plan.key_types[n].1 });
        fields.push(arrow_schema::Field::new(format!("k{n}"), table.columns[i].sql_type.arrow_type(), true));
    }
    for (n, r) in plan.reread.iter().enumerate() {
        reads.push(crate::copy::ColumnRead { name: format!("v{n}"), decoder: r.decoder });
        fields.push(arrow_schema::Field::new(format!("v{n}"), table.columns[r.index].sql_type.arrow_type(), true));
    }
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(fields));
    let mut found: Vec<arrow_array::RecordBatch> = Vec::new();
    client
        .batch_execute(&format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n{}", crate::SNAPSHOT_SETTINGS))
        .await
        .map_err(|e| pg_error(&e, "starting the read by key"))?;
    for chunk in distinct.chunks(1000) {
        let mut tuples = Vec::with_capacity(chunk.len());
        for k in chunk {
            let mut lits = Vec::with_capacity(k.len());
            for (n, v) in k.iter().enumerate() {
                let text = crate::reconcile::bound_text(v, table.columns[key_idx[n]].sql_type)?;
                lits.push(format!("'{}'::{}", text.replace('\'', "''"), plan.key_types[n].0));
            }
            tuples.push(format!("({})", lits.join(", ")));
        }
        let exprs: Vec<&str> = plan.reread.iter().map(|r| r.expr.as_str()).collect();
        let sql = format!(
            "COPY (SELECT {}, {} FROM {} WHERE ({}) IN ({})) TO STDOUT (FORMAT binary)",
            key_cols.join(", "),
            exprs.join(", "),
            crate::qualified_name(&table.stream),
            key_cols.join(", "),
            tuples.join(", ")
        );
        let copy = client
            .copy_out(sql.as_str())
            .await
            .map_err(|e| pg_error(&e, &format!("reading changed rows of {}", table.stream)))?;
        futures::pin_mut!(copy);
        let mut rows = crate::copy::RowDecoder::new(
            &table.stream.to_string(),
            &reads,
            schema.clone(),
            Vec::new(),
            crate::copy::DecodeBounds {
                limits: simplyload_core::ValueLimits::STAGING,
                fail_on_unrepresentable: false,
                batch_rows: 65_536,
                batch_bytes: 64 << 20,
            },
        );
        let mut parser = crate::copy::CopyParser::new();
        while let Some(bytes) = futures::StreamExt::next(&mut copy).await {
            let bytes = bytes.map_err(|e| pg_error(&e, &format!("reading changed rows of {}", table.stream)))?;
            parser.feed(&bytes, &mut rows)?;
        }
        parser.finish()?;
        rows.finish_batch()?;
        found.extend(rows.take_ready().map(|(b, _)| b));
    }
    client.batch_execute("COMMIT").await.map_err(|e| pg_error(&e, "ending the read by key"))?;
    let found = arrow_select::concat::concat_batches(&schema, &found)?;
    let mut at: HashMap<Vec<Canon>, u32> = HashMap::new();
    for row in 0..found.num_rows() {
        let mut k = Vec::with_capacity(key_idx.len());
        for (n, &i) in key_idx.iter().enumerate() {
            k.push(canon_from_arrow(found.column(n), row, table.columns[i].sql_type)?);
        }
        at.insert(k, row as u32);
    }
    let indices: arrow_array::UInt32Array = keys.iter().map(|k| at.get(k).copied()).collect();
    let mut columns: Vec<arrow_array::ArrayRef> = data.columns().to_vec();
    for (n, r) in plan.reread.iter().enumerate() {
        columns[r.index] = arrow_select::take::take(found.column(key_idx.len() + n).as_ref(), &indices, None)?;
    }
    Ok(arrow_array::RecordBatch::try_new(data.schema(), columns)?)
}
