//! Snowflake (DESIGN.md §7): our own thin client for the protocol
//! Snowflake's drivers speak — no existing crate works against both
//! Snowflake and the `fakesnow` server the tests use. The destination
//! (stage, COPY, apply in one transaction) is built on it.

pub mod client;
pub mod destination;
pub mod encryption;
pub mod error;
pub mod jwt;
pub mod put;
pub mod setup;
pub mod values;

/// The RSA implementation key-pair auth uses (for tools and tests that make keys).
pub use rsa;

pub use client::{Binding, Column, Credentials, LoginOptions, QueryResult, Rows, Session};
pub use destination::{SnowflakeDestination, StageMode};
