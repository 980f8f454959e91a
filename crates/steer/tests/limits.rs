//! Limits on what a peer can hold on steerd's gRPC and HTTP listeners
//! (issue 11, item 6): WatchPlan tasks end with their client, oversized
//! ids are refused at the boundary, a slow request head is cut off, the
//! HTTP connection cap holds, and `/status` asks for a viewer token.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{
    Proc, STEERCTL, Steerd, http_get, http_get_as, poll, quickstart, temp_dir, write_private,
};
use steer_proto::v1::{self as pb, operator_client::OperatorClient};

/// The value of an unlabelled metric on `/metrics`.
fn metric(s: &Steerd, name: &str) -> Option<f64> {
    let (code, body) = http_get(s.http, "/metrics")?;
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn watch_plan_tasks_end_when_their_clients_go() {
    const WATCHERS: usize = 20;
    let s = Steerd::start("limits-watch");
    assert_eq!(metric(&s, "steer_api_watchers"), Some(0.0));
    let rt = runtime();
    let clients = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..WATCHERS {
            // One connection each, as separate steerctl watch processes.
            let mut client = OperatorClient::connect(s.endpoint()).await.unwrap();
            let mut events = client
                .watch_plan(pb::WatchPlanRequest::default())
                .await
                .unwrap()
                .into_inner();
            let first = events.message().await.unwrap().unwrap();
            assert!(first.plan_version > 0);
            held.push((client, events));
        }
        held
    });
    let seen = poll(Duration::from_secs(5), || {
        (metric(&s, "steer_api_watchers") == Some(WATCHERS as f64)).then_some(())
    });
    assert!(seen.is_some(), "{:?}", metric(&s, "steer_api_watchers"));
    // The clients go away; no plan changes meanwhile.
    drop(clients);
    drop(rt);
    let gone = poll(Duration::from_secs(10), || {
        (metric(&s, "steer_api_watchers") == Some(0.0)).then_some(())
    });
    assert!(
        gone.is_some(),
        "WatchPlan tasks outlived their clients: steer_api_watchers = {:?}",
        metric(&s, "steer_api_watchers")
    );
}

#[test]
fn an_oversized_scope_id_is_invalid_argument() {
    let s = Steerd::start("limits-scope");
    let rt = runtime();
    rt.block_on(async {
        let mut client = OperatorClient::connect(s.endpoint()).await.unwrap();
        for id in ["x".repeat(65), "fra1 ; drop".to_owned()] {
            let err = client
                .drain(pb::DrainRequest {
                    scope: Some(pb::Scope {
                        kind: pb::ScopeKind::Pop.into(),
                        id: id.clone(),
                        service: String::new(),
                    }),
                    reason: "limits test".into(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{id}: {err:?}");
        }
    });
    let rejected = http_get(s.http, "/metrics").unwrap().1;
    assert!(
        rejected.contains("steer_api_field_rejected_total{field=\"scope.id\"} 2"),
        "{rejected}"
    );
}

#[test]
fn a_slow_request_head_is_cut_off() {
    let s = Steerd::start("limits-slowloris");
    let mut c = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
    c.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // EOF (or a reset, or a 408 then EOF) once the header timeout passes.
    let _ = c.read_to_end(&mut buf);
    let held = started.elapsed();
    assert!(
        held < Duration::from_secs(12),
        "a partial request head held the connection for {held:?}"
    );
    let timeouts = poll(Duration::from_secs(5), || {
        metric(&s, "steer_http_header_timeouts_total").filter(|n| *n >= 1.0)
    });
    assert!(timeouts.is_some());

    // A kept-alive connection that goes quiet after a request is closed too.
    let mut c = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let held = started.elapsed();
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        "{buf:?}"
    );
    assert!(
        held < Duration::from_secs(12),
        "an idle kept-alive connection was held for {held:?}"
    );
}

/// A client that stops answering (SIGSTOP: its kernel still ACKs TCP, so
/// only HTTP/2 PINGs notice) loses its WatchPlan stream within the
/// keepalive interval plus timeout (20 s + 10 s).
#[test]
fn a_frozen_watch_client_is_noticed_by_keepalive() {
    let s = Steerd::start("limits-keepalive");
    let dir = temp_dir("limits-keepalive-ctl");
    let mut watch = Proc::spawn(
        std::process::Command::new(STEERCTL).args(["--endpoint", &s.endpoint(), "watch"]),
        dir.join("watch.log"),
    );
    let watching = poll(Duration::from_secs(10), || {
        (metric(&s, "steer_api_watchers") == Some(1.0)).then_some(())
    });
    assert!(watching.is_some(), "{}", watch.log_text());
    let pid = watch.child.id().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stopped.success());
    let started = Instant::now();
    let gone = poll(Duration::from_secs(45), || {
        (metric(&s, "steer_api_watchers") == Some(0.0)).then_some(())
    });
    let took = started.elapsed();
    watch.kill();
    assert!(
        gone.is_some(),
        "a frozen client's stream was still open after {took:?}"
    );
}

#[test]
fn http_connections_beyond_the_cap_are_refused() {
    const CAP: usize = 256;
    let s = Steerd::start("limits-http-cap");
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", s.proc.child.id()))
            .map(Iterator::count)
            .unwrap_or(0)
    };
    let before = fds();
    // Hold every slot (idle connections, well within the header timeout).
    let held: Vec<TcpStream> = (0..CAP)
        .map(|_| TcpStream::connect(("127.0.0.1", s.http)).unwrap())
        .collect();
    // Let the server accept them all before the one over the cap.
    let in_use = poll(Duration::from_secs(3), || {
        // No HTTP request possible now: count the process's sockets.
        (fds() >= before + CAP).then_some(())
    });
    assert!(in_use.is_some());
    let mut over = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = over.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
    let mut answer = String::new();
    let _ = over.read_to_string(&mut answer);
    assert!(
        !answer.contains("200"),
        "a connection over the cap was served: {answer:?}"
    );
    drop(held);
    let rejected = poll(Duration::from_secs(5), || {
        metric(&s, "steer_http_connections_rejected_total").filter(|n| *n >= 1.0)
    });
    assert!(rejected.is_some(), "the refusal was not counted");
}

fn token_config(dir: &Path) -> PathBuf {
    write_private(
        &dir.join("tokens.toml"),
        r#"
[[tokens]]
principal = "vera"
role = "viewer"
token = "vera-viewer-token-0123456789"
"#,
    );
    let text = std::fs::read_to_string(quickstart()).unwrap().replacen(
        "mode = \"none\"",
        "mode = \"token\"\ntokens_file = \"tokens.toml\"",
        1,
    );
    let path = dir.join("steerd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// GET `path` with a bearer token; returns the status code.
fn get_with_token(port: u16, path: &str, token: Option<&str>) -> u16 {
    http_get_as(port, path, token).unwrap().0
}

#[test]
fn status_needs_a_viewer_token_when_auth_is_on() {
    let dir = temp_dir("limits-status-auth");
    let s = Steerd::start_with(token_config(&dir), dir.join("state"));
    assert_eq!(get_with_token(s.http, "/status", None), 401);
    assert_eq!(get_with_token(s.http, "/status", Some("wrong-token")), 401);
    assert_eq!(
        get_with_token(s.http, "/status", Some("vera-viewer-token-0123456789")),
        200
    );
    // Probes and Prometheus stay open.
    assert_eq!(get_with_token(s.http, "/healthz", None), 200);
    assert_eq!(get_with_token(s.http, "/metrics", None), 200);
}

#[test]
fn one_grpc_connection_holds_at_most_128_streams() {
    const STREAMS: usize = 128;
    let s = Steerd::start("limits-streams");
    let rt = runtime();
    rt.block_on(async {
        // One HTTP/2 connection for every call below.
        let channel = tonic::transport::Endpoint::from_shared(s.endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut held = Vec::new();
        for _ in 0..STREAMS {
            let mut events = OperatorClient::new(channel.clone())
                .watch_plan(pb::WatchPlanRequest::default())
                .await
                .unwrap()
                .into_inner();
            events.message().await.unwrap().unwrap();
            held.push(events);
        }
        // The server's SETTINGS cap the connection: one more waits.
        let mut client = OperatorClient::new(channel.clone());
        let mut extra = Box::pin(client.watch_plan(pb::WatchPlanRequest::default()));
        let waited = tokio::time::timeout(Duration::from_millis(1500), &mut extra).await;
        assert!(
            waited.is_err(),
            "stream {} opened on one connection",
            STREAMS + 1
        );
        // A slot frees: the waiting stream opens.
        held.pop();
        let opened = tokio::time::timeout(Duration::from_secs(10), extra).await;
        assert!(matches!(opened, Ok(Ok(_))), "{opened:?}");
    });
}
