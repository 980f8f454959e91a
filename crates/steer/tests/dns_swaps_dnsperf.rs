//! 100 plan swaps per second under dnsperf load through the real binaries:
//! no query is lost. (That no answer mixes two plans is checked in-process
//! by steer-dns's `swaps` test, which can see every answer.)

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use steer_proto::v1::{
    ClearOverrideRequest, SetWeightOverrideRequest, operator_client::OperatorClient,
};

#[test]
fn plan_swaps_at_100_per_second_lose_no_query_under_dnsperf() {
    let s = Steerd::start("dnsperf-swaps");
    let dir = temp_dir("dnsperf-swaps");
    let queries = dir.join("queries.txt");
    std::fs::write(
        &queries,
        "app.example.test A\napp.example.test AAAA\nwww.example.test A\n",
    )
    .unwrap();

    // Swap the plan ~100 times a second: pin and release fra1's weight.
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, endpoint) = (stop.clone(), swaps.clone(), s.endpoint());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut op = OperatorClient::connect(endpoint).await.unwrap();
                let mut next = Instant::now();
                let mut pinned = false;
                while !stop.load(Ordering::Relaxed) {
                    if pinned {
                        op.clear_override(ClearOverrideRequest {
                            pop: "fra1".into(),
                            reason: "swap".into(),
                        })
                        .await
                        .unwrap();
                    } else {
                        op.set_weight_override(SetWeightOverrideRequest {
                            pop: "fra1".into(),
                            weight_permille: 900,
                            reason: "swap".into(),
                            expires_in_ms: 0,
                            emergency: false,
                        })
                        .await
                        .unwrap();
                    }
                    pinned = !pinned;
                    swaps.fetch_add(1, Ordering::Relaxed);
                    next += Duration::from_millis(10);
                    tokio::time::sleep_until(next.into()).await;
                }
            });
        })
    };

    let out = Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", &s.dns.to_string()])
        .arg("-d")
        .arg(&queries)
        .args(["-l", "5", "-Q", "5000", "-t", "2"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run dnsperf (scripts/test installs it): {e}"));
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in dnsperf output:\n{text}"))
    };
    let sent = field("Queries sent");
    let lost = field("Queries lost");
    let n = swaps.load(Ordering::Relaxed);
    assert!(sent >= 10_000, "dnsperf sent only {sent}:\n{text}");
    assert!(n >= 300, "only {n} plan swaps in 5 s");
    assert_eq!(
        lost, 0,
        "{lost} of {sent} queries lost across {n} plan swaps:\n{text}"
    );
    let noerror = text.lines().any(|l| l.contains("NOERROR"));
    assert!(noerror, "{text}");
}
