//! Request counters for SLIs, read from the edge proxy's Prometheus
//! endpoint every report interval ([[sli]] in the agent config).
//!
//! The counters are forwarded as the proxy exposes them (cumulative); the
//! controller turns them into increments and handles resets. A read that
//! fails, or a selector that matches nothing, reports no counters for that
//! service: no data never counts as good traffic.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use steer_config::{AgentConfig, SliSource};
use steer_slo::promtext::{Selector, sum};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tracing::warn;

/// Largest metrics page read (HAProxy's exporter with many proxies runs to
/// a few MiB); a longer one is cut and reported.
const MAX_PAGE: u64 = 16 * 1024 * 1024;

/// Counters as last read, per service.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Reading {
    pub(crate) total: u64,
    pub(crate) failed: u64,
    pub(crate) slow: Option<u64>,
}

pub(crate) type SharedReadings = Arc<Mutex<BTreeMap<String, Reading>>>;

struct Compiled {
    source: SliSource,
    total: Selector,
    errors: Selector,
    /// `_count` and `_bucket{le}` of the latency histogram.
    latency: Option<(Selector, Selector)>,
}

fn compile(source: &SliSource) -> Result<Compiled, String> {
    let latency = match &source.latency {
        Some((histogram, le)) => {
            let base = Selector::parse(histogram)?;
            let name = base.name.clone();
            Some((
                base.with_name(&format!("{name}_count")),
                base.with_name(&format!("{name}_bucket"))
                    .with_label("le", le),
            ))
        }
        None => None,
    };
    Ok(Compiled {
        source: source.clone(),
        total: Selector::parse(&source.total)?,
        errors: Selector::parse(&source.errors)?,
        latency,
    })
}

pub(crate) fn start(config: &AgentConfig) -> SharedReadings {
    let shared = SharedReadings::default();
    for source in &config.sli {
        match compile(source) {
            Ok(c) => {
                tokio::spawn(run(c, config.report_interval, shared.clone()));
            }
            // The config check parsed these selectors already.
            Err(e) => warn!(service = %source.service, error = %e, "[[sli]] selector refused"),
        }
    }
    shared
}

pub(crate) fn current(shared: &SharedReadings) -> BTreeMap<String, Reading> {
    shared.lock().map(|m| m.clone()).unwrap_or_default()
}

async fn run(sli: Compiled, interval: Duration, shared: SharedReadings) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        let read = tokio::time::timeout(sli.source.timeout, fetch(&sli.source))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", sli.source.timeout)))
            .and_then(|page| reading(&sli, &page));
        let mut map = match shared.lock() {
            Ok(m) => m,
            Err(e) => e.into_inner(),
        };
        match read {
            Ok(r) => {
                map.insert(sli.source.service.clone(), r);
                failing = false;
            }
            Err(e) => {
                map.remove(&sli.source.service);
                if !failing {
                    warn!(service = %sli.source.service, url = %format!("http://{}{}", sli.source.host, sli.source.path), error = %e, "SLI counters not read; reporting none until they are");
                }
                failing = true;
            }
        }
    }
}

/// The counters from one metrics page.
fn reading(sli: &Compiled, page: &str) -> Result<Reading, String> {
    let count = |s: &Selector| -> Result<u64, String> {
        let v = sum(page, s).ok_or_else(|| format!("no sample matches {s}"))?;
        Ok(v.max(0.0).floor() as u64)
    };
    let total = count(&sli.total)?;
    // No failed sample at all is common (a proxy exposes 5xx only once one
    // happened); zero failures then.
    let failed = sum(page, &sli.errors).map_or(0, |v| v.max(0.0).floor() as u64);
    let slow = match &sli.latency {
        Some((all, fast)) => Some(count(all)?.saturating_sub(count(fast)?)),
        None => None,
    };
    Ok(Reading {
        total,
        failed: failed.min(total),
        slow: slow.map(|s| s.min(total)),
    })
}

/// GETs the metrics page (HTTP/1.0, so the body ends at close).
async fn fetch(source: &SliSource) -> Result<String, String> {
    let mut stream = TcpStream::connect(source.addr)
        .await
        .map_err(|e| format!("{}: {e}", source.addr))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: steer-agent\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        source.path, source.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut body = Vec::new();
    (&mut stream)
        .take(MAX_PAGE + 1)
        .read_to_end(&mut body)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if body.len() as u64 > MAX_PAGE {
        return Err(format!("metrics page longer than {} MiB", MAX_PAGE >> 20));
    }
    let split = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "no HTTP header end in the response".to_owned())?;
    let head = String::from_utf8_lossy(&body[..split]).into_owned();
    let raw = &body[split + 4..];
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "no HTTP status line in the response".to_owned())?;
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    // HAProxy's exporter answers chunked even to HTTP/1.0.
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let page = if chunked { dechunk(raw)? } else { raw.to_vec() };
    Ok(String::from_utf8_lossy(&page).into_owned())
}

/// The body of a chunked transfer (RFC 9112 7.1): size lines in hex
/// (extensions ignored), data, CRLF, until the zero-size chunk.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| "chunked body: no chunk size line".to_owned())?;
        let line = std::str::from_utf8(&raw[..line_end])
            .map_err(|_| "chunked body: bad size line".to_owned())?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| format!("chunked body: bad chunk size {hex:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size {
            return Err("chunked body: cut short".into());
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw[size..].strip_prefix(b"\r\n").unwrap_or(&raw[size..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(latency: bool) -> Compiled {
        let source = SliSource {
            service: "app".into(),
            addr: "127.0.0.1:1".parse().expect("addr"),
            host: "127.0.0.1:1".into(),
            path: "/metrics".into(),
            total: r#"requests_total{proxy="app"}"#.into(),
            errors: r#"requests_total{proxy="app",code=~"5.."}"#.into(),
            latency: latency.then(|| ("latency_seconds".into(), "0.3".into())),
            timeout: Duration::from_secs(1),
        };
        compile(&source).expect("compiles")
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"4\r\nabc \r\n3;ext=1\r\ndef\r\n0\r\n\r\n"),
            Ok(b"abc def".to_vec())
        );
        assert!(dechunk(b"10\r\nshort\r\n").is_err());
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[test]
    fn counters_from_a_page() {
        let page = "requests_total{proxy=\"app\",code=\"200\"} 90\nrequests_total{proxy=\"app\",code=\"503\"} 10\nlatency_seconds_bucket{le=\"0.3\"} 70\nlatency_seconds_count 100\n";
        assert_eq!(
            reading(&compiled(true), page),
            Ok(Reading {
                total: 100,
                failed: 10,
                slow: Some(30)
            })
        );
        // No 5xx sample yet: zero failures, not "no data".
        let clean = "requests_total{proxy=\"app\",code=\"200\"} 90\n";
        assert_eq!(reading(&compiled(false), clean).map(|r| r.failed), Ok(0));
        // No total at all: no data.
        assert!(reading(&compiled(false), "other 1\n").is_err());
    }
}
