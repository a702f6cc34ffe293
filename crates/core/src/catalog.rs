//! What a source has: the result of `discover`.

use crate::naming::StreamName;
use crate::schema::SqlType;
use serde::{Deserialize, Serialize};

/// Everything a source offers, as of one `discover`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    /// The database name (`{database}` in table names).
    pub database: String,
    pub tables: Vec<TableInfo>,
}

impl Catalog {
    pub fn table(&self, name: &StreamName) -> Option<&TableInfo> {
        self.tables.iter().find(|t| &t.name == name)
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
