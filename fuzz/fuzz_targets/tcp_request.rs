//! Fuzzes the DNS-over-TCP request path (one message, no length prefix):
//! the same pipeline as UDP without truncation or rate limiting. It must
//! never panic, and every reply must carry the query's ID.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use steer_dns::{DnsView, UdpOutcome, respond_tcp};

#[path = "../../crates/steer-dns/tests/fixture/mod.rs"]
mod fixture;

fn view() -> &'static DnsView {
    static VIEW: OnceLock<DnsView> = OnceLock::new();
    VIEW.get_or_init(fixture::view)
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let src = std::net::IpAddr::from([192, 0, 2, 7]);
    if respond_tcp(view(), data, src, 42, &mut out) == UdpOutcome::Reply {
        assert!(out.len() >= 12 && out.len() <= usize::from(u16::MAX));
        assert_eq!(out[..2], data[..2]);
    }
});
