//! Authentication for every gRPC service: bearer tokens, and client
//! certificates (mTLS) whose DNS name maps to an identity.
//!
//! The interceptor never rejects by itself: it records a [`Caller`] in the
//! request extensions, and each method decides (so refusals can be audited
//! and reported with the right status code).

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName};
use steer_types::auth::{Caller, Identity};
use tonic::{Request, Status};

/// Token → identity. Tokens are compared in constant time.
pub struct Authenticator {
    tokens: Vec<(Vec<u8>, Identity)>,
    /// mTLS: (DNS name a client certificate must be valid for, identity).
    /// The chain itself was verified against the client CA by rustls.
    cert_names: Vec<(String, Identity)>,
}

impl Authenticator {
    pub fn new(tokens: impl IntoIterator<Item = (String, Identity)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(t, id)| (t.into_bytes(), id))
                .collect(),
            cert_names: Vec::new(),
        }
    }

    /// Also accepts client certificates valid for these names.
    #[must_use]
    pub fn with_cert_names(mut self, names: impl IntoIterator<Item = (String, Identity)>) -> Self {
        self.cert_names = names.into_iter().collect();
        self
    }

    fn cert_lookup(&self, certs: &[CertificateDer<'static>]) -> Option<&Identity> {
        let leaf = webpki::EndEntityCert::try_from(certs.first()?).ok()?;
        self.cert_names
            .iter()
            .find(|(name, _)| {
                ServerName::try_from(name.as_str())
                    .is_ok_and(|n| leaf.verify_is_valid_for_subject_name(&n).is_ok())
            })
            .map(|(_, id)| id)
    }

    fn lookup(&self, presented: &[u8]) -> Option<&Identity> {
        let mut found = None;
        for (token, id) in &self.tokens {
            if constant_time_eq(token, presented) {
                found = Some(id);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Builds the interceptor; `None` means auth is off.
pub fn interceptor(
    auth: Option<Arc<Authenticator>>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let caller = match &auth {
            None => Caller::Open {
                addr: req
                    .remote_addr()
                    .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string()),
            },
            Some(auth) => {
                let by_cert = req
                    .peer_certs()
                    .and_then(|certs| auth.cert_lookup(&certs).cloned());
                let header = req
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                // A certificate naming an identity wins over any token.
                if let Some(id) = by_cert {
                    Caller::Known(id)
                } else {
                    match header.and_then(|h| h.strip_prefix("Bearer ")) {
                        None if req.peer_certs().is_some() => Caller::Unknown {
                            why: "the client certificate names no known identity",
                        },
                        None => Caller::Unknown {
                            why: "no bearer token (send `authorization: Bearer <token>`)",
                        },
                        Some(token) => match auth.lookup(token.trim().as_bytes()) {
                            Some(id) => Caller::Known(id.clone()),
                            None => Caller::Unknown {
                                why: "unknown bearer token",
                            },
                        },
                    }
                }
            }
        };
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}
