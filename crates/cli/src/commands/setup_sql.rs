//! `simplyload setup-sql snowflake|postgres`: the script a customer runs
//! once, as an administrator, so SimplyLoad has exactly the access it needs.

use clap::Subcommand;
use simplyload_core::{Error, Result};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum SetupSql {
    /// Warehouse (XSMALL, auto-suspend 60 s), role, user with an RSA key, database and schema, grants
    Snowflake {
        #[arg(long, default_value = "SIMPLYLOAD")]
        user: String,
        #[arg(long, default_value = "SIMPLYLOAD")]
        role: String,
        #[arg(long, default_value = "SIMPLYLOAD_WH")]
        warehouse: String,
        #[arg(long, default_value = "RAW_DATA")]
        database: String,
        #[arg(long, default_value = "SIMPLYLOAD")]
        schema: String,
        /// The user's RSA public key (PEM), e.g. rsa_key.pub from `openssl rsa -pubout`
        #[arg(long, value_name = "PATH")]
        public_key_file: Option<PathBuf>,
    },
    /// A read-only role with SELECT on the schemas, and the extras CDC needs
    Postgres {
        #[arg(long, default_value = "simplyload")]
        role: String,
        /// The database SimplyLoad reads
        #[arg(long)]
        database: String,
        /// Schemas to grant SELECT on (repeatable)
        #[arg(long = "schema", default_values_t = vec!["public".to_owned()])]
        schemas: Vec<String>,
        /// Also print what change data capture needs (wal_level, REPLICATION, a publication)
        #[arg(long)]
        cdc: bool,
        /// The pipeline whose publication to create (with --cdc)
        #[arg(long, default_value = "main")]
        pipeline: String,
    },
}

pub fn run(cmd: SetupSql) -> Result<u8> {
    let sql = match cmd {
        SetupSql::Snowflake { user, role, warehouse, database, schema, public_key_file } => {
            let (key, fingerprint) = match public_key_file {
                Some(p) => {
                    let pem = std::fs::read_to_string(&p)
                        .map_err(|e| Error::from(e).context(format!("reading the public key {}", p.display())))?;
                    let fp = simplyload_snowflake::jwt::public_key_fingerprint(&pem)
                        .map_err(|e| e.context(format!("the public key {}", p.display())))?;
                    (Some(public_key(&pem)?), Some(fp))
                }
                None => (None, None),
            };
            let mut sql = snowflake(&user, &role, &warehouse, &database, &schema, key.as_deref())?;
            if let Some(fp) = fingerprint {
                sql.push_str(&format!(
                    "\n-- Check: DESC USER {} shows RSA_PUBLIC_KEY_FP = {fp}\n",
                    sf_ident("user", &user)?
                ));
            }
            sql
        }
        SetupSql::Postgres { role, database, schemas, cdc, pipeline } => {
            postgres(&role, &database, &schemas, cdc, &pipeline)?
        }
    };
    print!("{sql}");
    Ok(0)
}

/// A Snowflake identifier as written unquoted: letters, digits, `_`, `$`, not starting with a digit.
fn sf_ident(what: &str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if ok {
        Ok(name.to_uppercase())
    } else {
        Err(Error::config(format!("--{what} `{name}`: use letters, digits, `_` and `$` (an unquoted Snowflake name)")))
    }
}

/// The base64 body of a PEM public key, as `RSA_PUBLIC_KEY` wants it.
fn public_key(pem: &str) -> Result<String> {
    if !pem.contains("BEGIN PUBLIC KEY") {
        return Err(Error::config("the public key file is not a PEM public key (`-----BEGIN PUBLIC KEY-----`)")
            .with_hint("make one with: openssl rsa -in rsa_key.p8 -pubout -out rsa_key.pub"));
    }
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    if body.is_empty() || !body.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=') {
        return Err(Error::config("the public key file has no base64 key between its PEM lines"));
    }
    Ok(body)
}

pub fn snowflake(
    user: &str,
    role: &str,
    warehouse: &str,
    database: &str,
    schema: &str,
    key: Option<&str>,
) -> Result<String> {
    let (user, role, wh, db, sc) = (
        sf_ident("user", user)?,
        sf_ident("role", role)?,
        sf_ident("warehouse", warehouse)?,
        sf_ident("database", database)?,
        sf_ident("schema", schema)?,
    );
    let key_line = match key {
        Some(k) => format!("  RSA_PUBLIC_KEY = '{k}'\n"),
        None => "  -- RSA_PUBLIC_KEY = '<the base64 body of rsa_key.pub>'  (or pass --public-key-file)\n".to_owned(),
    };
    Ok(format!(
        "-- SimplyLoad setup for Snowflake. Run once as ACCOUNTADMIN (or a role that may create
-- warehouses, roles, users and databases). Re-running it is harmless.
--
-- Key pair for the user (no password needed):
--   openssl genrsa 2048 | openssl pkcs8 -topk8 -v2 aes256 -inform PEM -out rsa_key.p8
--   openssl rsa -in rsa_key.p8 -pubout -out rsa_key.pub
USE ROLE ACCOUNTADMIN;

-- The smallest warehouse, suspended after 60 s idle: SimplyLoad resumes it only when a sync
-- has something to load.
CREATE WAREHOUSE IF NOT EXISTS {wh}
  WAREHOUSE_SIZE = XSMALL
  AUTO_SUSPEND = 60
  AUTO_RESUME = TRUE
  INITIALLY_SUSPENDED = TRUE;

CREATE ROLE IF NOT EXISTS {role};
CREATE DATABASE IF NOT EXISTS {db};
CREATE SCHEMA IF NOT EXISTS {db}.{sc};

CREATE USER IF NOT EXISTS {user}
  TYPE = SERVICE
  DEFAULT_ROLE = {role}
  DEFAULT_WAREHOUSE = {wh}
  DEFAULT_NAMESPACE = {db}.{sc}
{key_line};
GRANT ROLE {role} TO USER {user};

GRANT USAGE, OPERATE ON WAREHOUSE {wh} TO ROLE {role};
GRANT USAGE ON DATABASE {db} TO ROLE {role};
GRANT USAGE, CREATE TABLE, CREATE STAGE ON SCHEMA {db}.{sc} TO ROLE {role};
"
    ))
}

/// A Postgres identifier, quoted when it must be.
fn pg_ident(name: &str) -> String {
    simplyload_postgres::connect::quote_ident(name)
}

pub fn postgres(role: &str, database: &str, schemas: &[String], cdc: bool, pipeline: &str) -> Result<String> {
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
        role_lit = format!("'{}'", role.replace('\'', "''")),
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
    if cdc {
        let publication = format!("simplyload_{}", simplyload_core::naming::normalize(pipeline));
        let tables: Vec<String> = schemas.iter().map(|s| format!("TABLES IN SCHEMA {}", pg_ident(s))).collect();
        out.push_str(&format!(
            "
-- Change data capture (mode: cdc):
ALTER SYSTEM SET wal_level = logical;   -- takes effect after a restart of Postgres
ALTER ROLE {r} REPLICATION;
CREATE PUBLICATION {} FOR {};
-- Tables without a primary key also need: ALTER TABLE <table> REPLICA IDENTITY FULL;
",
            pg_ident(&publication),
            tables.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflake_script_has_the_cheap_warehouse_and_the_key() {
        let s =
            snowflake("simplyload", "SIMPLYLOAD", "SIMPLYLOAD_WH", "RAW_DATA", "SIMPLYLOAD", Some("MIIBIjAN")).unwrap();
        for want in [
            "CREATE WAREHOUSE IF NOT EXISTS SIMPLYLOAD_WH",
            "WAREHOUSE_SIZE = XSMALL",
            "AUTO_SUSPEND = 60",
            "AUTO_RESUME = TRUE",
            "INITIALLY_SUSPENDED = TRUE",
            "RSA_PUBLIC_KEY = 'MIIBIjAN'",
            "CREATE SCHEMA IF NOT EXISTS RAW_DATA.SIMPLYLOAD",
            "GRANT ROLE SIMPLYLOAD TO USER SIMPLYLOAD",
            "GRANT USAGE, CREATE TABLE, CREATE STAGE ON SCHEMA RAW_DATA.SIMPLYLOAD TO ROLE SIMPLYLOAD",
        ] {
            assert!(s.contains(want), "missing {want}:\n{s}");
        }
        assert!(
            snowflake("bad name;", "R", "W", "D", "S", None).unwrap_err().to_string().contains("--user `bad name;`")
        );
        assert_eq!(
            public_key("-----BEGIN PUBLIC KEY-----\nAB+/\ncd==\n-----END PUBLIC KEY-----\n").unwrap(),
            "AB+/cd=="
        );
        assert!(public_key("-----BEGIN RSA PRIVATE KEY-----").is_err());
    }
}
