//! Our decoder for the `pgoutput` logical-replication output plugin
//! (protocol version 1, `binary 'true'`), and a change builder that turns the
//! tuples it carries into Arrow with the same value decoders the snapshot
//! uses for `COPY … (FORMAT binary)`.
//!
//! Every message is one XLogData payload: a tag byte, then fixed fields in
//! network byte order, NUL-terminated strings, and for row changes a
//! TupleData part: an Int16 column count and per column a kind byte — `n`
//! NULL, `u` an unchanged TOASTed value that was not sent, `t` text, `b`
//! binary — the last two followed by an Int32 length and that many bytes.
//! With `binary 'true'` a value arrives in its type's binary send format
//! (what binary COPY carries) unless the type has no send function, when it
//! falls back to text.
//!
//! Protocol version 1 without streaming or two-phase commit never sends the
//! transaction id in row messages, nor the Stream*/Prepare messages; those
//! are refused as malformed here.

use crate::copy::{Col, format_uuid, numeric_to_text};
use crate::types::Decoder;
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::SchemaRef;
use simplyload_core::{Error, Result, UnrepresentableTally, ValueLimits};
use std::fmt::Display;

/// A WAL position.
pub type Lsn = u64;

/// One pgoutput message. Tuples borrow their values from the buffer parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Begin {
        final_lsn: Lsn,
        /// Microseconds since 2000-01-01, as sent.
        commit_time_us: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        /// Microseconds since 2000-01-01, as sent.
        commit_time_us: i64,
    },
    Origin {
        commit_lsn: Lsn,
        name: String,
    },
    Relation(Relation),
    Type {
        oid: u32,
        /// `pg_catalog` when sent as the empty string.
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Tuple<'a>,
    },
    Update {
        relation: u32,
        /// The old key (`K`) or the whole old row (`O`, REPLICA IDENTITY
        /// FULL); absent when the key did not change.
        old: Option<Tuple<'a>>,
        old_is_key_only: bool,
        new: Tuple<'a>,
    },
    Delete {
        relation: u32,
        old: Tuple<'a>,
        old_is_key_only: bool,
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    LogicalMessage {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: &'a [u8],
    },
}

/// A relation's description, sent before its first change in a session and
/// again whenever it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    /// `pg_catalog` when sent as the empty string.
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index (`pg_class.relreplident`).
    pub replica_identity: char,
    /// The columns tuples carry, in order (no dropped or generated columns,
    /// and only those in the publication's column list).
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity (every column with REPLICA IDENTITY FULL).
    pub part_of_key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// One column's value in a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datum<'a> {
    Null,
    /// An unchanged TOASTed value, not sent (`u`).
    Unchanged,
    /// The type's text output (`t`): it has no binary send function.
    Text(&'a [u8]),
    /// The type's binary send format (`b`).
    Binary(&'a [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple<'a> {
    pub columns: Vec<Datum<'a>>,
}

/// Parses one pgoutput message (the payload of an XLogData message).
pub fn parse(buf: &[u8]) -> Result<Message<'_>> {
    let Some(&tag) = buf.first() else {
        return Err(Error::data("malformed pgoutput message: empty, no tag byte at byte offset 0"));
    };
    let mut r = Reader { buf, pos: 1, msg: "" };
    let message = match tag {
        b'B' => {
            r.msg = "Begin";
            Message::Begin {
                final_lsn: r.u64("final LSN")?,
                commit_time_us: r.i64("commit timestamp")?,
                xid: r.u32("xid")?,
            }
        }
        b'C' => {
            r.msg = "Commit";
            Message::Commit {
                flags: r.u8("flags")?,
                commit_lsn: r.u64("commit LSN")?,
                end_lsn: r.u64("end LSN")?,
                commit_time_us: r.i64("commit timestamp")?,
            }
        }
        b'O' => {
            r.msg = "Origin";
            Message::Origin { commit_lsn: r.u64("commit LSN")?, name: r.string("origin name")? }
        }
        b'R' => {
            r.msg = "Relation";
            Message::Relation(r.relation()?)
        }
        b'Y' => {
            r.msg = "Type";
            Message::Type { oid: r.u32("type OID")?, namespace: r.namespace()?, name: r.string("type name")? }
        }
        b'I' => {
            r.msg = "Insert";
            let relation = r.u32("relation OID")?;
            r.marker("new tuple marker", b"N")?;
            Message::Insert { relation, new: r.tuple("new tuple")? }
        }
        b'U' => {
            r.msg = "Update";
            let relation = r.u32("relation OID")?;
            let marker = r.marker("tuple marker", b"KON")?;
            let old_is_key_only = marker == b'K';
            let old = if marker == b'N' {
                None
            } else {
                let old = r.tuple(if old_is_key_only { "old key tuple" } else { "old tuple" })?;
                r.marker("new tuple marker", b"N")?;
                Some(old)
            };
            Message::Update { relation, old, old_is_key_only, new: r.tuple("new tuple")? }
        }
        b'D' => {
            r.msg = "Delete";
            let relation = r.u32("relation OID")?;
            let old_is_key_only = r.marker("old tuple marker", b"KO")? == b'K';
            let old = r.tuple(if old_is_key_only { "old key tuple" } else { "old tuple" })?;
            Message::Delete { relation, old, old_is_key_only }
        }
        b'T' => {
            r.msg = "Truncate";
            let n = r.length("relation count")?;
            let flags = r.u8("option bits")?;
            let mut relations = Vec::with_capacity(n.min(r.remaining() / 4));
            for i in 0..n {
                relations.push(r.u32(format_args!("OID of relation {i}"))?);
            }
            Message::Truncate { relations, cascade: flags & 1 != 0, restart_identity: flags & 2 != 0 }
        }
        b'M' => {
            r.msg = "logical decoding";
            let flags = r.u8("flags")?;
            let lsn = r.u64("LSN")?;
            let prefix = r.string("prefix")?;
            let len = r.length("content length")?;
            Message::LogicalMessage { transactional: flags & 1 != 0, lsn, prefix, content: r.take(len, "content")? }
        }
        _ => {
            let what = match tag {
                b'S' => "Stream Start",
                b'E' => "Stream Stop",
                b'c' => "Stream Commit",
                b'A' => "Stream Abort",
                b'p' => "Stream Prepare",
                b'b' => "Begin Prepare",
                b'P' => "Prepare",
                b'K' => "Commit Prepared",
                b'r' => "Rollback Prepared",
                _ => {
                    return Err(Error::data(format!(
                        "malformed pgoutput message: unknown message tag {} at byte offset 0",
                        show_byte(tag)
                    )));
                }
            };
            return Err(Error::data(format!(
                "unexpected pgoutput {what} message (tag {}) at byte offset 0: not sent with protocol version 1 \
                 without streaming or two-phase commit",
                show_byte(tag)
            )));
        }
    };
    r.end()?;
    Ok(message)
}

/// `'K'` for printable ASCII, `0x00` otherwise.
fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() { format!("'{}'", b as char) } else { format!("0x{b:02x}") }
}

/// Reads one message front to back; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    /// Always `<= buf.len()`.
    pos: usize,
    /// The message's name, for errors.
    msg: &'static str,
}

impl<'a> Reader<'a> {
    fn err(&self, at: usize, what: impl Display, problem: impl Display) -> Error {
        Error::data(format!("malformed pgoutput {} message: {what} at byte offset {at}: {problem}", self.msg))
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn remaining(&self) -> usize {
        self.rest().len()
    }

    fn take(&mut self, n: usize, what: impl Display) -> Result<&'a [u8]> {
        let rest = self.rest();
        match rest.get(..n) {
            Some(v) => {
                self.pos += n;
                Ok(v)
            }
            None => Err(self.err(
                self.pos,
                what,
                format_args!("needs {n} byte(s) but the message ends after {}", rest.len()),
            )),
        }
    }

    fn array<const N: usize>(&mut self, what: impl Display) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: impl Display) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: impl Display) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: impl Display) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: impl Display) -> Result<i32> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: impl Display) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: impl Display) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// An Int32 length or count, which must not be negative.
    fn length(&mut self, what: impl Display) -> Result<usize> {
        let at = self.pos;
        let n = self.i32(&what)?;
        usize::try_from(n).map_err(|_| self.err(at, what, format_args!("negative length {n}")))
    }

    /// A NUL-terminated UTF-8 string.
    fn string(&mut self, what: impl Display) -> Result<String> {
        let at = self.pos;
        let rest = self.rest();
        let Some(len) = rest.iter().position(|&b| b == 0) else {
            return Err(self.err(at, what, "the string has no terminating NUL byte before the message ends"));
        };
        let bytes = rest.get(..len).unwrap_or_default();
        let s = std::str::from_utf8(bytes).map_err(|e| {
            self.err(
                at,
                what,
                format_args!("the string is not valid UTF-8 (bad byte at offset {})", at + e.valid_up_to()),
            )
        })?;
        self.pos += len + 1;
        Ok(s.to_owned())
    }

    /// A namespace: the empty string stands for `pg_catalog`.
    fn namespace(&mut self) -> Result<String> {
        let s = self.string("namespace")?;
        Ok(if s.is_empty() { "pg_catalog".to_owned() } else { s })
    }

    /// A one-byte marker that must be one of `allowed`.
    fn marker(&mut self, what: &str, allowed: &[u8]) -> Result<u8> {
        let at = self.pos;
        let b = self.u8(what)?;
        if !allowed.contains(&b) {
            let expected: Vec<String> = allowed.iter().map(|&a| show_byte(a)).collect();
            return Err(self.err(at, what, format_args!("expected {}, got {}", expected.join(" or "), show_byte(b))));
        }
        Ok(b)
    }

    fn relation(&mut self) -> Result<Relation> {
        let oid = self.u32("relation OID")?;
        let namespace = self.namespace()?;
        let name = self.string("relation name")?;
        let at = self.pos;
        let ri = self.u8("replica identity")?;
        if !matches!(ri, b'd' | b'n' | b'f' | b'i') {
            return Err(self.err(at, "replica identity", format_args!("unknown setting {}", show_byte(ri))));
        }
        let n = self.u16("column count")? as usize;
        let mut columns = Vec::with_capacity(n.min(self.remaining()));
        for i in 0..n {
            let flags = self.u8(format_args!("flags of column {i}"))?;
            let name = self.string(format_args!("name of column {i}"))?;
            let type_oid = self.u32(format_args!("type OID of column {name}"))?;
            let type_modifier = self.i32(format_args!("type modifier of column {name}"))?;
            columns.push(RelationColumn { part_of_key: flags & 1 != 0, name, type_oid, type_modifier });
        }
        Ok(Relation { oid, namespace, name, replica_identity: ri as char, columns })
    }

    /// A TupleData part.
    fn tuple(&mut self, what: &str) -> Result<Tuple<'a>> {
        let n = self.u16(format_args!("column count of the {what}"))? as usize;
        let mut columns = Vec::with_capacity(n.min(self.remaining()));
        for i in 0..n {
            let at = self.pos;
            let kind = self.u8(format_args!("kind of column {i} of the {what}"))?;
            columns.push(match kind {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                b't' | b'b' => {
                    let len = self.length(format_args!("length of column {i} of the {what}"))?;
                    let v = self.take(len, format_args!("value of column {i} of the {what}"))?;
                    if kind == b't' { Datum::Text(v) } else { Datum::Binary(v) }
                }
                _ => {
                    return Err(self.err(
                        at,
                        format_args!("kind of column {i} of the {what}"),
                        format_args!("unknown kind {} (expected 'n', 'u', 't' or 'b')", show_byte(kind)),
                    ));
                }
            });
        }
        Ok(Tuple { columns })
    }

    fn end(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.err(self.pos, "the end of the message", format_args!("{n} unexpected trailing byte(s)"))),
        }
    }
}

/// The first OID of user-defined objects: below it every type is built in.
const FIRST_NORMAL_OBJECT_ID: u32 = 16_384;

/// Whether a built-in type's binary send format is what `d` decodes. `None`
/// for types created in the database (enums, domains, extension types such
/// as citext), which cannot be told from the OID alone.
fn binary_form_matches(type_oid: u32, d: Decoder) -> Option<bool> {
    if type_oid >= FIRST_NORMAL_OBJECT_ID {
        return None;
    }
    Some(match type_oid {
        16 => d == Decoder::Bool,
        17 => d == Decoder::Bytea,
        // name, text, bpchar, varchar, json: their binary form is the text.
        19 | 25 | 114 | 1042 | 1043 => d == Decoder::Text,
        20 => d == Decoder::Int8,
        21 => d == Decoder::Int2,
        23 => d == Decoder::Int4,
        700 => d == Decoder::Float4,
        701 => d == Decoder::Float8,
        1082 => d == Decoder::Date,
        1083 => d == Decoder::Time,
        1114 => d == Decoder::Timestamp,
        1184 => d == Decoder::TimestampTz,
        1186 => d == Decoder::Interval,
        1700 => matches!(d, Decoder::Decimal { .. } | Decoder::NumericText),
        2950 => d == Decoder::Uuid,
        3802 => d == Decoder::Jsonb,
        // Built-in types the snapshot reads through a cast (inet, money,
        // arrays, ranges, …): their binary form is not what it decodes.
        _ => false,
    })
}

/// How each destination column of a stream is filled from a relation's tuple.
#[derive(Debug, Clone)]
pub struct ChangeColumns {
    /// Per destination column: the index of its relation column; `None`
    /// when the relation does not carry it (see [`ChangeColumns::new`]).
    index: Vec<Option<usize>>,
    /// Per destination column: its decoder.
    decoders: Vec<Decoder>,
    /// Per destination column: its Postgres column name.
    source_names: Vec<String>,
    /// How many columns the relation's tuples carry.
    relation_columns: usize,
    /// Destination columns of the replica identity key, for naming rows.
    key: Vec<usize>,
}

impl ChangeColumns {
    /// `decoders[i]` is the snapshot decoder of destination column i,
    /// `source_names[i]` its Postgres column name; maps by name against
    /// `relation.columns`.
    ///
    /// A destination column the relation does not carry, or carries with a
    /// built-in type whose binary form its decoder does not read, is a
    /// column of another version of the table: a change before the column
    /// was added, or before its type changed (the caller decodes only
    /// columns whose *current* type the snapshot reads natively). Such a
    /// column is reported unchanged for every row, so the destination keeps
    /// what it holds; [`ChangeColumns::absent`] names them.
    pub fn new(relation: &Relation, source_names: &[String], decoders: &[Decoder]) -> Result<ChangeColumns> {
        Self::with_skipped(relation, source_names, decoders, &[])
    }

    /// Like [`ChangeColumns::new`]; the destination columns named in `skip`
    /// are not decoded from the tuple at all (absent): the caller fills them
    /// otherwise (columns whose binary form is not what the snapshot reads).
    pub fn with_skipped(
        relation: &Relation,
        source_names: &[String],
        decoders: &[Decoder],
        skip: &[String],
    ) -> Result<ChangeColumns> {
        let rel = format!("{}.{}", relation.namespace, relation.name);
        if source_names.len() != decoders.len() {
            return Err(Error::internal(format!(
                "{rel}: {} column names but {} decoders",
                source_names.len(),
                decoders.len()
            )));
        }
        let mut index = Vec::with_capacity(source_names.len());
        for (name, &decoder) in source_names.iter().zip(decoders) {
            let found = relation.columns.iter().position(|c| &c.name == name).filter(|_| !skip.contains(name));
            let found = found.filter(|&i| binary_form_matches(relation.columns[i].type_oid, decoder) != Some(false));
            if found.is_none() {
                tracing::debug!(column = %name, relation = %rel, "column not carried by this relation version; kept as stored");
            }
            index.push(found);
        }
        let key = if matches!(relation.replica_identity, 'd' | 'i') {
            (0..index.len()).filter(|&d| index[d].is_some_and(|i| relation.columns[i].part_of_key)).collect()
        } else {
            Vec::new()
        };
        Ok(ChangeColumns {
            index,
            decoders: decoders.to_vec(),
            source_names: source_names.to_vec(),
            relation_columns: relation.columns.len(),
            key,
        })
    }

    /// The destination columns (their Postgres names) this relation version does not carry.
    pub fn absent(&self) -> Vec<&str> {
        self.index.iter().zip(&self.source_names).filter(|(i, _)| i.is_none()).map(|(_, n)| n.as_str()).collect()
    }

    /// The number of destination columns.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Accumulates changes of one stream as Arrow: the data columns (schema
/// given), then the caller adds metadata.
pub struct ChangeBuilder {
    stream: String,
    columns: ChangeColumns,
    /// Destination column names (the schema's), for reports.
    names: Vec<String>,
    cols: Vec<Col>,
    schema: SchemaRef,
    limits: ValueLimits,
    fail_on_unrepresentable: bool,
    rows_in_batch: usize,
    rows_total: u64,
    tally: UnrepresentableTally,
    issues: Vec<(usize, &'static str)>,
    scratch: String,
    /// A push failed part-way: the builders hold a partial row.
    broken: bool,
}

impl ChangeBuilder {
    pub fn new(
        stream: &str,
        columns: ChangeColumns,
        schema: SchemaRef,
        limits: ValueLimits,
        fail_on_unrepresentable: bool,
        capacity: usize,
    ) -> ChangeBuilder {
        let names = (0..columns.len())
            .map(|i| match schema.fields().get(i) {
                Some(f) => f.name().clone(),
                None => columns.source_names[i].clone(),
            })
            .collect();
        ChangeBuilder {
            stream: stream.to_owned(),
            cols: columns.decoders.iter().map(|&d| Col::new(d, capacity)).collect(),
            columns,
            names,
            schema,
            limits,
            fail_on_unrepresentable,
            rows_in_batch: 0,
            rows_total: 0,
            tally: UnrepresentableTally::default(),
            issues: Vec::new(),
            scratch: String::new(),
            broken: false,
        }
    }

    /// Appends one row from a tuple. Returns the names of destination columns
    /// that arrived as Unchanged (TOAST not sent) — they are appended as NULL
    /// and the caller records them in `_simplyload_unchanged`. A `Datum::Text`
    /// (a type without binary output) is an Error::data naming the column.
    /// Unrepresentable values follow the same rule as RowDecoder (null +
    /// tally, or error when fail_on_unrepresentable).
    ///
    /// A tuple refused before decoding (wrong column count, a text value)
    /// leaves the batch as it was; after any other error the batch is lost:
    /// `finish` discards it and reports so.
    pub fn push(&mut self, tuple: &Tuple<'_>) -> Result<Vec<String>> {
        if self.broken {
            return Err(self.broken_error());
        }
        if tuple.columns.len() != self.columns.relation_columns {
            return Err(Error::data(format!(
                "{}: a change carries {} column(s) but the relation message described {}",
                self.stream,
                tuple.columns.len(),
                self.columns.relation_columns
            )));
        }
        for (d, i) in self.columns.index.iter().enumerate() {
            if let Some(Datum::Text(_)) = i.and_then(|i| tuple.columns.get(i)) {
                return Err(Error::data(format!(
                    "{}: column {} arrived from logical replication as text: its type has no binary send function",
                    self.stream, self.names[d]
                )));
            }
        }
        self.broken = true;
        let mut unchanged = Vec::new();
        for (d, &i) in self.columns.index.iter().enumerate() {
            let col = &mut self.cols[d];
            let Some(i) = i else {
                col.append_null();
                unchanged.push(self.names[d].clone());
                continue;
            };
            match tuple.columns.get(i).copied().unwrap_or(Datum::Null) {
                Datum::Null => col.append_null(),
                Datum::Unchanged => {
                    col.append_null();
                    unchanged.push(self.names[d].clone());
                }
                Datum::Binary(v) => {
                    let issue = col
                        .append(v, &self.limits, &mut self.scratch)
                        .map_err(|e| e.context(format!("{}: column {}", self.stream, self.names[d])))?;
                    if let Some(reason) = issue {
                        col.append_null();
                        self.issues.push((d, reason));
                    }
                }
                Datum::Text(_) => return Err(Error::internal("text value after the check")),
            }
        }
        self.rows_total += 1;
        if !self.issues.is_empty() {
            self.report_issues(tuple)?;
        }
        self.rows_in_batch += 1;
        self.broken = false;
        Ok(unchanged)
    }

    /// Rows in the current batch.
    pub fn rows(&self) -> usize {
        self.rows_in_batch
    }

    /// The batch of the rows pushed since the last call; resets for the next batch.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.cols.iter_mut().map(Col::finish).collect();
        let rows = std::mem::take(&mut self.rows_in_batch);
        if std::mem::take(&mut self.broken) {
            return Err(self.broken_error());
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)?)
    }

    pub fn tally(&self) -> &UnrepresentableTally {
        &self.tally
    }

    fn broken_error(&self) -> Error {
        Error::internal(format!(
            "{}: a change failed part-way through decoding; the batch it was added to was discarded",
            self.stream
        ))
    }

    fn report_issues(&mut self, tuple: &Tuple<'_>) -> Result<()> {
        let key = self.describe_row(tuple);
        for (col, reason) in std::mem::take(&mut self.issues) {
            let column = &self.names[col];
            if self.fail_on_unrepresentable {
                return Err(Error::data(format!(
                    "{}: column {column} of the row with {key}: {reason}; with `on_unrepresentable: fail` the sync stops here",
                    self.stream
                ))
                .with_hint("set `on_unrepresentable: report` to write NULL and count such values instead"));
            }
            if self.tally.entries().iter().all(|e| &e.column != column || e.reason != reason) {
                tracing::warn!(stream = %self.stream, column = %column, row = %key, reason,
                    "value cannot be carried exactly; writing NULL (on_unrepresentable: report)");
            }
            self.tally.record(column, reason, || key.clone());
        }
        Ok(())
    }

    /// `id=42` (the replica identity key's values), or the change's position.
    fn describe_row(&self, tuple: &Tuple<'_>) -> String {
        if self.columns.key.is_empty() {
            return format!("change #{}", self.rows_total);
        }
        self.columns
            .key
            .iter()
            .map(|&d| {
                let v = match self.columns.index[d].and_then(|i| tuple.columns.get(i)) {
                    None | Some(Datum::Null) => "NULL".to_owned(),
                    Some(Datum::Unchanged) => "(unchanged)".to_owned(),
                    Some(Datum::Text(v) | Datum::Binary(v)) => display_value(self.columns.decoders[d], v),
                };
                format!("{}={v}", self.names[d])
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A key value for reports.
fn display_value(d: Decoder, v: &[u8]) -> String {
    match d {
        Decoder::Int2 => <[u8; 2]>::try_from(v).map(|b| i16::from_be_bytes(b).to_string()).ok(),
        Decoder::Int4 => <[u8; 4]>::try_from(v).map(|b| i32::from_be_bytes(b).to_string()).ok(),
        Decoder::Int8 => <[u8; 8]>::try_from(v).map(|b| i64::from_be_bytes(b).to_string()).ok(),
        Decoder::Uuid => <[u8; 16]>::try_from(v).map(|b| format_uuid(&b)).ok(),
        Decoder::Text => std::str::from_utf8(v).ok().map(|s| {
            if s.len() <= 200 { format!("{s:?}") } else { format!("{:?}…", &s[..s.floor_char_boundary(200)]) }
        }),
        Decoder::NumericText | Decoder::Decimal { .. } => {
            let mut s = String::new();
            numeric_to_text(v, &mut s).ok().map(|()| s)
        }
        _ => None,
    }
    .unwrap_or_else(|| format!("0x{}", v.iter().take(64).map(|b| format!("{b:02x}")).collect::<String>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Decimal128Type, Int32Type, TimestampMicrosecondType};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    use simplyload_core::ErrorKind;
    use std::sync::Arc;

    /// Builds a message the way the server writes it.
    struct W(Vec<u8>);

    impl W {
        fn tag(t: u8) -> W {
            W(vec![t])
        }
        fn u8(mut self, v: u8) -> W {
            self.0.push(v);
            self
        }
        fn u16(mut self, v: u16) -> W {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn u32(mut self, v: u32) -> W {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn i32(mut self, v: i32) -> W {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn u64(mut self, v: u64) -> W {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn i64(mut self, v: i64) -> W {
            self.0.extend(v.to_be_bytes());
            self
        }
        fn s(mut self, v: &str) -> W {
            self.0.extend(v.as_bytes());
            self.0.push(0);
            self
        }
        fn raw(mut self, v: &[u8]) -> W {
            self.0.extend(v);
            self
        }
        fn tuple(mut self, datums: &[Datum<'_>]) -> W {
            self = self.u16(datums.len() as u16);
            for d in datums {
                self = match *d {
                    Datum::Null => self.u8(b'n'),
                    Datum::Unchanged => self.u8(b'u'),
                    Datum::Text(v) => self.u8(b't').i32(v.len() as i32).raw(v),
                    Datum::Binary(v) => self.u8(b'b').i32(v.len() as i32).raw(v),
                };
            }
            self
        }
        fn done(self) -> Vec<u8> {
            self.0
        }
    }

    fn err(buf: &[u8]) -> Error {
        match parse(buf) {
            Ok(m) => panic!("parsed {m:?} from {buf:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Data, "{e}");
                e
            }
        }
    }

    const SAMPLE: [Datum<'static>; 4] =
        [Datum::Null, Datum::Unchanged, Datum::Text(b"hello"), Datum::Binary(&[0, 0, 0, 42])];

    fn tuple(d: &[Datum<'static>]) -> Tuple<'static> {
        Tuple { columns: d.to_vec() }
    }

    fn relation_msg() -> Vec<u8> {
        W::tag(b'R')
            .u32(16_401)
            .s("public")
            .s("orders")
            .u8(b'd')
            .u16(3)
            .u8(1)
            .s("id")
            .u32(23)
            .i32(-1)
            .u8(0)
            .s("amount")
            .u32(1700)
            .i32(((12 << 16) | 2) + 4)
            .u8(0)
            .s("note")
            .u32(25)
            .i32(-1)
            .done()
    }

    fn insert_msg() -> Vec<u8> {
        W::tag(b'I').u32(16_401).u8(b'N').tuple(&SAMPLE).done()
    }

    #[test]
    fn begin_commit_origin_type() {
        let b = W::tag(b'B').u64(0x16_B374_D848).i64(757_479_845_000_000).u32(731).done();
        assert_eq!(
            parse(&b).unwrap(),
            Message::Begin { final_lsn: 0x16_B374_D848, commit_time_us: 757_479_845_000_000, xid: 731 }
        );
        let c = W::tag(b'C').u8(0).u64(100).u64(200).i64(-5).done();
        assert_eq!(parse(&c).unwrap(), Message::Commit { flags: 0, commit_lsn: 100, end_lsn: 200, commit_time_us: -5 });
        let o = W::tag(b'O').u64(77).s("node_a").done();
        assert_eq!(parse(&o).unwrap(), Message::Origin { commit_lsn: 77, name: "node_a".into() });
        let y = W::tag(b'Y').u32(16_500).s("public").s("mood").done();
        assert_eq!(parse(&y).unwrap(), Message::Type { oid: 16_500, namespace: "public".into(), name: "mood".into() });
        // The empty namespace stands for pg_catalog.
        let y = W::tag(b'Y').u32(16_501).s("").s("thing").done();
        assert_eq!(
            parse(&y).unwrap(),
            Message::Type { oid: 16_501, namespace: "pg_catalog".into(), name: "thing".into() }
        );
    }

    #[test]
    fn relation() {
        let Message::Relation(r) = parse(&relation_msg()).unwrap() else { panic!("not a relation") };
        assert_eq!(
            r,
            Relation {
                oid: 16_401,
                namespace: "public".into(),
                name: "orders".into(),
                replica_identity: 'd',
                columns: vec![
                    RelationColumn { part_of_key: true, name: "id".into(), type_oid: 23, type_modifier: -1 },
                    RelationColumn {
                        part_of_key: false,
                        name: "amount".into(),
                        type_oid: 1700,
                        type_modifier: ((12 << 16) | 2) + 4
                    },
                    RelationColumn { part_of_key: false, name: "note".into(), type_oid: 25, type_modifier: -1 },
                ],
            }
        );
        let empty = W::tag(b'R').u32(1).s("s").s("t").u8(b'f').u16(0).done();
        let Message::Relation(r) = parse(&empty).unwrap() else { panic!("not a relation") };
        assert_eq!((r.replica_identity, r.columns.len()), ('f', 0));
    }

    #[test]
    fn insert_with_every_datum_kind() {
        assert_eq!(parse(&insert_msg()).unwrap(), Message::Insert { relation: 16_401, new: tuple(&SAMPLE) });
        let empty = W::tag(b'I').u32(5).u8(b'N').tuple(&[]).done();
        assert_eq!(parse(&empty).unwrap(), Message::Insert { relation: 5, new: tuple(&[]) });
        // A zero-length value is a value, not a NULL.
        let zero = W::tag(b'I').u32(5).u8(b'N').tuple(&[Datum::Binary(b""), Datum::Text(b"")]).done();
        assert_eq!(
            parse(&zero).unwrap(),
            Message::Insert { relation: 5, new: tuple(&[Datum::Binary(b""), Datum::Text(b"")]) }
        );
    }

    #[test]
    fn update_with_key_old_row_or_neither() {
        let key = [Datum::Binary(&[0, 0, 0, 1]), Datum::Null];
        let new = [Datum::Binary(&[0, 0, 0, 2]), Datum::Unchanged];
        let k = W::tag(b'U').u32(9).u8(b'K').tuple(&key).u8(b'N').tuple(&new).done();
        assert_eq!(
            parse(&k).unwrap(),
            Message::Update { relation: 9, old: Some(tuple(&key)), old_is_key_only: true, new: tuple(&new) }
        );
        let full = [Datum::Binary(&[0, 0, 0, 1]), Datum::Text(b"x")];
        let o = W::tag(b'U').u32(9).u8(b'O').tuple(&full).u8(b'N').tuple(&new).done();
        assert_eq!(
            parse(&o).unwrap(),
            Message::Update { relation: 9, old: Some(tuple(&full)), old_is_key_only: false, new: tuple(&new) }
        );
        let n = W::tag(b'U').u32(9).u8(b'N').tuple(&new).done();
        assert_eq!(
            parse(&n).unwrap(),
            Message::Update { relation: 9, old: None, old_is_key_only: false, new: tuple(&new) }
        );
    }

    #[test]
    fn delete_with_key_or_old_row() {
        let key = [Datum::Binary(&[0, 0, 0, 1]), Datum::Null];
        let k = W::tag(b'D').u32(9).u8(b'K').tuple(&key).done();
        assert_eq!(parse(&k).unwrap(), Message::Delete { relation: 9, old: tuple(&key), old_is_key_only: true });
        let full = [Datum::Binary(&[0, 0, 0, 1]), Datum::Binary(b"abc")];
        let o = W::tag(b'D').u32(9).u8(b'O').tuple(&full).done();
        assert_eq!(parse(&o).unwrap(), Message::Delete { relation: 9, old: tuple(&full), old_is_key_only: false });
    }

    #[test]
    fn truncate_and_logical_message() {
        let t = W::tag(b'T').i32(2).u8(3).u32(16_401).u32(16_402).done();
        assert_eq!(
            parse(&t).unwrap(),
            Message::Truncate { relations: vec![16_401, 16_402], cascade: true, restart_identity: true }
        );
        let t = W::tag(b'T').i32(1).u8(2).u32(7).done();
        assert_eq!(
            parse(&t).unwrap(),
            Message::Truncate { relations: vec![7], cascade: false, restart_identity: true }
        );
        let t = W::tag(b'T').i32(0).u8(0).done();
        assert_eq!(
            parse(&t).unwrap(),
            Message::Truncate { relations: vec![], cascade: false, restart_identity: false }
        );

        let m = W::tag(b'M').u8(1).u64(0xABCD).s("simplyload").i32(3).raw(&[1, 0, 255]).done();
        assert_eq!(
            parse(&m).unwrap(),
            Message::LogicalMessage {
                transactional: true,
                lsn: 0xABCD,
                prefix: "simplyload".into(),
                content: &[1, 0, 255]
            }
        );
        let m = W::tag(b'M').u8(0).u64(1).s("p").i32(0).done();
        assert_eq!(
            parse(&m).unwrap(),
            Message::LogicalMessage { transactional: false, lsn: 1, prefix: "p".into(), content: &[] }
        );
    }

    #[test]
    fn malformed_messages_are_data_errors_with_offsets() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (vec![b'Z'], "unknown message tag 'Z'"),
            (vec![0x01, 0, 0], "unknown message tag 0x01"),
            (W::tag(b'S').u32(1).u8(1).done(), "Stream Start"),
            (W::tag(b'K').done(), "Commit Prepared"),
            // Negative lengths.
            (W::tag(b'I').u32(1).u8(b'N').u16(1).u8(b'b').i32(-1).done(), "negative length -1"),
            (W::tag(b'I').u32(1).u8(b'N').u16(1).u8(b't').i32(-7).done(), "negative length -7"),
            (W::tag(b'M').u8(0).u64(1).s("p").i32(-1).done(), "negative length -1"),
            (W::tag(b'T').i32(-2).u8(0).done(), "negative length -2"),
            // Lengths beyond the buffer.
            (W::tag(b'I').u32(1).u8(b'N').u16(1).u8(b'b').i32(5).raw(b"abc").done(), "needs 5 byte(s)"),
            (W::tag(b'I').u32(1).u8(b'N').u16(3).u8(b'n').done(), "kind of column 1 of the new tuple at byte offset 9"),
            (W::tag(b'M').u8(0).u64(1).s("p").i32(i32::MAX).done(), "needs 2147483647 byte(s)"),
            (W::tag(b'T').i32(1_000_000).u8(0).u32(1).done(), "OID of relation 1"),
            // Bad markers and kinds.
            (W::tag(b'I').u32(1).u8(b'X').tuple(&[]).done(), "expected 'N', got 'X'"),
            (W::tag(b'I').u32(1).u8(b'N').u16(1).u8(b'q').done(), "unknown kind 'q'"),
            (W::tag(b'U').u32(1).u8(b'K').tuple(&[]).u8(b'O').tuple(&[]).done(), "expected 'N', got 'O'"),
            (W::tag(b'U').u32(1).u8(b'Q').tuple(&[]).done(), "expected 'K' or 'O' or 'N', got 'Q'"),
            (W::tag(b'D').u32(1).u8(b'N').tuple(&[]).done(), "expected 'K' or 'O', got 'N'"),
            (W::tag(b'R').u32(1).s("s").s("t").u8(b'x').u16(0).done(), "unknown setting 'x'"),
            // Strings.
            (W::tag(b'O').u64(1).raw(b"abc").done(), "no terminating NUL"),
            (W::tag(b'Y').u32(1).raw(b"ok\0").raw(&[b'a', 0xff, 0]).done(), "not valid UTF-8 (bad byte at offset 9)"),
            (W::tag(b'R').u32(1).s("s").s("t").u8(b'd').u16(1).u8(0).raw(&[0xc3, 0]).done(), "name of column 0"),
            // Trailing bytes.
            (W::tag(b'B').u64(1).i64(2).u32(3).u8(0).done(), "1 unexpected trailing byte(s)"),
            (W::tag(b'I').u32(1).u8(b'N').tuple(&[]).raw(b"xx").done(), "at byte offset 8: 2 unexpected trailing"),
        ];
        for (buf, want) in cases {
            let e = err(&buf);
            assert!(e.message().contains(want), "{buf:?}: `{e}` does not contain `{want}`");
            assert!(e.message().contains("byte offset"), "{buf:?}: `{e}` names no offset");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let all = [
            insert_msg(),
            relation_msg(),
            W::tag(b'B').u64(1).i64(2).u32(3).done(),
            W::tag(b'C').u8(0).u64(1).u64(2).i64(3).done(),
            W::tag(b'O').u64(1).s("o").done(),
            W::tag(b'Y').u32(1).s("n").s("t").done(),
            W::tag(b'U').u32(9).u8(b'O').tuple(&SAMPLE).u8(b'N').tuple(&SAMPLE).done(),
            W::tag(b'D').u32(9).u8(b'K').tuple(&SAMPLE).done(),
            W::tag(b'T').i32(2).u8(1).u32(1).u32(2).done(),
            W::tag(b'M').u8(1).u64(1).s("p").i32(2).raw(b"hi").done(),
        ];
        for full in all {
            assert!(parse(&full).is_ok());
            for n in 0..full.len() {
                err(&full[..n]);
            }
        }
    }

    // ---- ChangeBuilder ----

    /// numeric's binary form from its base-10000 digits.
    fn num(groups: &[u16], weight: i16, neg: bool, dscale: u16) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((groups.len() as i16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend((if neg { 0x4000u16 } else { 0 }).to_be_bytes());
        out.extend(dscale.to_be_bytes());
        for g in groups {
            out.extend(g.to_be_bytes());
        }
        out
    }

    /// 2024-01-02T03:04:05Z in Unix microseconds.
    const AT_UNIX_US: i64 = 1_704_164_645_000_000;

    fn pg_ts(unix_us: i64) -> [u8; 8] {
        (unix_us - 946_684_800_000_000).to_be_bytes()
    }

    fn jsonb(s: &str) -> Vec<u8> {
        let mut v = vec![1];
        v.extend(s.as_bytes());
        v
    }

    fn col(name: &str, type_oid: u32, type_modifier: i32, part_of_key: bool) -> RelationColumn {
        RelationColumn { part_of_key, name: name.into(), type_oid, type_modifier }
    }

    /// The relation's column order differs from the destination's, and it
    /// has a column the destination does not take.
    fn orders() -> Relation {
        Relation {
            oid: 16_401,
            namespace: "public".into(),
            name: "orders".into(),
            replica_identity: 'd',
            columns: vec![
                col("id", 23, -1, true),
                col("note", 25, -1, false),
                col("extra", 20, -1, false),
                col("amount", 1700, ((12 << 16) | 2) + 4, false),
                col("at", 1184, -1, false),
                col("doc", 3802, -1, false),
                col("blob", 17, -1, false),
                col("flag", 16, -1, false),
            ],
        }
    }

    fn dest() -> (Vec<String>, Vec<Decoder>, SchemaRef) {
        let names = ["flag", "id", "amount", "note", "at", "doc", "blob"].map(String::from).to_vec();
        let decoders = vec![
            Decoder::Bool,
            Decoder::Int4,
            Decoder::Decimal { precision: 12, scale: 2 },
            Decoder::Text,
            Decoder::TimestampTz,
            Decoder::Jsonb,
            Decoder::Bytea,
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("flag", DataType::Boolean, true),
            Field::new("id", DataType::Int32, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            // Destination names may differ from the source's.
            Field::new("memo", DataType::Utf8, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("doc", DataType::Utf8, true),
            Field::new("blob", DataType::Binary, true),
        ]));
        (names, decoders, schema)
    }

    fn builder(fail: bool) -> ChangeBuilder {
        let (names, decoders, schema) = dest();
        let columns = ChangeColumns::new(&orders(), &names, &decoders).unwrap();
        ChangeBuilder::new("public.orders", columns, schema, ValueLimits::STAGING, fail, 4)
    }

    /// A tuple in the relation's order: id, note, extra, amount, at, doc, blob, flag.
    fn row<'a>(id: &'a [u8; 4], note: Datum<'a>, amount: &'a [u8], at: &'a [u8], doc: &'a [u8]) -> Tuple<'a> {
        Tuple {
            columns: vec![
                Datum::Binary(id),
                note,
                Datum::Binary(&[0, 0, 0, 0, 0, 0, 0, 9]),
                Datum::Binary(amount),
                Datum::Binary(at),
                Datum::Binary(doc),
                Datum::Binary(&[0xde, 0xad]),
                Datum::Binary(&[1]),
            ],
        }
    }

    #[test]
    fn change_builder_decodes_tuples_like_copy() {
        let mut b = builder(false);
        let amount = num(&[1234, 5000], 0, false, 2);
        let cents = num(&[100], -1, true, 2);
        let at = pg_ts(AT_UNIX_US);
        let doc = jsonb(r#"{"a": 1}"#);
        assert_eq!(
            b.push(&row(&1i32.to_be_bytes(), Datum::Binary(b"first"), &amount, &at, &doc)).unwrap(),
            Vec::<String>::new()
        );
        let nulls = Tuple {
            columns: vec![
                Datum::Binary(&[0, 0, 0, 2]),
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null,
                Datum::Null,
            ],
        };
        assert!(b.push(&nulls).unwrap().is_empty());
        assert_eq!(
            b.push(&row(&3i32.to_be_bytes(), Datum::Unchanged, &cents, &at, &doc)).unwrap(),
            vec!["memo".to_owned()]
        );
        assert_eq!(b.rows(), 3);

        let batch = b.finish().unwrap();
        assert_eq!(b.rows(), 0);
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.schema(), dest().2);
        let flag = batch.column(0).as_boolean();
        assert_eq!(flag.iter().collect::<Vec<_>>(), vec![Some(true), None, Some(true)]);
        let id = batch.column(1).as_primitive::<Int32Type>();
        assert_eq!(id.iter().collect::<Vec<_>>(), vec![Some(1), Some(2), Some(3)]);
        let amounts = batch.column(2).as_primitive::<Decimal128Type>();
        assert_eq!(amounts.iter().collect::<Vec<_>>(), vec![Some(123_450), None, Some(-1)]);
        assert_eq!(amounts.value_as_string(0), "1234.50");
        let memo = batch.column(3).as_string::<i32>();
        assert_eq!(memo.iter().collect::<Vec<_>>(), vec![Some("first"), None, None]);
        let ts = batch.column(4).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.iter().collect::<Vec<_>>(), vec![Some(AT_UNIX_US), None, Some(AT_UNIX_US)]);
        assert_eq!(ts.timezone(), Some("UTC"));
        let doc = batch.column(5).as_string::<i32>();
        assert_eq!(doc.iter().collect::<Vec<_>>(), vec![Some(r#"{"a": 1}"#), None, Some(r#"{"a": 1}"#)]);
        let blob = batch.column(6).as_binary::<i32>();
        assert_eq!(blob.iter().collect::<Vec<_>>(), vec![Some(&[0xde, 0xad][..]), None, Some(&[0xde, 0xad][..])]);
        assert!(b.tally().is_empty());

        // The next batch starts empty.
        let doc = jsonb("[]");
        b.push(&row(&4i32.to_be_bytes(), Datum::Binary(b"again"), &amount, &at, &doc)).unwrap();
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.column(1).as_primitive::<Int32Type>().value(0), 4);
        assert_eq!(b.finish().unwrap().num_rows(), 0);
    }

    #[test]
    fn unrepresentable_values_are_nulled_and_counted_or_fail() {
        let too_precise = num(&[1, 50], 0, false, 3); // 1.005 in numeric(12,2)
        let at = pg_ts(AT_UNIX_US);
        let doc = jsonb("{}");
        let mut b = builder(false);
        assert!(b.push(&row(&7i32.to_be_bytes(), Datum::Binary(b"x"), &too_precise, &at, &doc)).unwrap().is_empty());
        b.push(&row(&8i32.to_be_bytes(), Datum::Binary(b"y"), &too_precise, &at, &doc)).unwrap();
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(2).null_count(), 2);
        let entries = b.tally().entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].column, "amount");
        assert_eq!(entries[0].count, 2);
        assert_eq!(entries[0].sample_keys, vec!["id=7".to_owned(), "id=8".to_owned()]);

        let mut b = builder(true);
        let e = b.push(&row(&7i32.to_be_bytes(), Datum::Binary(b"x"), &too_precise, &at, &doc)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Data);
        assert!(e.message().contains("column amount of the row with id=7"), "{e}");
        assert!(e.message().contains("on_unrepresentable: fail"), "{e}");
        // The failed row's batch is discarded, then the builder is usable again.
        assert!(b.finish().is_err());
        let fine = num(&[1], 0, false, 0);
        b.push(&row(&9i32.to_be_bytes(), Datum::Binary(b"z"), &fine, &at, &doc)).unwrap();
        assert_eq!(b.finish().unwrap().num_rows(), 1);
    }

    #[test]
    fn refused_tuples() {
        let amount = num(&[1], 0, false, 0);
        let at = pg_ts(AT_UNIX_US);
        let doc = jsonb("{}");
        let mut b = builder(false);
        b.push(&row(&1i32.to_be_bytes(), Datum::Binary(b"ok"), &amount, &at, &doc)).unwrap();

        // A text value (a type without binary output) names the column; the batch is intact.
        let e = b.push(&row(&2i32.to_be_bytes(), Datum::Text(b"as text"), &amount, &at, &doc)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Data);
        assert!(e.message().contains("column memo"), "{e}");
        // So is a tuple of the wrong width.
        let e = b.push(&Tuple { columns: vec![Datum::Null; 3] }).unwrap_err();
        assert!(e.message().contains("3 column(s)"), "{e}");
        assert_eq!(b.rows(), 1);

        // A malformed binary value fails the batch.
        let id3 = 3i32.to_be_bytes();
        let mut bad = row(&id3, Datum::Binary(b"ok"), &amount, &at, &doc);
        bad.columns[0] = Datum::Binary(&[0, 1]);
        let e = b.push(&bad).unwrap_err();
        assert!(e.message().contains("column id"), "{e}");
        assert!(b.push(&row(&4i32.to_be_bytes(), Datum::Binary(b"ok"), &amount, &at, &doc)).is_err());
        assert!(b.finish().is_err());
        b.push(&row(&5i32.to_be_bytes(), Datum::Binary(b"ok"), &amount, &at, &doc)).unwrap();
        assert_eq!(b.finish().unwrap().num_rows(), 1);
    }

    #[test]
    fn change_columns_map_by_name_and_check_types() {
        let (names, decoders, _) = dest();
        let c = ChangeColumns::new(&orders(), &names, &decoders).unwrap();
        assert_eq!(c.index, vec![Some(7), Some(0), Some(3), Some(1), Some(4), Some(5), Some(6)]);
        assert_eq!(c.key, vec![1]);
        assert_eq!(c.relation_columns, 8);

        // A column this relation version does not carry (added later) is absent:
        // reported unchanged, so the destination keeps what it holds.
        let mut missing = names.clone();
        missing[3] = "gone".into();
        let c = ChangeColumns::new(&orders(), &missing, &decoders).unwrap();
        assert_eq!(c.absent(), vec!["gone"]);

        // A column whose type here is not what the decoder reads (the type
        // changed since this relation version) is absent too.
        let mut rel = orders();
        rel.columns[1].type_oid = 869;
        assert_eq!(ChangeColumns::new(&rel, &names, &decoders).unwrap().absent(), vec!["note"]);
        // An enum (a type created in the database) cannot be checked.
        rel.columns[1].type_oid = 16_999;
        assert!(ChangeColumns::new(&rel, &names, &decoders).is_ok());

        // REPLICA IDENTITY FULL marks every column as key: rows are named by position.
        let mut full = orders();
        full.replica_identity = 'f';
        full.columns.iter_mut().for_each(|c| c.part_of_key = true);
        assert!(ChangeColumns::new(&full, &names, &decoders).unwrap().key.is_empty());
    }
}
