//! The quickstart slice end to end, through the real binaries.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::{TcpListener, UdpSocket},
    process::Command,
    time::Duration,
};

use common::*;

const EU: &str = "10.1.0.0/24";

#[test]
fn answers_follow_client_region_from_ecs() {
    let s = Steerd::start("region");

    let full = s.dig(&["app.example.test", "A", &format!("+subnet={EU}")]);
    assert!(full.contains("status: NOERROR"), "{full}");
    assert!(full.contains(" aa"), "AA flag missing:\n{full}");
    assert!(!full.contains(" ra"), "RA must be clear:\n{full}");
    assert!(
        full.contains("CLIENT-SUBNET: 10.1.0.0/24/"),
        "ECS not echoed:\n{full}"
    );
    let ttl_30 = full
        .lines()
        .filter(|l| l.starts_with("app.example.test.") && l.contains("\tA\t"))
        .all(|l| l.split_whitespace().nth(1) == Some("30"));
    assert!(ttl_30, "TTL must be 30:\n{full}");

    let eu = s.answers("app.example.test", "A", EU);
    assert!(!eu.is_empty());
    assert!(
        eu.iter().all(|a| a == "192.0.2.11" || a == "192.0.2.12"),
        "{eu:?}"
    );

    let ap = s.answers("app.example.test", "A", "10.3.7.0/24");
    assert!(!ap.is_empty());
    assert!(
        ap.iter().all(|a| a == "192.0.2.31" || a == "192.0.2.32"),
        "{ap:?}"
    );

    let eu6 = s.answers("app.example.test", "AAAA", "2001:db8:1::/56");
    assert_eq!(eu6, ["2001:db8::11", "2001:db8::12"]);
    let us6_from_v4 = s.answers("app.example.test", "AAAA", "10.2.0.0/24");
    assert_eq!(us6_from_v4, ["2001:db8::21", "2001:db8::22"]);

    let tcp = s.dig(&[
        "app.example.test",
        "A",
        &format!("+subnet={EU}"),
        "+tcp",
        "+short",
    ]);
    let mut tcp: Vec<&str> = tcp.lines().collect();
    tcp.sort_unstable();
    assert_eq!(tcp, ["192.0.2.11", "192.0.2.12"]);

    // Unmapped clients get at most two records from anywhere.
    let global = s.answers("app.example.test", "A", "198.51.100.0/24");
    assert_eq!(global.len(), 2, "{global:?}");

    // Sticky: the same /24 keeps its answer while the plan is unchanged.
    let a = s.dig(&["app.example.test", "A", "+subnet=198.51.100.7/32", "+short"]);
    let b = s.dig(&[
        "app.example.test",
        "A",
        "+subnet=198.51.100.200/32",
        "+short",
    ]);
    assert_eq!(a, b);
}

#[test]
fn negative_answers_and_refusals() {
    let s = Steerd::start("negative");
    let nx = s.dig(&["nonexistent.example.test", "A"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(nx.contains(" aa"), "{nx}");
    let authority = nx.split(";; AUTHORITY SECTION:").nth(1).unwrap_or("");
    assert!(
        authority.contains("SOA\tns1.example.test."),
        "SOA missing from authority:\n{nx}"
    );

    let nodata = s.dig(&["www.example.test", "AAAA"]);
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
        "{nodata}"
    );
    assert!(nodata.contains("SOA"), "{nodata}");

    let refused = s.dig(&["example.com", "A"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");

    let badvers = s.dig(&["app.example.test", "A", "+edns=1", "+noednsneg"]);
    assert!(badvers.contains("status: BADVERS"), "{badvers}");

    let soa = s.dig(&["example.test", "SOA", "+short"]);
    assert!(
        soa.starts_with("ns1.example.test. hostmaster.example.test. 1"),
        "{soa}"
    );
}

#[test]
fn malformed_packets_do_not_hurt_the_server() {
    let s = Steerd::start("malformed");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let garbage: [&[u8]; 5] = [
        b"",
        b"\x00",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff\xff",
        &[0xff; 512],
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x03app\x07example\x04test\x00\x00\x01\x00\x01\x00\x00\x29",
    ];
    for g in garbage {
        sock.send_to(g, ("127.0.0.1", s.dns)).unwrap();
    }
    assert_eq!(
        s.dig(&["www.example.test", "A", "+short"]).trim(),
        "192.0.2.80",
        "server must keep answering:\n{}",
        s.proc.log_text()
    );
}

#[test]
fn drains_show_in_answers_within_a_second_and_survive_kill_9() {
    let s = Steerd::start("drain");
    let second = Duration::from_secs(1);

    let out = s.steerctl(&["drain", "pop", "fra1", "--reason", "disk swap"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_answers(EU, &["192.0.2.12"], second)
        .unwrap_or_else(|got| panic!("fra1 still answered after drain: {got:?}"));

    let out = s.steerctl(&[
        "drain",
        "region",
        "eu-west",
        "--reason",
        "region maintenance",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_answers(EU, &["192.0.2.21", "192.0.2.22"], second)
        .unwrap_or_else(|got| panic!("EU clients not sent to us-east: {got:?}"));

    // /status and steerctl status agree with the drains.
    let (code, body) = http_get(s.http, "/status").unwrap();
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let fra1 = &status["pops"][0];
    assert_eq!(fra1["pop"], "fra1");
    assert_eq!(fra1["drained_by"], "drain-1");
    assert_eq!(status["schema_version"], 1);
    assert_eq!(status["intents"].as_array().unwrap().len(), 2);
    assert_eq!(fra1["drained"], true);
    let table = String::from_utf8_lossy(&s.steerctl(&["status"]).stdout).into_owned();
    assert!(
        table.lines().all(|l| l.chars().count() <= 100),
        "status wider than 100 columns:\n{table}"
    );
    assert!(
        table.contains("drain-2") && table.contains("region eu-west"),
        "{table}"
    );

    // The audit log names who did what, with the plan version.
    let audit = std::fs::read_to_string(s.state_dir.join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("\"action\":\"drain\"") && audit.contains("disk swap"),
        "{audit}"
    );

    // kill -9 and restart: the drains are still in force before any change.
    let s = s.restart_after_kill9();
    assert_eq!(
        s.answers("app.example.test", "A", EU),
        ["192.0.2.21", "192.0.2.22"]
    );

    let out = s.steerctl(&["undrain", "region", "eu-west"]);
    assert!(out.status.success());
    s.wait_answers(EU, &["192.0.2.12"], second).unwrap();
    let out = s.steerctl(&["undrain", "pop", "fra1"]);
    assert!(out.status.success());
    // fra1 comes back at the weight-step rail's pace (100‰/s to 500‰).
    s.wait_answers(EU, &["192.0.2.11", "192.0.2.12"], second * 10)
        .unwrap();

    // Metrics an operator alerts on.
    let (_, metrics) = http_get(s.http, "/metrics").unwrap();
    for m in [
        "steer_plan_version",
        "steer_pop_usable{pop=\"fra1\"} 1",
        "steer_dns_responses_total",
    ] {
        assert!(metrics.contains(m), "metric {m} missing:\n{metrics}");
    }
}

#[test]
fn steerctl_errors_are_clear_and_exit_codes_distinct() {
    let s = Steerd::start("ctl-errors");
    let out = s.steerctl(&["drain", "pop", "nope", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found: pop nope"));

    let out = s.steerctl(&["drain", "pop", "fra1", "--reason", "  "]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reason"));

    let out = s.steerctl(&["drain", "planet", "earth", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");

    let dead = free_port();
    let out = Command::new(STEERCTL)
        .args(["--endpoint", &format!("http://127.0.0.1:{dead}"), "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{dead}")) && err.contains("refused"),
        "{err}"
    );

    let out = s.steerctl(&["--output", "json", "status"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["pops"].as_array().unwrap().len(), 6);
}

fn agent_config(dir: &std::path::Path, grpc: u16, probe_port: u16) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("configs/agent-fra1.toml"))
        .unwrap()
        .replace("127.0.0.1:50051", &format!("127.0.0.1:{grpc}"))
        .replace("127.0.0.1:18080", &format!("127.0.0.1:{probe_port}"));
    let path = dir.join("agent-fra1.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn agent_health_takes_a_pop_out_and_brings_it_back() {
    let dir = temp_dir("agent");
    let s = Steerd::start_with(quickstart(), dir.join("state"));
    let probe_port = free_port();
    let config = agent_config(&dir, s.grpc, probe_port);
    let _agent = Proc::spawn(
        Command::new(AGENT).arg("--config").arg(&config),
        dir.join("agent.log"),
    );
    let three = Duration::from_secs(3);
    s.wait_answers(EU, &["192.0.2.12"], three)
        .unwrap_or_else(|got| {
            panic!(
                "fra1 not removed within 3 s: {got:?}\n{}",
                _agent.log_text()
            )
        });

    let listener = TcpListener::bind(("127.0.0.1", probe_port)).unwrap();
    s.wait_answers(EU, &["192.0.2.11", "192.0.2.12"], three)
        .unwrap_or_else(|got| panic!("fra1 not back within 3 s: {got:?}"));

    let (_, body) = http_get(s.http, "/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["pops"][0]["health"], "up");
    assert!(status["pops"][0]["last_report_age_ms"].as_i64().unwrap() < 3_000);
    drop(listener);
    s.wait_answers(EU, &["192.0.2.12"], three).unwrap();
}

#[test]
fn agent_survives_steerd_restart() {
    let dir = temp_dir("agent-restart");
    let s = Steerd::start_with(quickstart(), dir.join("state"));
    let config = agent_config(&dir, s.grpc, free_port());
    let agent = Proc::spawn(
        Command::new(AGENT).arg("--config").arg(&config),
        dir.join("agent.log"),
    );
    s.wait_answers(EU, &["192.0.2.12"], Duration::from_secs(3))
        .unwrap();
    // Same ports: restart_after_kill9 picks new ones, so restart by hand.
    let (grpc, dns, http) = (s.grpc, s.dns, s.http);
    let Steerd {
        mut proc,
        state_dir,
        ..
    } = s;
    proc.kill();
    drop(proc);
    let _s2 = Proc::spawn(
        &mut steerd_command(&quickstart(), &state_dir, [dns, grpc, http]),
        dir.join("steerd2.log"),
    );
    // A fresh steerd assumes fra1 up until the reconnected agent says otherwise.
    let back = poll(Duration::from_secs(10), || {
        let (_, body) = http_get(http, "/status")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["pops"][0]["health"] == "down").then_some(())
    });
    assert!(
        back.is_some(),
        "agent did not reconnect:\n{}",
        agent.log_text()
    );
}

#[test]
fn invalid_config_exits_2_naming_file_line_and_key() {
    let dir = temp_dir("badconfig");
    let text = std::fs::read_to_string(quickstart()).unwrap().replace(
        "region = \"us-east\"\nipv4 = \"192.0.2.21\"",
        "region = \"us-eest\"\nipv4 = \"192.0.2.21\"",
    );
    let path = dir.join("bad.toml");
    std::fs::write(&path, &text).unwrap();
    let out = Command::new(STEERD)
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().position(|l| l.contains("us-eest")).unwrap() + 1;
    assert!(
        err.contains(&format!("bad.toml:{line}:10: key `pops[2].region`"))
            && err.contains("unknown region"),
        "{err}"
    );

    std::fs::write(
        &path,
        text.replace("[auth]\n", "[auth]\ncolour = \"blue\"\n"),
    )
    .unwrap();
    let out = Command::new(STEERD)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("colour") && err.contains("bad.toml:"), "{err}");

    let out = Command::new(STEERD)
        .arg("--config")
        .arg(quickstart())
        .arg("--check")
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn a_second_steerd_on_a_taken_port_exits_naming_it() {
    let first = Steerd::start("port-taken");
    let dir = temp_dir("port-taken-2");
    let (grpc, http) = (free_port(), free_port());
    for (what, dns, grpc) in [
        ("DNS listen", first.dns, grpc),
        ("gRPC listen", free_port(), first.grpc),
    ] {
        let mut second = steerd_command(&quickstart(), &dir.join("state"), [dns, grpc, http])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let status = poll(Duration::from_secs(10), || second.try_wait().unwrap());
        if status.is_none() {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second steerd kept running with its {what} port taken");
        }
        assert_eq!(status.unwrap().code(), Some(1));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
        assert!(
            err.contains(what) && err.contains("Address already in use"),
            "{err}"
        );
    }
    // The first one never noticed.
    assert_eq!(
        first.answers("app.example.test", "A", "10.1.0.0/24"),
        ["192.0.2.11", "192.0.2.12"]
    );
}

/// Logs go to stderr, never stdout; without a terminal there are no colour
/// codes; `--log-format json` gives one JSON object a line; a published
/// plan's line says which decisions changed.
#[test]
fn logs_go_to_stderr_plain_or_json() {
    for json in [false, true] {
        let dir = temp_dir(if json { "logs-json" } else { "logs-text" });
        let ports = [free_port(), free_port(), free_port()];
        let mut cmd = steerd_command(&quickstart(), &dir.join("state"), ports);
        if json {
            cmd.args(["--log-format", "json"]);
        }
        let out_path = dir.join("stdout");
        let err_path = dir.join("stderr");
        let mut child = cmd
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let ready = poll(Duration::from_secs(20), || {
            http_get(ports[2], "/healthz")
                .is_some_and(|(c, _)| c == 200)
                .then_some(())
        });
        let steerctl = |args: &[&str]| {
            std::process::Command::new(STEERCTL)
                .arg("--endpoint")
                .arg(format!("http://127.0.0.1:{}", ports[1]))
                .args(args)
                .output()
                .unwrap()
        };
        let drained = ready.is_some()
            && steerctl(&["drain", "pop", "fra1", "--reason", "logs"])
                .status
                .success();
        let published = poll(Duration::from_secs(5), || {
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            err.lines()
                .any(|l| l.contains("published plan") && l.contains("fra1 drained"))
                .then_some(())
        });
        let _ = child.kill();
        let _ = child.wait();
        let stdout = std::fs::read_to_string(&out_path).unwrap();
        let stderr = std::fs::read_to_string(&err_path).unwrap();
        assert!(ready.is_some() && drained, "steerd not up:\n{stderr}");
        assert!(
            published.is_some(),
            "no plan line naming the change:\n{stderr}"
        );
        assert!(stdout.is_empty(), "logs on stdout:\n{stdout}");
        assert!(
            !stderr.contains('\u{1b}'),
            "colour codes without a terminal:\n{stderr}"
        );
        if json {
            for line in stderr.lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
            }
        }
    }
}
