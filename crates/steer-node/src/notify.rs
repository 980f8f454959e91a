//! Webhooks for timeline events (`[[notify.webhooks]]`). A reader takes new
//! events off the timeline twice a second and queues each webhook's share
//! (bounded: past the bound the oldest are dropped and counted); a sender
//! per webhook posts them, retrying with backoff while the endpoint fails.
//! Nothing here can hold up the control loop: it only writes the timeline.
//! A clustered follower sends nothing (the leader does).

use std::{collections::VecDeque, sync::Arc, time::Duration};

use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use steer_config::{WebhookFormat, WebhookSettings};
use steer_types::timeline::{TimelineEvent, TimelineHandle, TimelineQuery};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
};
use tracing::{info, warn};

/// How often new timeline events are picked up.
const READ_EVERY: Duration = Duration::from_millis(500);
/// Events per post in the JSON format.
const JSON_BATCH: usize = 50;
/// Backoff while an endpoint fails: doubling from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// Longest reply read.
const MAX_REPLY: u64 = 16 * 1024;

/// Whether this node sends (a clustered follower does not).
pub(crate) type Active = Arc<dyn Fn() -> bool + Send + Sync>;

struct Queue {
    events: std::sync::Mutex<VecDeque<TimelineEvent>>,
    ready: Notify,
}

/// Registers the webhooks' series at zero and starts the reader and one
/// sender per webhook.
pub(crate) fn spawn(hooks: Vec<WebhookSettings>, timeline: TimelineHandle, active: Active) {
    if hooks.is_empty() {
        return;
    }
    let mut queues = Vec::new();
    for hook in hooks {
        for result in ["ok", "error"] {
            metrics::counter!("steer_notify_deliveries_total", "webhook" => hook.name.clone(), "result" => result)
                .absolute(0);
        }
        metrics::counter!("steer_notify_dropped_total", "webhook" => hook.name.clone()).absolute(0);
        metrics::gauge!("steer_notify_queue", "webhook" => hook.name.clone()).set(0.0);
        let tls = match hook.url.https.then(|| client_config(&hook)).transpose() {
            Ok(tls) => tls,
            Err(e) => {
                warn!(webhook = %hook.name, error = %e, "webhook TLS setup failed; it will not be sent to");
                continue;
            }
        };
        let queue = Arc::new(Queue {
            events: std::sync::Mutex::new(VecDeque::new()),
            ready: Notify::new(),
        });
        queues.push((hook.clone(), queue.clone()));
        tokio::spawn(send(hook, queue, tls));
    }
    tokio::spawn(read(timeline, queues, active));
}

async fn read(
    timeline: TimelineHandle,
    queues: Vec<(WebhookSettings, Arc<Queue>)>,
    active: Active,
) {
    // From now on: a restart does not send the history again.
    let mut last = timeline.lock().ok().and_then(|t| t.next_seq.checked_sub(1));
    let mut tick = tokio::time::interval(READ_EVERY);
    loop {
        tick.tick().await;
        let fresh = {
            let Ok(t) = timeline.lock() else { return };
            // A new leader's timeline replaced this one: start at its end.
            if last.is_some_and(|l| l >= t.next_seq) {
                last = t.next_seq.checked_sub(1);
            }
            t.query(&TimelineQuery {
                after_seq: last,
                ..TimelineQuery::default()
            })
        };
        let Some(newest) = fresh.last() else { continue };
        last = Some(newest.seq);
        if !active() {
            continue;
        }
        for (hook, queue) in &queues {
            let mut added = false;
            if let Ok(mut q) = queue.events.lock() {
                for e in fresh.iter().filter(|e| hook.wants(e)) {
                    if q.len() >= hook.queue {
                        q.pop_front();
                        metrics::counter!("steer_notify_dropped_total", "webhook" => hook.name.clone())
                            .increment(1);
                    }
                    q.push_back(e.clone());
                    added = true;
                }
                metrics::gauge!("steer_notify_queue", "webhook" => hook.name.clone())
                    .set(q.len() as f64);
            }
            if added {
                queue.ready.notify_one();
            }
        }
    }
}

async fn send(hook: WebhookSettings, queue: Arc<Queue>, tls: Option<Arc<ClientConfig>>) {
    let mut backoff = BACKOFF.0;
    let mut failing = false;
    loop {
        let batch: Vec<TimelineEvent> = match queue.events.lock() {
            Ok(q) => {
                let n = match hook.format {
                    WebhookFormat::Json => JSON_BATCH,
                    WebhookFormat::Slack => 1,
                };
                q.iter().take(n).cloned().collect()
            }
            Err(_) => return,
        };
        let Some(newest) = batch.last().map(|e| e.seq) else {
            queue.ready.notified().await;
            continue;
        };
        let body = payload(&hook, &batch);
        let result = tokio::time::timeout(hook.timeout, post(&hook, tls.as_ref(), &body))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", hook.timeout)));
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("steer_notify_deliveries_total", "webhook" => hook.name.clone(), "result" => label)
            .increment(1);
        match result {
            Ok(()) => {
                if failing {
                    info!(webhook = %hook.name, "webhook reachable again");
                }
                failing = false;
                backoff = BACKOFF.0;
                if let Ok(mut q) = queue.events.lock() {
                    // The reader may have dropped some meanwhile.
                    while q.front().is_some_and(|e| e.seq <= newest) {
                        q.pop_front();
                    }
                    metrics::gauge!("steer_notify_queue", "webhook" => hook.name.clone())
                        .set(q.len() as f64);
                }
            }
            Err(e) => {
                // The URL may hold a secret: the webhook is named, not shown.
                if !failing {
                    warn!(webhook = %hook.name, error = %e, "webhook post failed; retried with backoff");
                }
                failing = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn payload(hook: &WebhookSettings, events: &[TimelineEvent]) -> Vec<u8> {
    let value = match hook.format {
        WebhookFormat::Json => serde_json::json!({
            "source": "steerd",
            "events": events.iter().map(|e| serde_json::json!({
                "seq": e.seq,
                "at": e.at.rfc3339(),
                "at_unix_ms": e.at.unix_ms(),
                "kind": e.kind.as_str(),
                "scope": e.scope,
                "principal": e.principal,
                "summary": e.summary,
                "detail": e.detail,
            })).collect::<Vec<_>>(),
        }),
        WebhookFormat::Slack => {
            let lines: Vec<String> = events
                .iter()
                .map(|e| {
                    let mut line =
                        format!("*[steer] {}* {}", e.kind.as_str(), slack_escape(&e.summary));
                    if let Some(p) = &e.principal {
                        line.push_str(&format!(" (by {})", slack_escape(p)));
                    }
                    if !e.detail.trim().is_empty() {
                        line.push_str(&format!("\n&gt; {}", slack_escape(e.detail.trim())));
                    }
                    line
                })
                .collect();
            serde_json::json!({ "text": lines.join("\n") })
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

fn client_config(hook: &WebhookSettings) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &hook.ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

async fn post(
    hook: &WebhookSettings,
    tls: Option<&Arc<ClientConfig>>,
    body: &[u8],
) -> Result<(), String> {
    let url = &hook.url;
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    match tls {
        None => exchange(tcp, hook, body).await,
        Some(config) => {
            let name =
                ServerName::try_from(url.host.clone()).map_err(|e| format!("server name: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(stream, hook, body).await
        }
    }
}

/// One HTTP/1.1 POST on `stream`; Ok for a 2xx answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    hook: &WebhookSettings,
    body: &[u8],
) -> Result<(), String> {
    let url = &hook.url;
    let default_port = if url.https { 443 } else { 80 };
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let host = if url.port == default_port {
        host
    } else {
        format!("{host}:{}", url.port)
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: steerd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        url.path,
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
    stream.flush().await.map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    // A server may close without TLS close_notify: what was read counts.
    let _ = (&mut stream).take(MAX_REPLY).read_to_end(&mut reply).await;
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
        Err(format!("HTTP {status}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use steer_types::{Timestamp, timeline::EventKind};

    use super::*;

    fn hook(format: WebhookFormat) -> WebhookSettings {
        WebhookSettings {
            name: "ops".into(),
            url: steer_config::WebhookUrl::parse("http://127.0.0.1:9/hook").unwrap(),
            kinds: Vec::new(),
            scope: None,
            format,
            ca_file: None,
            timeout: Duration::from_secs(1),
            queue: 10,
        }
    }

    fn event() -> TimelineEvent {
        TimelineEvent {
            seq: 4,
            at: Timestamp(1_796_000_000_000),
            kind: EventKind::Intent,
            scope: vec!["fra1".into()],
            principal: Some("alice".into()),
            summary: "drain pop fra1: <disk> & fans".into(),
            detail: "drain-3".into(),
        }
    }

    #[test]
    fn payloads_carry_the_event_in_either_format() {
        let json: serde_json::Value =
            serde_json::from_slice(&payload(&hook(WebhookFormat::Json), &[event()])).unwrap();
        assert_eq!(json["events"][0]["kind"], "intent");
        assert_eq!(json["events"][0]["principal"], "alice");
        assert_eq!(json["events"][0]["at"], "2026-11-30T00:53:20.000Z");
        let slack: serde_json::Value =
            serde_json::from_slice(&payload(&hook(WebhookFormat::Slack), &[event()])).unwrap();
        assert_eq!(
            slack["text"],
            "*[steer] intent* drain pop fra1: &lt;disk&gt; &amp; fans (by alice)\n&gt; drain-3"
        );
    }

    #[test]
    fn plan_events_go_only_where_asked() {
        let mut e = event();
        e.kind = EventKind::Plan;
        assert!(!hook(WebhookFormat::Json).wants(&e));
        let mut h = hook(WebhookFormat::Json);
        h.kinds = vec![EventKind::Plan];
        assert!(h.wants(&e));
        h.scope = Some("ams1".into());
        assert!(!h.wants(&e));
    }
}
