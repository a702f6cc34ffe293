//! The script a customer runs once, as ACCOUNTADMIN, so SimplyLoad has
//! exactly the access it needs in Snowflake: the smallest warehouse
//! (suspended after 60 s idle), a role, a service user with an RSA key, the
//! database and schema, and the grants.

use crate::jwt;
use simplyload_core::{Error, Result};

/// What the script sets up.
#[derive(Debug, Clone)]
pub struct SetupOptions<'a> {
    pub user: &'a str,
    pub role: &'a str,
    pub warehouse: &'a str,
    pub database: &'a str,
    pub schema: &'a str,
    /// The user's RSA public key (PEM), e.g. rsa_key.pub from `openssl rsa -pubout`.
    pub public_key_pem: Option<&'a str>,
}

/// The setup script; every name must be an unquoted Snowflake identifier.
pub fn script(o: &SetupOptions<'_>) -> Result<String> {
    let key = o.public_key_pem.map(public_key).transpose()?;
    let mut sql = snowflake(o.user, o.role, o.warehouse, o.database, o.schema, key.as_deref())?;
    if let Some(pem) = o.public_key_pem {
        let fp = jwt::public_key_fingerprint(pem)?;
        sql.push_str(&format!("\n-- Check: DESC USER {} shows RSA_PUBLIC_KEY_FP = {fp}\n", sf_ident("user", o.user)?));
    }
    Ok(sql)
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

fn snowflake(
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
-- Key pair for the user (no password needed; openssl asks for the key's passphrase, which
-- goes into the destination's private_key_passphrase):
--   openssl genrsa 2048 | openssl pkcs8 -topk8 -v2 aes256 -inform PEM -out rsa_key.p8
--   openssl rsa -in rsa_key.p8 -pubout -out rsa_key.pub
--   chmod 600 rsa_key.p8
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

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/snowflake.md tells a user to run the same key commands as the script.
    #[test]
    fn the_docs_and_the_script_make_the_same_key() {
        let docs = include_str!("../../../docs/snowflake.md");
        let script = snowflake("U", "R", "W", "D", "S", None).unwrap();
        let commands: Vec<&str> =
            script.lines().filter_map(|l| l.trim_start_matches("--").trim().strip_prefix("openssl ")).collect();
        assert_eq!(commands.len(), 2, "{script}");
        for c in commands {
            assert!(docs.contains(&format!("openssl {c}")), "docs/snowflake.md lacks `openssl {c}`");
        }
        assert!(docs.contains("chmod 600 rsa_key.p8") && script.contains("chmod 600 rsa_key.p8"));
    }

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
