//! `[auth]` and the secrets it reads: no open control surface off loopback,
//! the agent's `token_file`, files holding secrets kept private, and exact
//! certificate names.

#![allow(clippy::unwrap_used)]

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steer-config-auth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The quickstart with `from` replaced by `to`, written into `dir`.
fn quickstart_with(dir: &Path, edits: &[(&str, &str)]) -> (PathBuf, String) {
    let mut text = std::fs::read_to_string(configs_dir().join("quickstart.toml")).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from:?} not in quickstart.toml");
        text = text.replacen(from, to, 1);
    }
    let path = dir.join("steerd.toml");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

const TOKENS: &str = r#"
[[tokens]]
principal = "agent-fra1"
pop = "fra1"
token = "fra1-agent-token-0123456789"
"#;

#[test]
fn auth_off_with_a_listener_off_loopback_is_refused_at_its_line() {
    let dir = temp_dir("open");
    let (path, text) = quickstart_with(
        &dir,
        &[(
            "grpc_listen = \"127.0.0.1:50051\"",
            "grpc_listen = \"0.0.0.0:50051\"",
        )],
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    let e = &err.0[0];
    assert_eq!(e.line, line_of(&text, "grpc_listen"), "{err}");
    assert_eq!(e.key, "server.grpc_listen", "{err}");
    for needle in [
        "0.0.0.0:50051",
        "mode = \"token\"",
        "allow_unauthenticated_remote = true",
    ] {
        assert!(e.message.contains(needle), "{needle}: {err}");
    }

    // Allowed explicitly: loads, and the start warns.
    let (path, _) = quickstart_with(
        &dir,
        &[
            (
                "http_listen = \"127.0.0.1:9100\"",
                "http_listen = \"[::]:9100\"",
            ),
            (
                "mode = \"none\"",
                "mode = \"none\"\nallow_unauthenticated_remote = true",
            ),
        ],
    );
    let c = steer_config::load_steerd(&path).unwrap();
    assert!(c.allow_unauthenticated_remote);
    assert!(c.check_control_exposure().is_ok());
    assert!(
        c.exposure_warnings()[0].contains("[::]:9100"),
        "{:?}",
        c.exposure_warnings()
    );

    // Loopback in every form is fine; an override off loopback is not.
    let (path, _) = quickstart_with(
        &dir,
        &[(
            "http_listen = \"127.0.0.1:9100\"",
            "http_listen = \"[::1]:9100\"",
        )],
    );
    let mut c = steer_config::load_steerd(&path).unwrap();
    assert!(c.check_control_exposure().is_ok());
    assert!(c.exposure_warnings().is_empty());
    c.server.http_listen = "192.0.2.1:9100".parse().unwrap();
    let why = c.check_control_exposure().unwrap_err();
    assert!(
        why.contains("HTTP listener 192.0.2.1:9100") && why.contains("--http-listen"),
        "{why}"
    );
}

#[test]
fn tokens_in_clear_text_off_loopback_warn() {
    let dir = temp_dir("cleartext");
    write_mode(&dir.join("tokens.toml"), TOKENS, 0o600);
    let (path, _) = quickstart_with(
        &dir,
        &[
            (
                "grpc_listen = \"127.0.0.1:50051\"",
                "grpc_listen = \"0.0.0.0:50051\"",
            ),
            (
                "mode = \"none\"",
                "mode = \"token\"\ntokens_file = \"tokens.toml\"",
            ),
        ],
    );
    let c = steer_config::load_steerd(&path).unwrap();
    assert!(c.check_control_exposure().is_ok());
    let w = c.exposure_warnings();
    assert!(
        w.len() == 1 && w[0].contains("clear text") && w[0].contains("[tls]"),
        "{w:?}"
    );
}

#[test]
fn a_tokens_file_others_can_read_is_refused() {
    let dir = temp_dir("tokens-mode");
    write_mode(&dir.join("tokens.toml"), TOKENS, 0o644);
    let (path, text) = quickstart_with(
        &dir,
        &[(
            "mode = \"none\"",
            "mode = \"token\"\ntokens_file = \"tokens.toml\"",
        )],
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    let e = &err.0[0];
    assert_eq!(e.line, line_of(&text, "tokens_file"), "{err}");
    assert_eq!(e.key, "auth.tokens_file", "{err}");
    let tokens = dir.join("tokens.toml");
    assert!(
        e.message
            .contains(&format!("chmod 600 {}", tokens.display()))
            && e.message.contains("0644"),
        "{err}"
    );
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).unwrap();
    steer_config::load_steerd(&path).unwrap();
    // Group-readable is as bad as world-readable.
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(steer_config::load_steerd(&path).is_err());
}

#[test]
fn a_private_key_others_can_read_is_refused() {
    let dir = temp_dir("key-mode");
    write_mode(&dir.join("steerd.pem"), "cert", 0o644);
    write_mode(&dir.join("steerd.key"), "key", 0o644);
    let (path, text) = quickstart_with(&dir, &[]);
    let text = text + "\n[tls]\ncert_file = \"steerd.pem\"\nkey_file = \"steerd.key\"\n";
    std::fs::write(&path, &text).unwrap();
    let err = steer_config::load_steerd(&path).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].key, "tls.key_file", "{err}");
    assert_eq!(err.0[0].line, line_of(&text, "key_file"), "{err}");
    assert!(err.0[0].message.contains("chmod 600"), "{err}");
    std::fs::set_permissions(
        dir.join("steerd.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    steer_config::load_steerd(&path).unwrap();
}

#[test]
fn wildcard_cert_names_are_refused() {
    let dir = temp_dir("wildcard");
    write_mode(
        &dir.join("ids.toml"),
        "[[tokens]]\nprincipal = \"fleet\"\npop = \"fra1\"\ncert_name = \"*.steer.test\"\n",
        0o600,
    );
    write_mode(&dir.join("steerd.pem"), "cert", 0o644);
    write_mode(&dir.join("steerd.key"), "key", 0o600);
    write_mode(&dir.join("ca.pem"), "ca", 0o644);
    let (path, text) = quickstart_with(
        &dir,
        &[(
            "mode = \"none\"",
            "mode = \"mtls\"\ntokens_file = \"ids.toml\"",
        )],
    );
    let text = text
        + "\n[tls]\ncert_file = \"steerd.pem\"\nkey_file = \"steerd.key\"\nclient_ca_file = \"ca.pem\"\n";
    std::fs::write(&path, &text).unwrap();
    let err = steer_config::load_steerd(&path).unwrap_err().to_string();
    assert!(err.contains("no wildcard"), "{err}");
}

fn agent_with_token_file(dir: &Path, token_file: &str) -> PathBuf {
    let text = std::fs::read_to_string(configs_dir().join("agent-fra1.toml"))
        .unwrap()
        .replacen(
            "capacity_rps = 10000\n",
            &format!("capacity_rps = 10000\ntoken_file = \"{token_file}\"\n"),
            1,
        );
    assert!(text.contains("token_file"));
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn agent_token_file_is_relative_trimmed_private_and_not_empty() {
    let dir = temp_dir("agent-token");
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    let token = dir.join("secrets/fra1.token");
    write_mode(&token, "  fra1-agent-token-0123456789\n\n", 0o600);
    let path = agent_with_token_file(&dir, "secrets/fra1.token");
    let c = steer_config::load_agent(&path).unwrap();
    assert_eq!(
        c.token.as_ref().map(steer_config::BearerToken::expose),
        Some("fra1-agent-token-0123456789")
    );
    // Never printed by Debug.
    assert!(!format!("{c:?}").contains("0123456789"));

    write_mode(&token, " \n", 0o600);
    let err = steer_config::load_agent(&path).unwrap_err();
    assert_eq!(err.0[0].key, "token_file", "{err}");
    assert!(
        err.0[0].message.contains(&token.display().to_string())
            && err.0[0].message.contains("empty"),
        "{err}"
    );

    write_mode(&token, "fra1-agent-token-0123456789\n", 0o644);
    let err = steer_config::load_agent(&path).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");

    let path = agent_with_token_file(&dir, "missing.token");
    let err = steer_config::load_agent(&path).unwrap_err().to_string();
    assert!(err.contains("missing.token"), "{err}");
}
