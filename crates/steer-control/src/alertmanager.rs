//! Posts SLO alerts to every configured Alertmanager (its v2 API,
//! `POST /api/v2/alerts`), as Prometheus does: each Alertmanager of an HA
//! pair gets every alert, and they deduplicate among themselves.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};
use tracing::{info, warn};

/// One request's deadline.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Longest reply read (Alertmanager answers with a few bytes).
const MAX_REPLY: u64 = 64 * 1024;

/// Sends every batch from `alerts` to each of `alertmanagers` (base URLs,
/// `http://host:port[/prefix]`) until the channel closes.
pub async fn run_sender(
    mut alerts: mpsc::Receiver<Vec<serde_json::Value>>,
    alertmanagers: Vec<String>,
) {
    let mut failing = vec![false; alertmanagers.len()];
    while let Some(batch) = alerts.recv().await {
        let body = match serde_json::to_vec(&batch) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot encode SLO alerts");
                continue;
            }
        };
        for (i, url) in alertmanagers.iter().enumerate() {
            let result = tokio::time::timeout(TIMEOUT, post(url, &body))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}")));
            let label = if result.is_ok() { "ok" } else { "error" };
            metrics::counter!("steer_alertmanager_posts_total", "result" => label).increment(1);
            match result {
                Ok(()) if failing[i] => {
                    failing[i] = false;
                    info!(alertmanager = %url, "Alertmanager reachable again");
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing[i] {
                        warn!(alertmanager = %url, error = %e, alerts = batch.len(), "could not post SLO alerts; firing ones are re-sent every resend interval");
                    }
                    failing[i] = true;
                }
            }
        }
    }
}

/// `http://host:port/prefix` → (host:port, path prefix).
fn split(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?}: only http:// Alertmanagers are supported"))?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    })
}

async fn post(url: &str, body: &[u8]) -> Result<(), String> {
    let (authority, prefix) = split(url)?;
    let mut stream = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let head = format!(
        "POST {prefix}/api/v2/alerts HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: steerd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream
        .write_all(body)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    (&mut stream)
        .take(MAX_REPLY)
        .read_to_end(&mut reply)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&reply);
    let status: u16 = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "no HTTP status line in the reply".to_owned())?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        let detail = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        Err(format!(
            "HTTP {status}: {}",
            detail.chars().take(200).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn posts_each_batch_to_every_alertmanager() {
        let mut servers = Vec::new();
        let mut urls = Vec::new();
        for _ in 0..2 {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            urls.push(format!("http://{}", l.local_addr().expect("addr")));
            servers.push(tokio::spawn(async move {
                let (mut s, _) = l.accept().await.expect("accept");
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // Read until the body (Content-Length) is in.
                loop {
                    let n = s.read(&mut buf).await.expect("read");
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                                .await
                                .expect("reply");
                            return text;
                        }
                    }
                    if n == 0 {
                        return text;
                    }
                }
            }));
        }
        // A third, unreachable one does not stop the others.
        urls.push("http://127.0.0.1:9".into());
        let (tx, rx) = mpsc::channel(4);
        let sender = tokio::spawn(run_sender(rx, urls));
        tx.send(vec![
            serde_json::json!({"labels": {"alertname": "SteerSloBurn"}}),
        ])
        .await
        .expect("send");
        for s in servers {
            let text = s.await.expect("server");
            assert!(text.starts_with("POST /api/v2/alerts HTTP/1.1"), "{text}");
            assert!(
                text.contains(r#"[{"labels":{"alertname":"SteerSloBurn"}}]"#),
                "{text}"
            );
        }
        drop(tx);
        sender.await.expect("sender ends with the channel");
    }
}
