//! Webhooks for timeline events (`[[notify.webhooks]]`) against local HTTP
//! receivers: generic JSON and Slack-compatible payloads, kind and scope
//! filters, retries with backoff while a receiver is down, metrics for
//! deliveries; a bad webhook is refused at its line.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{STEERD, Steerd, free_port, poll, quickstart, temp_dir};

/// Accepts posts on `listener`, keeps each (path, body), answers 200.
fn receiver(listener: TcpListener) -> Arc<Mutex<Vec<(String, String)>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (String::new(), String::new());
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_owned(), body.to_owned());
                    }
                }
            };
            let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
            keep.lock().unwrap().push((path, body));
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    got
}

#[test]
fn timeline_events_reach_webhooks_and_a_down_one_gets_them_when_it_is_back() {
    let dir = temp_dir("notify");
    let ops = TcpListener::bind("127.0.0.1:0").unwrap();
    let ops_port = ops.local_addr().unwrap().port();
    let ops_got = receiver(ops);
    // Nothing listens here yet.
    let chat_port = free_port();
    let text = std::fs::read_to_string(quickstart()).unwrap()
        + &format!(
            r#"
[[notify.webhooks]]
name = "ops"
url = "http://127.0.0.1:{ops_port}/hooks/steer?team=edge"
kinds = ["intent", "health"]

[[notify.webhooks]]
name = "chat"
url = "http://127.0.0.1:{chat_port}/services/T0/B0"
format = "slack"
scope = "ams1"
"#
        );
    let config = dir.join("steerd.toml");
    std::fs::write(&config, &text).unwrap();
    let s = Steerd::start_with(config.clone(), dir.join("state"));

    let out = s.steerctl(&["drain", "pop", "ams1", "--reason", "fans <failing> & hot"]);
    assert!(out.status.success());
    let body = poll(Duration::from_secs(10), || {
        ops_got
            .lock()
            .unwrap()
            .iter()
            .find(|(_, b)| b.contains("drain pop ams1"))
            .cloned()
    })
    .expect("the ops webhook never got the drain");
    assert_eq!(body.0, "/hooks/steer?team=edge");
    let doc: serde_json::Value = serde_json::from_str(&body.1).unwrap();
    let e = &doc["events"][0];
    assert_eq!(e["kind"], "intent");
    assert!(
        e["principal"].as_str().unwrap().contains("anonymous"),
        "{doc}"
    );
    assert_eq!(doc["source"], "steerd");
    // Plan events are not sent unless asked for.
    assert!(
        ops_got
            .lock()
            .unwrap()
            .iter()
            .all(|(_, b)| !b.contains("\"kind\":\"plan\"")),
        "{:?}",
        ops_got.lock().unwrap()
    );

    // The chat receiver is down: posts fail and are retried.
    poll(Duration::from_secs(10), || {
        (s.metric("steer_notify_deliveries_total{webhook=\"chat\",result=\"error\"}")? >= 1.0)
            .then_some(())
    })
    .expect("no failed delivery counted");
    let chat_got = receiver(TcpListener::bind(("127.0.0.1", chat_port)).unwrap());
    let slack = poll(Duration::from_secs(15), || {
        chat_got.lock().unwrap().first().cloned()
    })
    .expect("the chat webhook never got the drain after coming back");
    let msg: serde_json::Value = serde_json::from_str(&slack.1).unwrap();
    let text = msg["text"].as_str().unwrap();
    assert!(
        text.starts_with("*[steer] intent* drain pop ams1: fans &lt;failing&gt; &amp; hot"),
        "{text}"
    );
    assert!(
        s.metric("steer_notify_deliveries_total{webhook=\"ops\",result=\"ok\"}")
            .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(
        s.metric("steer_notify_dropped_total{webhook=\"chat\"}"),
        Some(0.0)
    );
    // Scope: an event about another PoP does not go to chat.
    let out = s.steerctl(&["drain", "pop", "iad1", "--reason", "other"]);
    assert!(out.status.success());
    poll(Duration::from_secs(10), || {
        ops_got
            .lock()
            .unwrap()
            .iter()
            .any(|(_, b)| b.contains("drain pop iad1"))
            .then_some(())
    })
    .expect("ops never got the second drain");
    assert!(
        chat_got
            .lock()
            .unwrap()
            .iter()
            .all(|(_, b)| !b.contains("iad1")),
        "{:?}",
        chat_got.lock().unwrap()
    );

    // A bad webhook is refused at its line.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        text_with(&std::fs::read_to_string(&config).unwrap(), "ftp://x"),
    )
    .unwrap();
    let out = std::process::Command::new(STEERD)
        .args(["--config", bad.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.toml:") && err.contains("must start with http:// or https://"),
        "{err}"
    );
}

fn text_with(config: &str, url: &str) -> String {
    format!("{config}\n[[notify.webhooks]]\nname = \"bad\"\nurl = \"{url}\"\n")
}
