//! steerctl pointed at the wrong place says so (issue 18, item 4): an
//! endpoint without a scheme is a usage error with the fix, and steerd's
//! HTTP port (/metrics, /status) instead of its gRPC port gets a hint.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

fn steerctl_at(endpoint: &str) -> (Option<i32>, String) {
    let out = Command::new(STEERCTL)
        .args(["--endpoint", endpoint, "--timeout", "5", "status"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn steerctl_hints_at_a_missing_scheme_and_at_the_http_port() {
    let s = Steerd::start("steerctl-endpoint");

    let bare = format!("127.0.0.1:{}", s.grpc);
    let (code, err) = steerctl_at(&bare);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("has no scheme") && err.contains(&format!("http://{bare}")),
        "{err}"
    );

    let http = format!("http://127.0.0.1:{}", s.http);
    let (code, err) = steerctl_at(&http);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("hint:") && err.contains("steerd's HTTP port") && err.contains("50051"),
        "{err}"
    );

    // Nothing listening: no such hint, just what failed.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (code, err) = steerctl_at(&closed);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Connection refused") && !err.contains("hint:"),
        "{err}"
    );

    // The right endpoint still works.
    let out = s.steerctl(&["status"]);
    assert!(out.status.success(), "{out:?}");
}
