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
//! ```

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
    token: Spanned<String>,
    role: Option<Spanned<String>>,
    pop: Option<Spanned<String>>,
}

pub(crate) fn load(path: &Path) -> Result<Vec<(String, Identity)>, ConfigErrors> {
    let src = crate::read(path)?;
    let mut r = Reporter::new(path.display().to_string(), &src);
    let raw: RawTokens = match toml::from_str(&src) {
        Ok(raw) => raw,
        Err(e) => {
            r.toml_error(&e);
            return Err(r.into_errors());
        }
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for t in &raw.tokens {
        let t = t.get_ref();
        if t.token.get_ref().len() < 16 {
            r.at(t.token.span(), "tokens must be at least 16 characters");
        }
        if !seen.insert(t.token.get_ref().clone()) {
            r.at(t.token.span(), "this token is listed twice");
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
        out.push((
            t.token.get_ref().clone(),
            Identity {
                principal: t.principal.get_ref().clone(),
                role,
                pop: t.pop.as_ref().map(|p| PopId::new(p.get_ref())),
            },
        ));
    }
    r.finish(out)
}
