//! Continuous activity (PR-1.5): what a live SaaS database sees, at a set
//! rate — signups, orders, events, orders moving through
//! pending → paid → shipped → delivered (or cancelled), plan changes, users
//! soft-deleted (`deleted_at = now()`), and optionally hard deletes and
//! columns added to the tables — so every sync mode and schema evolution get
//! exercised.
//!
//! How the pace is kept: each kind of change is a Poisson process at its
//! rate; arrival times are drawn from a random stream seeded by `--seed`, so
//! they do not depend on how fast the database answers. Whatever has arrived
//! is written in one transaction, one multi-row statement per kind of change
//! (`INSERT … SELECT … FROM unnest($1, $2, …)`, `UPDATE … FROM`), and
//! transactions start at most `max_transactions_per_second` times a second.
//! So at a few changes an hour each change is its own transaction, and at
//! thousands a second they are grouped — the rate holds either way, and a
//! database that falls behind gets bigger transactions, not fewer changes.
//!
//! Which rows an update or delete touches is decided in SQL from a random id:
//! the first row at or after it that qualifies (a live user, an order not yet
//! delivered or cancelled), wrapping around. That needs no list of ids in
//! memory and follows rows added or removed by anyone else.
//!
//! The totals are exact: every number is the row count Postgres reported
//! for a statement (or the rows it returned), added in only once its
//! transaction committed. A transaction that fails with a deadlock,
//! serialization failure or lock timeout is rolled back, reported and not
//! counted; any other error ends the run.

use crate::generate::{
    COUNTRIES, CURRENCIES, EVENT_TYPES, PLANS, WORDS, event_properties, pick, push_cents, push_epoch, push_u64,
    push_uuid, user_identity, weighted,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use simplyload_core::{Error, Result};
use simplyload_postgres::connect::{pg_error, quote_ident};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement, Transaction};

/// Changes per hour of each kind.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Rates {
    pub orders_per_hour: f64,
    pub events_per_hour: f64,
    pub users_per_hour: f64,
    pub status_updates_per_hour: f64,
    pub plan_changes_per_hour: f64,
    pub soft_deletes_per_hour: f64,
    /// Used only with [`ActivityOptions::hard_deletes`].
    pub hard_deletes_per_hour: f64,
}

impl Rates {
    /// The other rates derived from the seed's two: every fifth order comes
    /// from a new signup; an order changes status about twice after it is
    /// placed; one user in ten orders changes plan, one in fifty leaves; with
    /// hard deletes, a twentieth of what is inserted is deleted again.
    pub fn derived(orders_per_hour: f64, events_per_hour: f64) -> Rates {
        Rates {
            orders_per_hour,
            events_per_hour,
            users_per_hour: orders_per_hour / 5.0,
            status_updates_per_hour: orders_per_hour * 2.0,
            plan_changes_per_hour: orders_per_hour / 10.0,
            soft_deletes_per_hour: orders_per_hour / 50.0,
            hard_deletes_per_hour: (orders_per_hour + events_per_hour) / 20.0,
        }
    }

    fn per_second(&self, hard_deletes: bool) -> [f64; KINDS] {
        [
            self.users_per_hour,
            self.orders_per_hour,
            self.events_per_hour,
            self.status_updates_per_hour,
            self.plan_changes_per_hour,
            self.soft_deletes_per_hour,
            if hard_deletes { self.hard_deletes_per_hour } else { 0.0 },
        ]
        .map(|r| r / 3600.0)
    }
}

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct ActivityOptions {
    pub rates: Rates,
    /// Stop after this long; `None` runs until stopped.
    pub duration: Option<Duration>,
    /// Also DELETE events and orders, and purge soft-deleted users with their orders.
    pub hard_deletes: bool,
    /// Add a nullable column to one of the tables this often; `None`: never.
    pub schema_change_every: Option<Duration>,
    /// Seeds the random streams: the same seed gives the same choices.
    pub seed: u64,
    /// How often the stats callback is called.
    pub stats_every: Duration,
    /// Changes that arrive closer together than this allows share a transaction.
    pub max_transactions_per_second: f64,
}

impl ActivityOptions {
    /// Statistics every 10 minutes (the seed's), no hard deletes, no schema
    /// changes, at most 100 transactions a second, seed 42, until stopped.
    pub fn new(rates: Rates) -> ActivityOptions {
        ActivityOptions {
            rates,
            duration: None,
            hard_deletes: false,
            schema_change_every: None,
            seed: 42,
            stats_every: DEFAULT_STATS_EVERY,
            max_transactions_per_second: DEFAULT_MAX_TRANSACTIONS_PER_SECOND,
        }
    }
}

/// The seed's "print activity stats every 10 minutes".
pub const DEFAULT_STATS_EVERY: Duration = Duration::from_secs(600);
/// Enough for realistic single-change transactions at modest rates, few
/// enough that a commit's flush does not become the bottleneck.
pub const DEFAULT_MAX_TRANSACTIONS_PER_SECOND: f64 = 100.0;
/// A bound on one transaction, so a database that fell far behind catches up
/// in pieces instead of one huge statement.
const MAX_CHANGES_PER_TRANSACTION: u64 = 10_000;
/// How long `ALTER TABLE` waits for its lock before the change is skipped
/// (a long read holding the table must not stall all other activity).
const SCHEMA_LOCK_TIMEOUT: &str = "5s";

/// Exact counts of what a run did: rows Postgres reported as affected, in
/// committed transactions only.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ActivityTotals {
    pub users_inserted: u64,
    pub orders_inserted: u64,
    pub events_inserted: u64,
    /// Orders whose status changed (each counted once per change).
    pub orders_updated: u64,
    /// Users whose plan changed.
    pub users_updated: u64,
    /// Users whose `deleted_at` was set.
    pub users_soft_deleted: u64,
    pub users_hard_deleted: u64,
    /// Orders deleted, including those of purged users.
    pub orders_hard_deleted: u64,
    pub events_hard_deleted: u64,
    pub columns_added: u64,
    /// Committed transactions (including those that added a column).
    pub transactions: u64,
    /// Transactions rolled back after a deadlock, serialization failure or
    /// lock timeout; nothing of them is counted above.
    pub transactions_rolled_back: u64,
    /// Status changes by transition, e.g. `"pending->paid": 12`.
    pub status_changes: BTreeMap<String, u64>,
    /// Columns added, as `table.column`.
    pub added_columns: Vec<String>,
    pub elapsed_seconds: f64,
}

impl ActivityTotals {
    /// Rows inserted, updated and deleted, plus columns added.
    pub fn changes(&self) -> u64 {
        self.users_inserted
            + self.orders_inserted
            + self.events_inserted
            + self.orders_updated
            + self.users_updated
            + self.users_soft_deleted
            + self.users_hard_deleted
            + self.orders_hard_deleted
            + self.events_hard_deleted
            + self.columns_added
    }

    fn add(&mut self, d: &ActivityTotals) {
        self.users_inserted += d.users_inserted;
        self.orders_inserted += d.orders_inserted;
        self.events_inserted += d.events_inserted;
        self.orders_updated += d.orders_updated;
        self.users_updated += d.users_updated;
        self.users_soft_deleted += d.users_soft_deleted;
        self.users_hard_deleted += d.users_hard_deleted;
        self.orders_hard_deleted += d.orders_hard_deleted;
        self.events_hard_deleted += d.events_hard_deleted;
        self.columns_added += d.columns_added;
        self.transactions += d.transactions;
        self.transactions_rolled_back += d.transactions_rolled_back;
        for (k, v) in &d.status_changes {
            *self.status_changes.entry(k.clone()).or_default() += v;
        }
        self.added_columns.extend(d.added_columns.iter().cloned());
    }

    /// One line for a log: counts so far.
    pub fn summary(&self) -> String {
        let rate = if self.elapsed_seconds > 0.0 { self.changes() as f64 / self.elapsed_seconds } else { 0.0 };
        format!(
            "+{} users, +{} orders, +{} events, {} status changes, {} plan changes, {} soft deletes, \
             {} hard deletes, {} columns added; {} transactions, {rate:.1} changes/s",
            self.users_inserted,
            self.orders_inserted,
            self.events_inserted,
            self.orders_updated,
            self.users_updated,
            self.users_soft_deleted,
            self.users_hard_deleted + self.orders_hard_deleted + self.events_hard_deleted,
            self.columns_added,
            self.transactions,
        )
    }
}

// The kinds of change, in the order a transaction applies them.
const KINDS: usize = 7;
const NEW_USER: usize = 0;
const NEW_ORDER: usize = 1;
const NEW_EVENT: usize = 2;
const STATUS_UPDATE: usize = 3;
const PLAN_CHANGE: usize = 4;
const SOFT_DELETE: usize = 5;
const HARD_DELETE: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    Users,
    Orders,
    Events,
}

const TABLES: [Table; 3] = [Table::Users, Table::Orders, Table::Events];

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Orders => "orders",
            Table::Events => "events",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The schema's own columns; anything else was added later.
    fn base_columns(self) -> &'static [&'static str] {
        match self {
            Table::Users => &["id", "email", "full_name", "country", "plan", "created_at", "updated_at", "deleted_at"],
            Table::Orders => &["id", "user_id", "status", "quantity", "amount", "currency", "created_at", "updated_at"],
            Table::Events => &["id", "user_id", "event_type", "properties", "session_id", "created_at", "updated_at"],
        }
    }

    /// Columns schema changes add, in order; then `attr_N`.
    fn new_columns(self) -> &'static [(&'static str, Kind)] {
        match self {
            Table::Users => &[
                ("referral_code", Kind::Text),
                ("marketing_opt_in", Kind::Bool),
                ("last_login_at", Kind::Timestamptz),
                ("lifetime_value", Kind::Numeric),
                ("login_count", Kind::Int),
            ],
            Table::Orders => &[
                ("discount_code", Kind::Text),
                ("shipping_cost", Kind::Numeric),
                ("is_gift", Kind::Bool),
                ("shipped_at", Kind::Timestamptz),
                ("item_count", Kind::Int),
            ],
            Table::Events => &[
                ("device", Kind::Text),
                ("latency_ms", Kind::Int),
                ("is_bot", Kind::Bool),
                ("received_at", Kind::Timestamptz),
                ("score", Kind::Numeric),
            ],
        }
    }
}

/// The kinds of value an added column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Bool,
    Int,
    Numeric,
    Timestamptz,
}

impl Kind {
    /// The column's type in `ALTER TABLE … ADD COLUMN`.
    fn column_type(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Bool => "boolean",
            Kind::Int => "integer",
            Kind::Numeric => "numeric(12,2)",
            Kind::Timestamptz => "timestamptz",
        }
    }

    /// The cast applied to the text parameter (assignment casts do the rest).
    fn cast(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Bool => "boolean",
            Kind::Int => "bigint",
            Kind::Numeric => "numeric",
            Kind::Timestamptz => "timestamptz",
        }
    }

    fn from_type_name(typname: &str) -> Option<Kind> {
        Some(match typname {
            "text" | "varchar" => Kind::Text,
            "bool" => Kind::Bool,
            "int4" | "int8" => Kind::Int,
            "numeric" => Kind::Numeric,
            "timestamptz" => Kind::Timestamptz,
            _ => return None,
        })
    }
}

/// A column added by a schema change (this run's or an earlier one's).
#[derive(Debug, Clone)]
struct Extra {
    name: String,
    kind: Kind,
}

/// What the generator knows about the tables, refreshed at start and kept up
/// to date from what it writes. Only used to choose random ids and to skip
/// work that cannot succeed; correctness never depends on it.
#[derive(Debug, Default)]
struct Known {
    /// Lowest and highest id per table (highest only grows).
    ids: [Option<(i64, i64)>; 3],
    live_users: i64,
    soft_deleted_users: i64,
    /// Every column of each table, to pick names for new ones.
    columns: [HashSet<String>; 3],
    /// Added columns the generator fills.
    extras: [Vec<Extra>; 3],
}

/// The continuous activity generator. Create it, [`Activity::run`] it, read
/// [`Activity::totals`] — also after `run` failed.
pub struct Activity {
    options: ActivityOptions,
    totals: ActivityTotals,
    rng: SmallRng,
    schedule: SmallRng,
    known: Known,
    statements: HashMap<String, Statement>,
    serial: u64,
}

/// A statement failed: what was being done, and the driver's error.
struct StepError {
    what: &'static str,
    error: tokio_postgres::Error,
}

type Step<T> = std::result::Result<T, StepError>;

fn step(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StepError {
    move |error| StepError { what, error }
}

impl Activity {
    pub fn new(options: ActivityOptions) -> Activity {
        Activity {
            rng: SmallRng::seed_from_u64(options.seed),
            schedule: SmallRng::seed_from_u64(options.seed ^ 0x5EED_0FA1_1713_5EED),
            serial: 0,
            options,
            totals: ActivityTotals::default(),
            known: Known::default(),
            statements: HashMap::new(),
        }
    }

    /// What the run did so far (exact, committed changes only).
    pub fn totals(&self) -> &ActivityTotals {
        &self.totals
    }

    /// Runs until the duration is over or `stop` turns true. Stopping lets
    /// the transaction in flight finish. `on_stats` is called every
    /// `stats_every` with the totals so far.
    pub async fn run(
        &mut self,
        client: &mut Client,
        stop: &mut watch::Receiver<bool>,
        on_stats: &mut (dyn FnMut(&ActivityTotals) + Send),
    ) -> Result<()> {
        self.refresh(client).await?;
        let rates = self.options.rates.per_second(self.options.hard_deletes);
        let mut next = [f64::INFINITY; KINDS];
        for k in 0..KINDS {
            next[k] = self.arrival_after(0.0, rates[k]);
        }
        let end = self.options.duration.map(|d| d.as_secs_f64()).unwrap_or(f64::INFINITY);
        let stats_every = self.options.stats_every.as_secs_f64().max(0.001);
        let mut next_stats = stats_every;
        let schema_every = self.options.schema_change_every.map(|d| d.as_secs_f64().max(0.001));
        let mut next_schema = schema_every.unwrap_or(f64::INFINITY);
        let gap = 1.0 / self.options.max_transactions_per_second.max(0.001);
        let mut last_transaction = f64::NEG_INFINITY;
        let mut warned_behind = f64::NEG_INFINITY;
        let start = Instant::now();

        loop {
            let t = start.elapsed().as_secs_f64();
            self.totals.elapsed_seconds = t.min(end);
            if *stop.borrow() || t >= end {
                break;
            }
            if t >= next_stats {
                on_stats(&self.totals);
                while next_stats <= t {
                    next_stats += stats_every;
                }
            }
            if t >= next_schema {
                while next_schema <= t {
                    next_schema += schema_every.unwrap_or(f64::INFINITY);
                }
                self.change_schema(client).await?;
                continue;
            }
            let earliest = next.iter().copied().fold(f64::INFINITY, f64::min);
            let ready = earliest.max(last_transaction + gap);
            if ready > t {
                let wake = ready.min(next_stats).min(next_schema).min(end).min(t + 1.0);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64((wake - t).max(0.0))) => {}
                    _ = stopped(stop) => {}
                }
                continue;
            }
            if t - earliest > 10.0 && t - warned_behind > 60.0 {
                warned_behind = t;
                tracing::warn!(
                    behind_seconds = (t - earliest).round(),
                    "the database is not keeping up with the configured rates; transactions grow to catch up"
                );
            }
            // Everything that has arrived, oldest first, up to the bound.
            let mut due = [0u64; KINDS];
            let mut total = 0;
            while total < MAX_CHANGES_PER_TRANSACTION {
                let (k, at) = next
                    .iter()
                    .copied()
                    .enumerate()
                    .fold((0, f64::INFINITY), |best, (k, at)| if at < best.1 { (k, at) } else { best });
                if at > t {
                    break;
                }
                due[k] += 1;
                total += 1;
                next[k] = self.arrival_after(at, rates[k]);
            }
            last_transaction = t;
            self.transaction(client, &due).await?;
        }
        self.totals.elapsed_seconds = start.elapsed().as_secs_f64().min(end);
        Ok(())
    }

    /// The next arrival of a Poisson process at `rate` per second.
    fn arrival_after(&mut self, at: f64, rate: f64) -> f64 {
        if rate <= 0.0 {
            return f64::INFINITY;
        }
        let u: f64 = self.schedule.random();
        at - (1.0 - u).ln() / rate
    }

    /// Reads id ranges, user counts and the tables' columns.
    async fn refresh(&mut self, client: &Client) -> Result<()> {
        let row = client
            .query_one(
                "SELECT (SELECT min(id) FROM users), (SELECT max(id) FROM users),
                        (SELECT min(id) FROM orders), (SELECT max(id) FROM orders),
                        (SELECT min(id) FROM events), (SELECT max(id) FROM events),
                        (SELECT count(*) FROM users WHERE deleted_at IS NULL),
                        (SELECT count(*) FROM users WHERE deleted_at IS NOT NULL)",
                &[],
            )
            .await
            .map_err(|e| missing_schema(pg_error(&e, "reading the playground tables")))?;
        for (i, _) in TABLES.iter().enumerate() {
            let lo: Option<i64> = row.get(2 * i);
            let hi: Option<i64> = row.get(2 * i + 1);
            self.known.ids[i] = lo.zip(hi);
        }
        self.known.live_users = row.get(6);
        self.known.soft_deleted_users = row.get(7);
        let rows = client
            .query(
                "SELECT c.relname::text, a.attname::text, t.typname::text
                 FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_type t ON t.oid = a.atttypid
                 WHERE a.attrelid IN ('users'::regclass, 'orders'::regclass, 'events'::regclass)
                   AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum",
                &[],
            )
            .await
            .map_err(|e| missing_schema(pg_error(&e, "reading the playground tables' columns")))?;
        self.known.columns = Default::default();
        self.known.extras = Default::default();
        for r in rows {
            let (table, column, typname): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            let Some(t) = TABLES.iter().copied().find(|t| t.name() == table) else { continue };
            if !t.base_columns().contains(&column.as_str())
                && is_ours(t, &column)
                && let Some(kind) = Kind::from_type_name(&typname)
            {
                self.known.extras[t.index()].push(Extra { name: column.clone(), kind });
            }
            self.known.columns[t.index()].insert(column);
        }
        Ok(())
    }

    /// One transaction with `due[k]` changes of each kind. Counts are added
    /// to the totals only after COMMIT succeeded.
    async fn transaction(&mut self, client: &mut Client, due: &[u64; KINDS]) -> Result<()> {
        let result = {
            let tx = client.transaction().await.map_err(|e| pg_error(&e, "starting a transaction"))?;
            match self.changes(&tx, due).await {
                Ok(d) => tx.commit().await.map(|()| d).map_err(step("committing")),
                Err(e) => Err(e), // dropping `tx` rolls it back
            }
        };
        match result {
            Ok(mut d) => {
                d.transactions = 1;
                self.totals.add(&d);
                Ok(())
            }
            Err(e) if retryable(&e.error) => {
                tracing::warn!(error = %pg_error(&e.error, e.what), "transaction rolled back; its changes are not counted");
                self.totals.transactions_rolled_back += 1;
                Ok(())
            }
            Err(e) if e.error.code() == Some(&SqlState::UNDEFINED_COLUMN) => {
                // Someone dropped a column the generator fills: look again.
                tracing::warn!(error = %pg_error(&e.error, e.what), "a column changed under the generator; re-reading the tables");
                self.totals.transactions_rolled_back += 1;
                self.statements.clear();
                self.refresh(client).await
            }
            Err(e) => Err(pg_error(&e.error, e.what)),
        }
    }

    async fn changes(&mut self, tx: &Transaction<'_>, due: &[u64; KINDS]) -> Step<ActivityTotals> {
        let mut d = ActivityTotals::default();
        if due[NEW_USER] > 0 {
            d.users_inserted = self.insert_users(tx, due[NEW_USER]).await?;
        }
        if due[NEW_ORDER] > 0 {
            d.orders_inserted = self.insert_orders(tx, due[NEW_ORDER]).await?;
        }
        if due[NEW_EVENT] > 0 {
            d.events_inserted = self.insert_events(tx, due[NEW_EVENT]).await?;
        }
        if due[STATUS_UPDATE] > 0 {
            for (from, to) in self.update_statuses(tx, due[STATUS_UPDATE]).await? {
                d.orders_updated += 1;
                *d.status_changes.entry(format!("{from}->{to}")).or_default() += 1;
            }
        }
        if due[PLAN_CHANGE] > 0 {
            d.users_updated = self.change_plans(tx, due[PLAN_CHANGE]).await?;
        }
        if due[SOFT_DELETE] > 0 {
            d.users_soft_deleted = self.soft_delete_users(tx, due[SOFT_DELETE]).await?;
        }
        if due[HARD_DELETE] > 0 {
            // Mostly events (the biggest table), then orders, then purges of
            // users already soft-deleted.
            let (mut events, mut orders, mut users) = (0, 0, 0);
            for _ in 0..due[HARD_DELETE] {
                match self.rng.random_range(0..10) {
                    0..6 => events += 1,
                    6..9 => orders += 1,
                    _ if self.known.soft_deleted_users > 0 => users += 1,
                    _ => orders += 1,
                }
            }
            if events > 0 {
                d.events_hard_deleted = self.delete_rows(tx, Table::Events, events).await?;
            }
            if orders > 0 {
                d.orders_hard_deleted = self.delete_rows(tx, Table::Orders, orders).await?;
            }
            if users > 0 {
                let (u, o) = self.purge_users(tx, users).await?;
                d.users_hard_deleted = u;
                d.orders_hard_deleted += o;
            }
        }
        Ok(d)
    }

    async fn prepared(&mut self, tx: &Transaction<'_>, sql: String) -> Step<Statement> {
        if let Some(s) = self.statements.get(&sql) {
            return Ok(s.clone());
        }
        let s = tx.prepare(&sql).await.map_err(step("preparing a statement"))?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// A random id of `table` (a candidate: the SQL picks the first row at or
    /// after it). Half are drawn from the newest fifth of the ids, where
    /// the activity is.
    fn candidate(&mut self, table: Table) -> i64 {
        let Some((lo, hi)) = self.known.ids[table.index()] else { return 1 };
        if hi <= lo {
            return lo;
        }
        if self.rng.random_bool(0.5) {
            self.rng.random_range(hi - (hi - lo) / 5..=hi)
        } else {
            self.rng.random_range(lo..=hi)
        }
    }

    fn note_ids(&mut self, table: Table, ids: impl Iterator<Item = i64>) {
        for id in ids {
            let r = &mut self.known.ids[table.index()];
            *r = Some(match *r {
                Some((lo, hi)) => (lo.min(id), hi.max(id)),
                None => (id, id),
            });
        }
    }

    /// Values for the added columns of `table`, one array per column.
    fn extra_values(&mut self, table: Table, n: u64) -> Vec<Vec<Option<String>>> {
        let extras = self.known.extras[table.index()].clone();
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        extras.iter().map(|x| (0..n).map(|_| extra_value(&mut self.rng, x.kind, now)).collect()).collect()
    }

    async fn insert_users(&mut self, tx: &Transaction<'_>, n: u64) -> Step<u64> {
        let (mut emails, mut names, mut countries, mut plans) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            self.serial += 1;
            let (mut email, mut name) = (String::new(), String::new());
            // A random tag keeps emails distinct from the baseline's and across runs.
            let tag = self.rng.random_range(1_000_000..10_000_000u64) * 1000 + self.serial % 1000;
            user_identity(&mut self.rng, tag, &mut email, &mut name);
            emails.push(email);
            names.push(name);
            countries.push(pick(&mut self.rng, COUNTRIES).to_owned());
            plans.push(weighted(&mut self.rng, PLANS).to_owned());
        }
        let extras = self.extra_values(Table::Users, n);
        let mut cols = Columns::default();
        cols.push("email", "text[]", "v.c1", Box::new(emails));
        cols.push("full_name", "text[]", "v.c2", Box::new(names));
        cols.push("country", "text[]", "v.c3", Box::new(countries));
        cols.push("plan", "text[]", "v.c4", Box::new(plans));
        cols.extras(&self.known.extras[Table::Users.index()], extras);
        let sql =
            format!("INSERT INTO users ({}) SELECT {} FROM {} RETURNING id", cols.names(), cols.exprs(), cols.unnest());
        let stmt = self.prepared(tx, sql).await?;
        let rows = tx.query(&stmt, &cols.params()).await.map_err(step("inserting users"))?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        self.note_ids(Table::Users, ids.iter().copied());
        self.known.live_users += ids.len() as i64;
        Ok(ids.len() as u64)
    }

    async fn insert_orders(&mut self, tx: &Transaction<'_>, n: u64) -> Step<u64> {
        if self.known.live_users <= 0 {
            return Ok(0); // nobody to order; `seed` or new users come first
        }
        let (mut cands, mut qty, mut amounts, mut currencies) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            cands.push(self.candidate(Table::Users));
            qty.push(self.rng.random_range(1..=9i32));
            let mut a = String::new();
            push_cents(&mut a, self.rng.random_range(199..250_000));
            amounts.push(a);
            currencies.push(weighted(&mut self.rng, CURRENCIES).to_owned());
        }
        let extras = self.extra_values(Table::Orders, n);
        let mut cols = Columns::default();
        cols.push("user_id", "int8[]", "u.id", Box::new(cands));
        cols.constant("status", "'pending'");
        cols.push("quantity", "int4[]", "v.c2", Box::new(qty));
        cols.push("amount", "text[]", "v.c3::numeric", Box::new(amounts));
        cols.push("currency", "text[]", "v.c4", Box::new(currencies));
        cols.extras(&self.known.extras[Table::Orders.index()], extras);
        let sql = format!(
            "INSERT INTO orders ({}) SELECT {} FROM {} CROSS JOIN LATERAL {} u RETURNING id",
            cols.names(),
            cols.exprs(),
            cols.unnest(),
            live_user_at("v.c1")
        );
        let stmt = self.prepared(tx, sql).await?;
        let rows = tx.query(&stmt, &cols.params()).await.map_err(step("inserting orders"))?;
        self.note_ids(Table::Orders, rows.iter().map(|r| r.get(0)));
        Ok(rows.len() as u64)
    }

    async fn insert_events(&mut self, tx: &Transaction<'_>, n: u64) -> Step<u64> {
        let (mut users, mut kinds, mut props, mut sessions) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            users.push(self.candidate(Table::Users));
            let kind = weighted(&mut self.rng, EVENT_TYPES);
            let mut p = String::new();
            event_properties(&mut self.rng, kind, &mut p);
            let mut s = String::new();
            push_uuid(&mut s, &mut self.rng);
            kinds.push(kind.to_owned());
            props.push(p);
            sessions.push(s);
        }
        let extras = self.extra_values(Table::Events, n);
        let mut cols = Columns::default();
        cols.push("user_id", "int8[]", "v.c1", Box::new(users));
        cols.push("event_type", "text[]", "v.c2", Box::new(kinds));
        cols.push("properties", "text[]", "v.c3::jsonb", Box::new(props));
        cols.push("session_id", "text[]", "v.c4::uuid", Box::new(sessions));
        cols.extras(&self.known.extras[Table::Events.index()], extras);
        let sql = format!(
            "INSERT INTO events ({}) SELECT {} FROM {} RETURNING id",
            cols.names(),
            cols.exprs(),
            cols.unnest()
        );
        let stmt = self.prepared(tx, sql).await?;
        let rows = tx.query(&stmt, &cols.params()).await.map_err(step("inserting events"))?;
        self.note_ids(Table::Events, rows.iter().map(|r| r.get(0)));
        Ok(rows.len() as u64)
    }

    /// Moves orders one step: pending → paid (or cancelled), paid → shipped
    /// (or cancelled), shipped → delivered. Returns each (from, to).
    async fn update_statuses(&mut self, tx: &Transaction<'_>, n: u64) -> Step<Vec<(String, String)>> {
        if self.known.ids[Table::Orders.index()].is_none() {
            return Ok(vec![]);
        }
        let mut cands = vec![];
        let mut rolls = vec![];
        for _ in 0..n {
            cands.push(self.candidate(Table::Orders));
            rolls.push(self.rng.random_range(0..100i32));
        }
        let extras = self.extra_values(Table::Orders, n);
        let mut cols = Columns::default();
        cols.push("", "int8[]", "", Box::new(cands));
        cols.push("", "int4[]", "", Box::new(rolls));
        cols.extras(&self.known.extras[Table::Orders.index()], extras);
        let sql = format!(
            "WITH pick AS (
               SELECT DISTINCT ON (o.id) o.id, o.status AS old_status, v.*
               FROM {} CROSS JOIN LATERAL {} o
               ORDER BY o.id
             )
             UPDATE orders o SET status = CASE
                 WHEN o.status = 'pending' THEN CASE WHEN p.c2 < 8 THEN 'cancelled' ELSE 'paid' END
                 WHEN o.status = 'paid' THEN CASE WHEN p.c2 < 3 THEN 'cancelled' ELSE 'shipped' END
                 ELSE 'delivered' END{}
             FROM pick p
             WHERE o.id = p.id AND o.status = p.old_status
             RETURNING p.old_status, o.status",
            cols.unnest(),
            open_order_at("v.c1"),
            cols.extra_assignments("p"),
        );
        let stmt = self.prepared(tx, sql).await?;
        let rows = tx.query(&stmt, &cols.params()).await.map_err(step("updating order statuses"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Upgrades or downgrades live users' plans (always to a different plan).
    async fn change_plans(&mut self, tx: &Transaction<'_>, n: u64) -> Step<u64> {
        if self.known.live_users <= 0 {
            return Ok(0);
        }
        let mut cands = vec![];
        let mut rolls = vec![];
        for _ in 0..n {
            cands.push(self.candidate(Table::Users));
            rolls.push(self.rng.random_range(0..100i32));
        }
        let extras = self.extra_values(Table::Users, n);
        let mut cols = Columns::default();
        cols.push("", "int8[]", "", Box::new(cands));
        cols.push("", "int4[]", "", Box::new(rolls));
        cols.extras(&self.known.extras[Table::Users.index()], extras);
        let sql = format!(
            "WITH pick AS (
               SELECT DISTINCT ON (u.id) u.id, v.*
               FROM {} CROSS JOIN LATERAL {} u
               ORDER BY u.id
             )
             UPDATE users u SET plan = CASE u.plan
                 WHEN 'free' THEN 'pro'
                 WHEN 'pro' THEN CASE WHEN p.c2 < 50 THEN 'team' ELSE 'free' END
                 WHEN 'team' THEN CASE WHEN p.c2 < 30 THEN 'enterprise' ELSE 'pro' END
                 WHEN 'enterprise' THEN 'team'
                 ELSE 'free' END{}
             FROM pick p
             WHERE u.id = p.id AND u.deleted_at IS NULL",
            cols.unnest(),
            live_user_at("v.c1"),
            cols.extra_assignments("p"),
        );
        let stmt = self.prepared(tx, sql).await?;
        tx.execute(&stmt, &cols.params()).await.map_err(step("changing plans"))
    }

    async fn soft_delete_users(&mut self, tx: &Transaction<'_>, n: u64) -> Step<u64> {
        if self.known.live_users <= 0 {
            return Ok(0);
        }
        let cands: Vec<i64> = (0..n).map(|_| self.candidate(Table::Users)).collect();
        let sql = format!(
            "WITH pick AS (
               SELECT DISTINCT u.id FROM unnest($1::int8[]) AS v(c1) CROSS JOIN LATERAL {} u
             )
             UPDATE users u SET deleted_at = now()
             FROM pick p
             WHERE u.id = p.id AND u.deleted_at IS NULL",
            live_user_at("v.c1")
        );
        let stmt = self.prepared(tx, sql).await?;
        let n = tx.execute(&stmt, &[&cands]).await.map_err(step("soft-deleting users"))?;
        self.known.live_users -= n as i64;
        self.known.soft_deleted_users += n as i64;
        Ok(n)
    }

    /// DELETEs up to `n` rows of `table` (events or orders).
    async fn delete_rows(&mut self, tx: &Transaction<'_>, table: Table, n: u64) -> Step<u64> {
        if self.known.ids[table.index()].is_none() {
            return Ok(0);
        }
        let cands: Vec<i64> = (0..n).map(|_| self.candidate(table)).collect();
        let t = table.name();
        let sql = format!(
            "WITH pick AS (
               SELECT DISTINCT r.id FROM unnest($1::int8[]) AS v(c1) CROSS JOIN LATERAL
                 ((SELECT id FROM {t} WHERE id >= v.c1 ORDER BY id LIMIT 1)
                  UNION ALL
                  (SELECT id FROM {t} WHERE id < v.c1 ORDER BY id DESC LIMIT 1)
                  LIMIT 1) r
             )
             DELETE FROM {t} d USING pick p WHERE d.id = p.id"
        );
        let stmt = self.prepared(tx, sql).await?;
        let what = if table == Table::Events { "deleting events" } else { "deleting orders" };
        tx.execute(&stmt, &[&cands]).await.map_err(step(what))
    }

    /// Purges up to `n` soft-deleted users: their orders first (the foreign
    /// key), then the users. Returns (users, orders) deleted.
    async fn purge_users(&mut self, tx: &Transaction<'_>, n: u64) -> Step<(u64, u64)> {
        let cands: Vec<i64> = (0..n).map(|_| self.candidate(Table::Users)).collect();
        let sql = format!(
            "SELECT u.id FROM users u
             WHERE u.id IN (SELECT DISTINCT d.id FROM unnest($1::int8[]) AS v(c1) CROSS JOIN LATERAL {} d)
             ORDER BY u.id
             FOR UPDATE",
            deleted_user_at("v.c1")
        );
        let stmt = self.prepared(tx, sql).await?;
        let rows = tx.query(&stmt, &[&cands]).await.map_err(step("choosing users to purge"))?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        if ids.is_empty() {
            return Ok((0, 0));
        }
        let stmt = self.prepared(tx, "DELETE FROM orders WHERE user_id = ANY($1::int8[])".to_owned()).await?;
        let orders = tx.execute(&stmt, &[&ids]).await.map_err(step("deleting purged users' orders"))?;
        let stmt = self
            .prepared(tx, "DELETE FROM users WHERE id = ANY($1::int8[]) AND deleted_at IS NOT NULL".to_owned())
            .await?;
        let users = tx.execute(&stmt, &[&ids]).await.map_err(step("purging users"))?;
        self.known.soft_deleted_users -= users as i64;
        Ok((users, orders))
    }

    /// Adds a nullable column without a default (so no existing value
    /// changes) to a random table; later inserts and updates fill it.
    async fn change_schema(&mut self, client: &mut Client) -> Result<()> {
        let table = TABLES[self.rng.random_range(0..TABLES.len())];
        let (name, kind) = self.next_column(table);
        let sql = format!(
            "SET LOCAL lock_timeout = '{SCHEMA_LOCK_TIMEOUT}'; ALTER TABLE {} ADD COLUMN {} {}",
            quote_ident(table.name()),
            quote_ident(&name),
            kind.column_type()
        );
        let what = format!("adding column {}.{name}", table.name());
        let tx = client.transaction().await.map_err(|e| pg_error(&e, "starting a transaction"))?;
        let result = match tx.batch_execute(&sql).await {
            Ok(()) => tx.commit().await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.totals.columns_added += 1;
                self.totals.transactions += 1;
                self.totals.added_columns.push(format!("{}.{name}", table.name()));
                self.known.columns[table.index()].insert(name.clone());
                self.known.extras[table.index()].push(Extra { name, kind });
                Ok(())
            }
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_COLUMN) => {
                // Someone else added it meanwhile; take another name next time.
                self.known.columns[table.index()].insert(name);
                Ok(())
            }
            Err(e) if retryable(&e) => {
                tracing::warn!(error = %pg_error(&e, &what), "schema change skipped; the next one comes at the next interval");
                self.totals.transactions_rolled_back += 1;
                Ok(())
            }
            Err(e) => Err(pg_error(&e, &what)),
        }
    }

    /// The first listed column `table` does not have yet, else `attr_N`.
    fn next_column(&self, table: Table) -> (String, Kind) {
        let have = &self.known.columns[table.index()];
        if let Some((name, kind)) = table.new_columns().iter().find(|(n, _)| !have.contains(*n)) {
            return ((*name).to_owned(), *kind);
        }
        const CYCLE: [Kind; 5] = [Kind::Text, Kind::Int, Kind::Bool, Kind::Numeric, Kind::Timestamptz];
        let mut n = 1;
        loop {
            let name = format!("attr_{n}");
            if !have.contains(&name) {
                return (name, CYCLE[n % CYCLE.len()]);
            }
            n += 1;
        }
    }
}

/// Columns the generator added (in this run or an earlier one), and so fills.
fn is_ours(table: Table, column: &str) -> bool {
    table.new_columns().iter().any(|(n, _)| *n == column)
        || column.strip_prefix("attr_").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

fn extra_value(rng: &mut SmallRng, kind: Kind, now: i64) -> Option<String> {
    if rng.random_ratio(3, 20) {
        return None;
    }
    let mut s = String::new();
    match kind {
        Kind::Text => {
            s.push_str(pick(rng, WORDS));
            s.push('-');
            push_u64(&mut s, rng.random_range(1..1000));
        }
        Kind::Bool => s.push_str(if rng.random_bool(0.5) { "true" } else { "false" }),
        Kind::Int => push_u64(&mut s, rng.random_range(0..10_000)),
        Kind::Numeric => push_cents(&mut s, rng.random_range(0..100_000)),
        Kind::Timestamptz => push_epoch(&mut s, now - rng.random_range(0..30 * 86400)),
    }
    Some(s)
}

/// The first live user at or after `cand`, wrapping around.
fn live_user_at(cand: &str) -> String {
    format!(
        "((SELECT id FROM users WHERE id >= {cand} AND deleted_at IS NULL ORDER BY id LIMIT 1)
          UNION ALL
          (SELECT id FROM users WHERE id < {cand} AND deleted_at IS NULL ORDER BY id DESC LIMIT 1)
          LIMIT 1)"
    )
}

/// The first soft-deleted user at or after `cand`, wrapping around.
fn deleted_user_at(cand: &str) -> String {
    format!(
        "((SELECT id FROM users WHERE id >= {cand} AND deleted_at IS NOT NULL ORDER BY id LIMIT 1)
          UNION ALL
          (SELECT id FROM users WHERE id < {cand} AND deleted_at IS NOT NULL ORDER BY id DESC LIMIT 1)
          LIMIT 1)"
    )
}

/// The first order at or after `cand` that is not delivered or cancelled, wrapping around.
fn open_order_at(cand: &str) -> String {
    format!(
        "((SELECT id, status FROM orders WHERE id >= {cand} AND status IN ('pending', 'paid', 'shipped') ORDER BY id LIMIT 1)
          UNION ALL
          (SELECT id, status FROM orders WHERE id < {cand} AND status IN ('pending', 'paid', 'shipped') ORDER BY id DESC LIMIT 1)
          LIMIT 1)"
    )
}

/// The columns of a multi-row statement: each parameter is an array, unnested
/// as `v.c1`, `v.c2`, …
#[derive(Default)]
struct Columns {
    names: Vec<String>,
    exprs: Vec<String>,
    /// Each parameter's array type (`text[]`) and value.
    params: Vec<(String, Box<dyn ToSql + Sync + Send>)>,
    /// The `v.cN` of each extra column, with its name and cast.
    extras: Vec<(String, usize, &'static str)>,
}

impl Columns {
    /// A parameter (an array of `array_type`) and, unless `name` is empty,
    /// the column it fills with `expr`.
    fn push(&mut self, name: &str, array_type: &str, expr: &str, value: Box<dyn ToSql + Sync + Send>) {
        if !name.is_empty() {
            self.names.push(name.to_owned());
            self.exprs.push(expr.to_owned());
        }
        self.params.push((array_type.to_owned(), value));
    }

    /// A column filled with a constant expression.
    fn constant(&mut self, name: &str, expr: &str) {
        self.names.push(name.to_owned());
        self.exprs.push(expr.to_owned());
    }

    fn extras(&mut self, extras: &[Extra], values: Vec<Vec<Option<String>>>) {
        for (x, v) in extras.iter().zip(values) {
            self.params.push(("text[]".to_owned(), Box::new(v)));
            let n = self.params.len();
            self.names.push(quote_ident(&x.name));
            self.exprs.push(format!("v.c{n}::{}", x.kind.cast()));
            self.extras.push((x.name.clone(), n, x.kind.cast()));
        }
    }

    fn names(&self) -> String {
        self.names.join(", ")
    }

    fn exprs(&self) -> String {
        self.exprs.join(", ")
    }

    /// `unnest($1::text[], …) AS v(c1, …)`
    fn unnest(&self) -> String {
        let args: Vec<String> = self.params.iter().enumerate().map(|(i, (t, _))| format!("${}::{t}", i + 1)).collect();
        let names: Vec<String> = (1..=self.params.len()).map(|i| format!("c{i}")).collect();
        format!("unnest({}) AS v({})", args.join(", "), names.join(", "))
    }

    /// `, "col" = p.cN::type` for every extra column.
    fn extra_assignments(&self, alias: &str) -> String {
        self.extras.iter().map(|(name, n, cast)| format!(", {} = {alias}.c{n}::{cast}", quote_ident(name))).collect()
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|(_, v)| v.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// Failures worth rolling back and carrying on after: another session got
/// in the way.
fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::LOCK_NOT_AVAILABLE
    )
}

fn missing_schema(e: Error) -> Error {
    if e.kind() == simplyload_core::ErrorKind::NotFound {
        e.with_hint("create the tables first: simplyload playground seed (or playground schema)")
    } else {
        e
    }
}

/// Resolves once `stop` is true; never, if its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_rates() {
        let r = Rates::derived(50.0, 200.0);
        assert_eq!(r.users_per_hour, 10.0);
        assert_eq!(r.status_updates_per_hour, 100.0);
        assert_eq!(r.plan_changes_per_hour, 5.0);
        assert_eq!(r.soft_deletes_per_hour, 1.0);
        assert_eq!(r.hard_deletes_per_hour, 12.5);
    }

    #[test]
    fn unnest_lists_every_parameter() {
        let mut c = Columns::default();
        c.push("user_id", "int8[]", "u.id", Box::new(vec![1i64]));
        c.constant("status", "'pending'");
        c.extras(&[Extra { name: "Odd \"name\"".into(), kind: Kind::Bool }], vec![vec![Some("true".into())]]);
        assert_eq!(c.names(), "user_id, status, \"Odd \"\"name\"\"\"");
        assert_eq!(c.exprs(), "u.id, 'pending', v.c2::boolean");
        assert_eq!(c.unnest(), "unnest($1::int8[], $2::text[]) AS v(c1, c2)");
        assert_eq!(c.extra_assignments("p"), ", \"Odd \"\"name\"\"\" = p.c2::boolean");
    }

    #[test]
    fn next_columns_follow_the_list_then_attr_n() {
        let mut a = Activity::new(ActivityOptions::new(Rates::derived(1.0, 1.0)));
        for c in Table::Users.base_columns() {
            a.known.columns[0].insert((*c).to_owned());
        }
        assert_eq!(a.next_column(Table::Users).0, "referral_code");
        for (n, _) in Table::Users.new_columns() {
            a.known.columns[0].insert((*n).to_owned());
        }
        assert_eq!(a.next_column(Table::Users).0, "attr_1");
        assert!(is_ours(Table::Users, "attr_12"));
        assert!(!is_ours(Table::Users, "attr_x"));
        assert!(!is_ours(Table::Orders, "referral_code"));
    }
}
