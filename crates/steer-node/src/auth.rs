//! steerd's side of auth: the credentials in force and the TLS material of
//! the gRPC listener, both swapped whole on reload once the rest of the
//! reload succeeded. The auth mode, and whether the listener speaks TLS at
//! all, are fixed at start: a reload that changes them is refused, so its
//! reply never says "applied" for something that was not.

use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use steer_api::{Authenticator, SharedAuthenticator};
use steer_config::{AuthMode, ServerTls, SteerConfig};

use tracing::{info, warn};

use crate::tls::SharedTlsConfig;

/// The credentials a config names; `None` when auth is off.
pub(crate) fn authenticator(mode: &AuthMode) -> Option<Authenticator> {
    match mode {
        AuthMode::None => None,
        AuthMode::Tokens(tokens) => Some(Authenticator::new(tokens.clone())),
        AuthMode::Mtls(creds) => {
            Some(Authenticator::new(creds.tokens.clone()).with_cert_names(creds.cert_names.clone()))
        }
    }
}

fn mode_name(mode: &AuthMode) -> &'static str {
    match mode {
        AuthMode::None => "none",
        AuthMode::Tokens(_) => "token",
        AuthMode::Mtls(_) => "mtls",
    }
}

/// Logs what auth protects at start and returns the shared credentials.
pub(crate) fn start(config: &SteerConfig) -> Option<SharedAuthenticator> {
    match &config.auth {
        AuthMode::None => warn!(
            "AUTH IS OFF (auth.mode = \"none\"): anyone who can reach the gRPC listener \
             can drain PoPs and report health; keep it on loopback"
        ),
        AuthMode::Tokens(tokens) => info!(tokens = tokens.len(), "bearer-token auth on"),
        AuthMode::Mtls(creds) => info!(
            certificates = creds.cert_names.len(),
            tokens = creds.tokens.len(),
            "mTLS auth on (client certificates, bearer tokens accepted too)"
        ),
    }
    for w in config.exposure_warnings() {
        warn!("{w}");
    }
    authenticator(&config.auth).map(|a| Arc::new(ArcSwap::from_pointee(a)))
}

/// The PEM bytes of the certificate, key and client CA.
pub(crate) struct TlsMaterial {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl TlsMaterial {
    pub(crate) fn read(tls: &ServerTls) -> anyhow::Result<Self> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))
        };
        Ok(Self {
            cert: read(&tls.cert_file)?,
            key: read(&tls.key_file)?,
            client_ca: tls.client_ca_file.as_deref().map(read).transpose()?,
        })
    }

    pub(crate) fn cert(&self) -> &[u8] {
        &self.cert
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    pub(crate) fn client_ca(&self) -> Option<&[u8]> {
        self.client_ca.as_deref()
    }
}

/// What reload needs to decide about auth.
pub(crate) struct AuthReload {
    /// `None` when auth is off (then it stays off until a restart).
    pub(crate) live: Option<SharedAuthenticator>,
    /// The rustls config new gRPC connections get; `None` without `[tls]`.
    pub(crate) tls: Option<SharedTlsConfig>,
}

/// Auth and TLS of a candidate config, validated, waiting for the rest of
/// the reload to succeed.
pub(crate) struct Pending {
    credentials: Option<Authenticator>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl AuthReload {
    /// Refuses a candidate config whose auth or TLS cannot be applied
    /// without a restart, or whose TLS material does not load; otherwise
    /// returns what to swap in once the rest of the reload succeeded.
    /// `running` is the config in force (its listeners are the bound ones).
    pub(crate) fn check(
        &self,
        running: &SteerConfig,
        next: &SteerConfig,
    ) -> Result<Pending, String> {
        if mode_name(&next.auth) != mode_name(&running.auth) {
            return Err(format!(
                "[auth] mode changed from {:?} to {:?}: the auth mode is set at start; \
                 restart steerd to change it. Nothing was reloaded",
                mode_name(&running.auth),
                mode_name(&next.auth)
            ));
        }
        // The listeners stay bound where they are: check them against the
        // new [auth] table.
        let mut bound = next.clone();
        bound.server = running.server.clone();
        bound.check_control_exposure()?;
        let tls = match (&self.tls, &next.tls) {
            (None, None) => None,
            (Some(_), Some(t)) => {
                let material = TlsMaterial::read(t).map_err(|e| format!("[tls]: {e:#}"))?;
                Some(
                    crate::tls::server_config(&material)
                        .map_err(|e| format!("[tls]: {e:#}. Nothing was reloaded"))?,
                )
            }
            (None, Some(_)) | (Some(_), None) => {
                return Err(
                    "[tls] was added or removed: whether the gRPC listener speaks TLS is set \
                     at start; restart steerd to change it. Nothing was reloaded"
                        .to_owned(),
                );
            }
        };
        Ok(Pending {
            credentials: authenticator(&next.auth),
            tls,
        })
    }

    /// Puts the new credentials and TLS material in force: the next call
    /// (the next connection, for TLS) uses them.
    pub(crate) fn apply(&self, next: Pending) {
        if let (Some(live), Some(credentials)) = (&self.live, next.credentials) {
            live.store(Arc::new(credentials));
            info!("auth credentials reloaded");
        }
        if let (Some(live), Some(tls)) = (&self.tls, next.tls) {
            live.store(tls);
            info!("TLS certificate, key and client CA reloaded; new connections use them");
        }
    }
}
