//! Roles on loopback: controllers publish plans, edges follow them, and
//! edges fail static (issue 12, phase 1: no etcd; controllers are each
//! their own single writer).

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{STEERCTL, dig, free_port, node::Node, poll, temp_dir};

const BOTH: [&str; 2] = ["192.0.2.11", "192.0.2.12"];
const AMS_ONLY: [&str; 1] = ["192.0.2.12"];

/// The quickstart config plus an `[edge]` table naming `controllers`:
/// controllers and edges run from this one file.
fn config_with_edge(dir: &Path, controllers: &[u16]) -> PathBuf {
    let quickstart = std::fs::read_to_string(common::quickstart()).unwrap();
    let list = controllers
        .iter()
        .map(|p| format!("\"http://127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let path = dir.join("steer.toml");
    std::fs::write(
        &path,
        format!("{quickstart}\n[edge]\ncontrollers = [{list}]\n"),
    )
    .unwrap();
    path
}

#[test]
fn a_drain_reaches_both_edges_and_edges_fail_static() {
    let dir = temp_dir("roles");
    let grpc = free_port();
    let config = config_with_edge(&dir, &[grpc]);
    let controller = Node::controller(&config, &dir.join("controller"), grpc);
    // A controller opens no DNS listener.
    assert!(
        !dig(controller.dns, &["www.example.test", "A", "+short"]).contains("192.0.2.80"),
        "a controller must not answer DNS"
    );
    let a = Node::edge(&config, &dir.join("edge-a"));
    let b = Node::edge(&config, &dir.join("edge-b"));
    for e in [&a, &b] {
        e.wait_answers(&BOTH, Duration::from_secs(10));
        // Static zones come from the edge's own file.
        assert!(dig(e.dns, &["www.example.test", "A", "+short"]).contains("192.0.2.80"));
    }

    controller.steerctl(&["drain", "pop", "fra1", "--reason", "roles test"]);
    for e in [&a, &b] {
        e.wait_answers(&AMS_ONLY, Duration::from_secs(5));
        assert_eq!(e.status()["edge"]["plan_source"], "controller");
        assert_eq!(e.metric("steer_edge_controller_connected"), Some(1.0));
    }

    // The control plane vanishes: edges answer unchanged and say how old
    // their plan is.
    let mut controller = controller;
    controller.proc.kill();
    for e in [&a, &b] {
        let disconnected = poll(Duration::from_secs(10), || {
            (e.status()["edge"]["controller_connected"] == false).then_some(())
        });
        assert!(disconnected.is_some(), "{}", e.proc.log_text());
    }
    let aged = poll(Duration::from_secs(10), || {
        a.metric("steer_plan_age_seconds").filter(|age| *age >= 1.0)
    });
    assert!(aged.is_some(), "steer_plan_age_seconds never grew");
    for _ in 0..20 {
        assert_eq!(a.answers(), AMS_ONLY);
        assert_eq!(b.answers(), AMS_ONLY);
    }
    // steerctl reads an edge's plan age from its HTTP /status.
    let out = Command::new(STEERCTL)
        .args(["status", "--edge", &format!("http://127.0.0.1:{}", a.http)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("disconnected")
            && text.contains("source    controller")
            && text.contains("age"),
        "{text}"
    );

    // An edge restarted with no controller answers from its saved plan.
    let a = a.restart("edge");
    a.wait_answers(&AMS_ONLY, Duration::from_secs(5));
    let st = a.status();
    assert_eq!(st["edge"]["plan_source"], "saved", "{st}");
    assert_eq!(a.metric("steer_plan_source{source=\"saved\"}"), Some(1.0));

    // A corrupt saved plan is reported, naming the file, and survived.
    let mut b = b;
    b.proc.kill();
    let plan_file = b.state.join("edge").join("plan.bin");
    let bytes = std::fs::read(&plan_file).unwrap();
    std::fs::write(&plan_file, &bytes[..bytes.len() / 2]).unwrap();
    let b = Node::edge(&config, &b.state.clone());
    let st = b.status();
    let err = st["edge"]["saved_plan_error"].as_str().unwrap_or_default();
    assert!(
        err.contains("plan.bin") && err.contains("corrupt"),
        "saved_plan_error: {st}"
    );
    assert!(b.proc.log_text().contains("starting without it"));
    assert!(dig(b.dns, &["www.example.test", "A", "+short"]).contains("192.0.2.80"));
    // With no plan, a steered name is SERVFAIL (resolvers ask another
    // edge and cache nothing), never NXDOMAIN.
    let app = dig(b.dns, &["app.example.test", "A"]);
    assert!(app.contains("status: SERVFAIL"), "{app}");

    // The controller comes back: the edge that started empty follows it.
    let controller = Node::controller(&config, &dir.join("controller"), grpc);
    b.wait_answers(&AMS_ONLY, Duration::from_secs(15));
    assert_eq!(b.status()["edge"]["plan_source"], "controller");
    drop(controller);
}

#[test]
fn an_edge_fails_over_to_the_next_controller() {
    let dir = temp_dir("roles-failover");
    let (g1, g2) = (free_port(), free_port());
    let config = config_with_edge(&dir, &[g1, g2]);
    let first = Node::controller(&config, &dir.join("c1"), g1);
    let second = Node::controller(&config, &dir.join("c2"), g2);
    let edge = Node::edge(&config, &dir.join("edge"));
    edge.wait_answers(&BOTH, Duration::from_secs(10));
    let on_first = poll(Duration::from_secs(5), || {
        edge.status()["edge"]["controller"]
            .as_str()
            .filter(|c| c.ends_with(&format!(":{g1}")))
            .map(str::to_owned)
    });
    assert!(on_first.is_some(), "{}", edge.status());

    drop(first); // SIGKILL
    let on_second = poll(Duration::from_secs(10), || {
        let st = edge.status();
        (st["edge"]["controller_connected"] == true
            && st["edge"]["controller"]
                .as_str()
                .is_some_and(|c| c.ends_with(&format!(":{g2}"))))
        .then_some(())
    });
    assert!(on_second.is_some(), "{}", edge.proc.log_text());
    second.steerctl(&["drain", "pop", "fra1", "--reason", "failover test"]);
    edge.wait_answers(&AMS_ONLY, Duration::from_secs(5));

    // SIGHUP reloads an edge's file (zones, DNS settings); it does not end it.
    let hup = Command::new("kill")
        .args(["-HUP", &edge.proc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloaded = poll(Duration::from_secs(5), || {
        edge.proc
            .log_text()
            .contains("config reloaded")
            .then_some(())
    });
    assert!(reloaded.is_some(), "{}", edge.proc.log_text());
    let mut edge = edge;
    assert!(
        edge.proc.child.try_wait().unwrap().is_none(),
        "SIGHUP ended the edge"
    );
    assert_eq!(edge.answers(), AMS_ONLY);
}

/// With `[auth] mode = "token"`, an edge subscribes with the viewer token
/// of `[edge] token_file`; an unknown token gets no plan, and says why.
#[test]
fn edges_authenticate_like_any_api_client() {
    let dir = temp_dir("roles-auth");
    common::write_private(
        &dir.join("tokens.toml"),
        "[[tokens]]\nprincipal = \"edge\"\nrole = \"viewer\"\ntoken = \"edge-viewer-token-0123456789\"\n",
    );
    common::write_private(&dir.join("edge.token"), "edge-viewer-token-0123456789\n");
    common::write_private(&dir.join("wrong.token"), "not-a-known-token-0123456789\n");
    let grpc = free_port();
    let quickstart = std::fs::read_to_string(common::quickstart()).unwrap();
    let base = quickstart.replacen(
        "mode = \"none\"",
        "mode = \"token\"\ntokens_file = \"tokens.toml\"",
        1,
    );
    let write = |name: &str, token: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "{base}\n[edge]\ncontrollers = [\"http://127.0.0.1:{grpc}\"]\ntoken_file = \"{token}\"\n"
            ),
        )
        .unwrap();
        path
    };
    let good = write("edge.toml", "edge.token");
    let bad = write("wrong.toml", "wrong.token");
    let controller = Node::controller(&good, &dir.join("controller"), grpc);
    let edge = Node::edge(&good, &dir.join("edge"));
    edge.wait_answers(&BOTH, Duration::from_secs(10));
    let refused = Node::edge(&bad, &dir.join("refused"));
    let said = poll(Duration::from_secs(10), || {
        refused
            .proc
            .log_text()
            .contains("plan subscription failed")
            .then_some(())
    });
    assert!(said.is_some(), "{}", refused.proc.log_text());
    let log = refused.proc.log_text();
    assert!(
        log.contains("Unauthenticated") || log.contains("not authenticated"),
        "{log}"
    );
    let app = dig(refused.dns, &["app.example.test", "A"]);
    assert!(app.contains("status: SERVFAIL"), "{app}");
    // A viewer token may follow plans but not report answers (they
    // steer): the controller refuses them and counts it.
    for _ in 0..3 {
        dig(edge.dns, &["app.example.test", "A", "+short"]);
    }
    let denied = poll(Duration::from_secs(10), || {
        let body = common::http_get(controller.http, "/metrics")?.1;
        body.lines()
            .any(|l| {
                l.starts_with("steer_answer_reports_total{result=\"permission_denied\"}")
                    && !l.ends_with(" 0")
            })
            .then_some(())
    });
    assert!(
        denied.is_some(),
        "viewer-token answer reports were not refused"
    );
}

/// A controller serves no DNS, so it learns where demand comes from by
/// the answers its edges served: edges report their answer counters, and
/// the controller's per-region demand says it comes from answers.
#[test]
fn a_controller_estimates_demand_from_its_edges_answers() {
    let dir = temp_dir("roles-answers");
    let grpc = free_port();
    let config = config_with_edge(&dir, &[grpc]);
    let controller = Node::controller(&config, &dir.join("controller"), grpc);
    let edges = [
        Node::edge(&config, &dir.join("edge-a")),
        Node::edge(&config, &dir.join("edge-b")),
    ];
    for e in &edges {
        e.wait_answers(&BOTH, Duration::from_secs(10));
    }
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let loads = [
        ("fra1", 3000.0),
        ("ams1", 3000.0),
        ("iad1", 2000.0),
        ("ord1", 2000.0),
        ("sin1", 1000.0),
        ("bom1", 1000.0),
    ];
    let mut sequence = 1;
    common::report_up_at(&endpoint, sequence, &loads);
    let eu = poll(Duration::from_secs(20), || {
        // EU clients ask both edges; reports keep coming.
        for e in &edges {
            for i in 0..10 {
                dig(
                    e.dns,
                    &[
                        "app.example.test",
                        "A",
                        &format!("+subnet=10.1.{i}.0/24"),
                        "+short",
                    ],
                );
            }
        }
        sequence += 1;
        common::report_up_at(&endpoint, sequence, &loads);
        let st = controller.status();
        let eu = st["regions"]
            .as_array()?
            .iter()
            .find(|r| r["region"] == "eu-west")?
            .clone();
        (eu["demand_source"] == "answers").then_some(eu)
    });
    let eu = eu.unwrap_or_else(|| {
        panic!(
            "demand never came from the edges' answers: {}",
            controller.status()
        )
    });
    // EU clients hold fra1+ams1: the region's demand is their load.
    assert!(
        (eu["demand_rps"].as_f64().unwrap() - 6000.0).abs() < 60.0,
        "{eu}"
    );
    assert!(eu["demand_answers"].as_u64().unwrap() >= 20, "{eu}");
    // Each edge reports once a second: the second may not have yet.
    let both = poll(Duration::from_secs(5), || {
        (controller.metric("steer_answer_reporting_edges") == Some(2.0)).then_some(())
    });
    assert!(
        both.is_some(),
        "{:?}",
        controller.metric("steer_answer_reporting_edges")
    );
    assert!(
        edges[0]
            .metric("steer_edge_answer_reports_total{result=\"ok\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
}
