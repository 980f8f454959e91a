//! Static zones from RFC 1035 zone files: several zones per server, every
//! served type, reload on SIGHUP without losing a query, and a broken zone
//! file rejected with file:line while the old zone keeps serving.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    net::UdpSocket,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use common::*;

const FILES_ZONE: &str = r#"; files.test. -- every type Steer serves from zone files
$TTL 300
@       IN SOA ns1 hostmaster (
            SERIAL ; serial
            3600 600 604800
            120 )  ; negative TTL
        IN NS  ns1
        IN NS  ns2.example.test.
        IN MX  10 mail
        IN CAA 0 issue "ca.example.net"
ns1     IN A   127.0.0.1
www     60 IN A 192.0.2.101
www     IN AAAA 2001:db8::101
alias   IN CNAME www
mail    IN A   192.0.2.102
txt     IN TXT "v=spf1 -all" "second string"
_sip._udp IN SRV 10 5 5060 www
"#;

const REVERSE_ZONE: &str = "$TTL 300\n\
@ IN SOA ns1.files.test. hostmaster.files.test. 1 3600 600 604800 60\n\
@ IN NS ns1.files.test.\n\
101 IN PTR www.files.test.\n";

fn files_zone(serial: u32) -> String {
    FILES_ZONE.replace("SERIAL", &serial.to_string())
}

fn setup(name: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("zones")).unwrap();
    std::fs::write(dir.join("zones/files.test.zone"), files_zone(1)).unwrap();
    std::fs::write(dir.join("zones/reverse.zone"), REVERSE_ZONE).unwrap();
    let mut text = std::fs::read_to_string(quickstart()).unwrap();
    text = text.replace(
        "# Client networks map",
        "[[zones]]\norigin = \"files.test.\"\nfile = \"zones/files.test.zone\"\n\n\
         [[zones]]\norigin = \"2.0.192.in-addr.arpa.\"\nfile = \"zones/reverse.zone\"\n\n\
         # Client networks map",
    );
    let config = dir.join("steerd.toml");
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

fn short(s: &Steerd, name: &str, qtype: &str) -> String {
    s.dig(&[name, qtype, "+short"]).trim().to_owned()
}

#[test]
fn zone_files_serve_every_listed_type_next_to_inline_zones() {
    let (dir, config) = setup("zonefile-types");
    let s = Steerd::start_with(config, dir.join("state"));
    assert!(
        short(&s, "files.test", "SOA").starts_with("ns1.files.test. hostmaster.files.test. 1 3600")
    );
    let mut ns: Vec<String> = short(&s, "files.test", "NS")
        .lines()
        .map(String::from)
        .collect();
    ns.sort();
    assert_eq!(ns, ["ns1.files.test.", "ns2.example.test."]);
    assert_eq!(short(&s, "www.files.test", "A"), "192.0.2.101");
    assert_eq!(short(&s, "www.files.test", "AAAA"), "2001:db8::101");
    assert_eq!(short(&s, "alias.files.test", "CNAME"), "www.files.test.");
    assert_eq!(short(&s, "files.test", "MX"), "10 mail.files.test.");
    assert_eq!(
        short(&s, "txt.files.test", "TXT"),
        "\"v=spf1 -all\" \"second string\""
    );
    assert_eq!(
        short(&s, "_sip._udp.files.test", "SRV"),
        "10 5 5060 www.files.test."
    );
    assert_eq!(short(&s, "files.test", "CAA"), "0 issue \"ca.example.net\"");
    assert_eq!(
        short(&s, "101.2.0.192.in-addr.arpa", "PTR"),
        "www.files.test."
    );
    assert_eq!(
        s.dig(&["-x", "192.0.2.101", "+short"]).trim(),
        "www.files.test."
    );
    // A CNAME is followed inside the zone for other types at its name.
    assert_eq!(
        short(&s, "alias.files.test", "A"),
        "www.files.test.\n192.0.2.101"
    );
    // The inline zone still serves next to them.
    assert_eq!(short(&s, "www.example.test", "A"), "192.0.2.80");

    let out = kdig(s.dns, &["txt.files.test", "TXT"]);
    assert!(out.contains("\"v=spf1 -all\" \"second string\""), "{out}");
    let out = kdig(s.dns, &["_sip._udp.files.test", "SRV"]);
    assert!(out.contains("10 5 5060 www.files.test."), "{out}");
    let out = kdig(s.dns, &["nope.files.test", "A"]);
    assert!(out.contains("NXDOMAIN"), "{out}");
    let soa = out
        .lines()
        .find(|l| l.contains("SOA"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(soa.split_whitespace().nth(1), Some("120"), "{out}");
}

/// Queries www.files.test A in a loop over UDP, counting lost or wrong
/// answers, until `stop`.
fn query_loop(port: u16, stop: Arc<AtomicBool>, ok: Arc<AtomicU64>, bad: Arc<AtomicU64>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut id: u16 = 0;
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        id = id.wrapping_add(1);
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(b"\x03www\x05files\x04test\x00\x00\x01\x00\x01");
        sock.send_to(&q, ("127.0.0.1", port)).unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, _)) if n > 12 && buf[..2] == id.to_be_bytes() && buf[3] & 0x0f == 0 => {
                ok.fetch_add(1, Ordering::Relaxed)
            }
            _ => bad.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn sighup(s: &Steerd) {
    let st = Command::new("kill")
        .args(["-HUP", &s.proc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn sighup_reloads_zone_files_without_losing_queries_and_keeps_the_old_zone_on_error() {
    let (dir, config) = setup("zonefile-reload");
    let s = Steerd::start_with(config.clone(), dir.join("state"));
    let zone = dir.join("zones/files.test.zone");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
        let port = s.dns;
        std::thread::spawn(move || query_loop(port, stop, ok, bad))
    };

    for serial in 2..=11u32 {
        let text = files_zone(serial).replace(
            "mail    IN A   192.0.2.102\n",
            &format!("mail    IN A   192.0.2.102\nnew{serial} IN A 192.0.2.{serial}\n"),
        );
        std::fs::write(&zone, text).unwrap();
        sighup(&s);
        let name = format!("new{serial}.files.test");
        let seen = poll(Duration::from_secs(5), || {
            (short(&s, &name, "A") == format!("192.0.2.{serial}")).then_some(())
        });
        assert!(
            seen.is_some(),
            "serial {serial} not served:\n{}",
            s.proc.log_text()
        );
    }
    assert!(short(&s, "files.test", "SOA").contains(" 11 3600 "));

    // A broken zone file is refused with file:line; the old zone serves on.
    let broken = files_zone(12).replace(
        "www     IN AAAA 2001:db8::101",
        "www     IN AAAA 2001:db8::zz",
    );
    let line = broken.lines().position(|l| l.contains("::zz")).unwrap() + 1;
    std::fs::write(&zone, &broken).unwrap();
    sighup(&s);
    let needle = format!("files.test.zone:{line}:");
    let refused = poll(Duration::from_secs(5), || {
        s.proc.log_text().contains(&needle).then_some(())
    });
    assert!(
        refused.is_some(),
        "no {needle} in log:\n{}",
        s.proc.log_text()
    );
    assert!(s.proc.log_text().contains("reload refused"));
    assert_eq!(short(&s, "new11.files.test", "A"), "192.0.2.11");
    assert_eq!(short(&s, "www.files.test", "AAAA"), "2001:db8::101");

    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    assert!(ok > 100, "too few queries answered: {ok}");
    assert_eq!(
        bad, 0,
        "{bad} queries lost or failed across reloads ({ok} ok)"
    );

    // --check names the zone file and line too.
    let out = Command::new(STEERD)
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&needle) && err.contains("steerd.toml:"),
        "{err}"
    );
}

#[test]
fn zone_file_semantic_errors_name_the_line() {
    let (dir, config) = setup("zonefile-errors");
    let zone = dir.join("zones/files.test.zone");
    let text = format!("{}outside.example. IN A 192.0.2.9\n", files_zone(1));
    let line = text.lines().count();
    std::fs::write(&zone, text).unwrap();
    let out = Command::new(STEERD)
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("files.test.zone:{line}:")) && err.contains("outside zone"),
        "{err}"
    );
}
