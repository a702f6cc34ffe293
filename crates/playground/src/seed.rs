//! The baseline (PR-1.4): users, then orders and events that refer to them,
//! inserted with `COPY … FROM STDIN`.
//!
//! Why it is fast: rows are generated on blocking threads and streamed to
//! Postgres in 1 MiB chunks, so generating and parsing overlap and memory
//! stays flat whatever the count; a large table is split across the given
//! connections, each running its own COPY (Postgres parses one COPY on one
//! core); and rows come in time order — ids, `created_at` and `updated_at`
//! grow together, as in a real application — so the `updated_at` indexes
//! are appended to instead of being updated at random places, which would
//! cost more than everything else together.
//!
//! Why it is deterministic: the ids are reserved up front (the identity
//! sequence is moved past them under a table lock, so concurrent inserts
//! never collide) and written explicitly, and every block of rows has its
//! own random stream derived from the seed, the table and the block number.
//! The same seed gives the same rows whatever the number of connections,
//! and, into an empty schema, the same ids.

use crate::generate::{
    COUNTRIES, CURRENCIES, EVENT_TYPES, PLANS, esc, event_properties, pick, push_cents, push_epoch, push_u64,
    push_uuid, user_identity, weighted,
};
use bytes::Bytes;
use futures::SinkExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use simplyload_core::{Error, Result};
use simplyload_postgres::connect::pg_error;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How many rows of each table to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SeedCounts {
    pub users: u64,
    pub orders: u64,
    pub events: u64,
}

impl SeedCounts {
    /// The seed's defaults: `INITIAL_USERS`, `INITIAL_ORDERS`, `INITIAL_EVENTS`.
    pub const DEFAULT: SeedCounts = SeedCounts { users: 1000, orders: 5000, events: 20000 };
}

/// One table of the baseline is in: its name, the rows COPY reported, how long it took.
#[derive(Debug, Clone)]
pub struct SeedProgress {
    pub table: &'static str,
    pub rows: u64,
    pub elapsed: Duration,
}

/// Size of the chunks handed to a COPY stream.
const CHUNK: usize = 1 << 20;
/// Rows per random stream: the unit that makes the output independent of
/// how the rows are split across connections.
const BLOCK: u64 = 1 << 16;
/// Below this a table is loaded over one connection: splitting costs more
/// than it saves.
const PARALLEL_MIN_ROWS: u64 = 100_000;

const DAY: i64 = 86_400;

/// Order statuses by age: recent orders are still moving, old ones are done.
const STATUS_BY_AGE: &[(i64, &[(&str, u32)])] = &[
    (3600, &[("pending", 60), ("paid", 35), ("cancelled", 5)]),
    (DAY, &[("pending", 10), ("paid", 45), ("shipped", 40), ("cancelled", 5)]),
    (7 * DAY, &[("paid", 5), ("shipped", 35), ("delivered", 55), ("cancelled", 5)]),
    (i64::MAX, &[("delivered", 93), ("cancelled", 7)]),
];

/// Writes row `i` (its id given) as one COPY text line.
type RowFn = std::sync::Arc<dyn Fn(&mut SmallRng, u64, i64, &mut String) + Send + Sync>;

/// Inserts generated rows with COPY over one connection and returns the rows
/// Postgres reported. Deterministic for a given `seed` (the rows' content;
/// the timestamps are relative to the server's clock).
pub async fn seed(client: &Client, counts: SeedCounts, seed: u64) -> Result<SeedCounts> {
    seed_with_progress(&[client], counts, seed, &mut |_| {}).await
}

/// [`seed`] over several connections (large tables are split across them),
/// calling `progress` after each table.
pub async fn seed_with_progress(
    clients: &[&Client],
    counts: SeedCounts,
    seed: u64,
    progress: &mut (dyn FnMut(SeedProgress) + Send),
) -> Result<SeedCounts> {
    let Some(client) = clients.first().copied() else {
        return Err(Error::internal("seeding needs at least one connection"));
    };
    let now: i64 = client
        .query_one("SELECT extract(epoch FROM now())::int8", &[])
        .await
        .map_err(|e| pg_error(&e, "reading the clock"))?
        .get(0);

    let started = Instant::now();
    let n = counts.users;
    let users: RowFn = std::sync::Arc::new(move |rng, i, id, buf| {
        let created = 3600 + spread(rng, i, n, 3 * 365 * DAY - 3600);
        let updated = rng.random_range(0..=created);
        let (mut email, mut name) = (String::new(), String::new());
        user_identity(rng, i, &mut email, &mut name);
        push_u64(buf, id as u64);
        buf.push('\t');
        esc(&email, buf);
        buf.push('\t');
        esc(&name, buf);
        buf.push('\t');
        buf.push_str(pick(rng, COUNTRIES));
        buf.push('\t');
        buf.push_str(weighted(rng, PLANS));
        buf.push('\t');
        push_epoch(buf, now - created);
        buf.push('\t');
        push_epoch(buf, now - updated);
        buf.push('\t');
        // One in fifty has left; leaving was their last change.
        if rng.random_ratio(1, 50) {
            push_epoch(buf, now - updated);
        } else {
            buf.push_str("\\N");
        }
        buf.push('\n');
    });
    let users = copy_table(clients, "users", USERS_COLUMNS, n, seed, 1, users).await?;
    progress(SeedProgress { table: "users", rows: users, elapsed: started.elapsed() });

    // Orders and events refer to users that exist: ids have gaps once
    // `run --hard-deletes` has purged some.
    let user_ids: Vec<i64> = client
        .query("SELECT id FROM users ORDER BY id", &[])
        .await
        .map_err(|e| pg_error(&e, "reading user ids"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if user_ids.is_empty() {
        return Ok(SeedCounts { users, orders: 0, events: 0 });
    }
    let user_ids = std::sync::Arc::new(user_ids);
    let ids = user_ids.clone();

    let started = Instant::now();
    let n = counts.orders;
    let orders: RowFn = std::sync::Arc::new(move |rng, i, id, buf| {
        let created = 60 + spread(rng, i, n, 2 * 365 * DAY - 60);
        let statuses = STATUS_BY_AGE.iter().find(|(age, _)| created < *age).map(|(_, s)| *s).unwrap_or(&[]);
        let status = weighted(rng, statuses);
        // Orders change within two weeks of being placed; pending ones not yet.
        let updated = if status == "pending" { created } else { created - rng.random_range(0..=created.min(14 * DAY)) };
        push_u64(buf, id as u64);
        buf.push('\t');
        push_u64(buf, ids[rng.random_range(0..ids.len())] as u64);
        buf.push('\t');
        buf.push_str(status);
        buf.push('\t');
        push_u64(buf, rng.random_range(1..=9));
        buf.push('\t');
        push_cents(buf, rng.random_range(199..250_000));
        buf.push('\t');
        buf.push_str(weighted(rng, CURRENCIES));
        buf.push('\t');
        push_epoch(buf, now - created);
        buf.push('\t');
        push_epoch(buf, now - updated);
        buf.push('\n');
    });
    let orders = copy_table(clients, "orders", ORDERS_COLUMNS, n, seed, 2, orders).await?;
    progress(SeedProgress { table: "orders", rows: orders, elapsed: started.elapsed() });

    let started = Instant::now();
    let n = counts.events;
    let ids = user_ids;
    let events: RowFn = std::sync::Arc::new(move |rng, i, id, buf| {
        let created = now - 1 - spread(rng, i, n, 90 * DAY - 1);
        let kind = weighted(rng, EVENT_TYPES);
        push_u64(buf, id as u64);
        buf.push('\t');
        push_u64(buf, ids[rng.random_range(0..ids.len())] as u64);
        buf.push('\t');
        buf.push_str(kind);
        buf.push('\t');
        event_properties(rng, kind, buf);
        buf.push('\t');
        push_uuid(buf, rng);
        buf.push('\t');
        let mut ts = String::with_capacity(24);
        push_epoch(&mut ts, created);
        buf.push_str(&ts);
        buf.push('\t');
        buf.push_str(&ts);
        buf.push('\n');
    });
    let events = copy_table(clients, "events", EVENTS_COLUMNS, n, seed, 3, events).await?;
    progress(SeedProgress { table: "events", rows: events, elapsed: started.elapsed() });

    client
        .batch_execute("ANALYZE users; ANALYZE orders; ANALYZE events;")
        .await
        .map_err(|e| pg_error(&e, "analyzing the playground tables"))?;
    Ok(SeedCounts { users, orders, events })
}

const USERS_COLUMNS: &str = "id, email, full_name, country, plan, created_at, updated_at, deleted_at";
const ORDERS_COLUMNS: &str = "id, user_id, status, quantity, amount, currency, created_at, updated_at";
const EVENTS_COLUMNS: &str = "id, user_id, event_type, properties, session_id, created_at, updated_at";

/// Seconds ago for row `i` of `n` spread over `span` seconds, oldest first:
/// row `i` falls at a random point of its own slot, so the times are random
/// yet never go back as the ids grow.
fn spread(rng: &mut SmallRng, i: u64, n: u64, span: i64) -> i64 {
    let u: f64 = rng.random();
    let at = (i as f64 + u) / n.max(1) as f64;
    ((1.0 - at) * span as f64) as i64
}

/// The random stream of one block of one table.
fn block_rng(seed: u64, table: u64, block: u64) -> SmallRng {
    let mix = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ table.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ block;
    SmallRng::seed_from_u64(mix)
}

/// Loads `count` rows of `table`: reserves their ids, then streams them
/// through one COPY per connection (one only for small tables).
async fn copy_table(
    clients: &[&Client],
    table: &'static str,
    columns: &'static str,
    count: u64,
    seed: u64,
    salt: u64,
    row: RowFn,
) -> Result<u64> {
    if count == 0 {
        return Ok(0);
    }
    let first_id = reserve_ids(clients[0], table, count).await?;
    let parts = if count >= PARALLEL_MIN_ROWS { clients.len() as u64 } else { 1 };
    let blocks_per_part = count.div_ceil(BLOCK).div_ceil(parts);
    let sql = format!("COPY {table} ({columns}) FROM STDIN");
    let mut copies = Vec::new();
    for (p, client) in clients.iter().enumerate().take(parts as usize) {
        let start = p as u64 * blocks_per_part * BLOCK;
        let end = ((p as u64 + 1) * blocks_per_part * BLOCK).min(count);
        if start < end {
            let rows = Generator { seed, salt, row: row.clone() };
            copies.push(copy_part(client, &sql, table, start..end, first_id, rows));
        }
    }
    Ok(futures::future::try_join_all(copies).await?.into_iter().sum())
}

/// Moves `table`'s identity sequence past `n` ids and returns the first.
/// The table lock keeps concurrent inserts (which take their ids from the
/// sequence) out while the sequence moves.
async fn reserve_ids(client: &Client, table: &str, n: u64) -> Result<i64> {
    let what = format!("reserving {n} ids in {table}");
    client
        .batch_execute(&format!("BEGIN; LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))
        .await
        .map_err(|e| pg_error(&e, &what))?;
    let reserved = async {
        let sql = format!(
            "SELECT greatest(nextval(pg_get_serial_sequence('{table}', 'id')), coalesce((SELECT max(id) FROM {table}), 0) + 1)"
        );
        let first: i64 = client.query_one(&sql, &[]).await?.get(0);
        client
            .query_one(
                &format!("SELECT setval(pg_get_serial_sequence('{table}', 'id'), $1)"),
                &[&(first + n as i64 - 1)],
            )
            .await?;
        client.batch_execute("COMMIT").await?;
        Ok(first)
    }
    .await;
    match reserved {
        Ok(first) => Ok(first),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(pg_error(&e, &what))
        }
    }
}

/// What makes a table's rows: the row function and the random streams it
/// draws from (`seed` and the table's `salt`).
struct Generator {
    seed: u64,
    salt: u64,
    row: RowFn,
}

/// Streams rows `range` of a table through one COPY, generating them on a
/// blocking thread while Postgres parses the previous chunk.
async fn copy_part(
    client: &Client,
    sql: &str,
    table: &str,
    range: std::ops::Range<u64>,
    first_id: i64,
    rows: Generator,
) -> Result<u64> {
    let Generator { seed, salt, row } = rows;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let producer = tokio::task::spawn_blocking(move || {
        let mut chunk = String::with_capacity(CHUNK + 4096);
        let mut rng = block_rng(seed, salt, range.start / BLOCK);
        for i in range {
            if i % BLOCK == 0 {
                rng = block_rng(seed, salt, i / BLOCK);
            }
            row(&mut rng, i, first_id + i as i64, &mut chunk);
            if chunk.len() >= CHUNK {
                let full = std::mem::replace(&mut chunk, String::with_capacity(CHUNK + 4096));
                if tx.blocking_send(Bytes::from(full)).is_err() {
                    return; // the COPY failed; its error is reported there
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Bytes::from(chunk));
        }
    });
    let what = format!("COPY into {table}");
    let sink = client.copy_in::<_, Bytes>(sql).await.map_err(|e| pg_error(&e, &what))?;
    futures::pin_mut!(sink);
    while let Some(chunk) = rx.recv().await {
        sink.send(chunk).await.map_err(|e| pg_error(&e, &what))?;
    }
    producer.await.map_err(|e| Error::internal(format!("generating {table} rows: {e}")))?;
    sink.finish().await.map_err(|e| pg_error(&e, &what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_times_never_go_back() {
        let mut rng = block_rng(1, 1, 0);
        let n = 10_000;
        let mut last = i64::MAX;
        for i in 0..n {
            let ago = spread(&mut rng, i, n, 90 * DAY);
            assert!(ago <= last && (0..=90 * DAY).contains(&ago), "{i}: {ago} after {last}");
            last = ago;
        }
        assert!(last < 90 * DAY / n as i64 + 1);
    }
}
