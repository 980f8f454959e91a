//! TLS on the gRPC listener, terminated here (tokio-rustls) rather than by
//! tonic's `tls_config`, so that reload can swap the certificate, key and
//! client CA: each handshake takes the rustls config in force when the
//! connection arrived (one `ArcSwap` load); connections already open keep
//! the one they started with.
//!
//! Handshakes run in their own tasks with a deadline, so a slow or silent
//! client never holds up the accept loop.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::{RootCertStore, ServerConfig, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use crate::auth::TlsMaterial;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls config new connections get; reload stores a new one.
pub(crate) type SharedTlsConfig = Arc<ArcSwap<ServerConfig>>;

/// A rustls server config from PEM material. With a client CA, client
/// certificates are verified against it but optional at the TLS layer, so a
/// caller without one gets a proper UNAUTHENTICATED status instead of a
/// handshake failure.
pub(crate) fn server_config(material: &TlsMaterial) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(material.cert())
        .collect::<Result<Vec<_>, _>>()
        .context("reading the certificate chain (PEM)")?;
    anyhow::ensure!(
        !certs.is_empty(),
        "the certificate file holds no certificate"
    );
    let key = PrivateKeyDer::from_pem_slice(material.key()).context("reading the private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match material.client_ca() {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                roots
                    .add(cert.context("reading the client CA (PEM)")?)
                    .context("adding the client CA")?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("the certificate does not go with the key")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and yields them once their TLS handshake is
/// done, for tonic's `serve_with_incoming`.
pub(crate) fn incoming(
    listener: TcpListener,
    config: SharedTlsConfig,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while !tx.is_closed() {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Small acks must not wait for Nagle.
            let _ = tcp.set_nodelay(true);
            // A peer that vanished without a FIN is noticed by the kernel.
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(crate::TCP_KEEPALIVE)
                .with_interval(crate::TCP_KEEPALIVE_INTERVAL)
                .with_retries(crate::TCP_KEEPALIVE_RETRIES);
            let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
            let acceptor = TlsAcceptor::from(config.load_full());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
