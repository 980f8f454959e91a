//! `[edge]`: what a `steerd --role edge` follows. The controllers it
//! subscribes to for plans, how it authenticates to them, and where it
//! keeps the last good plan (fail static across restarts).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::{auth::BearerToken, error::Reporter, tls::ClientTls};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEdge {
    controllers: Vec<Spanned<String>>,
    /// Where the last good plan is kept; default `<server.state_dir>/edge`
    /// (relative paths: to the working directory, like `state_dir`).
    state_dir: Option<String>,
    /// TLS towards the controllers (https:// endpoints).
    tls: Option<crate::tls::RawClientTls>,
    /// File holding the bearer token sent to the controllers (viewer role
    /// is enough).
    token_file: Option<Spanned<String>>,
}

/// A validated `[edge]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeSettings {
    /// gRPC endpoints of the controllers, tried in order with failover.
    pub controllers: Vec<String>,
    /// Directory holding `plan.bin`, the last good plan; `None`:
    /// `<server.state_dir>/edge` (after any `--state-dir`).
    pub state_dir: Option<PathBuf>,
    pub tls: Option<ClientTls>,
    pub token: Option<BearerToken>,
}

pub(crate) fn edge_settings(
    r: &mut Reporter<'_>,
    config: &Path,
    raw: &Spanned<RawEdge>,
) -> EdgeSettings {
    let edge = raw.get_ref();
    if edge.controllers.is_empty() {
        r.at(raw.span(), "`controllers` needs at least one endpoint");
    }
    for ep in &edge.controllers {
        let e = ep.get_ref();
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            r.at(
                ep.span(),
                format!("{e:?} must start with http:// or https://"),
            );
        }
    }
    let base = config.parent().unwrap_or_else(|| Path::new("."));
    let state_dir = edge.state_dir.as_ref().map(PathBuf::from);
    let tls = edge
        .tls
        .as_ref()
        .map(|t| crate::tls::client_tls(r, config, t));
    let token = edge.token_file.as_ref().and_then(|f| {
        crate::auth::read_bearer_token(&base.join(f.get_ref()))
            .map_err(|e| r.at(f.span(), e))
            .ok()
    });
    EdgeSettings {
        controllers: edge
            .controllers
            .iter()
            .map(|s| s.get_ref().clone())
            .collect(),
        state_dir,
        tls,
        token,
    }
}
