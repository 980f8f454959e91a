//! The bearer-token file: who may call steerd, and as what.
//!
//! ```toml
//! [[tokens]]
//! principal = "alice"
//! role = "operator"          # viewer | operator | admin
//! token = "…"                # at least 16 characters
//!
//! [[tokens]]
//! principal = "agent-fra1"
//! pop = "fra1"               # an agent: may only report health for fra1
//! token = "…"
//!
//! [[tokens]]
//! principal = "agent-ams1"
//! pop = "ams1"
//! cert_name = "agent-ams1.steer.test"   # mTLS: a client certificate with
//!                                        # exactly this DNS SAN (no wildcard)
//!                                        # is this identity
//! ```
//!
//! The file holds secrets: it must not be accessible by group or others
//! (`chmod 600`), or it is refused.

use std::{collections::HashSet, path::Path};

use serde::Deserialize;
use steer_types::{
    PopId,
    auth::{Identity, Role},
};
use toml::Spanned;

use crate::error::{ConfigErrors, Reporter};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    tokens: Vec<Spanned<RawToken>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    principal: Spanned<String>,
    token: Option<Spanned<String>>,
    /// mTLS: the DNS name (SAN) a client certificate must be valid for.
    cert_name: Option<Spanned<String>>,
    role: Option<Spanned<String>>,
    pop: Option<Spanned<String>>,
}

/// Who may call, by bearer token and by client certificate name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub tokens: Vec<(String, Identity)>,
    /// (certificate DNS name, identity), for mTLS.
    pub cert_names: Vec<(String, Identity)>,
}

pub(crate) fn load(path: &Path) -> Result<Vec<(String, Identity)>, ConfigErrors> {
    load_credentials(path).map(|c| c.tokens)
}

pub(crate) fn load_credentials(path: &Path) -> Result<Credentials, ConfigErrors> {
    crate::auth::check_private_file(path, "tokens file").map_err(|message| {
        ConfigErrors(vec![crate::ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        }])
    })?;
    let src = crate::read(path)?;
    let mut r = Reporter::new(path.display().to_string(), &src);
    let Some(raw) = r.deserialize::<RawTokens>() else {
        return Err(r.into_errors());
    };
    let mut seen = HashSet::new();
    let mut out = Credentials::default();
    for t in &raw.tokens {
        let t = t.get_ref();
        if let Some(token) = &t.token {
            if token.get_ref().len() < 16 {
                r.at(token.span(), "tokens must be at least 16 characters");
            }
            if !seen.insert(token.get_ref().clone()) {
                r.at(token.span(), "this token is listed twice");
            }
        }
        if let Some(name) = &t.cert_name {
            if !seen.insert(format!("cert:{}", name.get_ref().to_ascii_lowercase())) {
                r.at(name.span(), "this cert_name is listed twice");
            }
            if name.get_ref().contains('*') || name.get_ref().is_empty() {
                r.at(
                    name.span(),
                    "cert_name must be one exact DNS name (no wildcard): a client \
                     certificate names an identity only by an exact SAN",
                );
            }
        }
        if t.token.is_none() && t.cert_name.is_none() {
            r.at(
                t.principal.span(),
                "an identity needs a `token`, a `cert_name` (mTLS), or both",
            );
        }
        let role = match t.role.as_ref().map(|r| r.get_ref().as_str()) {
            None => None,
            Some("viewer") => Some(Role::Viewer),
            Some("operator") => Some(Role::Operator),
            Some("admin") => Some(Role::Admin),
            Some(other) => {
                if let Some(sp) = &t.role {
                    r.at(
                        sp.span(),
                        format!("unknown role {other:?} (viewer, operator or admin)"),
                    );
                }
                None
            }
        };
        if role.is_none() && t.pop.is_none() && t.role.is_none() {
            r.at(
                t.principal.span(),
                "a token needs a `role` (operator API) or a `pop` (agent)",
            );
        }
        let identity = Identity {
            principal: t.principal.get_ref().clone(),
            role,
            pop: t.pop.as_ref().map(|p| PopId::new(p.get_ref())),
        };
        if let Some(token) = &t.token {
            out.tokens.push((token.get_ref().clone(), identity.clone()));
        }
        if let Some(name) = &t.cert_name {
            out.cert_names.push((name.get_ref().clone(), identity));
        }
    }
    r.finish(out)
}
