//! The test harness: real Postgres servers (one per test, each test with its
//! own database), and the conformance suites every implementation of a
//! trait must pass (DESIGN.md §10, STYLE.md "one suite for every implementation").

pub mod checkpoint_suite;
pub mod destination_suite;
pub mod edge;
mod http1;
pub mod localstripe;
pub mod peers;
pub mod pg;
pub mod snowproxy;
pub mod source_suite;
pub mod stripeproxy;

pub use pg::{TestDb, TestPg};
