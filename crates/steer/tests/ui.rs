//! The status page (`/ui`) through the real steerd: the embedded assets
//! and their security headers, the state document, drains from the page
//! (dry run first, JSON only, audited), the event stream, auth refusals,
//! and headless Chromium driven by Selenium (`tests/ui/browser.py`) showing
//! six PoPs and a steerctl drain within 2 s, with screenshots written under
//! `target/ui/`.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::*;

/// One HTTP/1.0 request; (status, head, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    (code, head.to_ascii_lowercase(), body.to_owned())
}

fn json_post(port: u16, path: &str, token: Option<&str>, body: &str) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let (code, _, body) = request(port, "POST", path, &headers, body);
    (code, serde_json::from_str(&body).unwrap_or_default())
}

fn state(port: u16, token: Option<&str>) -> (u16, serde_json::Value) {
    let (code, body) = http_get_as(port, "/ui/api/state", token).unwrap();
    (code, serde_json::from_str(&body).unwrap_or_default())
}

#[test]
fn page_assets_carry_a_strict_policy_and_the_state_has_six_placed_pops() {
    let s = Steerd::start("ui-assets");
    let (code, head, body) = request(s.http, "GET", "/ui", &[], "");
    assert_eq!(code, 200);
    assert!(
        body.contains("/ui/app.js") && !body.contains("<script>"),
        "{body}"
    );
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(!head.contains("access-control-allow"), "{head}");
    let mut weight = body.len();
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/world.svg", "image/svg+xml"),
    ] {
        let (code, head, body) = request(s.http, "GET", path, &[], "");
        assert_eq!(code, 200, "{path}");
        assert!(head.contains(&format!("content-type: {kind}")), "{head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        // Nothing from elsewhere: no CDN, fonts or tiles.
        assert!(!body.contains("https://"), "{path} refers outside steerd");
        weight += body.len();
    }
    assert!(weight < 150_000, "the page weighs {weight} bytes");

    let (code, st) = state(s.http, None);
    assert_eq!(code, 200, "{st}");
    let places = st["locations"].as_object().unwrap();
    assert_eq!(places.len(), 6, "{st}");
    assert!((places["fra1"]["lat"].as_f64().unwrap() - 50.11).abs() < 0.01);
    assert_eq!(st["status"]["pops"].as_array().unwrap().len(), 6);
    assert_eq!(st["you"]["may_drain"], true);
    assert!(st["timeline"].is_array());
    assert_eq!(s.metric("steer_ui_event_streams"), Some(0.0));
}

#[test]
fn a_drain_from_the_page_is_previewed_audited_and_streamed() {
    let s = Steerd::start("ui-drain");
    // The event stream: one event at once, one after the drain.
    let mut events = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
    events
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        events,
        "GET /ui/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let mut read_until = |want: usize, within: Duration| -> usize {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline && seen.matches("event: change").count() < want {
            if let Ok(n) = events.read(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        seen.matches("event: change").count()
    };
    assert_eq!(read_until(1, Duration::from_secs(3)), 1);
    assert!(
        poll(Duration::from_secs(2), || {
            (s.metric("steer_ui_event_streams") == Some(1.0)).then_some(())
        })
        .is_some()
    );

    // Not JSON: refused (a cross-site form cannot send application/json).
    let (code, _, body) = request(
        s.http,
        "POST",
        "/ui/api/drain",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "kind=pop&id=fra1",
    );
    assert_eq!(code, 415, "{body}");
    assert!(body.contains("application/json"), "{body}");
    // Too large: refused before parsing.
    let big = format!(
        r#"{{"kind":"pop","id":"fra1","reason":"{}"}}"#,
        "x".repeat(20_000)
    );
    let (code, head, _) = request(
        s.http,
        "POST",
        "/ui/api/drain",
        &[("Content-Type", "application/json")],
        &big,
    );
    assert_eq!(code, 413);
    assert!(head.contains("content-security-policy"), "{head}");
    let (code, out) = json_post(
        s.http,
        "/ui/api/drain",
        None,
        r#"{"kind":"dc","id":"fra1"}"#,
    );
    assert_eq!(code, 400, "{out}");

    // The dry run changes nothing and says what would happen.
    let (code, out) = json_post(
        s.http,
        "/ui/api/drain",
        None,
        r#"{"kind":"pop","id":"fra1","reason":"preview","dry_run":true}"#,
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["applied"], false);
    assert!(!out["projection"]["summary"].as_str().unwrap().is_empty());
    assert!(
        !state(s.http, None).1["status"]["pops"][0]["drained"]
            .as_bool()
            .unwrap()
    );

    let (code, out) = json_post(
        s.http,
        "/ui/api/drain",
        None,
        r#"{"kind":"pop","id":"fra1","reason":"disk swap from the page"}"#,
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["applied"], true, "{out}");
    assert_eq!(read_until(2, Duration::from_secs(2)), 2, "{seen}");
    let st = state(s.http, None).1;
    let fra1 = st["status"]["pops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pop"] == "fra1")
        .unwrap()
        .clone();
    assert_eq!(fra1["drained"], true, "{st}");
    assert!(
        st["timeline"][0]["summary"].as_str().is_some(),
        "newest first: {st}"
    );
    // Audited like any drain.
    let audit = String::from_utf8_lossy(&s.steerctl(&["audit"]).stdout).into_owned();
    assert!(audit.contains("disk swap from the page"), "{audit}");

    let (code, out) = json_post(
        s.http,
        "/ui/api/undrain",
        None,
        r#"{"kind":"pop","id":"fra1","reason":"done"}"#,
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["lifted"], 1, "{out}");
    drop(events);
    assert!(
        poll(Duration::from_secs(3), || {
            (s.metric("steer_ui_event_streams") == Some(0.0)).then_some(())
        })
        .is_some()
    );
}

const TOKENS: &str = r#"
[[tokens]]
principal = "bob"
role = "operator"
token = "bob-operator-token-0123456789"

[[tokens]]
principal = "carol"
role = "viewer"
token = "carol-viewer-token-0123456789"
"#;

#[test]
fn with_auth_on_viewers_read_and_only_operators_drain() {
    let dir = temp_dir("ui-auth");
    write_private(&dir.join("tokens.toml"), TOKENS);
    let text = std::fs::read_to_string(quickstart()).unwrap().replacen(
        "mode = \"none\"",
        "mode = \"token\"\ntokens_file = \"tokens.toml\"",
        1,
    );
    let config = dir.join("steerd.toml");
    std::fs::write(&config, text).unwrap();
    let s = Steerd::start_with(config, dir.join("state"));
    let viewer = Some("carol-viewer-token-0123456789");
    let operator = Some("bob-operator-token-0123456789");

    // The page itself holds no data: it loads, then asks for a token.
    assert_eq!(http_get(s.http, "/ui").unwrap().0, 200);
    let (code, out) = state(s.http, None);
    assert_eq!(code, 401, "{out}");
    assert!(out["error"].as_str().is_some(), "{out}");
    assert_eq!(state(s.http, Some("not-a-token-at-all-0000")).0, 401);
    assert_eq!(http_get(s.http, "/ui/events").unwrap().0, 401);

    let (code, out) = state(s.http, viewer);
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["you"]["principal"], "carol");
    assert_eq!(out["you"]["may_drain"], false);
    let drain = r#"{"kind":"pop","id":"ams1","reason":"viewer tries"}"#;
    let (code, out) = json_post(s.http, "/ui/api/drain", viewer, drain);
    assert_eq!(code, 403, "{out}");
    assert!(out["error"].as_str().unwrap().contains("carol"), "{out}");
    assert_eq!(json_post(s.http, "/ui/api/drain", None, drain).0, 401);
    // A viewer may see the projection, as with steerctl --dry-run.
    let preview = r#"{"kind":"pop","id":"ams1","reason":"look","dry_run":true}"#;
    assert_eq!(json_post(s.http, "/ui/api/drain", viewer, preview).0, 200);

    let (code, out) = state(s.http, operator);
    assert_eq!(
        (code, &out["you"]["may_drain"]),
        (200, &serde_json::json!(true))
    );
    let (code, out) = json_post(
        s.http,
        "/ui/api/drain",
        operator,
        r#"{"kind":"pop","id":"ams1","reason":"bob from the page"}"#,
    );
    assert_eq!(code, 200, "{out}");
    let intents = &state(s.http, viewer).1["status"]["intents"];
    assert_eq!(intents[0]["principal"], "bob", "{intents}");
}

/// Fails with the install hint when a tool the browser test needs is
/// missing: a skipped browser test would hide a broken page.
fn require_browser_tools() {
    let missing: Vec<&str> = [
        ("/usr/bin/chromium", "apt-get install chromium"),
        ("/usr/bin/chromedriver", "apt-get install chromium-driver"),
    ]
    .into_iter()
    .filter(|(path, _)| !Path::new(path).exists())
    .map(|(_, hint)| hint)
    .collect();
    assert!(
        missing.is_empty(),
        "the status page's browser test needs: {} (scripts/test installs them)",
        missing.join("; ")
    );
    let selenium = Command::new("python3")
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        selenium,
        "the status page's browser test needs Selenium: python3 -m pip install selenium (scripts/test installs it)"
    );
}

#[test]
fn chromium_shows_six_pops_and_a_steerctl_drain_within_two_seconds() {
    require_browser_tools();
    let s = Steerd::start("ui-browser");
    // Every PoP up with some load, so the map has colour and the dry run
    // has something to project.
    report_up(
        &s.endpoint(),
        &[
            ("fra1", 3_000.0),
            ("ams1", 2_500.0),
            ("iad1", 4_000.0),
            ("ord1", 3_500.0),
            ("sin1", 1_500.0),
            ("bom1", 2_000.0),
        ],
    );
    assert!(
        poll(Duration::from_secs(5), || {
            let st = state(s.http, None).1;
            st["status"]["pops"]
                .as_array()?
                .iter()
                .all(|p| p["health"] == "up")
                .then_some(())
        })
        .is_some()
    );
    let out_dir = repo_root().join("target/ui");
    let script = repo_root().join("crates/steer/tests/ui/browser.py");
    let started = Instant::now();
    let out = Command::new("python3")
        .arg(&script)
        .args(["--url", &format!("http://127.0.0.1:{}/ui", s.http)])
        .arg("--out")
        .arg(&out_dir)
        .args(["--steerctl", STEERCTL, "--endpoint", &s.endpoint()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser test failed after {:?}:\n{stdout}\n{}\nsteerd log:\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr),
        s.proc.log_text()
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        report["pops"],
        serde_json::json!(["ams1", "bom1", "fra1", "iad1", "ord1", "sin1"])
    );
    assert!(report["drain_shown_after_s"].as_f64().unwrap() <= 2.0);
    assert_eq!(report["markers_focusable"], true);
    for shot in ["ui-light.png", "ui-dark.png"] {
        let png = out_dir.join(shot);
        assert!(std::fs::metadata(&png).unwrap().len() > 10_000, "{shot}");
        // README's screenshots are refreshed on request, so a plain test
        // run leaves the tree clean.
        if std::env::var_os("STEER_UPDATE_SCREENSHOTS").is_some() {
            std::fs::copy(&png, repo_root().join("docs").join(shot)).unwrap();
        }
    }
}

#[test]
fn event_streams_are_capped_at_32() {
    let s = Steerd::start("ui-streams");
    let open = |_| {
        let mut c = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(c, "GET /ui/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).unwrap();
        (c, String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let streams: Vec<_> = (0..32).map(open).collect();
    for (_, head) in &streams {
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let (_, refused) = open(32);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert_eq!(s.metric("steer_ui_event_streams"), Some(32.0));
    assert_eq!(s.metric("steer_ui_event_streams_rejected_total"), Some(1.0));
    // A closed page gives its slot back.
    drop(streams);
    assert!(
        poll(Duration::from_secs(3), || {
            (s.metric("steer_ui_event_streams") == Some(0.0)).then_some(())
        })
        .is_some()
    );
    assert!(open(0).1.starts_with("HTTP/1.1 200"));
}
