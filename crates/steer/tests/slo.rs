//! SLOs end to end with real peers: HAProxy (its built-in Prometheus
//! exporter) in front of a backend that can be told to fail, steer-agent
//! reading HAProxy's counters, steerd judging the SLO, and a real
//! Alertmanager receiving the page and its resolution.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;

fn which(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(bin).is_file()))
        || Path::new("/usr/sbin").join(bin).is_file()
}

/// A backend that answers 200, or 500 after `GET /fail-on` (until
/// `GET /fail-off`).
fn backend(dir: &Path, port: u16) -> Proc {
    let script = dir.join("backend.py");
    std::fs::write(
        &script,
        "import http.server, sys\n\
         failing = False\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       global failing\n\
         \x20       if self.path == '/fail-on': failing = True\n\
         \x20       if self.path == '/fail-off': failing = False\n\
         \x20       code = 500 if failing and not self.path.startswith('/fail') else 200\n\
         \x20       self.send_response(code)\n\
         \x20       self.send_header('Content-Length', '2')\n\
         \x20       self.end_headers()\n\
         \x20       self.wfile.write(b'ok')\n\
         \x20   def log_message(self, *a): pass\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n",
    )
    .unwrap();
    Proc::spawn(
        Command::new("python3").arg(&script).arg(port.to_string()),
        dir.join("backend.log"),
    )
}

fn haproxy(dir: &Path, front: u16, back: u16, metrics: u16) -> Proc {
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 256\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\n\
             frontend app\n  bind 127.0.0.1:{front}\n  default_backend app\n\
             backend app\n  server b1 127.0.0.1:{back}\n\
             frontend metrics\n  bind 127.0.0.1:{metrics}\n  http-request use-service prometheus-exporter if {{ path /metrics }}\n"
        ),
    )
    .unwrap();
    Proc::spawn(
        Command::new("haproxy").arg("-db").arg("-f").arg(&cfg),
        dir.join("haproxy.log"),
    )
}

fn alertmanager(dir: &Path, port: u16) -> Proc {
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: 'null'\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: 'null'\n",
    )
    .unwrap();
    Proc::spawn(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
        dir.join("alertmanager.log"),
    )
}

fn get(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// This test's SLO's alerts Alertmanager holds as active (the
/// quickstart's own SLO, with the Workbook's slower windows, may page too).
fn active_pages(am: u16) -> Vec<serde_json::Value> {
    let Some((200, body)) = http_get(
        am,
        "/api/v2/alerts?active=true&silenced=false&inhibited=false",
    ) else {
        return Vec::new();
    };
    let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
    all.into_iter()
        .filter(|a| {
            a["labels"]["alertname"] == "SteerSloBurn"
                && a["labels"]["slo"] == "app-edge-errors"
                && a["status"]["state"] == "active"
        })
        .collect()
}

fn metric(s: &Steerd, series: &str) -> Option<f64> {
    let (_, body) = http_get(s.http, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn an_error_burst_pages_through_alertmanager_and_resolves() {
    for bin in ["haproxy", "prometheus-alertmanager"] {
        assert!(
            which(bin),
            "{bin} is not installed (scripts/test installs haproxy and prometheus-alertmanager)"
        );
    }
    let dir = temp_dir("slo-e2e");
    let (front, back, hmetrics, am_port) = (free_port(), free_port(), free_port(), free_port());
    let _backend = backend(&dir, back);
    let _haproxy = haproxy(&dir, front, back, hmetrics);
    let _am = alertmanager(&dir, am_port);
    assert!(
        poll(Duration::from_secs(20), || http_get(am_port, "/-/ready")
            .filter(|r| r.0 == 200))
        .is_some(),
        "Alertmanager not ready"
    );
    assert!(
        poll(Duration::from_secs(20), || get(front, "/")
            .filter(|c| *c == 200))
        .is_some(),
        "HAProxy or the backend not up"
    );

    let config = std::fs::read_to_string(quickstart()).unwrap()
        + &format!(
            "\n[[slos]]\nname = \"app-edge-errors\"\nservice = \"app\"\nobjective = 0.99\nmin_events = 20\n\
             runbook = \"https://runbooks.example/app\"\n\
             [[slos.alerts]]\nseverity = \"page\"\nburn_rate = 5\nlong = \"30s\"\nshort = \"10s\"\n\n\
             [alerting]\nalertmanagers = [\"http://127.0.0.1:{am_port}\"]\nevaluation_interval = \"1s\"\nresend_interval = \"5s\"\n"
        );
    std::fs::write(dir.join("steerd.toml"), config).unwrap();
    let steerd = Steerd::start_with(dir.join("steerd.toml"), dir.join("state"));

    let agent_cfg = dir.join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "pop = \"fra1\"\nsteerd = [\"http://127.0.0.1:{}\"]\nreport_interval = \"500ms\"\ncapacity_rps = 10000\n\
             [[probes]]\nname = \"app-http\"\nservice = \"app\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{front}/\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n\
             [[sli]]\nservice = \"app\"\nurl = \"http://127.0.0.1:{hmetrics}/metrics\"\n\
             total = 'haproxy_backend_http_responses_total{{proxy=\"app\"}}'\n\
             errors = 'haproxy_backend_http_responses_total{{proxy=\"app\",code=\"5xx\"}}'\n",
            steerd.grpc
        ),
    )
    .unwrap();
    let _agent = Proc::spawn(
        Command::new(AGENT).arg("--config").arg(&agent_cfg),
        dir.join("agent.log"),
    );

    // Clients: a steady stream of requests through HAProxy.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = get(front, "/");
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // Clean traffic: events counted, budget intact, nothing paged.
    let events = "steer_slo_events_total{slo=\"app-edge-errors\",kind=\"total\"}";
    assert!(
        poll(Duration::from_secs(30), || metric(&steerd, events)
            .filter(|v| *v >= 50.0))
        .is_some(),
        "no SLI events counted; agent log:\n{}",
        std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
    );
    assert!(active_pages(am_port).is_empty());
    let budget = "steer_slo_budget_remaining_ratio{slo=\"app-edge-errors\"}";
    assert_eq!(metric(&steerd, budget), Some(1.0));

    // The backend fails every request: the page reaches Alertmanager.
    assert_eq!(get(back, "/fail-on"), Some(200));
    let page = poll(Duration::from_secs(30), || {
        let pages = active_pages(am_port);
        (!pages.is_empty()).then_some(pages)
    })
    .unwrap_or_else(|| {
        panic!(
            "no page in Alertmanager; steerd log:\n{}",
            steerd.proc.log_text()
        )
    });
    let labels = &page[0]["labels"];
    assert_eq!(labels["slo"], "app-edge-errors");
    assert_eq!(labels["service"], "app");
    assert_eq!(labels["severity"], "page");
    assert_eq!(
        page[0]["annotations"]["runbook_url"],
        "https://runbooks.example/app"
    );
    assert_eq!(
        metric(
            &steerd,
            "steer_slo_alert{slo=\"app-edge-errors\",severity=\"page\"}"
        ),
        Some(1.0)
    );

    // Fixed: once the short window is clean the page resolves.
    assert_eq!(get(back, "/fail-off"), Some(200));
    assert!(
        poll(Duration::from_secs(40), || active_pages(am_port)
            .is_empty()
            .then_some(()))
        .is_some(),
        "page not resolved: {:?}",
        active_pages(am_port)
    );
    assert!(metric(&steerd, budget).is_some_and(|b| b < 1.0));
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert!(sent.load(Ordering::Relaxed) > 100);
}

#[test]
fn load_command_counters_feed_the_slo_and_a_reset_counts_from_zero() {
    let s = Steerd::start("slo-load-command");
    let dir = temp_dir("slo-load-command-agent");
    let counters = dir.join("counters");
    let write = |text: &str| {
        // Atomic for the reader: the agent's `cat` never sees half a file.
        std::fs::write(dir.join("counters.tmp"), text).unwrap();
        std::fs::rename(dir.join("counters.tmp"), &counters).unwrap();
    };
    write("load_rps=10 requests_total=1000 errors_total=0\n");
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "pop = \"fra1\"\nsteerd = [\"{}\"]\nreport_interval = \"300ms\"\ncapacity_rps = 10000\n\
             load_command = [\"cat\", \"{}\"]\nload_interval = \"300ms\"\n\
             [[probes]]\nname = \"app-tcp\"\nservice = \"app\"\nkind = \"tcp\"\n\
             target = \"{}\"\ninterval = \"300ms\"\ntimeout = \"200ms\"\n",
            s.endpoint(),
            counters.display(),
            probe.local_addr().unwrap()
        ),
    )
    .unwrap();
    let _agent = Proc::spawn(
        Command::new(AGENT).arg("--config").arg(&config),
        dir.join("agent.log"),
    );
    let total = "steer_slo_events_total{slo=\"app-availability\",kind=\"total\"}";
    let bad = "steer_slo_events_total{slo=\"app-availability\",kind=\"bad\"}";
    // The first reading is a baseline: nothing is counted until the
    // counters move, so move them until something is.
    let mut requests = 1000u64;
    let mut errors = 0u64;
    let started = poll(Duration::from_secs(15), || {
        requests += 100;
        errors += 1;
        write(&format!(
            "load_rps=10 requests_total={requests} errors_total={errors}\n"
        ));
        let counted = metric(&s, total).filter(|t| *t > 0.0);
        if counted.is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
        counted
    });
    assert!(
        started.is_some(),
        "no events counted; agent log:\n{}",
        std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
    );
    // Settled: the counts hold still over a few reports (which of the
    // readings above was the baseline is the agent's timing).
    let (t0, b0) = poll(Duration::from_secs(15), || {
        let before = (metric(&s, total)?, metric(&s, bad)?);
        std::thread::sleep(Duration::from_millis(1000));
        let after = (metric(&s, total)?, metric(&s, bad)?);
        (before == after).then_some(after)
    })
    .unwrap();
    // Each write above added 100 requests and 1 error.
    assert_eq!(t0, b0 * 100.0);
    let settled = |want_total: f64, want_bad: f64| {
        poll(Duration::from_secs(15), || {
            (metric(&s, total)? == want_total && metric(&s, bad)? == want_bad).then_some(())
        })
        .is_some()
    };
    write(&format!(
        "load_rps=10 requests_total={} errors_total={}\n",
        requests + 500,
        errors + 50
    ));
    assert!(
        settled(t0 + 500.0, b0 + 50.0),
        "{:?} {:?}",
        metric(&s, total),
        metric(&s, bad)
    );
    // The proxy restarted: its counters start again from zero.
    write("load_rps=10 requests_total=20 errors_total=1\n");
    assert!(
        settled(t0 + 520.0, b0 + 51.0),
        "{:?} {:?}",
        metric(&s, total),
        metric(&s, bad)
    );
}
