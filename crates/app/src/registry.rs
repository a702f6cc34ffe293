//! The connector registry: builds sources, destinations, staging and the
//! checkpoint store from the configuration. The only place that knows every
//! connector; adding a source means one arm in each `match` here.

use simplyload_config::{Config, DestinationConfig, SourceConfig, StagingConfig};
use simplyload_core::plan::SourceNaming;
use simplyload_core::{Destination, Error, ErrorKind, Result, Source};
use simplyload_duckdb::DuckdbDestination;
use simplyload_postgres::PostgresSource;
use simplyload_snowflake::SnowflakeDestination;
use simplyload_staging::{S3Options, Staging};
use simplyload_state::SqliteStore;
use simplyload_stripe::StripeSource;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the config file is: the `--config` flag (or `$SIMPLYLOAD_CONFIG`),
/// else `./simplyload.yaml`.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(simplyload_config::DEFAULT_CONFIG_FILE))
}

/// Checks what needs the connectors' knowledge: each source's settings, and
/// that no two streams share a destination table (which needs the database
/// names behind `{database}`).
pub fn validate(cfg: &Config) -> Result<()> {
    for name in cfg.sources.keys() {
        source(cfg, name)?;
    }
    simplyload_core::plan::check_table_names(cfg, |source| naming(cfg, source))
}

/// How a source's streams are named, known without connecting.
pub fn naming(cfg: &Config, source: &str) -> Option<SourceNaming> {
    match cfg.sources.get(source)? {
        SourceConfig::Postgres(pg) => PostgresSource::new(source, pg, &cfg.base_dir).ok().map(|s| SourceNaming {
            database: s.database(),
            default_namespace: s.default_namespace().map(str::to_owned),
        }),
        // Stripe streams have no namespace; `{database}` is the source's name.
        SourceConfig::Stripe(_) => Some(SourceNaming { database: source.to_owned(), default_namespace: None }),
    }
}

pub fn source(cfg: &Config, name: &str) -> Result<Arc<dyn Source>> {
    match cfg.source(name)? {
        SourceConfig::Postgres(pg) => Ok(Arc::new(PostgresSource::new(name, pg, &cfg.base_dir)?)),
        SourceConfig::Stripe(stripe) => Ok(Arc::new(StripeSource::new(name, stripe)?)),
    }
}

pub fn destination(cfg: &Config, name: &str) -> Result<Arc<dyn Destination>> {
    match cfg.destination(name)? {
        DestinationConfig::Duckdb(d) => Ok(Arc::new(DuckdbDestination::from_config(d, &cfg.base_dir))),
        DestinationConfig::Snowflake(s) => {
            Ok(Arc::new(SnowflakeDestination::from_config(s, &cfg.base_dir)?.with_state_dir(&state_dir(cfg))))
        }
    }
}

/// A pipeline's destination: the configured one, with its tables in the
/// pipeline's `schema:` when it names one.
pub fn pipeline_destination(cfg: &Config, pipeline: &str) -> Result<Arc<dyn Destination>> {
    let p = cfg.pipeline(pipeline)?;
    let Some(schema) = &p.schema else { return destination(cfg, &p.destination) };
    match cfg.destination(&p.destination)? {
        DestinationConfig::Duckdb(d) => {
            Ok(Arc::new(DuckdbDestination::from_config(d, &cfg.base_dir).with_schema(schema)))
        }
        DestinationConfig::Snowflake(s) => {
            let s = simplyload_config::SnowflakeDestinationConfig { schema: Some(schema.clone()), ..(**s).clone() };
            Ok(Arc::new(SnowflakeDestination::from_config(&s, &cfg.base_dir)?.with_state_dir(&state_dir(cfg))))
        }
    }
}

/// The folder the state file is in (pipeline locks live beside it).
pub fn state_dir(cfg: &Config) -> PathBuf {
    cfg.state_path().parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn staging(cfg: &Config) -> Result<Arc<Staging>> {
    let staging = match &cfg.staging {
        None => Staging::open(simplyload_config::DEFAULT_STAGING, &cfg.base_dir, &S3Options::default())?,
        Some(s) => {
            let mut st = Staging::open(s.url(), &cfg.base_dir, &s3_options(s))?;
            if let StagingConfig::Detailed(d) = s
                && let Some(mb) = d.file_size_mb
            {
                st = st.with_file_bytes(mb * 1024 * 1024);
            }
            st
        }
    };
    Ok(Arc::new(staging))
}

fn s3_options(s: &StagingConfig) -> S3Options {
    match s {
        StagingConfig::Detailed(d) => S3Options {
            endpoint: d.endpoint.clone(),
            region: d.region.clone(),
            access_key_id: d.access_key_id.clone(),
            secret_access_key: d.secret_access_key.as_ref().map(|k| k.expose().to_owned()),
            sse: d.sse.clone(),
        },
        StagingConfig::Url(_) => S3Options::default(),
    }
}

/// The checkpoint store, created if missing.
pub fn store(cfg: &Config) -> Result<Arc<SqliteStore>> {
    if let Some(state) = &cfg.state
        && state.contains("://")
    {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!("state `{state}`: only a SQLite file path is supported in this build"),
        ));
    }
    Ok(Arc::new(SqliteStore::open(&cfg.state_path())?))
}

/// The checkpoint store if its file exists (read-only commands never make one).
pub fn existing_store(cfg: &Config) -> Result<Option<SqliteStore>> {
    SqliteStore::open_existing(&cfg.state_path())
}
