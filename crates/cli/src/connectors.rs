//! The registry: builds sources, destinations, staging and the checkpoint
//! store from the configuration. The only place that knows every connector.

use simplyload_config::{Config, DestinationConfig, SourceConfig};
use simplyload_core::{Destination, Error, Result, Source};
use simplyload_duckdb::DuckdbDestination;
use simplyload_postgres::PostgresSource;
use simplyload_snowflake::SnowflakeDestination;
use simplyload_staging::{S3Options, Staging};
use simplyload_state::SqliteStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the config file is: `--config`, else `$SIMPLYLOAD_CONFIG` (clap
/// reads it into the same flag), else `./simplyload.yaml`.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(simplyload_config::DEFAULT_CONFIG_FILE))
}

/// Loads and fully validates the config, including destination table names.
pub fn load_config(flag: Option<&Path>) -> Result<Config> {
    let cfg = Config::load(&config_path(flag))?;
    validate(&cfg)?;
    Ok(cfg)
}

/// Checks what needs the connectors' knowledge (the database names behind
/// `{database}`), so two streams can never share a destination table.
pub fn validate(cfg: &Config) -> Result<()> {
    for (name, s) in &cfg.sources {
        match s {
            SourceConfig::Postgres(pg) => {
                PostgresSource::new(name, pg, &cfg.base_dir)?;
            }
        }
    }
    simplyload_core::plan::check_table_names(cfg, |source| database(cfg, source))
}

/// The `{database}` of a source, known without connecting.
pub fn database(cfg: &Config, source: &str) -> Option<String> {
    match cfg.sources.get(source)? {
        SourceConfig::Postgres(pg) => PostgresSource::new(source, pg, &cfg.base_dir).ok().map(|s| s.database()),
    }
}

pub fn source(cfg: &Config, name: &str) -> Result<Arc<dyn Source>> {
    match cfg.source(name)? {
        SourceConfig::Postgres(pg) => Ok(Arc::new(PostgresSource::new(name, pg, &cfg.base_dir)?)),
    }
}

pub fn destination(cfg: &Config, name: &str) -> Result<Arc<dyn Destination>> {
    match cfg.destination(name)? {
        DestinationConfig::Duckdb(d) => Ok(Arc::new(DuckdbDestination::from_config(d, &cfg.base_dir))),
        DestinationConfig::Snowflake(s) => {
            let state = cfg.state_path();
            let state_dir = state.parent().map(Path::to_path_buf).unwrap_or_default();
            Ok(Arc::new(SnowflakeDestination::from_config(s, &cfg.base_dir)?.with_state_dir(&state_dir)))
        }
    }
}

pub fn staging(cfg: &Config) -> Result<Arc<Staging>> {
    let staging = match &cfg.staging {
        None => Staging::open(simplyload_config::DEFAULT_STAGING, &cfg.base_dir, &S3Options::default())?,
        Some(s) => {
            let s3 = match s {
                simplyload_config::StagingConfig::Detailed(d) => S3Options {
                    endpoint: d.endpoint.clone(),
                    region: d.region.clone(),
                    access_key_id: d.access_key_id.clone(),
                    secret_access_key: d.secret_access_key.as_ref().map(|k| k.expose().to_owned()),
                    sse: d.sse.clone(),
                },
                simplyload_config::StagingConfig::Url(_) => S3Options::default(),
            };
            let mut st = Staging::open(s.url(), &cfg.base_dir, &s3)?;
            if let simplyload_config::StagingConfig::Detailed(d) = s {
                if let Some(mb) = d.file_size_mb {
                    st = st.with_file_bytes(mb * 1024 * 1024);
                }
            }
            st
        }
    };
    Ok(Arc::new(staging))
}

pub fn store(cfg: &Config) -> Result<Arc<SqliteStore>> {
    let path = cfg.state_path();
    if let Some(state) = &cfg.state {
        if state.contains("://") {
            return Err(Error::new(
                simplyload_core::ErrorKind::Unsupported,
                format!("state `{state}`: only a SQLite file path is supported in this build"),
            ));
        }
    }
    Ok(Arc::new(SqliteStore::open(&path)?))
}
