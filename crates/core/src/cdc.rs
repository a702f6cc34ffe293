//! Change data capture (DESIGN.md §3, §6): the ordering key of a change and
//! the staged form of a group of changes.
//!
//! A change's `_simplyload_version` is its transaction's commit LSN times
//! 2³² plus the change's position in the transaction, so replaying the WAL
//! from any confirmed point never lets an older row version replace a newer
//! one. Snapshot rows taken at a slot's consistent point carry
//! `consistent_point × 2³²`: every change the slot streams afterwards
//! committed after that point and so wins.

use crate::error::{Error, Result};
use crate::row_id;
use crate::schema::{TableSpec, meta};
use arrow_array::{ArrayRef, BooleanArray, Decimal128Array, RecordBatch};
use std::sync::Arc;

/// A WAL position.
pub type Lsn = u64;

/// `16/B374D848`.
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Parses `16/B374D848`.
pub fn parse_lsn(s: &str) -> Result<Lsn> {
    let (hi, lo) = s.trim().split_once('/').ok_or_else(|| Error::data(format!("`{s}` is not an LSN like 16/B374D848")))?;
    let hi = u32::from_str_radix(hi, 16).map_err(|_| Error::data(format!("`{s}` is not an LSN like 16/B374D848")))?;
    let lo = u32::from_str_radix(lo, 16).map_err(|_| Error::data(format!("`{s}` is not an LSN like 16/B374D848")))?;
    Ok(((hi as u64) << 32) | lo as u64)
}

/// The version of the `seq`-th change of the transaction that committed at `commit_lsn`.
pub fn change_version(commit_lsn: Lsn, seq: u32) -> i128 {
    ((commit_lsn as i128) << 32) | seq as i128
}

/// The version of every snapshot row read at a slot's consistent point.
pub fn snapshot_version(consistent_point: Lsn) -> i128 {
    change_version(consistent_point, 0)
}

/// Appends the metadata columns to a group of changes of one table: each
/// row's version and delete flag, and for tables without a key the row id.
pub fn stage_changes(table: &TableSpec, data: RecordBatch, versions: &[i128], deleted: &[bool]) -> Result<RecordBatch> {
    let n = data.num_rows();
    if versions.len() != n || deleted.len() != n {
        return Err(Error::internal(format!(
            "{}: {n} changed rows but {} versions and {} delete flags",
            table.stream,
            versions.len(),
            deleted.len()
        )));
    }
    let mut columns: Vec<ArrayRef> = data.columns().to_vec();
    columns.push(Arc::new(BooleanArray::from(deleted.to_vec())));
    columns.push(Arc::new(
        Decimal128Array::from(versions.to_vec()).with_precision_and_scale(meta::VERSION_PRECISION, 0)?,
    ));
    if !table.has_key() {
        columns.push(Arc::new(row_id::row_ids(table, &data)?));
    }
    Ok(RecordBatch::try_new(table.staged_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_and_versions_order_changes() {
        let lsn = parse_lsn("16/B374D848").unwrap();
        assert_eq!(lsn, 0x16_B374_D848);
        assert_eq!(format_lsn(lsn), "16/B374D848");
        assert_eq!(format_lsn(0), "0/0");
        assert!(parse_lsn("16B374D848").is_err() && parse_lsn("x/1").is_err());
        // Later commits win; within a commit, later changes win; snapshot rows lose to both.
        assert!(change_version(lsn + 1, 0) > change_version(lsn, u32::MAX));
        assert!(change_version(lsn, 2) > change_version(lsn, 1));
        assert!(snapshot_version(lsn) < change_version(lsn + 8, 0));
        assert!(change_version(u64::MAX, u32::MAX) < 10i128.pow(38), "fits decimal(38,0)");
    }
}
