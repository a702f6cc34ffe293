//! `COPY … TO STDOUT (FORMAT binary)` decoded straight into Arrow builders.
//!
//! The binary COPY format is a header (`PGCOPY\n\377\r\n\0`, flags, an
//! extension area), then per row an i16 field count and, per field, an i32
//! length (-1 for NULL) and that many bytes in the type's binary send
//! format, then an i16 -1 trailer. Postgres happens to send one row per
//! CopyData message, but the protocol does not promise it, so the parser
//! accepts rows split across or packed into messages.
//!
//! Values are appended to one Arrow builder per column; every `batch_rows`
//! rows (or `batch_bytes` bytes of wire data) the builders are finished into
//! a `RecordBatch`. A value the staging format or the destination cannot hold
//! (numeric NaN in a decimal column, ±infinity dates, timestamps beyond the
//! destination's range) is written as NULL and counted, or fails the read,
//! per `on_unrepresentable`.

use crate::types::Decoder;
use arrow_array::builder::*;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use simplyload_core::{Error, ErrorKind, Result, UnrepresentableTally, ValueLimits};
use std::sync::Arc;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (Postgres's).
const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const EPOCH_US: i64 = 946_684_800_000_000;

/// One column being decoded: its builder, typed by what it decodes.
pub(crate) enum Col {
    Bool(BooleanBuilder),
    Int2(Int16Builder),
    Int4(Int32Builder),
    Int8(Int64Builder),
    Float4(Float32Builder),
    Float8(Float64Builder),
    Decimal { b: Decimal128Builder, precision: u8, scale: i8 },
    NumericText(StringBuilder),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Uuid(StringBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    TimestampTz(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Interval(StringBuilder),
    Bytea(BinaryBuilder),
}

impl Col {
    pub(crate) fn new(d: Decoder, cap: usize) -> Col {
        match d {
            Decoder::Bool => Col::Bool(BooleanBuilder::with_capacity(cap)),
            Decoder::Int2 => Col::Int2(Int16Builder::with_capacity(cap)),
            Decoder::Int4 => Col::Int4(Int32Builder::with_capacity(cap)),
            Decoder::Int8 => Col::Int8(Int64Builder::with_capacity(cap)),
            Decoder::Float4 => Col::Float4(Float32Builder::with_capacity(cap)),
            Decoder::Float8 => Col::Float8(Float64Builder::with_capacity(cap)),
            Decoder::Decimal { precision, scale } => Col::Decimal {
                b: Decimal128Builder::with_capacity(cap)
                    .with_precision_and_scale(precision, scale)
                    .expect("valid decimal precision"),
                precision,
                scale,
            },
            Decoder::NumericText => Col::NumericText(StringBuilder::with_capacity(cap, cap * 8)),
            Decoder::Text => Col::Text(StringBuilder::with_capacity(cap, cap * 16)),
            Decoder::Jsonb => Col::Jsonb(StringBuilder::with_capacity(cap, cap * 32)),
            Decoder::Uuid => Col::Uuid(StringBuilder::with_capacity(cap, cap * 36)),
            Decoder::Date => Col::Date(Date32Builder::with_capacity(cap)),
            Decoder::Timestamp => Col::Timestamp(TimestampMicrosecondBuilder::with_capacity(cap)),
            Decoder::TimestampTz => {
                Col::TimestampTz(TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC"))
            }
            Decoder::Time => Col::Time(Time64MicrosecondBuilder::with_capacity(cap)),
            Decoder::Interval => Col::Interval(StringBuilder::with_capacity(cap, cap * 12)),
            Decoder::Bytea => Col::Bytea(BinaryBuilder::with_capacity(cap, cap * 16)),
        }
    }

    pub(crate) fn append_null(&mut self) {
        match self {
            Col::Bool(b) => b.append_null(),
            Col::Int2(b) => b.append_null(),
            Col::Int4(b) => b.append_null(),
            Col::Int8(b) => b.append_null(),
            Col::Float4(b) => b.append_null(),
            Col::Float8(b) => b.append_null(),
            Col::Decimal { b, .. } => b.append_null(),
            Col::NumericText(b) | Col::Text(b) | Col::Jsonb(b) | Col::Uuid(b) | Col::Interval(b) => b.append_null(),
            Col::Date(b) => b.append_null(),
            Col::Timestamp(b) | Col::TimestampTz(b) => b.append_null(),
            Col::Time(b) => b.append_null(),
            Col::Bytea(b) => b.append_null(),
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Int2(b) => Arc::new(b.finish()),
            Col::Int4(b) => Arc::new(b.finish()),
            Col::Int8(b) => Arc::new(b.finish()),
            Col::Float4(b) => Arc::new(b.finish()),
            Col::Float8(b) => Arc::new(b.finish()),
            Col::Decimal { b, .. } => Arc::new(b.finish()),
            Col::NumericText(b) | Col::Text(b) | Col::Jsonb(b) | Col::Uuid(b) | Col::Interval(b) => {
                Arc::new(b.finish())
            }
            Col::Date(b) => Arc::new(b.finish()),
            Col::Timestamp(b) | Col::TimestampTz(b) => Arc::new(b.finish()),
            Col::Time(b) => Arc::new(b.finish()),
            Col::Bytea(b) => Arc::new(b.finish()),
        }
    }

    /// Appends one non-NULL value. `Ok(Some(reason))` means the value was not
    /// representable and nothing was appended.
    #[inline]
    pub(crate) fn append(
        &mut self,
        v: &[u8],
        limits: &ValueLimits,
        scratch: &mut String,
    ) -> Result<Option<&'static str>> {
        match self {
            Col::Bool(b) => b.append_value(fixed::<1>(v)?[0] != 0),
            Col::Int2(b) => b.append_value(i16::from_be_bytes(fixed(v)?)),
            Col::Int4(b) => b.append_value(i32::from_be_bytes(fixed(v)?)),
            Col::Int8(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Col::Float4(b) => b.append_value(f32::from_be_bytes(fixed(v)?)),
            Col::Float8(b) => b.append_value(f64::from_be_bytes(fixed(v)?)),
            Col::Decimal { b, precision, scale } => match numeric_to_i128(v, *precision, *scale)? {
                Ok(n) => b.append_value(n),
                Err(reason) => return Ok(Some(reason)),
            },
            Col::NumericText(b) => {
                scratch.clear();
                numeric_to_text(v, scratch)?;
                b.append_value(scratch.as_str());
            }
            Col::Text(b) => match std::str::from_utf8(v) {
                Ok(s) => b.append_value(s),
                Err(_) => return Ok(Some("text is not valid UTF-8")),
            },
            Col::Jsonb(b) => {
                let (&version, text) = v.split_first().ok_or_else(|| malformed("jsonb", v.len()))?;
                if version != 1 {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!("jsonb binary version {version} is not supported"),
                    ));
                }
                match std::str::from_utf8(text) {
                    Ok(s) => b.append_value(s),
                    Err(_) => return Ok(Some("json is not valid UTF-8")),
                }
            }
            Col::Uuid(b) => {
                let bytes: [u8; 16] = fixed(v)?;
                b.append_value(format_uuid_into(&bytes, &mut [0u8; 36]));
            }
            Col::Date(b) => {
                let d = i32::from_be_bytes(fixed(v)?);
                if d == i32::MAX {
                    return Ok(Some("date is infinity"));
                }
                if d == i32::MIN {
                    return Ok(Some("date is -infinity"));
                }
                match d.checked_add(EPOCH_DAYS) {
                    Some(days) if limits.date_ok(days) => b.append_value(days),
                    _ => return Ok(Some("date is outside the destination's range")),
                }
            }
            Col::Timestamp(b) | Col::TimestampTz(b) => {
                let t = i64::from_be_bytes(fixed(v)?);
                if t == i64::MAX {
                    return Ok(Some("timestamp is infinity"));
                }
                if t == i64::MIN {
                    return Ok(Some("timestamp is -infinity"));
                }
                match t.checked_add(EPOCH_US) {
                    Some(us) if limits.timestamp_ok(us) => b.append_value(us),
                    _ => return Ok(Some("timestamp is outside the destination's range")),
                }
            }
            Col::Time(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Col::Interval(b) => {
                let bytes: [u8; 16] = fixed(v)?;
                let us = i64::from_be_bytes(bytes[0..8].try_into().expect("8 bytes"));
                let days = i32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
                let months = i32::from_be_bytes(bytes[12..16].try_into().expect("4 bytes"));
                scratch.clear();
                interval_iso8601(months, days, us, scratch);
                b.append_value(scratch.as_str());
            }
            Col::Bytea(b) => b.append_value(v),
        }
        Ok(None)
    }
}

#[inline]
fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N]> {
    v.try_into().map_err(|_| malformed("fixed-size value", v.len()))
}

fn malformed(what: &str, len: usize) -> Error {
    Error::data(format!("malformed COPY data: unexpected {len}-byte {what}"))
}

/// One column of the read: its destination name and decoder.
#[derive(Debug, Clone)]
pub struct ColumnRead {
    pub name: String,
    pub decoder: Decoder,
}

/// Turns COPY rows into Arrow record batches.
pub struct RowDecoder {
    names: Vec<String>,
    decoders: Vec<Decoder>,
    cols: Vec<Col>,
    schema: SchemaRef,
    limits: ValueLimits,
    fail_on_unrepresentable: bool,
    /// Column positions of the key, for naming rows in reports.
    key: Vec<usize>,
    stream: String,
    batch_rows: usize,
    batch_bytes: usize,
    rows_in_batch: usize,
    bytes_in_batch: usize,
    bytes_total: u64,
    rows_total: u64,
    /// Finished batches with the wire bytes they took.
    ready: Vec<(RecordBatch, u64)>,
    pub tally: UnrepresentableTally,
    issues: Vec<(usize, &'static str)>,
    scratch: String,
}

/// How a [`RowDecoder`] bounds and checks what it decodes.
#[derive(Debug, Clone, Copy)]
pub struct DecodeBounds {
    /// Values outside these are unrepresentable (NULL and counted, or an error).
    pub limits: ValueLimits,
    pub fail_on_unrepresentable: bool,
    /// A batch closes at this many rows, or at about this many bytes.
    pub batch_rows: usize,
    pub batch_bytes: usize,
}

impl RowDecoder {
    pub fn new(
        stream: &str,
        columns: &[ColumnRead],
        schema: SchemaRef,
        key: Vec<usize>,
        bounds: DecodeBounds,
    ) -> RowDecoder {
        let DecodeBounds { limits, fail_on_unrepresentable, batch_rows, batch_bytes } = bounds;
        let batch_rows = batch_rows.max(1);
        RowDecoder {
            names: columns.iter().map(|c| c.name.clone()).collect(),
            decoders: columns.iter().map(|c| c.decoder).collect(),
            cols: columns.iter().map(|c| Col::new(c.decoder, batch_rows.min(8192))).collect(),
            schema,
            limits,
            fail_on_unrepresentable,
            key,
            stream: stream.to_owned(),
            batch_rows,
            batch_bytes: batch_bytes.max(1),
            rows_in_batch: 0,
            bytes_in_batch: 0,
            bytes_total: 0,
            rows_total: 0,
            ready: Vec::new(),
            tally: UnrepresentableTally::default(),
            issues: Vec::new(),
            scratch: String::new(),
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows_total
    }

    /// Decodes one row: the bytes after its field count.
    fn decode_row(&mut self, row: &[u8]) -> Result<()> {
        let mut p = 0usize;
        for i in 0..self.cols.len() {
            let len = i32::from_be_bytes(row[p..p + 4].try_into().expect("checked by the parser"));
            p += 4;
            if len < 0 {
                self.cols[i].append_null();
                continue;
            }
            let v = &row[p..p + len as usize];
            p += len as usize;
            if let Some(reason) = self.cols[i].append(v, &self.limits, &mut self.scratch)? {
                self.cols[i].append_null();
                self.issues.push((i, reason));
            }
        }
        if !self.issues.is_empty() {
            self.report_issues(row)?;
        }
        self.rows_in_batch += 1;
        self.rows_total += 1;
        self.bytes_in_batch += row.len() + 2;
        if self.rows_in_batch >= self.batch_rows || self.bytes_in_batch >= self.batch_bytes {
            self.finish_batch()?;
        }
        Ok(())
    }

    fn report_issues(&mut self, row: &[u8]) -> Result<()> {
        let key = self.describe_key(row);
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

    /// `id=42` (the key columns' values), or the row's position without a key.
    fn describe_key(&self, row: &[u8]) -> String {
        if self.key.is_empty() {
            return format!("row #{}", self.rows_total + 1);
        }
        let mut fields = Vec::with_capacity(self.cols.len());
        let mut p = 0usize;
        for _ in 0..self.cols.len() {
            let len = i32::from_be_bytes(row[p..p + 4].try_into().expect("checked"));
            p += 4;
            if len < 0 {
                fields.push(None);
            } else {
                fields.push(Some(&row[p..p + len as usize]));
                p += len as usize;
            }
        }
        self.key
            .iter()
            .map(|&k| {
                let v = match fields[k] {
                    None => "NULL".to_owned(),
                    Some(v) => display_value(self.decoders[k], v),
                };
                format!("{}={v}", self.names[k])
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Closes the current batch, if it has rows.
    pub fn finish_batch(&mut self) -> Result<()> {
        if self.rows_in_batch == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.cols.iter_mut().map(Col::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        self.ready.push((batch, self.bytes_in_batch as u64));
        self.bytes_total += self.bytes_in_batch as u64;
        self.rows_in_batch = 0;
        self.bytes_in_batch = 0;
        Ok(())
    }

    /// Finished batches, oldest first.
    pub fn take_ready(&mut self) -> std::vec::Drain<'_, (RecordBatch, u64)> {
        self.ready.drain(..)
    }
}

fn display_value(d: Decoder, v: &[u8]) -> String {
    match (d, v.len()) {
        (Decoder::Int2, 2) => i16::from_be_bytes(v.try_into().expect("2")).to_string(),
        (Decoder::Int4, 4) => i32::from_be_bytes(v.try_into().expect("4")).to_string(),
        (Decoder::Int8, 8) => i64::from_be_bytes(v.try_into().expect("8")).to_string(),
        (Decoder::Uuid, 16) => format_uuid(v.try_into().expect("16")),
        (Decoder::Text, _) => match std::str::from_utf8(v) {
            Ok(s) if s.len() <= 200 => format!("{s:?}"),
            Ok(s) => format!("{:?}…", &s[..s.floor_char_boundary(200)]),
            Err(_) => format!("0x{}", hex(v)),
        },
        (Decoder::NumericText | Decoder::Decimal { .. }, _) => {
            let mut s = String::new();
            match numeric_to_text(v, &mut s) {
                Ok(()) => s,
                Err(_) => format!("0x{}", hex(v)),
            }
        }
        _ => format!("0x{}", hex(v)),
    }
}

fn hex(v: &[u8]) -> String {
    v.iter().take(64).map(|b| format!("{b:02x}")).collect()
}

/// Parses the binary COPY stream incrementally.
#[derive(Default)]
pub struct CopyParser {
    pending: Vec<u8>,
    header_done: bool,
    finished: bool,
}

impl CopyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk of the COPY stream.
    pub fn feed(&mut self, chunk: &[u8], rows: &mut RowDecoder) -> Result<()> {
        if self.pending.is_empty() {
            let used = self.process(chunk, rows)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let pending = std::mem::take(&mut self.pending);
            let used = self.process(&pending, rows)?;
            self.pending = pending;
            self.pending.drain(..used);
        }
        Ok(())
    }

    /// Call at the end of the stream: checks it ended with the trailer.
    pub fn finish(&self) -> Result<()> {
        if !self.finished || !self.pending.is_empty() {
            return Err(Error::new(
                ErrorKind::Transient,
                "the COPY stream ended early (connection lost or server stopped mid-read)",
            ));
        }
        Ok(())
    }

    fn process(&mut self, buf: &[u8], rows: &mut RowDecoder) -> Result<usize> {
        let mut pos = 0usize;
        if !self.header_done {
            if buf.len() < 19 {
                return Ok(0);
            }
            if &buf[..11] != SIGNATURE {
                return Err(Error::data("COPY data does not start with the binary COPY signature"));
            }
            let ext = u32::from_be_bytes(buf[15..19].try_into().expect("4 bytes")) as usize;
            if buf.len() < 19 + ext {
                return Ok(0);
            }
            pos = 19 + ext;
            self.header_done = true;
        }
        let ncols = rows.cols.len();
        loop {
            if self.finished {
                if pos < buf.len() {
                    return Err(Error::data("COPY data continues after its trailer"));
                }
                return Ok(pos);
            }
            if buf.len() - pos < 2 {
                return Ok(pos);
            }
            let count = i16::from_be_bytes([buf[pos], buf[pos + 1]]);
            if count == -1 {
                self.finished = true;
                pos += 2;
                continue;
            }
            if count as usize != ncols {
                return Err(Error::data(format!("COPY row has {count} fields, expected {ncols}")));
            }
            let mut p = pos + 2;
            let mut complete = true;
            for _ in 0..ncols {
                if buf.len() - p < 4 {
                    complete = false;
                    break;
                }
                let len = i32::from_be_bytes(buf[p..p + 4].try_into().expect("4 bytes"));
                p += 4;
                if len < -1 {
                    return Err(Error::data(format!("COPY field has a negative length {len}")));
                }
                if len > 0 {
                    if buf.len() - p < len as usize {
                        complete = false;
                        break;
                    }
                    p += len as usize;
                }
            }
            if !complete {
                return Ok(pos);
            }
            rows.decode_row(&buf[pos + 2..p])?;
            pos = p;
        }
    }
}

/// numeric's binary form: ndigits, weight, sign, dscale, then base-10000 digits.
struct Numeric<'a> {
    weight: i16,
    sign: u16,
    dscale: u16,
    digits: &'a [u8],
}

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

impl<'a> Numeric<'a> {
    fn parse(v: &'a [u8]) -> Result<Numeric<'a>> {
        if v.len() < 8 {
            return Err(malformed("numeric", v.len()));
        }
        let ndigits = i16::from_be_bytes([v[0], v[1]]);
        let n = Numeric {
            weight: i16::from_be_bytes([v[2], v[3]]),
            sign: u16::from_be_bytes([v[4], v[5]]),
            dscale: u16::from_be_bytes([v[6], v[7]]),
            digits: &v[8..],
        };
        if ndigits < 0 || n.digits.len() != ndigits as usize * 2 {
            return Err(malformed("numeric", v.len()));
        }
        Ok(n)
    }

    fn ndigits(&self) -> usize {
        self.digits.len() / 2
    }

    fn digit(&self, i: isize) -> i128 {
        if i < 0 || i as usize >= self.ndigits() {
            0
        } else {
            let i = i as usize;
            u16::from_be_bytes([self.digits[2 * i], self.digits[2 * i + 1]]) as i128
        }
    }
}

/// numeric → value × 10^scale as i128, or why it does not fit.
fn numeric_to_i128(v: &[u8], precision: u8, scale: i8) -> Result<std::result::Result<i128, &'static str>> {
    let n = Numeric::parse(v)?;
    match n.sign {
        NUMERIC_NAN => return Ok(Err("numeric NaN does not fit a decimal column")),
        NUMERIC_PINF => return Ok(Err("numeric Infinity does not fit a decimal column")),
        NUMERIC_NINF => return Ok(Err("numeric -Infinity does not fit a decimal column")),
        _ => {}
    }
    let overflow = "numeric does not fit the column's decimal precision";
    // Walk the decimal digits from the first base-10000 group; the first
    // `wanted` of them make up value × 10^scale, every later one must be 0.
    let wanted = 4 * (n.weight as i64 + 1) + scale as i64;
    let mut acc: i128 = 0;
    let mut p: i64 = 0;
    for i in 0..n.ndigits() {
        let group = n.digit(i as isize);
        for d in [group / 1000, group / 100 % 10, group / 10 % 10, group % 10] {
            if p < wanted {
                acc = match acc.checked_mul(10).and_then(|a| a.checked_add(d)) {
                    Some(a) => a,
                    None => return Ok(Err(overflow)),
                };
            } else if d != 0 {
                return Ok(Err("numeric has more decimal places than the column's scale"));
            }
            p += 1;
        }
    }
    while p < wanted {
        acc = match acc.checked_mul(10) {
            Some(a) => a,
            None => return Ok(Err(overflow)),
        };
        p += 1;
    }
    if acc >= 10i128.pow(precision as u32) {
        return Ok(Err(overflow));
    }
    Ok(Ok(if n.sign == NUMERIC_NEG { -acc } else { acc }))
}

/// numeric → its exact text, as Postgres prints it.
pub fn numeric_to_text(v: &[u8], out: &mut String) -> Result<()> {
    use std::fmt::Write;
    let n = Numeric::parse(v)?;
    match n.sign {
        NUMERIC_NAN => {
            out.push_str("NaN");
            return Ok(());
        }
        NUMERIC_PINF => {
            out.push_str("Infinity");
            return Ok(());
        }
        NUMERIC_NINF => {
            out.push_str("-Infinity");
            return Ok(());
        }
        _ => {}
    }
    if n.sign == NUMERIC_NEG {
        out.push('-');
    }
    if n.weight < 0 {
        out.push('0');
    } else {
        for i in 0..=n.weight as isize {
            let d = n.digit(i);
            if i == 0 {
                let _ = write!(out, "{d}");
            } else {
                let _ = write!(out, "{d:04}");
            }
        }
    }
    if n.dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut i = n.weight as isize + 1;
        while out.len() - start < n.dscale as usize {
            let _ = write!(out, "{:04}", n.digit(i));
            i += 1;
        }
        out.truncate(start + n.dscale as usize);
    }
    Ok(())
}

/// Writes the canonical 8-4-4-4-12 lower-case form into `buf`.
#[inline]
pub fn format_uuid_into<'a>(b: &[u8; 16], buf: &'a mut [u8; 36]) -> &'a str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut j = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            buf[j] = b'-';
            j += 1;
        }
        buf[j] = HEX[(byte >> 4) as usize];
        buf[j + 1] = HEX[(byte & 0xf) as usize];
        j += 2;
    }
    std::str::from_utf8(&buf[..]).expect("ascii hex")
}

pub fn format_uuid(b: &[u8; 16]) -> String {
    format_uuid_into(b, &mut [0u8; 36]).to_owned()
}

/// An interval in ISO 8601, as Postgres prints it with `IntervalStyle = iso_8601`.
pub fn interval_iso8601(months: i32, days: i32, micros: i64, out: &mut String) {
    use std::fmt::Write;
    let years = months / 12;
    let mons = months % 12;
    let hours = micros / 3_600_000_000;
    let rest = micros % 3_600_000_000;
    let mins = rest / 60_000_000;
    let rest = rest % 60_000_000;
    let secs = rest / 1_000_000;
    let fsec = rest % 1_000_000;
    if years == 0 && mons == 0 && days == 0 && micros == 0 {
        out.push_str("PT0S");
        return;
    }
    out.push('P');
    if years != 0 {
        let _ = write!(out, "{years}Y");
    }
    if mons != 0 {
        let _ = write!(out, "{mons}M");
    }
    if days != 0 {
        let _ = write!(out, "{days}D");
    }
    if hours != 0 || mins != 0 || secs != 0 || fsec != 0 {
        out.push('T');
        if hours != 0 {
            let _ = write!(out, "{hours}H");
        }
        if mins != 0 {
            let _ = write!(out, "{mins}M");
        }
        if secs != 0 || fsec != 0 {
            if secs < 0 || fsec < 0 {
                out.push('-');
            }
            let _ = write!(out, "{}", secs.unsigned_abs());
            if fsec != 0 {
                let frac = format!("{:06}", fsec.unsigned_abs());
                let _ = write!(out, ".{}", frac.trim_end_matches('0'));
            }
            out.push('S');
        }
    }
}

#[cfg(test)]
mod tests;
