//! Authentication for every gRPC service: bearer tokens, and client
//! certificates (mTLS) whose DNS name maps to an identity.
//!
//! The interceptor never rejects by itself: it records a [`Caller`] in the
//! request extensions, and each method decides (so refusals can be audited
//! and reported with the right status code). It counts and logs (rate
//! limited) every caller it could not authenticate.
//!
//! Invariants: tokens are kept only as SHA-256 digests and compared digest
//! to digest in constant time, so neither a token's content nor its length
//! shows in response times; a certificate names an identity only through an
//! exact, non-wildcard DNS SAN, and one that names two identities names
//! none. The [`Authenticator`] is swapped whole on reload ([`SharedAuthenticator`]):
//! a call sees the old credentials or the new ones, never a mix.

use std::{
    net::SocketAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use arc_swap::ArcSwap;
use rustls_pki_types::CertificateDer;
use steer_types::auth::{Caller, Identity};
use tonic::{Request, Status};
use tracing::warn;
use x509_parser::extensions::GeneralName;

type Digest = [u8; 32];

/// Token → identity; certificate name → identity.
pub struct Authenticator {
    tokens: Vec<(Digest, Identity)>,
    /// mTLS: (DNS name a client certificate must hold as a SAN, identity).
    /// The chain itself was verified against the client CA by rustls.
    cert_names: Vec<(String, Identity)>,
}

/// The credentials in force; reload stores a new [`Authenticator`].
pub type SharedAuthenticator = Arc<ArcSwap<Authenticator>>;

/// Why a caller could not be authenticated; the label is the metric's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    NoCredential,
    UnknownToken,
    /// A verified client certificate with no SAN naming an identity.
    UnknownCertificate,
    /// A client certificate whose SANs name more than one identity.
    AmbiguousCertificate,
}

impl Denial {
    /// The `reason` label of `steer_auth_denied_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoCredential => "no_credential",
            Self::UnknownToken => "unknown_token",
            Self::UnknownCertificate => "unknown_certificate",
            Self::AmbiguousCertificate => "ambiguous_certificate",
        }
    }

    /// What the caller is told.
    pub fn why(self) -> &'static str {
        match self {
            Self::NoCredential => "no bearer token (send `authorization: Bearer <token>`)",
            Self::UnknownToken => "unknown bearer token",
            Self::UnknownCertificate => "the client certificate names no known identity",
            Self::AmbiguousCertificate => {
                "the client certificate names more than one identity; each certificate must \
                 name exactly one"
            }
        }
    }
}

impl Authenticator {
    pub fn new(tokens: impl IntoIterator<Item = (String, Identity)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(t, id)| (digest(t.as_bytes()), id))
                .collect(),
            cert_names: Vec::new(),
        }
    }

    /// Also accepts client certificates holding these names as DNS SANs.
    #[must_use]
    pub fn with_cert_names(mut self, names: impl IntoIterator<Item = (String, Identity)>) -> Self {
        self.cert_names = names.into_iter().collect();
        self
    }

    /// Who presents this certificate chain and `authorization` header value.
    /// A certificate naming an identity wins over any token.
    pub fn authenticate(
        &self,
        certs: Option<&[CertificateDer<'static>]>,
        authorization: Option<&str>,
    ) -> Result<&Identity, Denial> {
        let leaf = certs.and_then(<[_]>::first);
        if let Some(leaf) = leaf
            && let Some(id) = self.cert_identity(leaf)?
        {
            return Ok(id);
        }
        match authorization.and_then(|h| h.strip_prefix("Bearer ")) {
            None if leaf.is_some() => Err(Denial::UnknownCertificate),
            None => Err(Denial::NoCredential),
            Some(token) => self
                .token_identity(token.trim().as_bytes())
                .ok_or(Denial::UnknownToken),
        }
    }

    /// The identity whose `cert_name` equals one of the certificate's DNS
    /// SANs, compared exactly (ASCII case aside). Wildcard SANs name nobody:
    /// `*.steer.test` must not become `agent-fra1.steer.test`.
    fn cert_identity(&self, leaf: &CertificateDer<'_>) -> Result<Option<&Identity>, Denial> {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
            return Ok(None);
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Ok(None);
        };
        let dns_names: Vec<&str> = san
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                GeneralName::DNSName(n) if !n.contains('*') => Some(*n),
                _ => None,
            })
            .collect();
        let mut found: Option<&Identity> = None;
        for (name, id) in &self.cert_names {
            if dns_names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                if found.is_some_and(|f| f != id) {
                    return Err(Denial::AmbiguousCertificate);
                }
                found = Some(id);
            }
        }
        Ok(found)
    }

    /// Every token's digest is compared, matching or not.
    fn token_identity(&self, presented: &[u8]) -> Option<&Identity> {
        let presented = digest(presented);
        let mut found = None;
        for (token, id) in &self.tokens {
            if digests_equal(token, &presented) {
                found = Some(id);
            }
        }
        found
    }
}

fn digest(bytes: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equal-length digests, compared without an early exit.
fn digests_equal(a: &Digest, b: &Digest) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Builds the interceptor; `None` means auth is off.
pub fn interceptor(
    auth: Option<SharedAuthenticator>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        let caller = match &auth {
            None => Caller::Open {
                addr: req
                    .remote_addr()
                    .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string()),
            },
            Some(auth) => {
                let certs = req.peer_certs();
                let header = req
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                match auth
                    .load()
                    .authenticate(certs.as_deref().map(Vec::as_slice), header)
                {
                    Ok(id) => Caller::Known(id.clone()),
                    Err(denial) => {
                        metrics::counter!("steer_auth_denied_total", "reason" => denial.label())
                            .increment(1);
                        log_denial(denial, req.remote_addr());
                        Caller::Unknown { why: denial.why() }
                    }
                }
            }
        };
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// One log line per ten seconds at most, with the count of those left out:
/// a flood of bad credentials must not flood the log.
fn log_denial(denial: Denial, peer: Option<SocketAddr>) {
    const EVERY_MS: u64 = 10_000;
    static EPOCH: OnceLock<tokio::time::Instant> = OnceLock::new();
    static NEXT_MS: AtomicU64 = AtomicU64::new(0);
    static LEFT_OUT: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(
        EPOCH
            .get_or_init(tokio::time::Instant::now)
            .elapsed()
            .as_millis(),
    )
    .unwrap_or(u64::MAX);
    let next = NEXT_MS.load(Ordering::Relaxed);
    if now >= next
        && NEXT_MS
            .compare_exchange(
                next,
                now.saturating_add(EVERY_MS),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
    {
        let left_out = LEFT_OUT.swap(0, Ordering::Relaxed);
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        warn!(
            reason = denial.label(),
            %peer,
            similar_refusals_not_logged = left_out,
            "refused a gRPC caller: {}",
            denial.why()
        );
    } else {
        LEFT_OUT.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steer_types::auth::Role;

    fn id(name: &str) -> Identity {
        Identity {
            principal: name.into(),
            role: Some(Role::Viewer),
            pop: None,
        }
    }

    #[test]
    fn tokens_match_whole_and_only_whole() {
        let a = Authenticator::new([("0123456789abcdef".to_owned(), id("vera"))]);
        let ok = a.authenticate(None, Some("Bearer 0123456789abcdef"));
        assert_eq!(ok.map(|i| i.principal.as_str()), Ok("vera"));
        for wrong in [
            "Bearer 0123456789abcde",
            "Bearer 0123456789abcdefX",
            "Bearer ",
            "Bearer 0123456789abcdeF",
        ] {
            assert_eq!(
                a.authenticate(None, Some(wrong)).err(),
                Some(Denial::UnknownToken),
                "{wrong}"
            );
        }
        assert_eq!(a.authenticate(None, None).err(), Some(Denial::NoCredential));
        assert_eq!(
            a.authenticate(None, Some("Basic abc")).err(),
            Some(Denial::NoCredential)
        );
    }

    #[test]
    fn digest_comparison_sees_every_byte() {
        let a = digest(b"x");
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 0x80;
            assert!(!digests_equal(&a, &b));
        }
        assert!(digests_equal(&a, &digest(b"x")));
    }
}
