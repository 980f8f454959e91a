//! `steerctl status --edge http://host:port`: an edge runs no operator API,
//! so its plan version, source and age come from its HTTP `/status`
//! (the "edge" section), read with the same token as gRPC calls.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::Failure;

/// Largest `/status` body read (a large world's status fits many times).
const MAX_STATUS_BYTES: u64 = 64 * 1024 * 1024;

/// GETs `/status` from an edge's plain-HTTP listener.
pub(crate) async fn fetch(url: &str, token: Option<&str>) -> Result<serde_json::Value, Failure> {
    let authority = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--edge {url:?}: give the edge's HTTP listener as http://host:port"
            ))
        })?;
    let ask = async {
        let mut stream = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        stream
            .write_all(
                format!("GET /status HTTP/1.0\r\nHost: {authority}\r\n{auth}\r\n").as_bytes(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        stream
            .take(MAX_STATUS_BYTES)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .map_err(|_| Failure::Unreachable(format!("{url}: no answer within 10 s")))?
        .map_err(|e| Failure::Unreachable(format!("{url}: {e}")))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| Failure::Unreachable(format!("{url}: not an HTTP answer")))?;
    let code = head.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(Failure::Refused(format!(
            "{url}/status answered {code}: {}",
            body.trim()
        )));
    }
    let doc: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| Failure::Unreachable(format!("{url}/status is not JSON: {e}")))?;
    match doc.get("edge") {
        Some(edge) => Ok(edge.clone()),
        None => Err(Failure::Usage(format!(
            "{url} is not an edge (its /status has no \"edge\" section); \
             for a controller or --role all, use --endpoint with its gRPC port"
        ))),
    }
}

/// One block for operators.
pub(crate) fn render(url: &str, edge: &serde_json::Value) -> String {
    let s = |k: &str| edge.get(k).and_then(|v| v.as_str()).unwrap_or("-");
    let connected = edge
        .get("controller_connected")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let age = edge
        .get("plan_age_seconds")
        .and_then(serde_json::Value::as_f64)
        .map_or_else(|| "-".to_owned(), |a| format!("{a:.0}s"));
    let mut out = format!(
        "edge {url}\n  plan      {} (sha256 {})\n  source    {}\n  age       {age}{}\n  controller {} ({})\n",
        s("plan_version"),
        s("plan_sha256").get(..16).unwrap_or("-"),
        s("plan_source"),
        if connected {
            ""
        } else {
            "  (no controller answering: serving the plan held)"
        },
        s("controller"),
        if connected {
            "connected"
        } else {
            "disconnected"
        },
    );
    if let Some(e) = edge.get("saved_plan_error").and_then(|v| v.as_str()) {
        out.push_str(&format!("  saved plan NOT USED: {e}\n"));
    }
    out
}
