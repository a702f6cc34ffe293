//! `simplyload bench …`: benchmarks whose figures are ratios against a
//! limit or a peer measured in the same run, on the same machine (which is
//! shared and noisy, so absolute rates mean little).
//!
//! * [`snapshot`]: a table copied by `COPY … TO STDOUT (FORMAT binary)`
//!   (the limit), SimplyLoad's staging alone, SimplyLoad end to end into
//!   DuckDB, dlt and Sling, alternating, with peak memory;
//! * [`cdc`]: change decoding against `pg_recvlogical` on the same changes;
//! * [`stripe`]: a Stripe backfill's request rate against the client's limit.
//!
//! The binary's `bench` command only parses arguments and calls these.

pub mod cdc;
pub mod snapshot;
pub mod stripe;

pub use snapshot::{SnapshotArgs, snapshot, stage_once};
