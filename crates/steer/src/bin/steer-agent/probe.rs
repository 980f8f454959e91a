//! Probes and their rise/fall state machines. Each probe runs on its own
//! interval; results land on a shared board that the reporters read.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use steer_config::{AgentConfig, HttpProbe, ProbeConfig, ProbeKind};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
};
use tracing::info;

use crate::{exec, https};

/// A probe's settled state; changes only after `rise`/`fall` agreeing results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeState {
    /// No result yet.
    Pending,
    Up {
        failures: u32,
    },
    Down {
        successes: u32,
    },
}

impl ProbeState {
    fn next(self, ok: bool, rise: u32, fall: u32) -> Self {
        match (self, ok) {
            (Self::Pending, true) => Self::Up { failures: 0 },
            (Self::Pending, false) => Self::Down { successes: 0 },
            (Self::Up { .. }, true) => Self::Up { failures: 0 },
            (Self::Up { failures }, false) if failures + 1 >= fall => Self::Down { successes: 0 },
            (Self::Up { failures }, false) => Self::Up {
                failures: failures + 1,
            },
            (Self::Down { .. }, false) => Self::Down { successes: 0 },
            (Self::Down { successes }, true) if successes + 1 >= rise => Self::Up { failures: 0 },
            (Self::Down { successes }, true) => Self::Down {
                successes: successes + 1,
            },
        }
    }

    pub(crate) fn is_up(self) -> Option<bool> {
        match self {
            Self::Pending => None,
            Self::Up { .. } => Some(true),
            Self::Down { .. } => Some(false),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ProbeStatus {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) service: String,
    pub(crate) state: ProbeState,
    pub(crate) detail: String,
    pub(crate) latency: Duration,
}

/// Latest status of every probe, plus a change counter that reporters watch
/// to send a report as soon as a settled state flips.
#[derive(Clone)]
pub(crate) struct Board {
    pub(crate) probes: Arc<Mutex<BTreeMap<String, ProbeStatus>>>,
    pub(crate) changed: watch::Receiver<u64>,
}

impl Board {
    pub(crate) fn snapshot(&self) -> Vec<ProbeStatus> {
        self.probes
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl Board {
    /// Returns once every probe has a first result. A report sent before
    /// that would say nothing about the pending probes' services, which
    /// steerd reads as a reachable PoP: up, then down a moment later when
    /// the probe fails, a spurious flap that also feeds damping. Every
    /// probe has a result within its timeout, so this ends.
    pub(crate) async fn first_results(&self) {
        let mut changed = self.changed.clone();
        while self
            .snapshot()
            .iter()
            .any(|p| p.state == ProbeState::Pending)
        {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Starts the service probes.
pub(crate) fn start(config: &AgentConfig) -> Board {
    start_probes(&config.probes)
}

/// Starts the peer probes; each status's `service` is the PoP probed.
pub(crate) fn start_peers(config: &AgentConfig) -> Board {
    let probes: Vec<ProbeConfig> = config
        .peers
        .iter()
        .map(|p| ProbeConfig {
            service: p.pop.clone(),
            ..p.probe.clone()
        })
        .collect();
    start_probes(&probes)
}

fn start_probes(configs: &[ProbeConfig]) -> Board {
    let probes = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, rx) = watch::channel(0u64);
    let tx = Arc::new(tx);
    for p in configs {
        if let Ok(mut m) = probes.lock() {
            m.insert(
                p.name.clone(),
                ProbeStatus {
                    name: p.name.clone(),
                    kind: p.kind.label(),
                    service: p.service.clone(),
                    state: ProbeState::Pending,
                    detail: "not run yet".into(),
                    latency: Duration::ZERO,
                },
            );
        }
        tokio::spawn(run_probe(p.clone(), probes.clone(), tx.clone()));
    }
    Board {
        probes,
        changed: rx,
    }
}

async fn run_probe(
    cfg: ProbeConfig,
    board: Arc<Mutex<BTreeMap<String, ProbeStatus>>>,
    changed: Arc<watch::Sender<u64>>,
) {
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Built once; a broken TLS setup makes every check fail with the reason.
    let tls = match &cfg.kind {
        ProbeKind::Http(HttpProbe { tls: Some(t), .. }) => Some(https::client_config(t)),
        _ => None,
    };
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let result = tokio::time::timeout(cfg.timeout, check(&cfg.kind, tls.as_ref())).await;
        let latency = started.elapsed();
        let (ok, detail) = match result {
            Ok(Ok(detail)) => (true, detail),
            Ok(Err(detail)) => (false, detail),
            Err(_) => (
                false,
                format!("timed out after {}ms", cfg.timeout.as_millis()),
            ),
        };
        let flipped = match board.lock() {
            Ok(mut m) => match m.get_mut(&cfg.name) {
                Some(st) => {
                    let before = st.state.is_up();
                    st.state = st.state.next(ok, cfg.rise, cfg.fall);
                    st.detail = detail.clone();
                    st.latency = latency;
                    (before != st.state.is_up()).then_some(st.state.is_up())
                }
                None => None,
            },
            Err(_) => None,
        };
        if let Some(now_up) = flipped {
            info!(probe = %cfg.name, up = ?now_up, %detail, "probe state changed");
            changed.send_modify(|n| *n += 1);
        }
    }
}

/// Runs one check; `Ok(detail)` when healthy, `Err(detail)` otherwise.
async fn check(kind: &ProbeKind, tls: Option<&TlsSetup>) -> Result<String, String> {
    match kind {
        ProbeKind::Tcp { target } => TcpStream::connect(target)
            .await
            .map(|_| format!("{target} connected"))
            .map_err(|e| format!("{target}: {e}")),
        ProbeKind::Http(h) => http_check(h, tls).await,
        ProbeKind::Exec { command } => exec_check(command).await,
    }
}

type TlsSetup = Result<Arc<rustls::ClientConfig>, String>;

async fn http_check(h: &HttpProbe, tls: Option<&TlsSetup>) -> Result<String, String> {
    let stream = TcpStream::connect(h.addr)
        .await
        .map_err(|e| format!("{}: {e}", h.addr))?;
    match (&h.tls, tls) {
        (Some(t), Some(Ok(config))) => {
            let stream = https::wrap(stream, config, &t.server_name).await?;
            http_exchange(h, stream).await
        }
        (Some(_), Some(Err(e))) => Err(format!("TLS setup: {e}")),
        _ => http_exchange(h, stream).await,
    }
}

async fn http_exchange(
    h: &HttpProbe,
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
) -> Result<String, String> {
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: steer-agent\r\nConnection: close\r\n\r\n",
        h.path, h.host
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut body = Vec::new();
    // Cap the read: a health page is small, and a huge one must not hurt us.
    // A TLS peer closing without close_notify is fine once we have the body.
    let read = (&mut stream).take(64 * 1024).read_to_end(&mut body).await;
    if let Err(e) = read
        && body.is_empty()
    {
        return Err(format!("read: {e}"));
    }
    let text = String::from_utf8_lossy(&body);
    let status: u16 = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "no HTTP status line in response".to_owned())?;
    if status != h.expect_status {
        return Err(format!("HTTP {status}, expected {}", h.expect_status));
    }
    if let Some(needle) = &h.body_contains
        && !text.contains(needle.as_str())
    {
        return Err(format!("HTTP {status} but body lacks {needle:?}"));
    }
    Ok(format!("HTTP {status}"))
}

/// The probe's own timeout bounds it; dropping the future kills the
/// command's whole process group (see `exec`).
async fn exec_check(command: &[String]) -> Result<String, String> {
    let (status, _) = exec::run(command, Duration::MAX, false)
        .await
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok("exit 0".into())
    } else {
        Err(format!(
            "{}: {status}",
            command.first().map_or("", String::as_str)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exec_probes_report_the_exit_status() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(exec_check(&argv(&["true"])).await, Ok("exit 0".to_owned()));
        assert!(exec_check(&argv(&["false"])).await.is_err());
        assert!(exec_check(&[]).await.is_err());
    }

    #[test]
    fn rise_and_fall() {
        let s = ProbeState::Pending.next(true, 2, 2);
        assert_eq!(s.is_up(), Some(true));
        let s = s.next(false, 2, 2);
        assert_eq!(s.is_up(), Some(true));
        let s = s.next(false, 2, 2);
        assert_eq!(s.is_up(), Some(false));
        let s = s.next(true, 2, 2);
        assert_eq!(s.is_up(), Some(false));
        assert_eq!(s.next(true, 2, 2).is_up(), Some(true));
    }
}
