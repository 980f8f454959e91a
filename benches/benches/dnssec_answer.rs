//! What online signing costs per answer: `steer_dns::respond_udp` (packet
//! in, packet out: parse, answer, sign, encode) on the quickstart's
//! `example.test.` zone signed with a generated ECDSA P-256 key, for the
//! queries resolvers send (EDNS with Client Subnet from 256 /24s across the
//! regions), with the DO bit and without; and the signature cache's hit
//! ratio over the signed runs (`steer_dnssec_signatures_total{result}`).

use std::{hint::black_box, net::IpAddr, sync::Arc, time::Duration};

use criterion::{Criterion, criterion_group, criterion_main};
use steer_dns::{ViewInputs, ViewPublisher, respond_udp};
use steer_types::{DnssecZone, Intents, Plan, Timestamp, health::HealthSnapshot};

/// A query for `name` `qtype` with EDNS (1232 bytes, DO as asked) and, when
/// given, Client Subnet `subnet`/24.
fn query(id: u16, name: &str, qtype: u16, subnet: Option<[u8; 3]>, dnssec_ok: bool) -> Vec<u8> {
    let mut q = Vec::with_capacity(80);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    let ecs: Vec<u8> = subnet.map_or_else(Vec::new, |s| {
        let mut o = vec![0, 8, 0, 7, 0, 1, 24, 0];
        o.extend_from_slice(&s);
        o
    });
    // OPT: root owner, class = payload size, TTL = ext rcode/version/flags.
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0]);
    q.extend_from_slice(&[if dnssec_ok { 0x80 } else { 0 }, 0]);
    q.extend_from_slice(&(ecs.len() as u16).to_be_bytes());
    q.extend_from_slice(&ecs);
    q
}

fn signatures(handle: &metrics_exporter_prometheus::PrometheusHandle, result: &str) -> f64 {
    handle
        .render()
        .lines()
        .filter(|l| l.starts_with("steer_dnssec_signatures_total{"))
        .filter(|l| l.contains(&format!("result=\"{result}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn bench(c: &mut Criterion) {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap_or_else(|e| panic!("metrics recorder: {e}"));
    let config = steer_config::load_steerd(&steer_benches::quickstart_path())
        .unwrap_or_else(|e| panic!("quickstart config does not load: {e}"));
    let keys = std::env::temp_dir().join(format!("steer-dnssec-bench-{}", std::process::id()));
    let mut settings = config.dns.clone();
    settings.dnssec = vec![DnssecZone {
        origin: "example.test.".into(),
        key_dir: keys.clone(),
    }];
    let body = steer_policy::compute(
        &config.topology,
        &HealthSnapshot::default(),
        &Intents::default(),
        Timestamp(0),
    );
    let plan = Arc::new(Plan {
        version: 1,
        computed_at: Timestamp(0),
        body,
    });
    let publisher = ViewPublisher::new(
        ViewInputs {
            zones: config.zones.clone(),
            client_networks: config.topology.client_networks.clone(),
            settings,
        },
        plan,
    )
    .unwrap_or_else(|e| panic!("signed view does not compile: {e}"));
    let view = publisher.view().load_full();

    // 256 client /24s over the three regions' networks and unmapped space.
    let subnets: Vec<[u8; 3]> = (0..256u16)
        .map(|i| match i % 4 {
            0 => [10, 1, i as u8],
            1 => [10, 2, i as u8],
            2 => [10, 3, i as u8],
            _ => [198, 51, i as u8],
        })
        .collect();
    let src: IpAddr = "127.0.0.1".parse().unwrap_or_else(|_| unreachable!());
    let mut out = Vec::with_capacity(1500);
    let cases: [(&str, &str, u16, bool); 3] = [
        ("gslb_a_ecs", "app.example.test.", 1, true),
        ("static_a", "www.example.test.", 1, false),
        ("nxdomain", "nope.example.test.", 1, false),
    ];
    for (id, name, qtype, ecs) in cases {
        for dnssec_ok in [false, true] {
            let packets: Vec<Vec<u8>> = subnets
                .iter()
                .enumerate()
                .map(|(i, s)| query(i as u16, name, qtype, ecs.then_some(*s), dnssec_ok))
                .collect();
            // Checked once: an answer, and RRSIGs exactly when DO is set.
            respond_udp(&view, &packets[0], src, 0, &mut out);
            assert!(out.len() > 12 && out[3] & 0x0f != 5, "{id}: no answer");
            let has_rrsig = out.windows(2).any(|w| w == [0, 46]);
            assert_eq!(has_rrsig, dnssec_ok, "{id} do={dnssec_ok}: RRSIG presence");
            let (made0, cached0) = (signatures(&handle, "signed"), signatures(&handle, "cached"));
            let mut i = 0usize;
            c.bench_function(
                &format!(
                    "dnssec_answer/{id}/{}",
                    if dnssec_ok { "do" } else { "plain" }
                ),
                |b| {
                    b.iter(|| {
                        i = (i + 1) % packets.len();
                        respond_udp(black_box(&view), &packets[i], src, i as u64, &mut out);
                        out.len()
                    })
                },
            );
            if dnssec_ok {
                let made = signatures(&handle, "signed") - made0;
                let cached = signatures(&handle, "cached") - cached0;
                eprintln!(
                    "dnssec_answer/{id}: {made:.0} RRsets signed, {cached:.0} from the cache: hit ratio {:.5}",
                    cached / (made + cached).max(1.0)
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&keys);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
