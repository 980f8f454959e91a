//! Hints for a gRPC endpoint that is not one, shared by steerctl and
//! steer-agent: the usual mistakes are steerd's HTTP port (/metrics,
//! /status) instead of its gRPC port.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The default gRPC port, named in hints.
const GRPC_PORT_HINT: &str = "steerd's gRPC port is `grpc_listen` in its config, 50051 by default";

/// Asks a plain-HTTP endpoint that failed as gRPC whether it speaks
/// HTTP/1: if it answers a `GET /` with an HTTP/1 status line it is a web
/// server, most likely steerd's HTTP listener. Costs one connection, on
/// the failure path only; `None` when it is not that (or not http://).
pub(crate) async fn http1_port(endpoint: &str) -> Option<String> {
    let authority = endpoint.strip_prefix("http://")?.split('/').next()?;
    let ask = async {
        let mut stream = TcpStream::connect(authority).await.ok()?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: steer\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 8];
        stream.read_exact(&mut head).await.ok()?;
        Some(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()??;
    head.starts_with(b"HTTP/1.").then(|| {
        format!(
            "{endpoint} answers HTTP/1, not gRPC: it looks like steerd's HTTP port \
             (/metrics, /status); {GRPC_PORT_HINT}"
        )
    })
}
