//! steer-agent against a real steerd: one long-lived report stream when
//! nothing changes, and bearer-token auth from `token_file`.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::*;

/// An agent config for `pop` reporting to `grpc` every 500 ms, probing a
/// TCP port; `extra` goes before the probe table.
fn agent_config(dir: &Path, pop: &str, grpc: u16, probe_port: u16, extra: &str) -> PathBuf {
    let path = dir.join(format!("agent-{pop}.toml"));
    std::fs::write(
        &path,
        format!(
            "pop = \"{pop}\"\nsteerd = [\"http://127.0.0.1:{grpc}\"]\nreport_interval = \"500ms\"\n\
             capacity_rps = 10000\n{extra}\n\
             [[probes]]\nname = \"app-tcp\"\nservice = \"app\"\nkind = \"tcp\"\n\
             target = \"127.0.0.1:{probe_port}\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n"
        ),
    )
    .unwrap();
    path
}

fn start_agent(dir: &Path, config: &Path, pop: &str) -> Proc {
    Proc::spawn(
        Command::new(AGENT).arg("--config").arg(config),
        dir.join(format!("agent-{pop}.log")),
    )
}

fn status(s: &Steerd) -> serde_json::Value {
    // alice (operator) from the README's tokens; ignored when auth is off.
    let (_, body) = http_get_as(s.http, "/status", Some("a-long-random-string-1")).unwrap();
    serde_json::from_str(&body).unwrap()
}

fn pop_phase(s: &Steerd, pop: &str) -> String {
    status(s)["pops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pop"] == pop)
        .map(|p| p["phase"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

fn plan_version(s: &Steerd) -> u64 {
    status(s)["plan_version"].as_u64().unwrap()
}

/// Issue 11, item 0: with no `[[peers]]` the peer board never changes; the
/// agent used to read that as an error and reconnect ten times a second,
/// bumping the plan version each time.
#[test]
fn agent_without_peers_keeps_one_stream_for_30s() {
    let dir = temp_dir("agent-one-stream");
    let s = Steerd::start_with(quickstart(), dir.join("state"));
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = service.local_addr().unwrap().port();
    let config = agent_config(&dir, "fra1", s.grpc, port, "");
    let agent = start_agent(&dir, &config, "fra1");
    poll(Duration::from_secs(10), || {
        (pop_phase(&s, "fra1") == "up").then_some(())
    })
    .unwrap_or_else(|| panic!("fra1 never reported up:\n{}", agent.log_text()));
    // Let the first report's effect settle into the plan.
    let mut settled = plan_version(&s);
    poll(Duration::from_secs(5), || {
        std::thread::sleep(Duration::from_millis(500));
        let now = plan_version(&s);
        let same = now == settled;
        settled = now;
        same.then_some(())
    })
    .unwrap_or_else(|| panic!("plan version keeps moving:\n{}", agent.log_text()));

    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_secs(1));
        let log = agent.log_text();
        assert!(
            !log.contains("reconnecting"),
            "the agent reconnected after {:?}:\n{log}",
            start.elapsed()
        );
        assert_eq!(
            plan_version(&s),
            settled,
            "the plan version moved while nothing changed:\n{log}"
        );
    }
    let log = agent.log_text();
    assert_eq!(
        log.matches("report stream open").count(),
        1,
        "one stream for the whole run:\n{log}"
    );
    let (_, metrics) = http_get(s.http, "/metrics").unwrap();
    assert!(
        metrics.contains("steer_health_streams 1\n"),
        "steerd should hold exactly one stream:\n{metrics}"
    );
    drop(service);
}

/// The tokens file of the README's Auth example, as written there.
fn readme_tokens() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let auth = &readme[readme.find("**Auth.**").unwrap()..];
    let block = &auth[auth.find("```toml\n").unwrap() + "```toml\n".len()..];
    let tokens = &block[..block.find("```").unwrap()];
    assert!(tokens.contains("principal = \"agent-fra1\""), "{tokens}");
    tokens.to_owned()
}

/// The README's token setup: steerd in token mode with its tokens file
/// (agent-fra1's token in it); the agent reads its token from `token_file`.
fn token_world(dir: &Path) -> Steerd {
    write_private(&dir.join("tokens.toml"), readme_tokens());
    let config = std::fs::read_to_string(quickstart()).unwrap().replace(
        "mode = \"none\"",
        "mode = \"token\"\ntokens_file = \"tokens.toml\"",
    );
    std::fs::write(dir.join("steerd.toml"), config).unwrap();
    Steerd::start_with(dir.join("steerd.toml"), dir.join("state"))
}

/// The log without ANSI colour sequences.
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn denied(s: &Steerd, reason: &str) -> bool {
    http_get(s.http, "/metrics").is_some_and(|(_, m)| {
        m.contains(&format!("steer_auth_denied_total{{reason=\"{reason}\"}}"))
    })
}

/// Issue 11, item 2: token mode used to refuse every agent, which could
/// not send a token.
#[test]
fn agent_with_token_file_is_accepted_and_without_it_refused() {
    let dir = temp_dir("agent-token");
    let s = token_world(&dir);
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = service.local_addr().unwrap().port();

    // No token: refused, and both sides say so.
    let config = agent_config(&dir, "fra1", s.grpc, port, "");
    let mut agent = start_agent(&dir, &config, "fra1");
    poll(Duration::from_secs(10), || {
        (denied(&s, "no_credential")
            && agent
                .log_text()
                .contains("steerd refused this agent's reports"))
        .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no clear refusal:\n{}\n{}",
            agent.log_text(),
            http_get(s.http, "/metrics").unwrap_or_default().1
        )
    });
    let log = without_colours(&agent.log_text());
    assert!(log.contains("token_sent=false"), "{log}");
    assert_ne!(pop_phase(&s, "fra1"), "up");
    agent.kill();

    // A wrong token: refused as unknown.
    write_private(&dir.join("wrong.token"), "not-the-token-0123456789\n");
    let config = agent_config(&dir, "fra1", s.grpc, port, "token_file = \"wrong.token\"");
    let mut agent = start_agent(&dir, &config, "fra1");
    poll(Duration::from_secs(10), || {
        (denied(&s, "unknown_token")
            && agent
                .log_text()
                .contains("steerd refused this agent's reports"))
        .then_some(())
    })
    .unwrap_or_else(|| panic!("wrong token not refused:\n{}", agent.log_text()));
    assert_ne!(pop_phase(&s, "fra1"), "up");
    agent.kill();

    // The right token, from a file relative to the agent config: fra1 up.
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    write_private(
        &dir.join("secrets/agent-fra1.token"),
        "another-long-random-string\n",
    );
    let config = agent_config(
        &dir,
        "fra1",
        s.grpc,
        port,
        "token_file = \"secrets/agent-fra1.token\"",
    );
    let agent = start_agent(&dir, &config, "fra1");
    poll(Duration::from_secs(10), || {
        (pop_phase(&s, "fra1") == "up").then_some(())
    })
    .unwrap_or_else(|| panic!("fra1 never came up with its token:\n{}", agent.log_text()));
    assert!(
        !agent.log_text().contains("refused"),
        "{}",
        agent.log_text()
    );

    // An empty token file: the agent does not start, and says which file.
    write_private(&dir.join("empty.token"), "\n");
    let config = agent_config(&dir, "ams1", s.grpc, port, "token_file = \"empty.token\"");
    let out = Command::new(AGENT)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&dir.join("empty.token").display().to_string()) && err.contains("empty"),
        "{err}"
    );
    drop(service);
}

fn metric_value(s: &Steerd, series: &str) -> Option<f64> {
    let (_, metrics) = http_get(s.http, "/metrics")?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Issue 18, item 4: the agent's first report went out before its first
/// probe had a result; with no service in it steerd took the PoP as up,
/// then down when the probe failed a moment later (Unknown -> Up -> Down,
/// a flap that also fed damping). The probe here hangs until its 1.5 s
/// timeout (a listener that never accepts), so the window is wide.
#[test]
fn agent_reports_nothing_until_each_probe_has_a_result() {
    let dir = temp_dir("agent-first-report");
    let s = Steerd::start_with(quickstart(), dir.join("state"));
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let path = dir.join("agent-fra1.toml");
    std::fs::write(
        &path,
        format!(
            "pop = \"fra1\"\nsteerd = [\"http://127.0.0.1:{}\"]\nreport_interval = \"200ms\"\n\
             capacity_rps = 10000\n\n\
             [[probes]]\nname = \"app-http\"\nservice = \"app\"\nkind = \"http\"\n\
             url = \"http://127.0.0.1:{port}/healthz\"\ninterval = \"10s\"\ntimeout = \"1500ms\"\n",
            s.grpc
        ),
    )
    .unwrap();
    let agent = start_agent(&dir, &path, "fra1");
    poll(Duration::from_secs(15), || {
        (pop_phase(&s, "fra1") == "down").then_some(())
    })
    .unwrap_or_else(|| panic!("fra1 never went down:\n{}", agent.log_text()));
    let to = |state: &str| {
        metric_value(
            &s,
            &format!("steer_health_state_transitions_total{{pop=\"fra1\",to=\"{state}\"}}"),
        )
    };
    assert_eq!(
        to("up"),
        Some(0.0),
        "fra1 was up before its probe had a result:\n{}",
        agent.log_text()
    );
    assert_eq!(to("down"), Some(1.0));
    drop(silent);
}

/// Issue 18, item 4: a misconfigured agent said `transport error` and, for
/// an unknown PoP, reconnected and logged about ten times a second. Now
/// each says which endpoint and what failed; the unknown PoP is a
/// configuration error retried with a growing delay (one line per try).
#[test]
fn misconfigured_agents_say_what_failed_and_back_off() {
    let dir = temp_dir("agent-misconfigured");
    let s = Steerd::start_with(quickstart(), dir.join("state"));
    let closed = free_port();
    let write = |name: &str, pop: &str, endpoint: &str| {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "pop = \"{pop}\"\nsteerd = [\"{endpoint}\"]\nreport_interval = \"500ms\"\n\n\
                 [[probes]]\nname = \"app-tcp\"\nservice = \"app\"\nkind = \"tcp\"\n\
                 target = \"127.0.0.1:{closed}\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\n"
            ),
        )
        .unwrap();
        Proc::spawn(
            Command::new(AGENT).arg("--config").arg(&path),
            dir.join(format!("{name}.log")),
        )
    };
    let unknown_pop = write("unknown-pop", "nope1", &s.endpoint());
    let wrong_port = write("wrong-port", "fra1", &format!("http://127.0.0.1:{closed}"));
    let http_port = write("http-port", "ams1", &format!("http://127.0.0.1:{}", s.http));

    let said = |p: &Proc, what: &[&str]| {
        poll(Duration::from_secs(10), || {
            let log = without_colours(&p.log_text());
            what.iter().all(|w| log.contains(w)).then_some(())
        })
        .unwrap_or_else(|| panic!("expected {what:?} in:\n{}", p.log_text()))
    };
    said(
        &unknown_pop,
        &["not in steerd's configuration", &s.endpoint()],
    );
    let first = Instant::now();
    said(
        &wrong_port,
        &[
            &format!("cannot connect to http://127.0.0.1:{closed}"),
            "Connection refused",
        ],
    );
    said(&http_port, &["steerd's HTTP port"]);

    // Five seconds of an unknown PoP: a handful of tries, not fifty.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(first.elapsed()));
    let tries = without_colours(&unknown_pop.log_text())
        .matches("not in steerd's configuration")
        .count();
    assert!(
        (1..=4).contains(&tries),
        "{tries} tries in 5 s:\n{}",
        unknown_pop.log_text()
    );
}
