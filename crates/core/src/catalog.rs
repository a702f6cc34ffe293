//! What a source has: the result of `discover`, and the [`Selection`] a
//! `discover` call is asked to describe.

use crate::naming::{StreamName, pattern_matches};
use crate::schema::SqlType;
use serde::{Deserialize, Serialize};

/// Everything a source offers, as of one `discover`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    /// The database name (`{database}` in table names).
    pub database: String,
    /// The namespace names without one are looked up in
    /// ([`crate::Source::default_namespace`]).
    #[serde(default)]
    pub default_namespace: Option<String>,
    /// What the source can do besides snapshots.
    #[serde(default)]
    pub capabilities: Capabilities,
    pub tables: Vec<TableInfo>,
}

/// What a source can do besides snapshots, declared by each source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    /// `mode: incremental`: reads bounded below by a cursor column
    /// ([`crate::SnapshotRequest::incremental`]).
    pub cursor: bool,
    /// `mode: cdc`: a change feed ([`crate::Source::change_feed`]).
    pub change_feed: bool,
    /// `reconcile`: rows read back independently of the snapshot path
    /// ([`crate::Source::scanner`]).
    pub scan: bool,
}

impl Catalog {
    pub fn table(&self, name: &StreamName) -> Option<&TableInfo> {
        self.tables.iter().find(|t| &t.name == name)
    }
}

/// The streams a `discover` call must describe: those matching one of a
/// list of names and glob patterns (`public.orders`, `public.*`,
/// `charge*`), or every stream the source has.
///
/// A source asked for a selection describes at least every stream it holds
/// that matches (it may describe more; callers look streams up by name), and
/// it spends no more of the source's time or API quota than the selection
/// needs (an API source describes only the objects asked for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `None`: everything.
    patterns: Option<Vec<StreamName>>,
}

impl Selection {
    /// Every stream the source has (`simplyload discover`).
    pub fn all() -> Selection {
        Selection { patterns: None }
    }

    /// The streams matching these names or patterns (already qualified
    /// with the source's default namespace, if it has one).
    pub fn of(patterns: impl IntoIterator<Item = StreamName>) -> Selection {
        Selection { patterns: Some(patterns.into_iter().collect()) }
    }

    /// The names and patterns asked for; `None`: everything.
    pub fn patterns(&self) -> Option<&[StreamName]> {
        self.patterns.as_deref()
    }

    pub fn matches(&self, stream: &StreamName) -> bool {
        match &self.patterns {
            None => true,
            Some(p) => p.iter().any(|p| pattern_matches(p, stream)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableInfo {
    pub name: StreamName,
    /// `table`, `partitioned table`, `view`, `materialized view`, `foreign table`.
    pub kind: String,
    pub columns: Vec<ColumnInfo>,
    /// Source column names of the primary key, in key order; empty if none.
    pub primary_key: Vec<String>,
    /// The planner's estimate; `None` when the table was never analyzed.
    pub estimated_rows: Option<u64>,
    /// `default`, `full`, `index` or `nothing` (Postgres replica identity).
    pub replica_identity: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    /// The source's type as it prints it (`numeric(12,2)`, `status_enum`, `int4[]`).
    pub type_name: String,
    /// The logical type the column is staged as.
    pub sql_type: SqlType,
    pub nullable: bool,
    /// The column has a default: added to a table that has rows, it gives
    /// them values without touching their `updated_at`.
    #[serde(default)]
    pub has_default: bool,
    /// A column the source adds of its own (Stripe's `_raw`): its name is
    /// kept exactly as the source spells it, like SimplyLoad's
    /// `_simplyload_*` columns, instead of being normalised.
    #[serde(default)]
    pub verbatim: bool,
}

/// The outcome of a connection and permission check, one line per thing checked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckReport {
    pub items: Vec<CheckItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckItem {
    /// What was checked (`connect`, `SELECT on public.orders`).
    pub what: String,
    pub ok: bool,
    pub detail: String,
    /// SQL the customer can run to fix it, when SQL fixes it.
    pub fix_sql: Option<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.items.iter().all(|i| i.ok)
    }

    pub fn pass(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.items.push(CheckItem { what: what.into(), ok: true, detail: detail.into(), fix_sql: None });
    }

    pub fn fail(&mut self, what: impl Into<String>, detail: impl Into<String>, fix_sql: Option<String>) {
        self.items.push(CheckItem { what: what.into(), ok: false, detail: detail.into(), fix_sql });
    }
}
