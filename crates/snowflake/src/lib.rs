//! Snowflake (DESIGN.md §7): our own thin client for the protocol
//! Snowflake's drivers speak — no existing crate works against both
//! Snowflake and the `fakesnow` server the tests use. The destination
//! (stage, COPY, MERGE) is built on it.

pub mod client;
pub mod error;
pub mod jwt;

/// The RSA implementation key-pair auth uses (for tools and tests that make keys).
pub use rsa;

pub use client::{Binding, Column, Credentials, LoginOptions, QueryResult, Rows, Session};
