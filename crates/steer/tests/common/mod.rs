//! Test harness: starts the real binaries on free loopback ports, talks to
//! them with real clients (dig, steerctl, raw HTTP), polls with deadlines,
//! and kills what it started.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub mod governed;
pub mod node;

pub const STEERD: &str = env!("CARGO_BIN_EXE_steerd");
pub const STEERCTL: &str = env!("CARGO_BIN_EXE_steerctl");
pub const AGENT: &str = env!("CARGO_BIN_EXE_steer-agent");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn quickstart() -> PathBuf {
    repo_root().join("configs/quickstart.toml")
}

/// Metrics a quickstart steerd does not have at its first scrape because
/// they belong to a role or a configuration it does not run; each is
/// checked where it exists. Controllers on etcd only (`--role controller`
/// with [cluster]): tests/cluster.rs checks them on a controller's first
/// scrape. Per signed zone (the quickstart signs none): tests/dns_dnssec.rs.
/// Per SLO with budget-aware steering (the quickstart's has none):
/// tests/slo_steering.rs. Per change request: tests/changes.rs. Per
/// webhook (the quickstart has none): tests/notify.rs.
pub fn only_in_other_setups(metric: &str) -> bool {
    metric == "steer_change_state"
        || [
            "steer_cluster_",
            "steer_dnssec_",
            "steer_slo_steering_",
            "steer_notify_",
        ]
        .iter()
        .any(|prefix| metric.starts_with(prefix))
}

/// A port free for both TCP and UDP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// A fresh directory under the target dir, unique per test.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "steer-it-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a file only its owner may read or write (mode 0600), as steerd
/// and steer-agent demand of secrets: tokens files, token files, keys.
pub fn write_private(path: &Path, contents: impl AsRef<[u8]>) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    f.write_all(contents.as_ref()).unwrap();
}

/// Polls `f` every 50 ms until it returns `Some` or `within` passes.
pub fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Steerd {
    pub proc: Proc,
    pub dns: u16,
    pub grpc: u16,
    pub http: u16,
    pub state_dir: PathBuf,
    pub config: PathBuf,
}

impl Steerd {
    pub fn start(name: &str) -> Self {
        Self::start_with(quickstart(), temp_dir(name).join("state"))
    }

    pub fn start_with(config: PathBuf, state_dir: PathBuf) -> Self {
        Self::start_with_args(config, state_dir, &[])
    }

    /// As [`Steerd::start_with`], with more steerd flags.
    pub fn start_with_args(config: PathBuf, state_dir: PathBuf, extra: &[&str]) -> Self {
        // A port picked free can be taken by a parallel test before steerd
        // binds it: retry with fresh ports when that is why it exited.
        for attempt in 1..=3 {
            match Self::try_start(&config, &state_dir, extra) {
                Ok(s) => return s,
                Err(log) if log.contains("in use") && attempt < 3 => continue,
                Err(log) => panic!("steerd exited early:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn try_start(
        config: &std::path::Path,
        state_dir: &std::path::Path,
        extra: &[&str],
    ) -> Result<Self, String> {
        let (dns, grpc, http) = (free_port(), free_port(), free_port());
        let log = state_dir.with_extension("steerd.log");
        let proc = Proc::spawn(
            steerd_command(config, state_dir, [dns, grpc, http]).args(extra),
            log,
        );
        let mut s = Self {
            proc,
            dns,
            grpc,
            http,
            state_dir: state_dir.to_path_buf(),
            config: config.to_path_buf(),
        };
        let mut exited = None;
        let ready = poll(Duration::from_secs(20), || {
            if let Ok(Some(status)) = s.proc.child.try_wait() {
                exited = Some(format!("({status})\n{}", s.proc.log_text()));
                return Some(false);
            }
            let healthy = http_get(s.http, "/healthz").is_some_and(|(code, _)| code == 200);
            (healthy
                && s.dig(&["www.example.test", "A", "+short"])
                    .contains("192.0.2.80"))
            .then_some(true)
        });
        if let Some(log) = exited {
            return Err(log);
        }
        assert!(
            ready == Some(true),
            "steerd not ready:\n{}",
            s.proc.log_text()
        );
        Ok(s)
    }

    /// Kills steerd with SIGKILL and starts it again with the same config
    /// and state directory, on fresh ports (the old ones may linger):
    /// re-read `endpoint()`, `dns` and `http` from the returned value.
    pub fn restart_after_kill9(self) -> Self {
        let Self {
            mut proc,
            state_dir,
            config,
            ..
        } = self;
        proc.kill();
        drop(proc);
        Self::start_with(config, state_dir)
    }

    /// One series' value from /metrics (`name{labels}` as printed).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, metrics) = http_get(self.http, "/metrics")?;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    /// Runs dig against this server; returns stdout.
    pub fn dig(&self, args: &[&str]) -> String {
        dig(self.dns, args)
    }

    /// Sorted addresses answered for `name`/`qtype` with `+subnet=subnet`.
    pub fn answers(&self, name: &str, qtype: &str, subnet: &str) -> Vec<String> {
        let out = self.dig(&[name, qtype, &format!("+subnet={subnet}"), "+short"]);
        sorted_lines(&out)
    }

    pub fn steerctl(&self, args: &[&str]) -> Output {
        Command::new(STEERCTL)
            .arg("--endpoint")
            .arg(self.endpoint())
            .args(args)
            .output()
            .unwrap()
    }

    /// Polls until EU-region answers for app equal `expected` (sorted).
    pub fn wait_answers(
        &self,
        subnet: &str,
        expected: &[&str],
        within: Duration,
    ) -> Result<(), Vec<String>> {
        let mut last = Vec::new();
        let ok = poll(within, || {
            last = self.answers("app.example.test", "A", subnet);
            (last == expected).then_some(())
        });
        ok.ok_or(last)
    }
}

/// The non-empty lines of `dig +short` output, trimmed and sorted.
pub fn sorted_lines(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

pub fn dig(port: u16, args: &[&str]) -> String {
    let run = || {
        let out = Command::new("dig")
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .args(["+time=2", "+tries=1"])
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run dig (install bind9-dnsutils; .ci/run does): {e}")
            });
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run();
    // Seen once in ten runs of the operator suite under parallel load and
    // not reproduced alone (600 queries): a reply without QR. Not yet
    // explained; retried once here, and said loudly, so it stays visible in
    // the test log while it is tracked down (see the session note).
    if first.contains("query response not set") {
        eprintln!("dig: a reply without QR from 127.0.0.1:{port} ({args:?}); retrying once");
        return run();
    }
    first
}

pub fn kdig(port: u16, args: &[&str]) -> String {
    let out = Command::new("kdig")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(["+time=2", "+retry=0"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kdig (install knot-dnsutils; .ci/run does): {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Minimal HTTP/1.0 GET on loopback; returns (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_as(port, path, None)
}

/// As [`http_get`], with `Authorization: Bearer <token>` when given
/// (`/status` asks for a viewer token when auth is on).
pub fn http_get_as(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// A PoP's report of service `app` up or down, capacity 10,000 rps.
pub fn app_report(pop: &str, sequence: u64, up: bool) -> steer_proto::v1::HealthReport {
    use steer_proto::v1::{HealthReport, ServiceHealth, ServiceStatus};
    HealthReport {
        pop: pop.into(),
        sequence,
        services: vec![ServiceHealth {
            service: "app".into(),
            status: if up {
                ServiceStatus::Up
            } else {
                ServiceStatus::Down
            }
            .into(),
            ..Default::default()
        }],
        capacity_rps: 10_000.0,
        ..Default::default()
    }
}

/// Every listed PoP reports `app` up with the given load (capacity 10,000
/// rps), one short stream each; panics unless every report is accepted.
pub fn report_up(endpoint: &str, loads: &[(&str, f64)]) {
    report_up_at(endpoint, 1, loads);
}

/// As [`report_up`], with the reports' sequence number (later reports of
/// the same agent need a higher one).
pub fn report_up_at(endpoint: &str, sequence: u64, loads: &[(&str, f64)]) {
    use steer_proto::v1::{HealthReport, health_ingest_client::HealthIngestClient};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = HealthIngestClient::connect(endpoint.to_owned())
            .await
            .unwrap();
        for (pop, load) in loads {
            let report = HealthReport {
                load_rps: *load,
                agent_instance: 7,
                ..app_report(pop, sequence, true)
            };
            let mut acks = client
                .report(tokio_stream::iter([report]))
                .await
                .unwrap()
                .into_inner();
            let ack = tokio_stream::StreamExt::next(&mut acks).await.unwrap();
            assert!(ack.unwrap().accepted, "report for {pop} refused");
        }
    });
}

/// `steerd` with `config`, `state_dir` and its DNS, gRPC and HTTP listeners
/// on these loopback ports; add flags, then spawn.
pub fn steerd_command(config: &Path, state_dir: &Path, [dns, grpc, http]: [u16; 3]) -> Command {
    let mut cmd = Command::new(STEERD);
    cmd.arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--dns-listen", &format!("127.0.0.1:{dns}")])
        .args(["--grpc-listen", &format!("127.0.0.1:{grpc}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")]);
    cmd
}
