//! Who may reach steerd's control surfaces, and the secrets that decide it.
//!
//! - With `[auth] mode = "none"`, the gRPC and HTTP listeners must stay on
//!   loopback unless `allow_unauthenticated_remote = true` says the network
//!   in front of them is trusted: anyone who reaches an open gRPC port can
//!   drain every PoP and report health for any of them.
//! - Files holding secrets (tokens files, bearer-token files, TLS private
//!   keys) must not be readable by group or others, as ssh insists for keys.

use std::{net::SocketAddr, ops::Range, path::Path};

use crate::{
    SteerConfig,
    error::Reporter,
    steerd::{AuthMode, ServerSettings},
};

/// A bearer token read from a file; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// The token itself, for the `authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Refuses a secret file that group or others may read or write.
pub fn check_private_file(path: &Path, what: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{what} {} is accessible by group or others (mode {mode:04o}); \
                 it holds a secret: run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

/// Reads a file holding one bearer token (surrounding whitespace trimmed).
pub fn read_bearer_token(path: &Path) -> Result<BearerToken, String> {
    check_private_file(path, "token file")?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "token file {} is empty; it must hold the bearer token",
            path.display()
        ));
    }
    // It travels in an HTTP/2 header: visible ASCII only.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "token file {} holds more than one token or characters a token cannot have \
             (spaces, control or non-ASCII characters)",
            path.display()
        ));
    }
    Ok(BearerToken(token.to_owned()))
}

/// Loopback only: 127.0.0.0/8, ::1 and their IPv4-mapped forms. The
/// unspecified address (0.0.0.0, ::) is every interface, not loopback.
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// The control-surface listeners (gRPC, HTTP) a config binds.
fn control_listeners(server: &ServerSettings) -> [(&'static str, &'static str, SocketAddr); 2] {
    [
        ("gRPC", "grpc_listen", server.grpc_listen),
        ("HTTP", "http_listen", server.http_listen),
    ]
}

/// Control listeners that auth = none leaves open to other hosts.
fn open_remote(
    server: &ServerSettings,
    auth: &AuthMode,
    allow: bool,
) -> Vec<(&'static str, &'static str, SocketAddr)> {
    if !matches!(auth, AuthMode::None) || allow {
        return Vec::new();
    }
    control_listeners(server)
        .into_iter()
        .filter(|(_, _, addr)| !is_loopback(*addr))
        .collect()
}

fn open_remote_message(what: &str, key: &str, addr: SocketAddr) -> String {
    format!(
        "the {what} listener {addr} (server.{key} or --{}) is off loopback while \
         [auth] mode = \"none\": anyone who reaches it could drain every PoP, reload the \
         config and report health for any PoP. Set [auth] mode = \"token\" with a \
         tokens_file (or \"mtls\"), or listen on 127.0.0.1; if the network in front of it \
         is trusted, set allow_unauthenticated_remote = true in [auth]",
        key.replace('_', "-")
    )
}

impl SteerConfig {
    /// Refuses a control surface off loopback without auth (unless
    /// allowed); run after command-line overrides of the listen addresses.
    pub fn check_control_exposure(&self) -> Result<(), String> {
        let open: Vec<String> =
            open_remote(&self.server, &self.auth, self.allow_unauthenticated_remote)
                .into_iter()
                .map(|(what, key, addr)| open_remote_message(what, key, addr))
                .collect();
        if open.is_empty() {
            Ok(())
        } else {
            Err(open.join("\n"))
        }
    }

    /// Warnings for a start that is allowed but weak: bearer tokens over a
    /// plaintext listener off loopback, or auth off by permission.
    pub fn exposure_warnings(&self) -> Vec<String> {
        let remote: Vec<String> = control_listeners(&self.server)
            .into_iter()
            .filter(|(_, _, addr)| !is_loopback(*addr))
            .map(|(what, _, addr)| format!("{what} {addr}"))
            .collect();
        let mut out = Vec::new();
        if remote.is_empty() {
            return out;
        }
        match &self.auth {
            AuthMode::None => out.push(format!(
                "auth is off on listeners off loopback ({}), as allow_unauthenticated_remote \
                 = true permits: only a trusted network may reach them",
                remote.join(", ")
            )),
            AuthMode::Tokens(_) if self.tls.is_none() => out.push(format!(
                "bearer tokens travel in clear text: the gRPC listener {} has no [tls]; \
                 anyone on the path can read and replay them. Configure [tls] (cert_file, \
                 key_file)",
                self.server.grpc_listen
            )),
            _ => {}
        }
        out
    }
}

/// The same check at parse time, so `steerd --check` and the error's line
/// point at the listener key in the file. `spans`: the file's spans of
/// `server.grpc_listen` and `server.http_listen`, if set there.
pub(crate) fn refuse_open_remote(
    r: &mut Reporter<'_>,
    server: &ServerSettings,
    auth: &AuthMode,
    allow: bool,
    [grpc, http]: [Option<Range<usize>>; 2],
) {
    for (what, key, addr) in open_remote(server, auth, allow) {
        let span = if key == "grpc_listen" { &grpc } else { &http };
        if let Some(span) = span {
            r.at(span.clone(), open_remote_message(what, key, addr));
        }
    }
}
