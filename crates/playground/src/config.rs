//! Playground settings (PR-1.2). Each one comes from its flag, else the
//! process environment, else a `.env` file, else its default — the order a
//! shell user expects: what is typed wins over what is exported, which wins
//! over what is written down.
//!
//! The `.env` file (`./.env`, or the file given with `--env-file`) is parsed
//! here and never copied into the process environment, so every value keeps
//! its origin and an error can say where the bad value came from:
//! `ORDERS_PER_HOUR="abc" (from .env): not a number`. All problems are
//! reported at once. The database URL is never printed: messages name the
//! variable, and [`DatabaseUrl`] shows only `user@host:port/database`.

use crate::activity::Rates;
use crate::seed::SeedCounts;
use simplyload_core::{Error, Result};
use simplyload_postgres::connect::ConnectOptions;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// One setting: its environment variable and its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub var: &'static str,
    pub flag: &'static str,
    pub help: &'static str,
}

pub const DATABASE_URL: Setting =
    Setting { var: "DATABASE_URL", flag: "--database-url", help: "the playground database (required)" };
pub const INITIAL_USERS: Setting =
    Setting { var: "INITIAL_USERS", flag: "--users", help: "users `seed` inserts (1000)" };
pub const INITIAL_ORDERS: Setting =
    Setting { var: "INITIAL_ORDERS", flag: "--orders", help: "orders `seed` inserts (5000)" };
pub const INITIAL_EVENTS: Setting =
    Setting { var: "INITIAL_EVENTS", flag: "--events", help: "events `seed` inserts (20000)" };
pub const ORDERS_PER_HOUR: Setting =
    Setting { var: "ORDERS_PER_HOUR", flag: "--orders-per-hour", help: "new orders per hour in `run` (50)" };
pub const EVENTS_PER_HOUR: Setting =
    Setting { var: "EVENTS_PER_HOUR", flag: "--events-per-hour", help: "new events per hour in `run` (200)" };
pub const USERS_PER_HOUR: Setting = Setting {
    var: "USERS_PER_HOUR",
    flag: "--users-per-hour",
    help: "new users per hour in `run` (ORDERS_PER_HOUR / 5)",
};
pub const STATUS_UPDATES_PER_HOUR: Setting = Setting {
    var: "STATUS_UPDATES_PER_HOUR",
    flag: "--status-updates-per-hour",
    help: "order status changes per hour in `run` (ORDERS_PER_HOUR × 2)",
};
pub const PLAN_CHANGES_PER_HOUR: Setting = Setting {
    var: "PLAN_CHANGES_PER_HOUR",
    flag: "--plan-changes-per-hour",
    help: "user plan changes per hour in `run` (ORDERS_PER_HOUR / 10)",
};
pub const SOFT_DELETES_PER_HOUR: Setting = Setting {
    var: "SOFT_DELETES_PER_HOUR",
    flag: "--soft-deletes-per-hour",
    help: "users soft-deleted per hour in `run` (ORDERS_PER_HOUR / 50)",
};
pub const HARD_DELETES_PER_HOUR: Setting = Setting {
    var: "HARD_DELETES_PER_HOUR",
    flag: "--hard-deletes-per-hour",
    help: "DELETEs per hour in `run --hard-deletes` ((ORDERS_PER_HOUR + EVENTS_PER_HOUR) / 20)",
};
pub const TEST_DURATION_HOURS: Setting = Setting {
    var: "TEST_DURATION_HOURS",
    flag: "--duration",
    help: "how long `run` runs, in hours (unset: until Ctrl+C)",
};

/// Every setting, in the order the docs list them.
pub const SETTINGS: &[Setting] = &[
    DATABASE_URL,
    INITIAL_USERS,
    INITIAL_ORDERS,
    INITIAL_EVENTS,
    ORDERS_PER_HOUR,
    EVENTS_PER_HOUR,
    USERS_PER_HOUR,
    STATUS_UPDATES_PER_HOUR,
    PLAN_CHANGES_PER_HOUR,
    SOFT_DELETES_PER_HOUR,
    HARD_DELETES_PER_HOUR,
    TEST_DURATION_HOURS,
];

/// The seed's `ORDERS_PER_HOUR`: a small shop's pace.
pub const DEFAULT_ORDERS_PER_HOUR: f64 = 50.0;
/// The seed's `EVENTS_PER_HOUR`.
pub const DEFAULT_EVENTS_PER_HOUR: f64 = 200.0;
/// Above this a rate is a typo: a billion rows an hour is far past what one
/// connection can write.
const MAX_PER_HOUR: f64 = 1e9;

/// Values given on the command line; `None` means the flag was not given.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub database_url: Option<String>,
    pub initial_users: Option<u64>,
    pub initial_orders: Option<u64>,
    pub initial_events: Option<u64>,
    pub orders_per_hour: Option<f64>,
    pub events_per_hour: Option<f64>,
    pub users_per_hour: Option<f64>,
    pub status_updates_per_hour: Option<f64>,
    pub plan_changes_per_hour: Option<f64>,
    pub soft_deletes_per_hour: Option<f64>,
    pub hard_deletes_per_hour: Option<f64>,
    pub duration: Option<Duration>,
}

/// Where a value came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Environment,
    /// The `.env` file, as it was named (`.env` or the `--env-file` path).
    EnvFile(String),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("from the command line"),
            Origin::Environment => f.write_str("from the environment"),
            Origin::EnvFile(name) => write!(f, "from {name}"),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// The environment variables and the `.env` file, as read once at start.
#[derive(Clone, Default)]
pub struct Environment {
    vars: HashMap<String, String>,
    file: Option<(String, HashMap<String, String>)>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may hold the database password: names only.
        let mut vars: Vec<_> = self.vars.keys().collect();
        vars.sort();
        f.debug_struct("Environment")
            .field("vars", &vars)
            .field("file", &self.file.as_ref().map(|(name, _)| name))
            .finish()
    }
}

impl Environment {
    /// The process environment and the `.env` file: `env_file` if given
    /// (it must exist), else `./.env` if there is one.
    pub fn load(env_file: Option<&Path>) -> Result<Environment> {
        let mut vars = Vec::new();
        for s in SETTINGS {
            match std::env::var(s.var) {
                Ok(v) => vars.push((s.var.to_owned(), v)),
                Err(std::env::VarError::NotPresent) => {}
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(Error::config(format!("{} (from the environment): not valid UTF-8", s.var)));
                }
            }
        }
        Environment::new(vars, env_file, Path::new("."))
    }

    /// Like [`Environment::load`] with the given variables, and `dir/.env`
    /// when no `env_file` is given.
    pub fn new(
        vars: impl IntoIterator<Item = (String, String)>,
        env_file: Option<&Path>,
        dir: &Path,
    ) -> Result<Environment> {
        let file = match env_file {
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::config(format!("--env-file {name}: cannot read it: {e}"))
                        .with_hint("give the path of an existing file, or leave --env-file out to use ./.env")
                })?;
                Some((name.clone(), parse_env_file(&text, &name)?))
            }
            None => {
                let path = dir.join(".env");
                match std::fs::read_to_string(&path) {
                    Ok(text) => Some((".env".to_owned(), parse_env_file(&text, ".env")?)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(Error::config(format!("{}: cannot read it: {e}", path.display()))),
                }
            }
        };
        Ok(Environment { vars: vars.into_iter().collect(), file })
    }

    /// A variable's value and origin: the environment, else the file. Empty
    /// values count as unset (`TEST_DURATION_HOURS=` means "no limit").
    pub fn get(&self, var: &str) -> Option<(&str, Origin)> {
        if let Some(v) = self.vars.get(var).filter(|v| !v.trim().is_empty()) {
            return Some((v.trim(), Origin::Environment));
        }
        let (name, values) = self.file.as_ref()?;
        values.get(var).map(|v| v.trim()).filter(|v| !v.is_empty()).map(|v| (v, Origin::EnvFile(name.clone())))
    }

    /// The name of the `.env` file that was read, if any.
    pub fn env_file(&self) -> Option<&str> {
        self.file.as_ref().map(|(name, _)| name.as_str())
    }
}

/// The database URL. Its `Debug` and `Display` show `user@host:port/database`,
/// never the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: String,
    options: ConnectOptions,
    origin: Origin,
}

impl DatabaseUrl {
    /// Parses a URL given as `var`, naming only the variable on failure.
    pub fn parse(url: &str, setting: &Setting, origin: Origin) -> Result<DatabaseUrl> {
        let label = label(setting, &origin);
        let options = ConnectOptions::parse("playground", url, None).map_err(|e| {
            // The connect module names the config key; here the key is a variable.
            Error::config(e.message().replace("sources.playground.url", &label))
                .with_hint("write it as postgres://user:password@host:5432/database (add ?sslmode=disable for a local server without TLS)")
        })?;
        Ok(DatabaseUrl { url: url.to_owned(), options, origin })
    }

    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// Where the URL came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// `user@host:port/database`.
    pub fn target(&self) -> String {
        self.options.target()
    }

    /// Connects; on failure the hint points at `DATABASE_URL`.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        use simplyload_core::ErrorKind;
        self.options.connect().await.map_err(|e| {
            let source = label(&DATABASE_URL, &self.origin);
            match e.kind() {
                ErrorKind::Auth => e.with_hint(format!(
                    "check the user and password in {source} (and that pg_hba.conf allows this host)"
                )),
                ErrorKind::NotFound => {
                    e.with_hint(format!("check the database name in {source}, or create it with createdb"))
                }
                ErrorKind::Transient => e.with_hint(format!(
                    "check that Postgres is running and reachable at the host and port in {source}"
                )),
                _ => e,
            }
        })
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.target())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target())
    }
}

/// Every playground setting, resolved and validated.
#[derive(Debug, Clone)]
pub struct PlaygroundConfig {
    pub database_url: DatabaseUrl,
    /// `seed`: INITIAL_USERS, INITIAL_ORDERS, INITIAL_EVENTS.
    pub seed_counts: SeedCounts,
    /// `run`: the rates of every kind of change.
    pub rates: Rates,
    /// `run`: how long; `None` runs until stopped.
    pub duration: Option<Duration>,
}

impl PlaygroundConfig {
    /// Resolves every setting (flag, else environment, else `.env`, else
    /// default) and validates it. All problems are reported in one error.
    pub fn resolve(flags: &Flags, env: &Environment) -> Result<PlaygroundConfig> {
        let mut problems = Vec::new();
        let mut r = Resolver { env, problems: &mut problems };

        let database_url = match &flags.database_url {
            Some(url) => Some((url.clone(), Origin::Flag)),
            None => env.get(DATABASE_URL.var).map(|(v, o)| (v.to_owned(), o)),
        };
        let database_url = match database_url {
            Some((url, origin)) => match DatabaseUrl::parse(&url, &DATABASE_URL, origin) {
                Ok(u) => Some(u),
                Err(e) => {
                    r.problems.push(e);
                    None
                }
            },
            None => {
                r.problems.push(
                    Error::config("DATABASE_URL is not set: the playground needs a Postgres database").with_hint(
                        "pass --database-url postgres://user:password@host:5432/database, export DATABASE_URL=…, \
                         or write DATABASE_URL=… into ./.env (or a file named with --env-file)",
                    ),
                );
                None
            }
        };

        let seed_counts = SeedCounts {
            users: r.count(flags.initial_users, &INITIAL_USERS, SeedCounts::DEFAULT.users),
            orders: r.count(flags.initial_orders, &INITIAL_ORDERS, SeedCounts::DEFAULT.orders),
            events: r.count(flags.initial_events, &INITIAL_EVENTS, SeedCounts::DEFAULT.events),
        };

        let orders = r.rate(flags.orders_per_hour, &ORDERS_PER_HOUR).unwrap_or(DEFAULT_ORDERS_PER_HOUR);
        let events = r.rate(flags.events_per_hour, &EVENTS_PER_HOUR).unwrap_or(DEFAULT_EVENTS_PER_HOUR);
        let derived = Rates::derived(orders, events);
        let rates = Rates {
            orders_per_hour: orders,
            events_per_hour: events,
            users_per_hour: r.rate(flags.users_per_hour, &USERS_PER_HOUR).unwrap_or(derived.users_per_hour),
            status_updates_per_hour: r
                .rate(flags.status_updates_per_hour, &STATUS_UPDATES_PER_HOUR)
                .unwrap_or(derived.status_updates_per_hour),
            plan_changes_per_hour: r
                .rate(flags.plan_changes_per_hour, &PLAN_CHANGES_PER_HOUR)
                .unwrap_or(derived.plan_changes_per_hour),
            soft_deletes_per_hour: r
                .rate(flags.soft_deletes_per_hour, &SOFT_DELETES_PER_HOUR)
                .unwrap_or(derived.soft_deletes_per_hour),
            hard_deletes_per_hour: r
                .rate(flags.hard_deletes_per_hour, &HARD_DELETES_PER_HOUR)
                .unwrap_or(derived.hard_deletes_per_hour),
        };

        let duration = match flags.duration {
            Some(d) if d.is_zero() => {
                r.problems
                    .push(Error::config("--duration 0s: must be longer than zero (leave it out to run until Ctrl+C)"));
                None
            }
            Some(d) => Some(d),
            None => r.hours(&TEST_DURATION_HOURS),
        };

        match (problems.len(), database_url) {
            (0, Some(database_url)) => Ok(PlaygroundConfig { database_url, seed_counts, rates, duration }),
            (1, _) => Err(problems.remove(0)),
            (n, _) => {
                let lines: Vec<String> = problems.iter().map(|e| format!("  - {e}")).collect();
                Err(Error::config(format!("{n} problems in the playground settings:\n{}", lines.join("\n"))))
            }
        }
    }
}

/// `ORDERS_PER_HOUR="abc" (from .env)` or `--orders-per-hour -3`.
fn label(setting: &Setting, origin: &Origin) -> String {
    match origin {
        Origin::Flag => setting.flag.to_owned(),
        other => format!("{} ({other})", setting.var),
    }
}

fn value_label(setting: &Setting, value: &str, origin: &Origin) -> String {
    match origin {
        Origin::Flag => format!("{} {value}", setting.flag),
        other => format!("{}={value:?} ({other})", setting.var),
    }
}

struct Resolver<'a> {
    env: &'a Environment,
    problems: &'a mut Vec<Error>,
}

impl Resolver<'_> {
    fn count(&mut self, flag: Option<u64>, s: &Setting, default: u64) -> u64 {
        if let Some(n) = flag {
            return n;
        }
        let Some((v, origin)) = self.env.get(s.var) else { return default };
        match parse_count(v) {
            Some(n) => n,
            None => {
                let why = if v.starts_with('-') { "must be zero or more" } else { "not a whole number" };
                self.problems.push(Error::config(format!("{}: {why}", value_label(s, v, &origin))));
                default
            }
        }
    }

    fn rate(&mut self, flag: Option<f64>, s: &Setting) -> Option<f64> {
        let (value, text, origin) = match flag {
            Some(n) => (n, n.to_string(), Origin::Flag),
            None => {
                let (v, origin) = self.env.get(s.var)?;
                match parse_number(v) {
                    Some(n) => (n, v.to_owned(), origin),
                    None => {
                        self.problems.push(Error::config(format!("{}: not a number", value_label(s, v, &origin))));
                        return None;
                    }
                }
            }
        };
        if !value.is_finite() || value < 0.0 {
            self.problems
                .push(Error::config(format!("{}: must be zero or more (per hour)", value_label(s, &text, &origin))));
            return None;
        }
        if value > MAX_PER_HOUR {
            self.problems.push(Error::config(format!(
                "{}: more than {MAX_PER_HOUR:e} an hour is past what the generator can write",
                value_label(s, &text, &origin)
            )));
            return None;
        }
        Some(value)
    }

    fn hours(&mut self, s: &Setting) -> Option<Duration> {
        let (v, origin) = self.env.get(s.var)?;
        let label = value_label(s, v, &origin);
        match parse_number(v) {
            Some(h) if h.is_finite() && h > 0.0 && h < 1e6 => Some(Duration::from_secs_f64(h * 3600.0)),
            Some(_) => {
                self.problems.push(
                    Error::config(format!("{label}: must be a positive number of hours"))
                        .with_hint(format!("leave {} unset to run until Ctrl+C", s.var)),
                );
                None
            }
            None => {
                self.problems.push(
                    Error::config(format!("{label}: not a number of hours"))
                        .with_hint("write hours as a number, e.g. 0.083 for five minutes"),
                );
                None
            }
        }
    }
}

/// A whole number; `_` may group digits (`1_000_000`).
fn parse_count(s: &str) -> Option<u64> {
    let digits: String = s.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A decimal number; `_` may group digits.
fn parse_number(s: &str) -> Option<f64> {
    let t: String = s.chars().filter(|c| *c != '_').collect();
    // Rust also parses "inf" and "NaN"; those are not rates.
    if !t.chars().any(|c| c.is_ascii_digit()) || t.chars().any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E') {
        return None;
    }
    t.parse().ok()
}

/// `--duration` values: `30s`, `5m`, `0.083h`, `1.5d` (a decimal number and a
/// unit), or anything humantime reads (`1h 30m`). A bare number is refused
/// because its unit would be a guess.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    if parse_number(t).is_some() {
        return Err(format!("`{t}` has no unit: write e.g. {t}h, {t}m or {t}s"));
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let seconds = match unit.trim() {
        "ms" => Some(0.001),
        "s" | "sec" | "secs" | "second" | "seconds" => Some(1.0),
        "m" | "min" | "mins" | "minute" | "minutes" => Some(60.0),
        "h" | "hr" | "hrs" | "hour" | "hours" => Some(3600.0),
        "d" | "day" | "days" => Some(86_400.0),
        _ => None,
    };
    if let (Ok(n), Some(factor)) = (number.parse::<f64>(), seconds)
        && n.is_finite()
        && n < 1e9
    {
        // Whole milliseconds: finer is noise for a run's length.
        return Ok(Duration::from_millis((n * factor * 1000.0).round() as u64));
    }
    humantime::parse_duration(t).map_err(|e| format!("`{t}` is not a duration ({e}); write e.g. 30s, 5m or 0.083h"))
}

/// Parses `.env` text: `KEY=VALUE` lines, `export KEY=VALUE`, `#` comments,
/// values in `"…"` (with `\n`, `\t`, `\"`, `\\` escapes) or `'…'` (literal),
/// unquoted values ending at ` #`. Later lines win. Errors name the line
/// and the key, never the value.
pub fn parse_env_file(text: &str, name: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            return Err(Error::config(format!("{name} line {n}: expected KEY=VALUE")));
        };
        let key = key.trim();
        let valid_key = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid_key {
            return Err(Error::config(format!("{name} line {n}: `{key}` is not a variable name")));
        }
        let rest = rest.trim_start();
        let (value, after) = if let Some(body) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = body.char_indices();
            let mut end = None;
            while let Some((j, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(j + 1);
                        break;
                    }
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some('r') => value.push('\r'),
                        Some(c @ ('"' | '\\' | '$' | '\'')) => value.push(c),
                        Some(c) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => value.push('\\'),
                    },
                    c => value.push(c),
                }
            }
            let Some(end) = end else {
                return Err(Error::config(format!("{name} line {n}: {key}: the closing \" is missing")));
            };
            (value, &body[end..])
        } else if let Some(body) = rest.strip_prefix('\'') {
            let Some(end) = body.find('\'') else {
                return Err(Error::config(format!("{name} line {n}: {key}: the closing ' is missing")));
            };
            (body[..end].to_owned(), &body[end + 1..])
        } else {
            let value = match rest.find(" #").or_else(|| rest.find("\t#")) {
                Some(j) => &rest[..j],
                None => rest,
            };
            (value.trim_end().to_owned(), "")
        };
        let after = after.trim();
        if !(after.is_empty() || after.starts_with('#')) {
            return Err(Error::config(format!("{name} line {n}: {key}: unexpected text after the closing quote")));
        }
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_files() {
        let text = "\u{feff}# comment\n\nexport A=1\nB = two words  # note\nC=\"x # y\\n\\\"q\\\"\"  # c\nD='a\\b $x'\nE=\nF=a#b\n";
        let m = parse_env_file(text, ".env").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x # y\n\"q\"");
        assert_eq!(m["D"], "a\\b $x");
        assert_eq!(m["E"], "");
        assert_eq!(m["F"], "a#b");
    }

    #[test]
    fn env_file_errors_name_the_line_not_the_value() {
        let e = parse_env_file("A=1\nDATABASE_URL=\"postgres://u:s3cret@h/db\n", ".env").unwrap_err();
        assert_eq!(e.message(), ".env line 2: DATABASE_URL: the closing \" is missing");
        let e = parse_env_file("just words\n", "x.env").unwrap_err();
        assert_eq!(e.message(), "x.env line 1: expected KEY=VALUE");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_count("1_000"), Some(1000));
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("1e3"), None);
        assert_eq!(parse_number("0.083"), Some(0.083));
        assert_eq!(parse_number("2e3"), Some(2000.0));
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number("abc"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("0.083h"), Ok(Duration::from_millis(298_800)));
        assert_eq!(parse_duration("1.5d"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5").unwrap_err().contains("has no unit"));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
