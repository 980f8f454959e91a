//! Client region by geolocation: clients outside every client network are
//! mapped by a MaxMind database (country, then continent). The database is
//! written by the test with the PyPI `mmdb-writer` (scripts/test installs it).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

fn write_mmdb(path: &std::path::Path) {
    let script = format!(
        r#"
from mmdb_writer import MMDBWriter
from netaddr import IPSet
w = MMDBWriter(ip_version=6, database_type="GeoIP2-Country", ipv4_compatible=True)
w.insert_network(IPSet(["198.51.100.0/24"]), {{"country": {{"iso_code": "IN"}}, "continent": {{"code": "AS"}}}})
w.insert_network(IPSet(["203.0.113.0/25"]), {{"continent": {{"code": "EU"}}}})
w.to_db_file("{}")
"#,
        path.display()
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mmdb-writer failed (scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unmapped_clients_are_placed_by_the_geo_database() {
    let dir = temp_dir("geo");
    write_mmdb(&dir.join("geo.mmdb"));
    let config = std::fs::read_to_string(quickstart()).unwrap()
        + "\n[dns.geo]\nmmdb = \"geo.mmdb\"\ncountries = { IN = \"ap-south\" }\ncontinents = { EU = \"eu-west\" }\n";
    std::fs::write(dir.join("steerd.toml"), config).unwrap();
    let s = Steerd::start_with(dir.join("steerd.toml"), dir.join("state"));

    // Country match: India → ap-south; scope is the database's /24.
    assert_eq!(
        s.answers("app.example.test", "A", "198.51.100.0/24"),
        ["192.0.2.31", "192.0.2.32"]
    );
    let full = s.dig(&["app.example.test", "A", "+subnet=198.51.100.0/24"]);
    assert!(full.contains("CLIENT-SUBNET: 198.51.100.0/24/24"), "{full}");
    // Continent match: Europe → eu-west, scope /25 from the database.
    assert_eq!(
        s.answers("app.example.test", "A", "203.0.113.0/25"),
        ["192.0.2.11", "192.0.2.12"]
    );
    let full = s.dig(&["app.example.test", "A", "+subnet=203.0.113.0/25"]);
    assert!(full.contains("CLIENT-SUBNET: 203.0.113.0/25/25"), "{full}");
    // Configured client networks still win.
    assert_eq!(
        s.answers("app.example.test", "A", "10.2.0.0/24"),
        ["192.0.2.21", "192.0.2.22"]
    );
    // Not in the database: the global answer set (2 of all six).
    assert_eq!(s.answers("app.example.test", "A", "192.0.2.0/24").len(), 2);
    // Explain says how.
    let out = s.steerctl(&["explain", "app.example.test", "--client", "198.51.100.7"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("geo database (country) maps it to region ap-south"),
        "{text}"
    );
}

#[test]
fn a_missing_database_or_unknown_region_is_a_config_error() {
    let dir = temp_dir("geo-bad");
    let config = std::fs::read_to_string(quickstart()).unwrap()
        + "\n[dns.geo]\nmmdb = \"nope.mmdb\"\ncountries = { IN = \"mars\" }\n";
    std::fs::write(dir.join("steerd.toml"), &config).unwrap();
    let out = Command::new(STEERD)
        .arg("--config")
        .arg(dir.join("steerd.toml"))
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("key `dns.geo.mmdb`") && err.contains("nope.mmdb"),
        "{err}"
    );
    assert!(err.contains("unknown region \"mars\""), "{err}");
}
