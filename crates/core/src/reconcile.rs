//! `reconcile`: is each destination table exactly its source table?
//!
//! Both sides are read by the connectors ([`crate::source::Scanner::scan`],
//! [`crate::Destination::scan`], requests in [`crate::scan`]) and every value is brought to its
//! [`Canon`]ical form before it is hashed, so the two engines' text forms
//! never meet. Rows are compared by key, a key range at a time: the source
//! is read in key order, `chunk_rows` rows per chunk, and the destination's
//! rows in the same range are compared against them — so memory holds one
//! chunk of keys and hashes, never a table. Keys whose order the two engines
//! may not agree on (text under a collation, enums, …) are compared in hash
//! partitions instead (each pass reads both tables and keeps one partition),
//! and tables without a key compare as multisets of row hashes the same way.
//!
//! Rows the destination marks `_simplyload_deleted` count as absent, unless
//! the stream maps a soft-delete column, in which case the flag is compared
//! with that column (`NOT NULL` = deleted).

use crate::canon::Canon;
use crate::destination::Destination;
use crate::error::Result;
pub use crate::scan::{KeyRange, SCAN_BATCH, ScanRequest, ScanSender, ScannedRow};
use crate::schema::{SqlType, TableSpec, ValueLimits};
use crate::source::Scanner;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Key types whose order every engine agrees on, so key ranges mean the same
/// rows on both sides. (Text needs the source's agreement too: see
/// [`Scanner::key_ranges_agree`].)
pub fn range_safe(t: SqlType) -> bool {
    matches!(
        t,
        SqlType::Int16
            | SqlType::Int32
            | SqlType::Int64
            | SqlType::Decimal { .. }
            | SqlType::Text
            | SqlType::Boolean
            | SqlType::Date
            | SqlType::Timestamp
            | SqlType::TimestampTz
            | SqlType::Uuid
    )
}

#[derive(Debug, Clone, Copy)]
pub struct ReconcileOptions {
    /// Source rows per key-range chunk.
    pub chunk_rows: u64,
    /// Rows kept in memory per hash-partition pass.
    pub partition_rows: u64,
    /// Differing keys listed per kind.
    pub samples: usize,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions { chunk_rows: 50_000, partition_rows: 500_000, samples: 5 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    /// In the source, not (live) in the destination.
    Missing,
    /// In the destination, not in the source.
    Extra,
    /// In both, with different values.
    Different,
}

/// A differing row, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub kind: Difference,
    /// The key (`(a, b)` for several columns); for a table without a key, the row's hash.
    pub key: String,
    /// For `different`: the destination columns whose values differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
}

/// The result for one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReconcile {
    pub stream: String,
    pub table: String,
    /// `key ranges`, `hash partitions (N)` or `multiset (N)`.
    pub method: String,
    pub source_rows: u64,
    /// Live destination rows compared (tombstones and deleted rows excluded
    /// unless a soft-delete column is mapped).
    pub destination_rows: u64,
    pub matched: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    pub samples: Vec<Sample>,
    /// Table-level findings (missing table or columns).
    pub notes: Vec<String>,
}

impl TableReconcile {
    pub fn clean(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.different == 0 && self.notes.is_empty()
    }

    fn sample(&mut self, kind: Difference, key: String, columns: Vec<String>, max: usize) {
        if self.samples.iter().filter(|s| s.kind == kind).count() < max {
            self.samples.push(Sample { kind, key, columns });
        }
    }
}

/// Renders a key for people.
pub fn key_text(key: &[Canon]) -> String {
    match key {
        [one] => one.to_string(),
        many => format!("({})", many.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

fn row_digest(hashes: &[u64]) -> [u8; 16] {
    let mut h = Sha256::new();
    for x in hashes {
        h.update(x.to_le_bytes());
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn partition_of(key: &[Canon], parts: u64) -> u64 {
    if parts <= 1 {
        return 0;
    }
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(key, &mut h);
    // Mix again so the partition does not follow the value hash's low bits.
    std::hash::Hasher::finish(&h).wrapping_mul(0x9E37_79B9_7F4A_7C15) % parts
}

/// Compares one stream's source table with its destination table.
/// `soft_delete` is the source column mapped onto `_simplyload_deleted`.
pub async fn reconcile_table(
    source: &dyn Scanner,
    destination: &dyn Destination,
    table: &TableSpec,
    soft_delete: Option<&str>,
    estimated_source_rows: Option<u64>,
    opts: ReconcileOptions,
) -> Result<TableReconcile> {
    let mut r = TableReconcile {
        stream: table.stream.to_string(),
        table: table.name.clone(),
        method: String::new(),
        source_rows: 0,
        destination_rows: 0,
        matched: 0,
        missing: 0,
        extra: 0,
        different: 0,
        samples: Vec::new(),
        notes: Vec::new(),
    };
    let dest_columns = destination.columns(&table.name).await?;
    let dest_exists = dest_columns.is_some();
    match &dest_columns {
        None => r.notes.push(format!("destination table `{}` does not exist", table.name)),
        Some(cols) => {
            let absent: Vec<&str> =
                table.columns.iter().filter(|c| !cols.contains(&c.name)).map(|c| c.name.as_str()).collect();
            if !absent.is_empty() {
                r.notes.push(format!("columns missing in the destination (compared as NULL): {}", absent.join(", ")));
            }
        }
    }
    let ctx = Ctx { source, destination, table, soft_delete, dest_exists, opts };
    let limits = destination.limits();
    let dest_rows = if dest_exists { destination.row_count(&table.name).await?.unwrap_or(0) } else { 0 };
    let parts = estimated_source_rows.unwrap_or(0).max(dest_rows).div_ceil(opts.partition_rows.max(1)).max(1);
    if !table.has_key() {
        r.method = format!("multiset ({parts} pass{})", if parts == 1 { "" } else { "es" });
        for p in 0..parts {
            ctx.multiset_pass(&mut r, p, parts, limits).await?;
        }
    } else if table.key.iter().all(|k| table.column(k).is_some_and(|c| range_safe(c.sql_type)))
        && source.key_ranges_agree(table).await?
    {
        r.method = "key ranges".into();
        ctx.by_ranges(&mut r, limits).await?;
    } else {
        r.method = format!("hash partitions ({parts} pass{})", if parts == 1 { "" } else { "es" });
        for p in 0..parts {
            ctx.keyed_pass(&mut r, KeyRange::default(), None, Some((p, parts)), limits).await?;
        }
    }
    Ok(r)
}

struct Ctx<'a> {
    source: &'a dyn Scanner,
    destination: &'a dyn Destination,
    table: &'a TableSpec,
    soft_delete: Option<&'a str>,
    dest_exists: bool,
    opts: ReconcileOptions,
}

/// A source row held while the destination side of its chunk is read.
struct Held {
    hashes: Vec<u64>,
    flag: bool,
}

impl Ctx<'_> {
    fn request(&self, range: KeyRange, limit: Option<u64>, limits: ValueLimits) -> ScanRequest {
        ScanRequest {
            table: self.table.clone(),
            flag_column: self.soft_delete.map(str::to_owned),
            range,
            limit,
            limits,
        }
    }

    async fn by_ranges(&self, r: &mut TableReconcile, limits: ValueLimits) -> Result<()> {
        let mut after: Option<Vec<Canon>> = None;
        loop {
            let range = KeyRange { after: after.clone(), upto: None };
            let last = self.keyed_pass(r, range, Some(self.opts.chunk_rows), None, limits).await?;
            match last {
                Some(k) => after = Some(k),
                None => return Ok(()),
            }
        }
    }

    /// One step of a keyed comparison. With `limit`, reads at most that many
    /// source rows after `range.after` in key order and compares the
    /// destination's rows up to the last of them (or to the end when the
    /// source ran out); returns the last key when there may be more. With
    /// `partition`, reads both sides whole and keeps one hash partition.
    async fn keyed_pass(
        &self,
        r: &mut TableReconcile,
        range: KeyRange,
        limit: Option<u64>,
        partition: Option<(u64, u64)>,
        limits: ValueLimits,
    ) -> Result<Option<Vec<Canon>>> {
        let keep = |key: &[Canon]| partition.is_none_or(|(p, n)| partition_of(key, n) == p);
        let mut held: HashMap<Vec<Canon>, Held> = HashMap::new();
        let mut last: Option<Vec<Canon>> = None;
        let mut read = 0u64;
        let req = self.request(range.clone(), limit, limits);
        scan_all(
            |tx| self.source.scan(req, tx),
            |rows| {
                for row in rows {
                    read += 1;
                    if !keep(&row.key) {
                        continue;
                    }
                    r.source_rows += 1;
                    last = Some(row.key.clone());
                    held.insert(row.key, Held { hashes: row.hashes, flag: row.flag });
                }
            },
        )
        .await?;
        let more = limit.is_some_and(|l| read >= l);
        let dest_range = KeyRange { after: range.after, upto: if more { last.clone() } else { None } };
        if self.dest_exists {
            let mapped = self.soft_delete.is_some();
            let samples = self.opts.samples;
            let table = self.table;
            let req = self.request(dest_range, None, limits);
            scan_all(
                |tx| self.destination.scan(req, tx),
                |rows| {
                    for row in rows {
                        if !keep(&row.key) {
                            continue;
                        }
                        if row.flag && !mapped {
                            // Deleted in the destination: absent. If the source
                            // still has it, it stays held and counts as missing.
                            continue;
                        }
                        match held.remove(&row.key) {
                            None => {
                                if row.flag {
                                    // A tombstone, or soft-deleted then removed at the source.
                                    continue;
                                }
                                r.destination_rows += 1;
                                r.extra += 1;
                                r.sample(Difference::Extra, key_text(&row.key), Vec::new(), samples);
                            }
                            Some(src) => {
                                r.destination_rows += 1;
                                let mut cols: Vec<String> = table
                                    .columns
                                    .iter()
                                    .zip(src.hashes.iter().zip(&row.hashes))
                                    .filter(|(_, (a, b))| a != b)
                                    .map(|(c, _)| c.name.clone())
                                    .collect();
                                if mapped && src.flag != row.flag {
                                    cols.push(crate::schema::meta::DELETED.to_owned());
                                }
                                if cols.is_empty() {
                                    r.matched += 1;
                                } else {
                                    r.different += 1;
                                    r.sample(Difference::Different, key_text(&row.key), cols, samples);
                                }
                            }
                        }
                    }
                },
            )
            .await?;
        }
        let mut missing: Vec<Vec<Canon>> = held.into_keys().collect();
        r.missing += missing.len() as u64;
        missing.sort();
        for k in missing.into_iter().take(self.opts.samples) {
            r.sample(Difference::Missing, key_text(&k), Vec::new(), self.opts.samples);
        }
        Ok(if more { last } else { None })
    }

    /// One pass of a multiset comparison (tables without a key).
    async fn multiset_pass(&self, r: &mut TableReconcile, p: u64, parts: u64, limits: ValueLimits) -> Result<()> {
        let mut counts: HashMap<[u8; 16], i64> = HashMap::new();
        let keep = |d: &[u8; 16]| parts <= 1 || u64::from_le_bytes(d[..8].try_into().unwrap_or_default()) % parts == p;
        let mut source_rows = 0;
        let req = self.request(KeyRange::default(), None, limits);
        scan_all(
            |tx| self.source.scan(req, tx),
            |rows| {
                for row in rows {
                    let d = row_digest(&row.hashes);
                    if keep(&d) {
                        source_rows += 1;
                        *counts.entry(d).or_default() += 1;
                    }
                }
            },
        )
        .await?;
        r.source_rows += source_rows;
        if self.dest_exists {
            let mut dest_rows = 0;
            let req = self.request(KeyRange::default(), None, limits);
            scan_all(
                |tx| self.destination.scan(req, tx),
                |rows| {
                    for row in rows.into_iter().filter(|row| !row.flag) {
                        let d = row_digest(&row.hashes);
                        if keep(&d) {
                            dest_rows += 1;
                            *counts.entry(d).or_default() -= 1;
                        }
                    }
                },
            )
            .await?;
            r.destination_rows += dest_rows;
        }
        let mut diffs: Vec<([u8; 16], i64)> = counts.into_iter().filter(|(_, n)| *n != 0).collect();
        diffs.sort();
        for (d, n) in diffs {
            let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
            let kind = if n > 0 { Difference::Missing } else { Difference::Extra };
            if n > 0 {
                r.missing += n as u64;
            } else {
                r.extra += n.unsigned_abs();
            }
            r.sample(kind, format!("row hash {hex} ×{}", n.abs()), Vec::new(), self.opts.samples);
        }
        r.matched = r.source_rows.saturating_sub(r.missing);
        Ok(())
    }
}

/// Runs a scan started by `start` and hands its rows to `each` as they arrive.
async fn scan_all<F, Fut>(start: F, mut each: impl FnMut(Vec<ScannedRow>)) -> Result<()>
where
    F: FnOnce(ScanSender) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let (tx, mut rx) = mpsc::channel::<Vec<ScannedRow>>(4);
    let scan = start(tx);
    let consume = async {
        while let Some(rows) = rx.recv().await {
            each(rows);
        }
    };
    let (res, ()) = tokio::join!(scan, consume);
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CheckReport;
    use crate::destination::{LoadOutcome, LoadRequest};
    use crate::naming::StreamName;
    use crate::schema::Column;

    /// In-memory rows: (id, value, flag).
    struct Rows(Vec<(i64, i64, bool)>);

    impl Rows {
        async fn send(&self, r: ScanRequest, out: ScanSender) -> Result<()> {
            let mut rows: Vec<_> = self.0.clone();
            rows.sort();
            let k = |id: i64| vec![Canon::Int(id as i128)];
            let rows: Vec<ScannedRow> = rows
                .into_iter()
                .filter(|(id, _, _)| r.range.after.as_ref().is_none_or(|a| k(*id) > *a))
                .filter(|(id, _, _)| r.range.upto.as_ref().is_none_or(|u| k(*id) <= *u))
                .take(r.limit.unwrap_or(u64::MAX) as usize)
                .map(|(id, v, flag)| ScannedRow {
                    key: k(id),
                    hashes: vec![Canon::Int(id as i128).hash64(), Canon::Int(v as i128).hash64()],
                    flag,
                })
                .collect();
            for c in rows.chunks(3) {
                out.send(c.to_vec()).await.unwrap();
            }
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl Scanner for Rows {
        async fn key_ranges_agree(&self, _: &TableSpec) -> Result<bool> {
            Ok(true)
        }
        async fn scan(&self, r: ScanRequest, out: ScanSender) -> Result<()> {
            self.send(r, out).await
        }
    }

    #[async_trait::async_trait]
    impl Destination for Rows {
        fn kind(&self) -> &'static str {
            "memory"
        }
        fn limits(&self) -> ValueLimits {
            ValueLimits::STAGING
        }
        async fn check(&self) -> Result<CheckReport> {
            unreachable!()
        }
        async fn loaded_batches(&self, _: uuid::Uuid, _: &str, _: &[u64]) -> Result<Vec<u64>> {
            unreachable!()
        }
        async fn load(&self, _: LoadRequest<'_>) -> Result<LoadOutcome> {
            unreachable!()
        }
        async fn row_count(&self, _: &str) -> Result<Option<u64>> {
            Ok(Some(self.0.len() as u64))
        }
        async fn columns(&self, _: &str) -> Result<Option<Vec<String>>> {
            Ok(Some(vec!["id".into(), "v".into()]))
        }
        async fn scan(&self, r: ScanRequest, out: ScanSender) -> Result<()> {
            self.send(r, out).await
        }
    }

    fn spec() -> TableSpec {
        let col = |n: &str| Column {
            source_name: n.into(),
            name: n.into(),
            sql_type: SqlType::Int64,
            source_type: "bigint".into(),
            nullable: true,
        };
        TableSpec {
            stream: StreamName::new("public", "t"),
            name: "t".into(),
            columns: vec![col("id"), col("v")],
            key: vec!["id".into()],
            hashed: Vec::new(),
        }
    }

    async fn run(
        src: Vec<(i64, i64, bool)>,
        dst: Vec<(i64, i64, bool)>,
        soft: Option<&str>,
        chunk: u64,
    ) -> TableReconcile {
        let opts = ReconcileOptions { chunk_rows: chunk, partition_rows: 4, samples: 10 };
        reconcile_table(&Rows(src) as &dyn Scanner, &Rows(dst) as &dyn Destination, &spec(), soft, None, opts)
            .await
            .unwrap()
    }

    fn keys(r: &TableReconcile, kind: Difference) -> Vec<String> {
        r.samples.iter().filter(|s| s.kind == kind).map(|s| s.key.clone()).collect()
    }

    #[tokio::test]
    async fn deleted_rows_are_absent_unless_a_soft_delete_column_is_mapped() {
        let src: Vec<_> = (1..=10).map(|i| (i, i * 10, i == 4)).collect();
        let mut dst: Vec<_> = (1..=10).map(|i| (i, i * 10, false)).collect();
        dst[1].2 = true; // 2 deleted in the destination only
        dst.push((11, 0, true)); // a tombstone
        dst[4].1 = 0; // 5 differs
        dst.push((12, 120, false)); // extra
        for chunk in [1, 3, 100] {
            let r = run(src.clone(), dst.clone(), None, chunk).await;
            assert_eq!((r.matched, r.missing, r.extra, r.different), (8, 1, 1, 1), "chunk {chunk}: {r:?}");
            assert_eq!(keys(&r, Difference::Missing), ["2"]);
            assert_eq!(keys(&r, Difference::Extra), ["12"]);
            assert_eq!(keys(&r, Difference::Different), ["5"]);
            // With soft deletes mapped, the flag must agree with the source column:
            // 2 (deleted only in the destination) and 4 (deleted only in the source) differ.
            let r = run(src.clone(), dst.clone(), Some("deleted_at"), chunk).await;
            assert_eq!((r.matched, r.missing, r.extra, r.different), (7, 0, 1, 3), "chunk {chunk}: {r:?}");
            let cols: Vec<_> = r.samples.iter().filter(|s| s.key == "4").map(|s| s.columns.clone()).collect();
            assert_eq!(cols, [vec![crate::schema::meta::DELETED.to_owned()]]);
        }
    }

    #[tokio::test]
    async fn keyless_tables_compare_as_multisets_across_partitions() {
        let mut table = spec();
        table.key.clear();
        let src: Vec<_> = (1..=20).map(|i| (i % 5, 1, false)).collect(); // each row 4 times
        let mut dst = src.clone();
        dst.pop(); // one copy of (0, 1) missing
        dst.push((1, 1, false)); // one copy of (1, 1) too many
        dst.push((7, 7, true)); // deleted: ignored
        let opts = ReconcileOptions { chunk_rows: 3, partition_rows: 4, samples: 10 };
        let r =
            reconcile_table(&Rows(src) as &dyn Scanner, &Rows(dst) as &dyn Destination, &table, None, Some(20), opts)
                .await
                .unwrap();
        assert_eq!(r.method, "multiset (6 passes)");
        assert_eq!((r.source_rows, r.destination_rows, r.matched, r.missing, r.extra), (20, 20, 19, 1, 1), "{r:?}");
    }

    #[test]
    fn partitions_cover_every_key_once() {
        let parts = 7;
        let mut seen = vec![0; parts as usize];
        for i in 0..1000 {
            seen[partition_of(&[Canon::Int(i)], parts) as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 80), "{seen:?}");
        assert_eq!(partition_of(&[Canon::Int(3)], 1), 0);
    }

    #[test]
    fn keys_render_for_people() {
        assert_eq!(key_text(&[Canon::Int(5)]), "5");
        assert_eq!(key_text(&[Canon::Text("a".into()), Canon::Int(2)]), "(\"a\", 2)");
    }
}
