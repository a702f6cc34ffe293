//! Connecting: URL parsing, TLS (`sslmode`), and turning driver errors into
//! errors that say what to fix — never with the password in them.

use simplyload_core::{Error, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_postgres::Client;
use tokio_postgres::config::{Config as PgConfig, Host, SslMode as PgSslMode};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// TLS if the server offers it, without verifying the certificate (libpq's default).
    Prefer,
    /// TLS required, certificate not verified.
    Require,
    /// TLS required, certificate chain verified, host name not checked.
    VerifyCa,
    /// TLS required, chain and host name verified.
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, Error> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::config(format!(
                    "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }
}

/// A parsed connection string.
#[derive(Clone)]
pub struct ConnectOptions {
    pub config: PgConfig,
    pub ssl: SslMode,
    pub root_cert: Option<PathBuf>,
    /// The source's name in the config, for messages.
    pub source: String,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions").field("target", &self.target()).field("ssl", &self.ssl).finish()
    }
}

impl ConnectOptions {
    /// Parses a `postgres://` URL or a `key=value` connection string.
    /// `sslmode` and `sslrootcert` are taken out and handled here, because the
    /// driver knows only some of libpq's modes.
    pub fn parse(source: &str, url: &str, root_cert: Option<&Path>) -> Result<ConnectOptions, Error> {
        let (rest, params) = take_params(url, &["sslmode", "sslrootcert"]);
        let mut config: PgConfig = rest.parse().map_err(|e: tokio_postgres::Error| {
            Error::config(format!("sources.{source}.url is not a valid Postgres connection string: {e}"))
                .with_hint("write it as postgres://user:password@host:5432/database?sslmode=prefer")
        })?;
        let ssl = match params.iter().find(|(k, _)| k == "sslmode") {
            Some((_, v)) => SslMode::parse(v).map_err(|e| e.context(format!("sources.{source}.url")))?,
            None => SslMode::Prefer,
        };
        let root_cert = params
            .iter()
            .find(|(k, _)| k == "sslrootcert")
            .map(|(_, v)| PathBuf::from(v))
            .or_else(|| root_cert.map(Path::to_path_buf));
        config.ssl_mode(match ssl {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        if config.get_user().is_none()
            && let Ok(u) = std::env::var("USER")
        {
            config.user(&u);
        }
        if config.get_application_name().is_none() {
            config.application_name("simplyload");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(15));
        }
        config.keepalives(true);
        Ok(ConnectOptions { config, ssl, root_cert, source: source.to_owned() })
    }

    /// The database name (`{database}`): `dbname`, else the user name, as libpq does.
    pub fn database(&self) -> String {
        self.config.get_dbname().or(self.config.get_user()).unwrap_or("postgres").to_owned()
    }

    pub fn user(&self) -> String {
        self.config.get_user().unwrap_or("postgres").to_owned()
    }

    /// `user@host:port/database`, for messages (never the password).
    pub fn target(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{}@{host}:{port}/{}", self.user(), self.database())
    }

    /// The connection as libpq environment variables (`PGHOST`, `PGPORT`,
    /// `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`),
    /// for a Postgres client tool run as a child: the password goes by
    /// environment, never on a command line other users can read.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(host) = self.config.get_hosts().first() {
            env.push((
                "PGHOST",
                match host {
                    Host::Tcp(h) => h.clone(),
                    Host::Unix(p) => p.display().to_string(),
                },
            ));
        }
        if let Some(port) = self.config.get_ports().first() {
            env.push(("PGPORT", port.to_string()));
        }
        env.push(("PGUSER", self.user()));
        if let Some(pw) = self.config.get_password() {
            env.push(("PGPASSWORD", String::from_utf8_lossy(pw).into_owned()));
        }
        env.push(("PGDATABASE", self.database()));
        let mode = match self.ssl {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        };
        env.push(("PGSSLMODE", mode.to_owned()));
        if let Some(root) = &self.root_cert {
            env.push(("PGSSLROOTCERT", root.display().to_string()));
        }
        env
    }

    /// Opens a connection; its I/O runs on a spawned task.
    pub async fn connect(&self) -> Result<Client, Error> {
        let result = if self.ssl == SslMode::Disable {
            self.config.connect(tokio_postgres::NoTls).await.map(|(client, conn)| {
                spawn_connection(conn);
                client
            })
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
            self.config.connect(tls).await.map(|(client, conn)| {
                spawn_connection(conn);
                client
            })
        };
        result.map_err(|e| {
            let err =
                pg_error(&e, &format!("cannot connect to Postgres source `{}` at {}", self.source, self.target()));
            match err.kind() {
                ErrorKind::Auth => err.with_hint(format!(
                    "check the user and password in sources.{}.url (and that pg_hba.conf allows this host)",
                    self.source
                )),
                ErrorKind::NotFound => err.with_hint(format!("check the database name in sources.{}.url", self.source)),
                ErrorKind::Transient => err.with_hint(format!(
                    "check that Postgres is running and reachable at the host and port in sources.{}.url",
                    self.source
                )),
                _ => err,
            }
        })
    }

    /// The rustls configuration for `sslmode` (every connection of this crate, replication too).
    pub(crate) fn tls_config(&self) -> Result<rustls::ClientConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("TLS setup: {e}")))?;
        let config = match self.ssl {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verify::NoVerify(provider)))
                .with_no_client_auth(),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = Arc::new(self.root_store()?);
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| Error::config(format!("sources.{}: TLS roots: {e}", self.source)))?;
                if self.ssl == SslMode::VerifyFull {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(verify::ChainOnly(webpki)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(config)
    }

    fn root_store(&self) -> Result<rustls::RootCertStore, Error> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        Error::config(format!(
                            "sources.{}: cannot read root certificate {}: {e}",
                            self.source,
                            path.display()
                        ))
                    })?;
                for c in certs {
                    roots.add(c).map_err(|e| Error::config(format!("root certificate {}: {e}", path.display())))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for c in native.certs {
                    let _ = roots.add(c);
                }
            }
        }
        if roots.is_empty() {
            return Err(Error::config(format!(
                "sources.{}: sslmode verify-ca/verify-full needs a root certificate; none was found",
                self.source
            ))
            .with_hint("add sslrootcert=/path/to/root.crt to the URL or set ssl_root_cert"));
        }
        Ok(roots)
    }
}

fn spawn_connection<S, T>(conn: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection closed with an error");
        }
    });
}

/// Removes `keys` from a URL's query string or a key=value string.
fn take_params(url: &str, keys: &[&str]) -> (String, Vec<(String, String)>) {
    let mut taken = Vec::new();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), taken) };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if keys.contains(&k) {
                taken.push((k.to_owned(), v.to_owned()));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        (rest, taken)
    } else {
        let mut kept = Vec::new();
        for part in url.split_whitespace() {
            match part.split_once('=') {
                Some((k, v)) if keys.contains(&k) => taken.push((k.to_owned(), v.trim_matches('\'').to_owned())),
                _ => kept.push(part),
            }
        }
        (kept.join(" "), taken)
    }
}

/// Maps a driver error to a classified error. `what` says what was being done.
pub fn pg_error(e: &tokio_postgres::Error, what: &str) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let kind = match code {
            "28P01" | "28000" => ErrorKind::Auth,
            "3D000" | "42P01" | "3F000" | "42703" | "42883" => ErrorKind::NotFound,
            "42501" => ErrorKind::Permission,
            "55006" | "55P03" | "40P01" => ErrorKind::Busy,
            c if c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "53300" => ErrorKind::Transient,
            c if c.starts_with("53") => ErrorKind::Transient,
            c if c.starts_with("22") => ErrorKind::Data,
            _ => ErrorKind::Internal,
        };
        let mut msg = format!("{what}: {} (SQLSTATE {code})", db.message());
        if let Some(detail) = db.detail() {
            msg.push_str(&format!("; {detail}"));
        }
        return Error::new(kind, msg);
    }
    let text = e.to_string();
    // Errors without a server error: the connection itself failed or closed.
    let lost = e.is_closed()
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        || text.contains("timed out")
        || text.contains("connection")
        || text.contains("unexpected EOF");
    let kind = if lost {
        ErrorKind::Transient
    } else if text.contains("password") {
        ErrorKind::Auth
    } else {
        ErrorKind::Internal
    };
    let detail = match std::error::Error::source(e) {
        Some(s) => format!("{text}: {s}"),
        None => text,
    };
    Error::new(kind, format!("{what}: {detail}"))
}

/// Quotes an identifier for SQL: `"` + name with `"` doubled + `"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

mod verify {
    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    /// `sslmode=prefer|require`: encrypt, but (as libpq) do not verify.
    #[derive(Debug)]
    pub struct NoVerify(pub Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for NoVerify {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// `sslmode=verify-ca`: the chain must lead to a trusted root; the host
    /// name is not checked.
    #[derive(Debug)]
    pub struct ChainOnly(pub Arc<rustls::client::WebPkiServerVerifier>);

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
                | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => {
                    Ok(ServerCertVerified::assertion())
                }
                other => other,
            }
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_env_carries_the_connection_and_the_password() {
        let o = ConnectOptions::parse("src", "postgres://ann:s%40cret@db.example:6543/shop?sslmode=verify-full", None)
            .unwrap();
        let env: std::collections::BTreeMap<_, _> = o.libpq_env().into_iter().collect();
        assert_eq!(env["PGHOST"], "db.example");
        assert_eq!(env["PGPORT"], "6543");
        assert_eq!(env["PGUSER"], "ann");
        assert_eq!(env["PGPASSWORD"], "s@cret");
        assert_eq!(env["PGDATABASE"], "shop");
        assert_eq!(env["PGSSLMODE"], "verify-full");
        let o = ConnectOptions::parse("src", "host=/tmp port=5433 user=bob dbname=x", None).unwrap();
        let env: std::collections::BTreeMap<_, _> = o.libpq_env().into_iter().collect();
        assert_eq!((env["PGHOST"].as_str(), env.contains_key("PGPASSWORD")), ("/tmp", false));
    }

    #[test]
    fn takes_sslmode_out_of_urls_and_keyword_strings() {
        let (rest, taken) = take_params("postgres://u:p@h:5/db?sslmode=verify-full&application_name=x", &["sslmode"]);
        assert_eq!(rest, "postgres://u:p@h:5/db?application_name=x");
        assert_eq!(taken, vec![("sslmode".to_string(), "verify-full".to_string())]);
        let (rest, taken) = take_params("host=h sslmode=require dbname=d", &["sslmode"]);
        assert_eq!(rest, "host=h dbname=d");
        assert_eq!(taken[0].1, "require");
    }

    #[test]
    fn parses_target_without_password() {
        let o = ConnectOptions::parse("app", "postgres://reader:hunter2@db.example:6543/shop?sslmode=require", None)
            .unwrap();
        assert_eq!(o.ssl, SslMode::Require);
        assert_eq!(o.database(), "shop");
        assert_eq!(o.target(), "reader@db.example:6543/shop");
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn bad_sslmode_and_bad_url_name_the_key() {
        let e = ConnectOptions::parse("app", "postgres://u@h/d?sslmode=sometimes", None).unwrap_err();
        assert!(e.to_string().contains("sources.app.url"), "{e}");
        assert!(e.to_string().contains("sometimes"), "{e}");
        let e = ConnectOptions::parse("app", "postgres://u:secretpw@h:notaport/d", None).unwrap_err();
        assert!(e.to_string().contains("sources.app.url"), "{e}");
        assert!(!e.to_string().contains("secretpw"), "{e}");
    }

    #[test]
    fn database_defaults_to_user() {
        let o = ConnectOptions::parse("app", "postgres://alice@h", None).unwrap();
        assert_eq!(o.database(), "alice");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
