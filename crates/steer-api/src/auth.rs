//! Bearer-token authentication for every gRPC service.
//!
//! The interceptor never rejects by itself: it records a [`Caller`] in the
//! request extensions, and each method decides (so refusals can be audited
//! and reported with the right status code).

use std::sync::Arc;

use steer_types::auth::{Caller, Identity};
use tonic::{Request, Status};

/// Token → identity. Tokens are compared in constant time.
pub struct Authenticator {
    tokens: Vec<(Vec<u8>, Identity)>,
}

impl Authenticator {
    pub fn new(tokens: impl IntoIterator<Item = (String, Identity)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(t, id)| (t.into_bytes(), id))
                .collect(),
        }
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
                let header = req
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                match header.and_then(|h| h.strip_prefix("Bearer ")) {
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
        };
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}
