//! Auth through the real steerd and steerctl: no open control surface off
//! loopback, secrets kept private, and a reload that applies new
//! credentials at once or refuses.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use common::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// steerd with the listeners given as flags; waits for it to exit (at most
/// 20 s) and returns its output.
fn steerd_exit(config: &Path, state: &Path, grpc: &str, http: &str) -> Output {
    let mut child = Command::new(STEERD)
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .args(["--dns-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--grpc-listen", grpc])
        .args(["--http-listen", http])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = poll(Duration::from_secs(20), || child.try_wait().unwrap());
    if exited.is_none() {
        let _ = child.kill();
        panic!("steerd did not exit: {:?}", child.wait_with_output());
    }
    child.wait_with_output().unwrap()
}

/// The quickstart config with `edits`, written into `dir`.
fn quickstart_with(dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(quickstart()).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in quickstart.toml");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join("steerd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn auth_off_refuses_to_listen_off_loopback() {
    let dir = temp_dir("auth-open");
    let config = quickstart_with(&dir, &[]);
    let http = format!("127.0.0.1:{}", free_port());
    // Refused before anything binds: nothing is opened on 0.0.0.0.
    let out = steerd_exit(&config, &dir.join("state"), "0.0.0.0:0", &http);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    for needle in [
        "refusing to start",
        "gRPC listener 0.0.0.0:0",
        "--grpc-listen",
        "mode = \"token\"",
        "allow_unauthenticated_remote = true",
    ] {
        assert!(err.contains(needle), "{needle:?} missing in: {err}");
    }
    let out = steerd_exit(
        &config,
        &dir.join("state"),
        &format!("127.0.0.1:{}", free_port()),
        "[::]:0",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("HTTP listener [::]:0"),
        "{}",
        stderr(&out)
    );
    assert!(
        !dir.join("state").exists(),
        "a refused start must not touch the state directory"
    );

    // `--check` applies the same rule to overrides.
    let out = Command::new(STEERD)
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .args(["--grpc-listen", "0.0.0.0:50051"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Allowed explicitly: it starts, and says loudly that it is open.
    let config = quickstart_with(
        &dir,
        &[(
            "mode = \"none\"",
            "mode = \"none\"\nallow_unauthenticated_remote = true",
        )],
    );
    let http_port = free_port();
    let mut steerd = Proc::spawn(
        Command::new(STEERD)
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--dns-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--grpc-listen", "0.0.0.0:0"])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")]),
        dir.join("open.log"),
    );
    let up = poll(Duration::from_secs(20), || {
        http_get(http_port, "/healthz").map(|(code, _)| code)
    });
    steerd.kill();
    assert_eq!(up, Some(200), "{}", steerd.log_text());
    assert!(
        steerd
            .log_text()
            .contains("allow_unauthenticated_remote = true permits"),
        "{}",
        steerd.log_text()
    );
}

const TOKENS: &str = r#"
[[tokens]]
principal = "alice"
role = "admin"
token = "alice-admin-token-0123456789"

[[tokens]]
principal = "bob"
role = "operator"
token = "bob-operator-token-0123456789"
"#;

fn token_steerd(dir: &Path) -> Steerd {
    write_private(&dir.join("tokens.toml"), TOKENS);
    for (who, token) in [
        ("alice", "alice-admin-token-0123456789"),
        ("bob", "bob-operator-token-0123456789"),
        ("carol", "carol-viewer-token-0123456789"),
    ] {
        write_private(&dir.join(format!("{who}.token")), format!("{token}\n"));
    }
    let config = quickstart_with(
        dir,
        &[(
            "mode = \"none\"",
            "mode = \"token\"\ntokens_file = \"tokens.toml\"",
        )],
    );
    Steerd::start_with(config, dir.join("state"))
}

fn as_user(s: &Steerd, dir: &Path, who: &str, args: &[&str]) -> Output {
    let file = dir.join(format!("{who}.token"));
    let mut all = vec!["--token-file", file.to_str().unwrap()];
    all.extend_from_slice(args);
    s.steerctl(&all)
}

#[test]
fn reload_applies_new_tokens_at_once_or_refuses() {
    let dir = temp_dir("auth-reload");
    let s = token_steerd(&dir);
    assert!(as_user(&s, &dir, "bob", &["status"]).status.success());
    let out = as_user(&s, &dir, "carol", &["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // Bob's token goes, Carol's comes: both from the next call on.
    let next = TOKENS.replace(
        "principal = \"bob\"\nrole = \"operator\"\ntoken = \"bob-operator-token-0123456789\"",
        "principal = \"carol\"\nrole = \"viewer\"\ntoken = \"carol-viewer-token-0123456789\"",
    );
    assert_ne!(next, TOKENS);
    write_private(&dir.join("tokens.toml"), &next);
    let out = as_user(&s, &dir, "alice", &["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_user(&s, &dir, "bob", &["status"]);
    assert_eq!(out.status.code(), Some(1), "removed token still valid");
    assert!(
        stderr(&out).contains("not authenticated"),
        "{}",
        stderr(&out)
    );
    let out = as_user(&s, &dir, "carol", &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A broken tokens file: refused, the error says where, old tokens stay.
    write_private(
        &dir.join("tokens.toml"),
        "[[tokens]]\nprincipal = \"alice\"\nrole = \"admin\"\ntoken = \"short\"\n",
    );
    let out = as_user(&s, &dir, "alice", &["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("tokens.toml") && err.contains("at least 16 characters"),
        "{err}"
    );
    assert!(as_user(&s, &dir, "carol", &["status"]).status.success());

    // A tokens file others can read: refused, naming the fix.
    std::fs::write(dir.join("tokens.toml"), TOKENS).unwrap();
    std::fs::set_permissions(
        dir.join("tokens.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = as_user(&s, &dir, "alice", &["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    assert!(as_user(&s, &dir, "carol", &["status"]).status.success());
    let out = as_user(&s, &dir, "bob", &["status"]);
    assert_eq!(out.status.code(), Some(1));

    // Turning auth off needs a restart: the reload is refused, not
    // reported as applied.
    write_private(&dir.join("tokens.toml"), TOKENS);
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        "mode = \"token\"\ntokens_file = \"tokens.toml\"",
        "mode = \"none\"",
    );
    std::fs::write(&s.config, text).unwrap();
    let out = as_user(&s, &dir, "alice", &["reload"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("restart steerd"), "{}", stderr(&out));
    let out = s.steerctl(&["status"]);
    assert_eq!(out.status.code(), Some(1), "auth went off on reload");

    // SIGHUP takes the same path.
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        "mode = \"none\"",
        "mode = \"token\"\ntokens_file = \"tokens.toml\"",
    );
    std::fs::write(&s.config, text).unwrap();
    write_private(&dir.join("tokens.toml"), &next);
    assert!(
        Command::new("kill")
            .args(["-HUP", &s.proc.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    poll(Duration::from_secs(5), || {
        (as_user(&s, &dir, "carol", &["status"]).status.success()
            && !as_user(&s, &dir, "bob", &["status"]).status.success())
        .then_some(())
    })
    .expect("SIGHUP did not apply the tokens file");

    let (_, metrics) = http_get(s.http, "/metrics").unwrap();
    assert!(
        metrics.contains("steer_auth_denied_total{reason=\"unknown_token\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("steer_auth_denied_total{reason=\"no_credential\"}"),
        "{metrics}"
    );
    assert!(
        s.proc.log_text().contains("refused a gRPC caller"),
        "{}",
        s.proc.log_text()
    );
}

#[test]
fn secrets_others_can_read_refuse_the_start() {
    let dir = temp_dir("auth-perms");
    std::fs::write(dir.join("tokens.toml"), TOKENS).unwrap();
    std::fs::set_permissions(
        dir.join("tokens.toml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let config = quickstart_with(
        &dir,
        &[(
            "mode = \"none\"",
            "mode = \"token\"\ntokens_file = \"tokens.toml\"",
        )],
    );
    let out = steerd_exit(
        &config,
        &dir.join("state"),
        &format!("127.0.0.1:{}", free_port()),
        &format!("127.0.0.1:{}", free_port()),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let tokens = dir.join("tokens.toml");
    assert!(
        err.contains(&format!("chmod 600 {}", tokens.display()))
            && err.contains("auth.tokens_file"),
        "{err}"
    );

    // steerctl holds its token file to the same rule, before connecting.
    let token = dir.join("alice.token");
    std::fs::write(&token, "alice-admin-token-0123456789\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(STEERCTL)
        .args(["--endpoint", "http://127.0.0.1:9"])
        .arg("--token-file")
        .arg(&token)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("chmod 600 {}", token.display())),
        "{}",
        stderr(&out)
    );
}

/// An unauthenticated flood of drain attempts with huge scopes neither
/// fills the disk nor delays a real drain: refusals are counted, audited
/// at a bounded rate with capped fields, off the control loop; requests
/// over the operator API's size limit are refused before they are decoded.
#[test]
fn a_denied_flood_cannot_fill_the_audit_log_or_delay_a_drain() {
    use steer_proto::v1::{DrainRequest, Scope, ScopeKind, operator_client::OperatorClient};

    let dir = temp_dir("auth-flood");
    let s = token_steerd(&dir);
    let audit_log = dir.join("state").join("audit.jsonl");
    let size = || std::fs::metadata(&audit_log).map_or(0, |m| m.len());
    let before = size();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let endpoint = s.endpoint();
    let (sent, drain_took) = rt.block_on(async move {
        let channel = tonic::transport::Channel::from_shared(endpoint)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let flood_channel = channel.clone();
        let attempt = move |scope_bytes: usize| {
            let mut client =
                OperatorClient::new(flood_channel.clone()).max_encoding_message_size(4 << 20);
            async move {
                let req = DrainRequest {
                    scope: Some(Scope {
                        kind: ScopeKind::Pop.into(),
                        id: "f".repeat(scope_bytes),
                        service: String::new(),
                    }),
                    reason: "r".repeat(1000),
                    ..Default::default()
                };
                client.drain(req).await.unwrap_err().code()
            }
        };
        // Eight attackers: 1 MiB scopes (over the size limit) and 48 KiB
        // ones (under it, so they reach the auth check and the audit).
        let mut attackers = Vec::new();
        for a in 0..8 {
            let attempt = attempt.clone();
            attackers.push(tokio::spawn(async move {
                let mut codes = Vec::new();
                for i in 0..250 {
                    let bytes = if (a + i) % 5 == 0 { 1 << 20 } else { 48 << 10 };
                    codes.push(attempt(bytes).await);
                }
                codes
            }));
        }
        // A real drain in the middle of the flood, by the operator's token.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let token: tonic::metadata::MetadataValue<_> =
            "Bearer bob-operator-token-0123456789".parse().unwrap();
        let mut bob =
            OperatorClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", token.clone());
                Ok(req)
            });
        let started = std::time::Instant::now();
        bob.drain(DrainRequest {
            scope: Some(Scope {
                kind: ScopeKind::Pop.into(),
                id: "fra1".into(),
                service: String::new(),
            }),
            reason: "real work during a flood".into(),
            force: true,
            ..Default::default()
        })
        .await
        .unwrap();
        let took = started.elapsed();
        let mut sent = 0;
        for a in attackers {
            for code in a.await.unwrap() {
                assert!(
                    matches!(
                        code,
                        tonic::Code::Unauthenticated
                            | tonic::Code::ResourceExhausted
                            | tonic::Code::OutOfRange
                    ),
                    "{code:?}"
                );
                sent += 1;
            }
        }
        (sent, took)
    });
    assert_eq!(sent, 2000);
    assert!(
        drain_took < Duration::from_secs(1),
        "a real drain took {drain_took:?} during the flood"
    );
    // Applied: fra1 is drained in the plan.
    poll(Duration::from_secs(2), || {
        let (_, body) = http_get_as(s.http, "/status", Some("alice-admin-token-0123456789"))?;
        body.contains("\"drained_by\":\"drain-1\"").then_some(())
    })
    .expect("the drain made during the flood is not in force");

    let grown = size().saturating_sub(before);
    eprintln!(
        "flood: {sent} attempts, audit log grew {grown} bytes, a real drain took {drain_took:?}"
    );
    assert!(grown < 256 * 1024, "audit log grew {grown} bytes");
    let metrics = http_get(s.http, "/metrics").unwrap().1;
    let denied: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("steer_api_denied_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(denied >= 1500.0, "denials not counted:\n{metrics}");
    assert!(
        metrics.contains("steer_audit_denied_unaudited_total"),
        "{metrics}"
    );
}
