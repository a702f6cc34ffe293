//! `simplyload setup-sql snowflake|postgres`: the script a customer runs
//! once, as an administrator, so SimplyLoad has exactly the access it needs.

use clap::Subcommand;
use simplyload_core::{Error, Result};
use std::path::{Path, PathBuf};

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
        /// The pipeline whose publication to create (with --cdc; its name comes from the
        /// pipeline's state, beside the config)
        #[arg(long, default_value = "main")]
        pipeline: String,
    },
}

pub async fn run(config: Option<&Path>, cmd: SetupSql) -> Result<u8> {
    let sql = match cmd {
        SetupSql::Snowflake { user, role, warehouse, database, schema, public_key_file } => {
            let pem = match &public_key_file {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .map_err(|e| Error::from(e).context(format!("reading the public key {}", p.display())))?,
                ),
                None => None,
            };
            let o = simplyload_snowflake::setup::SetupOptions {
                user: &user,
                role: &role,
                warehouse: &warehouse,
                database: &database,
                schema: &schema,
                public_key_pem: pem.as_deref(),
            };
            simplyload_snowflake::setup::script(&o).map_err(|e| match &public_key_file {
                Some(p) if e.kind() == simplyload_core::ErrorKind::Config && !e.message().starts_with("--") => {
                    e.context(format!("the public key {}", p.display()))
                }
                _ => e,
            })?
        }
        SetupSql::Postgres { role, database, schemas, cdc, pipeline } => {
            let publication = match cdc {
                true => publication(config, &pipeline).await?,
                false => None,
            };
            let o = simplyload_postgres::setup::SetupOptions {
                role: &role,
                database: &database,
                schemas: &schemas,
                cdc,
                publication: publication.as_deref(),
            };
            simplyload_postgres::setup::script(&o)?
        }
    };
    print!("{sql}");
    Ok(0)
}

/// The pipeline's publication (its change feed's name, from the state
/// beside the config), when the config is there and has the pipeline.
async fn publication(config: Option<&Path>, pipeline: &str) -> Result<Option<String>> {
    let path = simplyload_app::registry::config_path(config);
    if config.is_none() && !path.exists() {
        return Ok(None);
    }
    let app = simplyload_app::App::load(Some(&path))?;
    app.feed_name(pipeline).await
}
