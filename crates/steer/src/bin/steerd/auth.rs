//! steerd's side of auth: the credentials in force (swapped whole on
//! reload), the TLS material the gRPC listener was started with, and what a
//! reload may change: credentials yes; the auth mode and TLS material only
//! with a restart, and a reload that carries such a change is refused, so
//! its reply never says "applied" for something that was not.

use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use steer_api::{Authenticator, SharedAuthenticator};
use steer_config::{AuthMode, ServerTls, SteerConfig};
use tracing::{info, warn};

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

/// The bytes of the certificate, key and client CA the listener uses.
#[derive(PartialEq, Eq)]
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

    /// TLS for the gRPC listener; with a client CA, client certificates are
    /// verified against it (optional at the TLS layer, so a caller without
    /// one gets a proper UNAUTHENTICATED status instead of a handshake
    /// failure).
    pub(crate) fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        let mut cfg = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert, &self.key));
        if let Some(ca) = &self.client_ca {
            cfg = cfg
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        cfg
    }
}

/// What reload needs to decide about auth.
pub(crate) struct AuthReload {
    /// `None` when auth is off (then it stays off until a restart).
    pub(crate) live: Option<SharedAuthenticator>,
    /// What the gRPC listener was started with.
    pub(crate) tls: Option<TlsMaterial>,
}

impl AuthReload {
    /// Refuses a candidate config whose auth or TLS cannot be applied
    /// without a restart; otherwise returns the credentials to swap in once
    /// the rest of the reload succeeded. `running` is the config in force
    /// (its listeners are the bound ones).
    pub(crate) fn check(
        &self,
        running: &SteerConfig,
        next: &SteerConfig,
    ) -> Result<Option<Authenticator>, String> {
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
        let tls_now = match &next.tls {
            None => None,
            Some(t) => Some(TlsMaterial::read(t).map_err(|e| format!("{e:#}"))?),
        };
        if next.tls != running.tls || tls_now != self.tls {
            return Err(
                "[tls] changed (paths, or the certificate, key or client CA on disk): TLS is \
                 set up at start; restart steerd to use the new material. Nothing was reloaded"
                    .to_owned(),
            );
        }
        Ok(authenticator(&next.auth))
    }

    /// Puts the new credentials in force: the next call is checked against
    /// them.
    pub(crate) fn apply(&self, next: Option<Authenticator>) {
        if let (Some(live), Some(next)) = (&self.live, next) {
            live.store(Arc::new(next));
            info!("auth credentials reloaded");
        }
    }
}
