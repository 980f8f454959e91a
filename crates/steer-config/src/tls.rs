//! TLS settings: steerd's `[tls]` table (server certificate, optional client
//! CA for mTLS) and the `[tls]` table of agents (CA to trust, client
//! certificate to present). Paths are relative to the config file and must
//! be readable when the config is loaded; private keys must not be
//! accessible by group or others (`chmod 600`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::Reporter;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerTls {
    cert_file: Spanned<String>,
    key_file: Spanned<String>,
    client_ca_file: Option<Spanned<String>>,
}

/// steerd's gRPC listener speaks TLS with this certificate; with a client
/// CA, client certificates signed by it identify callers (mTLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientTls {
    ca_file: Option<Spanned<String>>,
    cert_file: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
}

/// How a client (agent, steerctl) talks TLS to steerd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA that signed steerd's certificate (else the system roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key to present (mTLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name to verify steerd's certificate against (else the endpoint host).
    pub server_name: Option<String>,
}

fn file(r: &mut Reporter<'_>, config: &Path, v: &Spanned<String>) -> PathBuf {
    let path = config
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(v.get_ref());
    if let Err(e) = std::fs::metadata(&path) {
        r.at(v.span(), format!("cannot read {}: {e}", path.display()));
    }
    path
}

/// A private key: readable, and by its owner only.
fn key_file(r: &mut Reporter<'_>, config: &Path, v: &Spanned<String>) -> PathBuf {
    let path = file(r, config, v);
    if path.exists()
        && let Err(e) = crate::auth::check_private_file(&path, "private key")
    {
        r.at(v.span(), e);
    }
    path
}

pub(crate) fn server_tls(r: &mut Reporter<'_>, config: &Path, raw: &RawServerTls) -> ServerTls {
    ServerTls {
        cert_file: file(r, config, &raw.cert_file),
        key_file: key_file(r, config, &raw.key_file),
        client_ca_file: raw.client_ca_file.as_ref().map(|f| file(r, config, f)),
    }
}

pub(crate) fn client_tls(r: &mut Reporter<'_>, config: &Path, raw: &RawClientTls) -> ClientTls {
    let opt =
        |r: &mut Reporter<'_>, v: &Option<Spanned<String>>| v.as_ref().map(|f| file(r, config, f));
    let tls = ClientTls {
        ca_file: opt(r, &raw.ca_file),
        cert_file: opt(r, &raw.cert_file),
        key_file: raw.key_file.as_ref().map(|f| key_file(r, config, f)),
        server_name: raw.server_name.as_ref().map(|s| s.get_ref().clone()),
    };
    if tls.cert_file.is_some() != tls.key_file.is_some()
        && let Some(v) = raw.cert_file.as_ref().or(raw.key_file.as_ref())
    {
        r.at(v.span(), "cert_file and key_file go together");
    }
    tls
}
