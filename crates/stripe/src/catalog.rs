//! `discover` for Stripe: the streams are fixed, so describing them costs no
//! API call.

use crate::objects::{API_VERSION, OBJECTS, ObjectType, RAW};
use simplyload_core::catalog::{Catalog, ColumnInfo, Selection, TableInfo};
use simplyload_core::{Capabilities, SqlType, StreamName};

/// What the Stripe source can do besides listing.
pub const CAPABILITIES: Capabilities = Capabilities { cursor: false, change_feed: true, scan: true };

/// The streams `selection` matches.
pub fn catalog(account: &str, selection: &Selection) -> Catalog {
    let tables = OBJECTS.iter().filter(|o| selection.matches(&StreamName::bare(o.stream))).map(table_info).collect();
    Catalog { database: account.to_owned(), default_namespace: None, capabilities: CAPABILITIES, tables }
}

/// One stream as `discover` describes it.
pub fn table_info(object: &ObjectType) -> TableInfo {
    let mut columns: Vec<ColumnInfo> = object
        .fields
        .iter()
        .map(|f| ColumnInfo {
            name: f.name.to_owned(),
            type_name: f.stripe_type.to_owned(),
            sql_type: f.sql_type,
            nullable: f.name != "id",
            has_default: false,
            verbatim: false,
        })
        .collect();
    for (name, t, stripe) in [(RAW, SqlType::Json, "object"), (API_VERSION, SqlType::Text, "string")] {
        columns.push(ColumnInfo {
            name: name.to_owned(),
            type_name: stripe.to_owned(),
            sql_type: t,
            nullable: false,
            has_default: false,
            verbatim: true,
        });
    }
    TableInfo {
        name: StreamName::bare(object.stream),
        kind: format!("stripe {}", object.object),
        columns,
        primary_key: vec!["id".to_owned()],
        estimated_rows: None,
        replica_identity: None,
    }
}

#[cfg(test)]
pub(crate) trait ToSpec {
    fn to_spec(&self) -> simplyload_core::TableSpec;
}

#[cfg(test)]
impl ToSpec for TableInfo {
    /// The table a plan would make, for unit tests (names are already normal).
    fn to_spec(&self) -> simplyload_core::TableSpec {
        simplyload_core::TableSpec {
            stream: self.name.clone(),
            name: self.name.name.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| simplyload_core::Column {
                    source_name: c.name.clone(),
                    name: c.name.clone(),
                    sql_type: c.sql_type,
                    source_type: c.type_name.clone(),
                    nullable: c.nullable,
                })
                .collect(),
            key: self.primary_key.clone(),
            hashed: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_describes_only_what_it_matches() {
        let all = catalog("acct", &Selection::all());
        assert_eq!(all.tables.len(), OBJECTS.len());
        let some = catalog("acct", &Selection::of([StreamName::bare("c*")]));
        let names: Vec<&str> = some.tables.iter().map(|t| t.name.name.as_str()).collect();
        assert_eq!(names, ["customers", "charges"]);
        let customers = &some.tables[0];
        assert_eq!(customers.primary_key, ["id"]);
        assert!(customers.columns.iter().any(|c| c.name == "_raw" && c.sql_type == SqlType::Json && c.verbatim));
    }
}
