//! The script a customer runs once, as a superuser (or the database owner),
//! so SimplyLoad has exactly the access it needs in Postgres: a read-only
//! role with SELECT on the schemas (and on tables made later), and what
//! change data capture needs.

use crate::connect::quote_ident;
use simplyload_core::{Error, Result};

/// What the script sets up.
#[derive(Debug, Clone)]
pub struct SetupOptions<'a> {
    pub role: &'a str,
    /// The database SimplyLoad reads.
    pub database: &'a str,
    /// Schemas to grant SELECT on.
    pub schemas: &'a [String],
    /// Also what change data capture needs (`wal_level`, REPLICATION, a publication).
    pub cdc: bool,
    /// The pipeline's publication (its change feed's name): created over the
    /// schemas when known; otherwise the script says how to get its exact
    /// statement.
    pub publication: Option<&'a str>,
}

/// A Postgres identifier, quoted when it must be.
fn pg_ident(name: &str) -> String {
    quote_ident(name)
}

/// The setup script.
pub fn script(o: &SetupOptions<'_>) -> Result<String> {
    let mut out = grants(o.role, o.database, o.schemas)?;
    if o.cdc {
        out.push_str(&cdc(o));
    }
    Ok(out)
}

fn cdc(o: &SetupOptions<'_>) -> String {
    let r = pg_ident(o.role);
    let publication = match o.publication {
        Some(p) => {
            let tables: Vec<String> = o.schemas.iter().map(|s| format!("TABLES IN SCHEMA {}", pg_ident(s))).collect();
            format!("CREATE PUBLICATION {} FOR {};\n", pg_ident(p), tables.join(", "))
        }
        None => "-- The publication is named for the pipeline and its state: run this script with the\n\
                 -- pipeline's config (`--config`), or `simplyload check`, for its CREATE PUBLICATION.\n"
            .to_owned(),
    };
    format!(
        "
-- Change data capture (mode: cdc):
ALTER SYSTEM SET wal_level = logical;   -- takes effect after a restart of Postgres
ALTER ROLE {r} REPLICATION;
{publication}-- Tables without a primary key also need: ALTER TABLE <table> REPLICA IDENTITY FULL;
"
    )
}

fn grants(role: &str, database: &str, schemas: &[String]) -> Result<String> {
    if role.is_empty() || database.is_empty() || schemas.iter().any(|s| s.is_empty()) {
        return Err(Error::config("--role, --database and --schema must not be empty"));
    }
    let r = pg_ident(role);
    let mut out = format!(
        "-- SimplyLoad setup for Postgres. Run once as a superuser (or the database owner).
-- SimplyLoad only reads: SELECT on the tables, nothing else.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {role_lit}) THEN
    CREATE ROLE {r} LOGIN;
  END IF;
END $$;
-- Then give it a password: in psql, \\password {role}
GRANT CONNECT ON DATABASE {db} TO {r};
",
        role_lit = crate::connect::quote_literal(role),
        db = pg_ident(database),
    );
    for s in schemas {
        let s = pg_ident(s);
        out.push_str(&format!(
            "GRANT USAGE ON SCHEMA {s} TO {r};
GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r};
ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {r};
"
        ));
    }
    out.push_str(&format!(
        "-- Incremental syncs: see other sessions' open transactions, so a checkpoint never
-- passes a transaction that commits late.
GRANT pg_read_all_stats TO {r};
"
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publication_is_the_pipelines_feed() {
        let schemas = vec!["Sales Data".to_owned()];
        let o = SetupOptions {
            role: "sl",
            database: "shop",
            schemas: &schemas,
            cdc: true,
            publication: Some("simplyload_main_0a1b2c3d"),
        };
        let s = script(&o).unwrap();
        assert!(
            s.contains("CREATE PUBLICATION \"simplyload_main_0a1b2c3d\" FOR TABLES IN SCHEMA \"Sales Data\";"),
            "{s}"
        );
        assert!(s.contains("ALTER ROLE \"sl\" REPLICATION;"), "{s}");
        let s = script(&SetupOptions { publication: None, ..o.clone() }).unwrap();
        assert!(!s.contains("CREATE PUBLICATION \"") && s.contains("simplyload check"), "{s}");
        assert!(script(&SetupOptions { role: "", ..o }).is_err());
    }
}
