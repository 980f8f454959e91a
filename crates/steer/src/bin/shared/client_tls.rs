//! Client-side TLS for steer-agent and steerctl: trust a CA (or the system
//! roots), present a client certificate for mTLS, verify a given name.

use steer_config::ClientTls;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

/// Applies `tls` to an endpoint; a no-op for `http://` endpoints without
/// TLS settings.
pub(crate) fn apply(endpoint: Endpoint, tls: Option<&ClientTls>) -> Result<Endpoint, String> {
    let https = endpoint.uri().scheme_str() == Some("https");
    if tls.is_none() && !https {
        return Ok(endpoint);
    }
    let mut cfg = ClientTlsConfig::new();
    let default = ClientTls::default();
    let tls = tls.unwrap_or(&default);
    match &tls.ca_file {
        Some(ca) => cfg = cfg.ca_certificate(Certificate::from_pem(read(ca, "CA file")?)),
        None => cfg = cfg.with_native_roots(),
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        cfg = cfg.identity(Identity::from_pem(
            read(cert, "client certificate")?,
            read(key, "client key")?,
        ));
    }
    if let Some(name) = &tls.server_name {
        cfg = cfg.domain_name(name.clone());
    }
    endpoint
        .tls_config(cfg)
        .map_err(|e| format!("TLS setup: {e}"))
}
