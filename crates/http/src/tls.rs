//! TLS: rustls with the ring provider and the system's root certificates,
//! like every other connection SimplyLoad makes (no OpenSSL, no aws-lc).

use std::sync::{Arc, OnceLock};

use simplyload_core::{Error, Result};

/// The system's roots, read once per process (`SSL_CERT_FILE` /
/// `SSL_CERT_DIR` are honoured by `rustls-native-certs`).
fn native_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            Arc::new(roots)
        })
        .clone()
}

/// The client's TLS configuration. Without any root certificate an `https`
/// base URL is refused now rather than failing every handshake later.
pub(crate) fn client_config(https: bool) -> Result<rustls::ClientConfig> {
    let roots = native_roots();
    if https && roots.is_empty() {
        return Err(Error::config("http: no trusted root certificates were found on this machine")
            .with_hint("install the system CA bundle (ca-certificates) or set SSL_CERT_FILE to a PEM bundle"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
