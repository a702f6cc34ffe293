//! `simplyload.yaml`: the one configuration file.
//!
//! Loading happens in three steps, each with errors that name the key:
//! 1. parse YAML into a generic tree;
//! 2. replace `${VAR}` in every string value from the environment (after
//!    parsing, so a secret holding `:` or `#` can never change the YAML's shape);
//! 3. deserialize into typed structs that reject unknown keys, then check
//!    references between sections ([`Config::validate`]).
//!
//! Relative paths are relative to the directory of the config file, so a
//! pipeline behaves the same whatever directory it is run from.

mod secret;
mod substitute;

pub use secret::Secret;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the state file goes when `state:` is not set.
pub const DEFAULT_STATE: &str = ".simplyload/state.db";
/// Where staged Parquet goes when `staging:` is not set.
pub const DEFAULT_STAGING: &str = ".simplyload/staging";
/// The seed's naming: `raw_data.simplyload.<source>_<database>_<table>`.
pub const DEFAULT_TABLE_NAME: &str = "{source}_{database}_{table}";
/// The file looked for when neither `--config` nor `SIMPLYLOAD_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "simplyload.yaml";
/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "SIMPLYLOAD_CONFIG";

/// A configuration error; the message always names the key.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub message: String,
    pub hint: Option<String>,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError { message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Default [`Config::staging_retention`]: a week, as an S3 lifecycle rule would.
pub const DEFAULT_STAGING_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The whole file, after substitution and validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The checkpoint store: a SQLite file path (default [`DEFAULT_STATE`]).
    #[serde(default)]
    pub state: Option<String>,
    /// Where batches are staged as Parquet (default [`DEFAULT_STAGING`]).
    #[serde(default)]
    pub staging: Option<StagingConfig>,
    /// How long the staged files of a loaded batch are kept (default
    /// [`DEFAULT_STAGING_RETENTION`]); older ones are removed after each
    /// successful sync of their pipeline.
    #[serde(default, deserialize_with = "de_duration")]
    pub staging_retention: Option<std::time::Duration>,
    #[serde(default)]
    pub sources: IndexMap<String, SourceConfig>,
    #[serde(default)]
    pub destinations: IndexMap<String, DestinationConfig>,
    #[serde(default)]
    pub pipelines: IndexMap<String, PipelineConfig>,
    /// The directory relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this was read from, if any.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// `staging:` is a path or URL, or a map with connection details.
#[derive(Debug, Clone)]
pub enum StagingConfig {
    Url(String),
    Detailed(StagingDetails),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagingDetails {
    pub url: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub sse: Option<String>,
    /// Files roll over at this compressed size (default 128 MiB).
    #[serde(default)]
    pub file_size_mb: Option<u64>,
}

impl<'de> Deserialize<'de> for StagingConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StagingConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path, an s3:// URL, or a map with `url`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StagingConfig::Url(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                StagingDetails::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(StagingConfig::Detailed)
            }
        }
        d.deserialize_any(V)
    }
}

impl StagingConfig {
    pub fn url(&self) -> &str {
        match self {
            StagingConfig::Url(u) => u,
            StagingConfig::Detailed(d) => &d.url,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    Postgres(PostgresSourceConfig),
    Stripe(StripeSourceConfig),
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::Stripe(_) => "stripe",
        }
    }
}

/// The `Stripe-Version` a Stripe source pins unless `api_version` says
/// otherwise (docs/stripe.md).
pub const DEFAULT_STRIPE_API_VERSION: &str = "2025-03-31.basil";

/// `type: stripe` (docs/stripe.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSourceConfig {
    /// A secret (`sk_…`) or restricted (`rk_…`) key; its prefix says test or live mode.
    pub api_key: Secret,
    /// The `Stripe-Version` every call pins (default [`DEFAULT_STRIPE_API_VERSION`]).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Another server than `https://api.stripe.com` (a proxy, localstripe).
    #[serde(default)]
    pub base_url: Option<String>,
    /// The client's own limit (default 20/s with a test key, 80/s live).
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Objects per list page, 1 to 100 (default 100).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Tries per call before the sync fails (default 5).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Each events window starts this long before the last one ended (default 5m).
    #[serde(default, deserialize_with = "de_duration")]
    pub events_overlap: Option<std::time::Duration>,
    /// Each events window ends this long before Stripe's clock (default 1m).
    #[serde(default, deserialize_with = "de_duration")]
    pub settle_lag: Option<std::time::Duration>,
}

impl StripeSourceConfig {
    pub fn api_version(&self) -> &str {
        self.api_version.as_deref().unwrap_or(DEFAULT_STRIPE_API_VERSION)
    }

    pub fn page_size(&self) -> u32 {
        self.page_size.unwrap_or(100)
    }

    pub fn events_overlap_secs(&self) -> i64 {
        self.events_overlap.map_or(300, |d| d.as_secs() as i64)
    }

    pub fn settle_lag_secs(&self) -> i64 {
        self.settle_lag.map_or(60, |d| d.as_secs() as i64)
    }

    /// Values that cannot work, named with the key.
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let at = |key: &str| format!("sources.{name}.{key}");
        if !(1..=100).contains(&self.page_size()) {
            return Err(ConfigError::new(format!(
                "{}: {} is not between 1 and 100 (Stripe's largest page)",
                at("page_size"),
                self.page_size()
            )));
        }
        if self.requests_per_second.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(ConfigError::new(format!("{}: must be above 0", at("requests_per_second"))));
        }
        if self.api_version().trim().is_empty() {
            return Err(ConfigError::new(format!("{}: must not be empty", at("api_version"))));
        }
        if self.max_attempts == Some(0) {
            return Err(ConfigError::new(format!("{}: must be at least 1", at("max_attempts"))));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// `postgres://user:password@host:port/database?sslmode=…`
    pub url: Secret,
    /// Root certificate for `sslmode=verify-ca` / `verify-full` (relative to the config file).
    #[serde(default)]
    pub ssl_root_cert: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DestinationConfig {
    Duckdb(DuckdbDestinationConfig),
    Snowflake(Box<SnowflakeDestinationConfig>),
}

impl DestinationConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationConfig::Duckdb(_) => "duckdb",
            DestinationConfig::Snowflake(_) => "snowflake",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuckdbDestinationConfig {
    /// The database file (relative to the config file).
    pub path: String,
    /// DuckDB's `memory_limit` (default 256MB, so it never takes most of the machine).
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// DuckDB's `threads` (default: DuckDB's own choice).
    #[serde(default)]
    pub threads: Option<u32>,
    /// The schema tables land in (default `simplyload`).
    #[serde(default)]
    pub schema: Option<String>,
}

/// A Snowflake account (DESIGN.md §7, §9). Secrets come from `${ENV}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnowflakeDestinationConfig {
    /// `xy12345.us-east-1` (the account locator with its region) or `org-account`.
    pub account: String,
    pub user: String,
    /// Password authentication; prefer a key pair.
    #[serde(default)]
    pub password: Option<Secret>,
    /// An RSA private key in PEM (PKCS#8, optionally encrypted), relative to the config file.
    #[serde(default)]
    pub private_key_path: Option<String>,
    #[serde(default)]
    pub private_key_passphrase: Option<Secret>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub warehouse: Option<String>,
    /// Default `RAW_DATA`.
    #[serde(default)]
    pub database: Option<String>,
    /// Default `SIMPLYLOAD`.
    #[serde(default)]
    pub schema: Option<String>,
    /// Default `https://{account}.snowflakecomputing.com` (tests point it at fakesnow).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Where COPY reads the batches from: `internal` (default: each sync PUTs
    /// the files to a temporary internal stage), or the name of an external
    /// stage whose URL is the S3 staging root (`RAW_DATA.SIMPLYLOAD.SIMPLYLOAD_S3`).
    #[serde(default)]
    pub stage: Option<String>,
    /// Seconds a statement may take before it is abandoned (default 3600).
    #[serde(default)]
    pub statement_timeout_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    #[default]
    FullRefresh,
    Incremental,
    Cdc,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::FullRefresh => "full_refresh",
            SyncMode::Incremental => "incremental",
            SyncMode::Cdc => "cdc",
        }
    }
}

impl fmt::Display for SyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with a value the staging format or the destination cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnrepresentable {
    /// Write NULL, count it per column in the sync report, log the key.
    #[default]
    Report,
    /// Fail the stream's sync.
    Fail,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub source: String,
    pub destination: String,
    #[serde(default)]
    pub mode: SyncMode,
    /// How often `serve` runs it (default 15m).
    #[serde(default, deserialize_with = "de_duration")]
    pub schedule: Option<std::time::Duration>,
    #[serde(default)]
    pub table_name: Option<String>,
    /// The destination schema of this pipeline's tables, instead of the
    /// destination's (DuckDB: `simplyload`; Snowflake: its `schema`).
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub on_unrepresentable: OnUnrepresentable,
    pub streams: Vec<StreamConfig>,
    /// `cdc`, `sync --follow`: a micro-batch closes after this many changes (default 100000).
    #[serde(default)]
    pub batch_max_rows: Option<u64>,
    /// `cdc`, `sync --follow`: … or after this long (default 10s).
    #[serde(default, deserialize_with = "de_duration")]
    pub batch_max_seconds: Option<std::time::Duration>,
    /// `cdc`: warn when the replication slot holds more WAL than this (default 1 GiB).
    #[serde(default)]
    pub max_lag_bytes: Option<u64>,
    /// `cdc`: what to do when the replication slot was lost (dropped, or
    /// invalidated by `max_slot_wal_keep_size`): make it again and read
    /// every stream again from a snapshot (default), or stop and say so.
    #[serde(default)]
    pub on_slot_lost: OnSlotLost,
    /// Connections a snapshot of a large table is read with at once, in one
    /// consistent snapshot (default: the machine's cores, at most 4).
    #[serde(default)]
    pub snapshot_parallelism: Option<usize>,
    /// A snapshot is cut into batches of about this many rows, so loading
    /// one overlaps reading the next (default 491520, four DuckDB row groups).
    #[serde(default)]
    pub snapshot_part_rows: Option<u64>,
    /// Tables at least this large on disk are read by
    /// `snapshot_parallelism` connections in page ranges (default 64 MiB).
    #[serde(default)]
    pub snapshot_parallel_min_bytes: Option<u64>,
}

/// See [`PipelineConfig::on_slot_lost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSlotLost {
    #[default]
    Resnapshot,
    Fail,
}

/// Default [`PipelineConfig::batch_max_rows`].
pub const DEFAULT_BATCH_MAX_ROWS: u64 = 100_000;
/// Default [`PipelineConfig::batch_max_seconds`].
pub const DEFAULT_BATCH_MAX_SECONDS: u64 = 10;
/// Default [`PipelineConfig::max_lag_bytes`].
pub const DEFAULT_MAX_LAG_BYTES: u64 = 1 << 30;

impl PipelineConfig {
    pub fn table_name_template(&self) -> &str {
        self.table_name.as_deref().unwrap_or(DEFAULT_TABLE_NAME)
    }
}

/// A stream: `public.orders`, or a map with `name` and per-stream settings.
#[derive(Debug, Clone, Default)]
pub struct StreamConfig {
    pub name: String,
    pub mode: Option<SyncMode>,
    pub cursor: Option<String>,
    pub lookback: Option<Lookback>,
    pub soft_delete: Option<String>,
    pub exclude_columns: Vec<String>,
    /// Only these columns (an allow-list); `exclude_columns` still applies.
    pub columns: Option<Vec<String>>,
    /// Text columns stored as salted SHA-256 pseudonyms (personal data).
    pub hash_columns: Vec<String>,
    pub primary_key: Option<Vec<String>>,
    /// For a pattern stream (`public.*`): tables (or patterns) to leave out.
    pub exclude: Vec<String>,
}

impl StreamConfig {
    /// Whether the name is a pattern (`*` or `?` in it) that selects tables.
    pub fn is_pattern(&self) -> bool {
        self.name.contains('*') || self.name.contains('?')
    }
}

/// How far back an incremental read reaches: a duration for time cursors, a
/// count for integer cursors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookback {
    Duration(std::time::Duration),
    Count(u64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamMap {
    name: String,
    #[serde(default)]
    mode: Option<SyncMode>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    lookback: Option<LookbackRaw>,
    #[serde(default)]
    soft_delete: Option<String>,
    #[serde(default)]
    exclude_columns: Vec<String>,
    #[serde(default)]
    columns: Option<Vec<String>>,
    #[serde(default)]
    hash_columns: Vec<String>,
    #[serde(default)]
    primary_key: Option<Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LookbackRaw {
    Count(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for StreamConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StreamConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table name like `public.orders`, or a map with `name`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StreamConfig { name: v.to_owned(), ..Default::default() })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let m = StreamMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                let lookback = match m.lookback {
                    None => None,
                    Some(LookbackRaw::Count(n)) => Some(Lookback::Count(n)),
                    Some(LookbackRaw::Text(t)) => {
                        Some(Lookback::Duration(humantime::parse_duration(&t).map_err(|e| {
                            serde::de::Error::custom(format!(
                                "lookback `{t}` is not a duration like `5m` or a row count: {e}"
                            ))
                        })?))
                    }
                };
                Ok(StreamConfig {
                    name: m.name,
                    mode: m.mode,
                    cursor: m.cursor,
                    lookback,
                    soft_delete: m.soft_delete,
                    exclude_columns: m.exclude_columns,
                    columns: m.columns,
                    hash_columns: m.hash_columns,
                    primary_key: m.primary_key,
                    exclude: m.exclude,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::time::Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(s) => humantime::parse_duration(&s)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a duration like `15m` or `1h`: {e}"))),
    }
}

impl Config {
    /// Reads, substitutes and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let err = ConfigError::new(format!("cannot read config file {}: {e}", path.display()));
            if e.kind() == std::io::ErrorKind::NotFound {
                err.with_hint(format!(
                    "pass --config PATH, set {CONFIG_ENV}, or create ./{DEFAULT_CONFIG_FILE} (`simplyload quickstart` writes one)"
                ))
            } else {
                err
            }
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
        let mut cfg = Self::from_yaml_with_env(&text, |k| std::env::var(k).ok())
            .map_err(|e| ConfigError { message: format!("{}: {}", path.display(), e.message), hint: e.hint })?;
        cfg.base_dir = std::path::absolute(&base).unwrap_or(base);
        cfg.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses YAML text, substituting `${VAR}` through `env`. Relative paths
    /// stay relative to the current directory until `base_dir` is set.
    pub fn from_yaml_with_env(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::new(format!("not valid YAML: {e}")))?;
        if value.is_null() {
            value = serde_yaml_ng::Value::Mapping(Default::default());
        }
        substitute::substitute(&mut value, &mut Vec::new(), &env)?;
        let cfg: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." || path.is_empty() {
                ConfigError::new(inner)
            } else {
                ConfigError::new(format!("{path}: {inner}"))
            }
        })?;
        let mut cfg = cfg;
        cfg.base_dir = PathBuf::from(".");
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what serde cannot: references between sections and values
    /// that must not be empty.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, source) in &self.sources {
            check_name("sources", name)?;
            if let SourceConfig::Stripe(stripe) = source {
                stripe.validate(name)?;
            }
        }
        for (name, d) in &self.destinations {
            check_name("destinations", name)?;
            if let DestinationConfig::Snowflake(sf) = d {
                match (&sf.password, &sf.private_key_path) {
                    (None, None) => {
                        return Err(ConfigError::new(format!(
                            "destinations.{name}: set `private_key_path` (key-pair auth) or `password`"
                        ))
                        .with_hint("`simplyload setup-sql snowflake` prints the user's setup with an RSA key"));
                    }
                    (Some(_), Some(_)) => {
                        return Err(ConfigError::new(format!(
                            "destinations.{name}: set only one of `private_key_path` and `password`"
                        )));
                    }
                    _ => {}
                }
                if sf.account.trim().is_empty() || sf.user.trim().is_empty() {
                    return Err(ConfigError::new(format!(
                        "destinations.{name}: `account` and `user` must not be empty"
                    )));
                }
            }
        }
        for (name, p) in &self.pipelines {
            check_name("pipelines", name)?;
            if !self.sources.contains_key(&p.source) {
                return Err(ConfigError::new(format!(
                    "pipelines.{name}.source: there is no source named `{}`",
                    p.source
                ))
                .with_hint(known("sources", self.sources.keys())));
            }
            if !self.destinations.contains_key(&p.destination) {
                return Err(ConfigError::new(format!(
                    "pipelines.{name}.destination: there is no destination named `{}`",
                    p.destination
                ))
                .with_hint(known("destinations", self.destinations.keys())));
            }
            if p.streams.is_empty() {
                return Err(ConfigError::new(format!(
                    "pipelines.{name}.streams: list at least one table, e.g. `- public.orders`"
                )));
            }
            let template = p.table_name_template();
            validate_template(template).map_err(|m| ConfigError::new(format!("pipelines.{name}.table_name: {m}")))?;
            let mut seen = std::collections::HashSet::new();
            for (i, s) in p.streams.iter().enumerate() {
                if s.name.trim().is_empty() {
                    return Err(ConfigError::new(format!("pipelines.{name}.streams[{i}].name: must not be empty")));
                }
                if !seen.insert(s.name.as_str()) {
                    return Err(ConfigError::new(format!(
                        "pipelines.{name}.streams[{i}]: stream `{}` is listed twice",
                        s.name
                    )));
                }
                if !s.exclude.is_empty() && !s.is_pattern() {
                    return Err(ConfigError::new(format!(
                        "pipelines.{name}.streams[{i}].exclude: only a pattern stream (like `public.*`) can exclude tables; `{}` names one table",
                        s.name
                    )));
                }
                if s.primary_key.as_ref().is_some_and(|pk| pk.is_empty()) {
                    return Err(ConfigError::new(format!(
                        "pipelines.{name}.streams[{i}].primary_key: list at least one column"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Resolves a path from the file against the config file's directory.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() { path.to_path_buf() } else { self.base_dir.join(path) }
    }

    pub fn state_path(&self) -> PathBuf {
        self.resolve_path(self.state.as_deref().unwrap_or(DEFAULT_STATE))
    }

    pub fn pipeline(&self, name: &str) -> Result<&PipelineConfig, ConfigError> {
        self.pipelines.get(name).ok_or_else(|| {
            ConfigError::new(format!("there is no pipeline named `{name}`"))
                .with_hint(known("pipelines", self.pipelines.keys()))
        })
    }

    pub fn source(&self, name: &str) -> Result<&SourceConfig, ConfigError> {
        self.sources.get(name).ok_or_else(|| {
            ConfigError::new(format!("there is no source named `{name}`"))
                .with_hint(known("sources", self.sources.keys()))
        })
    }

    pub fn destination(&self, name: &str) -> Result<&DestinationConfig, ConfigError> {
        self.destinations.get(name).ok_or_else(|| {
            ConfigError::new(format!("there is no destination named `{name}`"))
                .with_hint(known("destinations", self.destinations.keys()))
        })
    }
}

/// The placeholders a `table_name` template may use.
pub const TABLE_NAME_PLACEHOLDERS: [&str; 4] = ["source", "database", "schema", "table"];

fn validate_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    let mut has_table = false;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or_else(|| format!("`{t}` has a `{{` without a closing `}}`"))?;
        let name = &after[..end];
        if !TABLE_NAME_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` in `{t}`; use {{source}}, {{database}}, {{schema}} or {{table}}"
            ));
        }
        has_table |= name == "table";
        rest = &after[end + 1..];
    }
    if rest.contains('}') {
        return Err(format!("`{t}` has a `}}` without an opening `{{`"));
    }
    if !has_table {
        return Err(format!("`{t}` must contain {{table}}, or every stream would map to one table"));
    }
    Ok(())
}

fn check_name(section: &str, name: &str) -> Result<(), ConfigError> {
    let ok =
        !name.is_empty() && name.len() <= 63 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "{section}.{name}: names may use letters, digits, `_` and `-` (at most 63 characters)"
        )))
    }
}

fn known<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        format!("no {what} are defined in the config")
    } else {
        format!("defined {what}: {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests;
