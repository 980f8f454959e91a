//! DNSSEC online signing against a real validating resolver: unbound on
//! loopback, with the zone's DS (from steerd's state directory) as its
//! only trust anchor and a stub zone pointing at steerd. A static name, a
//! steered name, a name that does not exist (compact denial), a NODATA
//! and wildcard answers all validate (AD); a trust anchor for another key
//! makes the same queries SERVFAIL. Also: without DO nothing changes,
//! UDP and TCP sign alike, and a signed answer too big for the client's
//! UDP size is TC. `steerctl dnssec ds` prints the DS steerd signs for, and
//! a key rollover (pre-publish, then switch, then delete) driven by BIND
//! timing metadata keeps a resolver validating throughout.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::*;

const RECORDS: &str = r#"  { name = "www", type = "A", value = "192.0.2.80" },
  { name = "*.wild", type = "A", value = "192.0.2.90" },
  { name = "mail", type = "MX", value = "www" },
  { name = "sub", type = "NS", value = "ns.sub.example.test." },
  { name = "ns.sub", type = "A", value = "192.0.2.53" },
  { name = "big", type = "TXT", value = "BIG" },
  { name = "dn", type = "DNAME", value = "wild.example.test." },
]
dnssec = true"#;

/// The quickstart with `example.test.` signed, a wildcard, a delegation
/// and a TXT record too big for 512 bytes once signed; `extra` is
/// appended.
fn setup(name: &str, extra: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let text = std::fs::read_to_string(quickstart()).unwrap();
    let www = "  { name = \"www\", type = \"A\", value = \"192.0.2.80\" },\n]";
    assert!(text.contains(www), "the quickstart's zone changed");
    let records = RECORDS.replace("BIG", &"x".repeat(400));
    let config = dir.join("steerd.toml");
    let text = text.replacen(www, &records, 1) + extra;
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

fn unbound_binary() -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin"] {
        let path = Path::new(dir).join("unbound");
        if path.exists() {
            return path;
        }
    }
    panic!(
        "unbound is not installed: the DNSSEC test needs the Debian package `unbound` \
         (scripts/test installs it: apt-get install unbound)"
    );
}

struct Unbound {
    proc: Proc,
    port: u16,
}

/// A validating unbound whose only trust anchor is `anchor` (a DS line)
/// and which asks steerd on `steerd_port` for example.test.
fn unbound(dir: &Path, name: &str, anchor: &str, steerd_port: u16) -> Unbound {
    unbound_for(dir, name, anchor, steerd_port, &["example.test."])
}

/// As [`unbound`], asking steerd for each of `zones`.
fn unbound_for(dir: &Path, name: &str, anchor: &str, steerd_port: u16, zones: &[&str]) -> Unbound {
    let stubs: String = zones
        .iter()
        .map(|z| format!("stub-zone:\n  name: \"{z}\"\n  stub-addr: 127.0.0.1@{steerd_port}\n"))
        .collect();
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("anchor"), anchor).unwrap();
    let port = free_port();
    let conf = format!(
        "server:\n\
         \x20 interface: 127.0.0.1\n\
         \x20 port: {port}\n\
         \x20 do-daemonize: no\n\
         \x20 username: \"\"\n\
         \x20 chroot: \"\"\n\
         \x20 directory: \"{dir}\"\n\
         \x20 pidfile: \"\"\n\
         \x20 use-syslog: no\n\
         \x20 logfile: \"\"\n\
         \x20 verbosity: 1\n\
         \x20 val-log-level: 2\n\
         \x20 do-not-query-localhost: no\n\
         \x20 access-control: 127.0.0.0/8 allow\n\
         \x20 module-config: \"subnetcache validator iterator\"\n\
         \x20 send-client-subnet: 127.0.0.1\n\
         \x20 trust-anchor-file: \"{dir}/anchor\"\n\
         \x20 qname-minimisation: no\n\
         \x20 local-zone: \"test.\" nodefault\n\
         {stubs}\
         remote-control:\n\
         \x20 control-enable: no\n",
        dir = dir.display(),
    );
    std::fs::write(dir.join("unbound.conf"), conf).unwrap();
    let proc = Proc::spawn(
        Command::new(unbound_binary())
            .arg("-d")
            .arg("-c")
            .arg(dir.join("unbound.conf")),
        dir.join("unbound.log"),
    );
    let u = Unbound { proc, port };
    let up = poll(Duration::from_secs(20), || {
        dig(port, &["version.server", "CH", "TXT"])
            .contains("status:")
            .then_some(())
    });
    assert!(up.is_some(), "unbound not ready:\n{}", u.proc.log_text());
    u
}

fn flags(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(";; flags:"))
        .unwrap_or_default()
        .to_owned()
}

fn status(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap_or_default()
        .to_owned()
}

/// Records of one section of dig's output, without TTLs (they count down
/// in a resolver's cache) and sorted.
fn section(out: &str, name: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .skip_while(|l| !l.starts_with(&format!(";; {name} SECTION:")))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            let mut f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 1 {
                f.remove(1);
            }
            f.join(" ")
        })
        .collect();
    v.sort();
    v
}

/// A second zone, served unsigned.
const PLAIN_ZONE: &str = r#"
[[zones]]
origin = "plain.test."
ns = ["ns1.example.test."]
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test.", serial = 1, minimum = 60 }
records = [{ name = "www", type = "A", value = "192.0.2.7" }]
"#;

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_validating_resolver_trusts_signed_answers_and_refuses_another_key() {
    let (dir, config) = setup("dnssec-unbound", PLAIN_ZONE);
    let state = dir.join("state");
    let s = Steerd::start_with(config, state.clone());
    let dsset = state.join("dnssec/dsset-example.test.");
    let ds = std::fs::read_to_string(&dsset).unwrap();
    assert!(ds.starts_with("example.test. IN DS "), "{ds}");
    let key = std::fs::read_dir(state.join("dnssec"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("Kexample.test.+013+") && n.ends_with(".key"))
        .expect("a BIND .key file in the state directory");
    let tag: u16 = key["Kexample.test.+013+".len()..key.len() - 4]
        .parse()
        .unwrap();
    assert!(ds.contains(&format!(" DS {tag} 13 2 ")), "{ds}");

    // steerctl dnssec ds: the same DS, over gRPC from the keys in use.
    let out = s.steerctl(&["dnssec", "ds", "Example.Test"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, format!("{} ; active\n", ds.trim()));
    let out = s.steerctl(&["--output", "json", "dnssec", "ds", "example.test."]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("\"key_tag\": {tag}")), "{stdout}");
    for (zone, says) in [
        (
            "plain.test",
            "not found: zone plain.test. is served unsigned",
        ),
        (
            "other.test",
            "not found: zone other.test. is not served here",
        ),
        ("bad..name", "invalid request"),
    ] {
        let out = s.steerctl(&["dnssec", "ds", zone]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{zone}");
        assert!(stderr.contains(says), "{zone}: {stderr}");
    }

    let good = unbound(&dir, "good", &ds, s.dns);
    let ask = |args: &[&str]| {
        let mut all = vec!["+dnssec"];
        all.extend_from_slice(args);
        dig(good.port, &all)
    };
    for (args, expect) in [
        (&["www.example.test", "A"][..], Some("192.0.2.80")),
        (&["app.example.test", "A"][..], Some("")),
        (&["app.example.test", "AAAA"][..], Some("")),
        (&["mail.example.test", "MX"][..], Some("www.example.test.")),
        (&["x.wild.example.test", "A"][..], Some("192.0.2.90")),
        (&["a.b.wild.example.test", "A"][..], Some("192.0.2.90")),
        (&["example.test", "DNSKEY"][..], Some("257 3 13")),
        (&["example.test", "CDS"][..], Some(&format!("{tag} 13 2"))),
        (&["big.example.test", "TXT"][..], Some("xxxx")),
        // Below a DNAME: the signed DNAME, the CNAME it makes (unsigned,
        // RFC 6672 5.3.1) and the wildcard's signed A.
        (&["x.dn.example.test", "A"][..], Some("192.0.2.90")),
        // Compact denial: NOERROR with an NSEC at the name (RFC 9824).
        (&["nope.example.test", "A"][..], None),
        (&["www.example.test", "MX"][..], None),
        (&["wild.example.test", "A"][..], None),
        (&["sub.example.test", "DS"][..], None),
    ] {
        let out = ask(args);
        assert!(
            flags(&out).contains(" ad"),
            "{args:?} not validated:\n{out}\nunbound:\n{}",
            good.proc.log_text()
        );
        assert_eq!(status(&out), "NOERROR", "{args:?}:\n{out}");
        let answers = section(&out, "ANSWER");
        match expect {
            Some(text) => assert!(
                answers.iter().any(|a| a.contains(text))
                    && answers.iter().any(|a| a.contains("RRSIG")),
                "{args:?}:\n{out}"
            ),
            None => assert!(answers.is_empty(), "{args:?}:\n{out}"),
        }
    }

    // Steered answers per client subnet: unbound forwards the client's
    // ECS to steerd (subnetcache) and validates each region's answer.
    for (subnet, region) in [
        ("10.1.0.0/24", ["192.0.2.11", "192.0.2.12"]),
        ("10.2.0.0/24", ["192.0.2.21", "192.0.2.22"]),
    ] {
        let out = ask(&["app.example.test", "A", &format!("+subnet={subnet}")]);
        assert!(
            flags(&out).contains(" ad"),
            "{subnet} not validated:\n{out}"
        );
        let addrs: Vec<String> = section(&out, "ANSWER")
            .iter()
            .filter(|l| l.split(' ').nth(2) == Some("A"))
            .filter_map(|l| l.rsplit(' ').next().map(str::to_owned))
            .collect();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| region.contains(&a.as_str())),
            "{subnet}: {addrs:?}\n{out}"
        );
    }

    // delv validates on its own from the same trust anchor.
    let anchors = dir.join("delv-anchors.conf");
    let f: Vec<&str> = ds.split_whitespace().collect();
    std::fs::write(
        &anchors,
        format!(
            "trust-anchors {{ example.test. static-ds {} {} {} \"{}\"; }};\n",
            f[3], f[4], f[5], f[6]
        ),
    )
    .unwrap();
    let delv = Command::new("delv")
        .arg("@127.0.0.1")
        .args(["-p", &good.port.to_string(), "-a"])
        .arg(&anchors)
        .args(["+root=example.test", "www.example.test", "A"])
        .output()
        .unwrap();
    let (out, err) = text(&delv);
    assert!(out.contains("; fully validated"), "{out}{err}");

    // A trust anchor for another key: nothing in the zone validates.
    let other = ds
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            if i == 6 {
                "0".repeat(w.len())
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    assert_ne!(other.trim(), ds.trim());
    let bad = unbound(&dir, "bad", &other, s.dns);
    for name in ["www.example.test", "app.example.test", "nope.example.test"] {
        let out = dig(bad.port, &["+dnssec", name, "A"]);
        assert_eq!(status(&out), "SERVFAIL", "{name} with another key:\n{out}");
    }
}

const PARENT: &str = "$ORIGIN parent.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 1 3600 600 604800 60\n@ NS ns1\nns1 A 127.0.0.1\n\
    sub NS ns1.sub\nns1.sub A 127.0.0.1\next NS ns.elsewhere.example.\n";
const CHILD: &str = "$ORIGIN sub.parent.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 1 3600 600 604800 60\n@ NS ns1\nns1 A 127.0.0.1\n\
    www A 192.0.2.60\n";

#[test]
fn a_secure_delegation_validates_from_the_ds_the_parent_serves() {
    let dir = temp_dir("dnssec-delegation");
    let parent = dir.join("parent.test.zone");
    let child = dir.join("sub.parent.test.zone");
    std::fs::write(&parent, PARENT).unwrap();
    std::fs::write(&child, CHILD).unwrap();
    let zones = format!(
        "[[zones]]\norigin = \"parent.test.\"\nfile = \"{}\"\ndnssec = true\n\n\
         [[zones]]\norigin = \"sub.parent.test.\"\nfile = \"{}\"\ndnssec = true\n\n\
         # Client networks map",
        parent.display(),
        child.display()
    );
    let text = std::fs::read_to_string(quickstart())
        .unwrap()
        .replace("# Client networks map", &zones);
    let config = dir.join("steerd.toml");
    std::fs::write(&config, text).unwrap();
    let state = dir.join("state");

    // First start: both zones' keys are made. No DS at the cuts yet, so
    // a signed referral (to `ext`, a child served elsewhere) proves there
    // is none: an insecure delegation.
    let s = Steerd::start_with(config.clone(), state.clone());
    let ds_of =
        |zone: &str| std::fs::read_to_string(state.join(format!("dnssec/dsset-{zone}"))).unwrap();
    let (parent_ds, child_ds) = (ds_of("parent.test."), ds_of("sub.parent.test."));
    assert!(
        child_ds.starts_with("sub.parent.test. IN DS "),
        "{child_ds}"
    );
    let referral = s.dig(&["+dnssec", "+norec", "www.ext.parent.test", "A"]);
    let authority = section(&referral, "AUTHORITY");
    assert!(authority.iter().any(|r| r.contains(" NSEC ")), "{referral}");
    assert!(!authority.iter().any(|r| r.contains(" DS ")), "{referral}");
    drop(s);

    // The parent publishes the children's DS (`ext`'s a copy of `sub`'s):
    // referrals carry it, signed.
    let with_ds = |ds: &str| {
        let line = ds.lines().next().unwrap();
        let ext = line.replacen("sub.parent.test.", "ext.parent.test.", 1);
        std::fs::write(&parent, format!("{PARENT}{line}\n{ext}\n")).unwrap();
    };
    with_ds(&child_ds);
    let s = Steerd::start_with(config.clone(), state.clone());
    let referral = s.dig(&["+dnssec", "+norec", "www.ext.parent.test", "A"]);
    assert!(!flags(&referral).contains(" aa"), "a referral:\n{referral}");
    let authority = section(&referral, "AUTHORITY");
    for want in [" NS ", " DS ", " RRSIG DS "] {
        assert!(
            authority.iter().any(|r| r.contains(want)),
            "{want}:\n{referral}"
        );
    }
    assert!(
        !authority.iter().any(|r| r.contains(" NSEC ")),
        "{referral}"
    );
    let out = s.dig(&["+dnssec", "+norec", "sub.parent.test", "DS"]);
    assert!(flags(&out).contains(" aa"), "{out}");
    // Signed by the parent, not by the child whose apex it is.
    let signer = |out: &str| {
        section(out, "ANSWER")
            .iter()
            .find(|r| r.contains(" RRSIG DS "))
            .and_then(|r| r.split(' ').nth(10).map(str::to_owned))
    };
    assert_eq!(signer(&out).as_deref(), Some("parent.test."), "{out}");
    for args in [
        &["+tcp"][..],
        &["+subnet=10.1.0.0/24"][..],
        &["+nocookie"][..],
    ] {
        let mut all = vec!["+dnssec", "+norec", "sub.parent.test", "DS"];
        all.extend_from_slice(args);
        let out = s.dig(&all);
        assert_eq!(
            signer(&out).as_deref(),
            Some("parent.test."),
            "{args:?}:\n{out}"
        );
    }

    // A validating resolver anchored at the parent follows the chain.
    let zones = ["parent.test.", "sub.parent.test."];
    let u = unbound_for(&dir, "chain", &parent_ds, s.dns, &zones);
    let out = dig(u.port, &["+dnssec", "www.sub.parent.test", "A"]);
    assert!(
        flags(&out).contains(" ad"),
        "not validated:\n{out}\n{}",
        u.proc.log_text()
    );
    assert!(
        section(&out, "ANSWER")
            .iter()
            .any(|r| r.ends_with(" A 192.0.2.60")),
        "{out}"
    );
    drop(u);
    drop(s);

    // A DS for another key at the parent: the child does not validate.
    let mut wrong: Vec<String> = child_ds.split_whitespace().map(str::to_owned).collect();
    wrong[6] = "0".repeat(wrong[6].len());
    with_ds(&wrong.join(" "));
    let s = Steerd::start_with(config, state);
    let u = unbound_for(&dir, "broken-chain", &parent_ds, s.dns, &zones);
    let out = dig(u.port, &["+dnssec", "www.sub.parent.test", "A"]);
    assert_eq!(status(&out), "SERVFAIL", "with a wrong DS:\n{out}");
}

#[test]
fn signing_needs_do_and_answers_alike_over_udp_and_tcp() {
    // UDP by the fast path's workers, then on the runtime.
    for extra in ["", "\n[dns]\nudp_workers = 0\n"] {
        signs_alike(extra);
    }
}

fn signs_alike(extra: &str) {
    let (dir, config) = setup("dnssec-wire", extra);
    let s = Steerd::start_with(config, dir.join("state"));

    // Without DO: no DNSSEC records, and NXDOMAIN stays NXDOMAIN.
    let plain = s.dig(&["+norec", "nope.example.test", "A"]);
    assert_eq!(status(&plain), "NXDOMAIN", "{plain}");
    assert!(
        !plain.contains("NSEC") && !plain.contains("RRSIG"),
        "{plain}"
    );
    let plain = s.dig(&["+norec", "www.example.test", "A"]);
    assert!(!plain.contains("RRSIG"), "{plain}");
    assert!(!plain.contains("flags: do"), "{plain}");

    // With DO: the same records over UDP and TCP, signatures included
    // (the cache signs an RRset once).
    for args in [
        &["www.example.test", "A"][..],
        &["app.example.test", "A", "+subnet=10.1.0.0/24"][..],
        &["nope.example.test", "A"][..],
        &["x.wild.example.test", "A"][..],
        &["x.sub.example.test", "A"][..],
    ] {
        let mut udp = vec!["+dnssec", "+norec"];
        udp.extend_from_slice(args);
        let mut tcp = udp.clone();
        tcp.push("+tcp");
        let (u, t) = (s.dig(&udp), s.dig(&tcp));
        assert!(u.contains("flags: do"), "{args:?}:\n{u}");
        for name in ["ANSWER", "AUTHORITY"] {
            assert_eq!(section(&u, name), section(&t, name), "{args:?} {name}");
        }
        assert!(u.contains("RRSIG") || u.contains("NSEC"), "{u}");
    }
    let nx = s.dig(&["+dnssec", "+norec", "nope.example.test", "A"]);
    assert_eq!(status(&nx), "NOERROR", "{nx}");
    assert!(
        nx.contains("NSEC\t\\000.nope.example.test. RRSIG NSEC TYPE128"),
        "{nx}"
    );

    // Too big for the 512 bytes offered: TC, no records; whole over TCP.
    let big = s.dig(&[
        "+dnssec",
        "+norec",
        "+bufsize=512",
        "+ignore",
        "big.example.test",
        "TXT",
    ]);
    assert!(flags(&big).contains(" tc"), "{big}");
    assert!(section(&big, "ANSWER").is_empty(), "{big}");
    let big = s.dig(&["+dnssec", "+norec", "+tcp", "big.example.test", "TXT"]);
    assert!(big.contains("RRSIG\tTXT 13 3"), "{big}");
}

/// The `.private` and `.key` files of the zone's keys in `dir`.
fn key_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("Kexample.test.+013+"))
        })
        .collect();
    v.sort();
    v
}

fn tag_of(private: &Path) -> u16 {
    let name = private.file_name().unwrap().to_str().unwrap();
    name["Kexample.test.+013+".len()..name.len() - ".private".len()]
        .parse()
        .unwrap()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sets `field` (Publish, Activate, Inactive, Delete) in a `.private`
/// file as `dnssec-settime` would, in BIND's YYYYMMDDHHMMSS (UTC).
fn set_time(private: &Path, field: &str, at: i64) {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{at}"), "+%Y%m%d%H%M%S"])
        .output()
        .unwrap();
    let stamp = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let text = std::fs::read_to_string(private).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{field}:")))
        .map(str::to_owned)
        .collect();
    lines.push(format!("{field}: {stamp}"));
    std::fs::write(private, lines.join("\n") + "\n").unwrap();
}

/// Key tags of the RRSIGs over `name`/`qtype` in steerd's direct answer.
fn rrsig_tags(s: &Steerd, name: &str, qtype: &str) -> Vec<u16> {
    let out = s.dig(&["+dnssec", "+norec", name, qtype]);
    let mut tags: Vec<u16> = out
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"RRSIG") && f.get(4) == Some(&qtype))
                .then(|| f.get(10)?.parse().ok())
                .flatten()
        })
        .collect();
    tags.sort_unstable();
    tags
}

/// Key tags in steerd's DNSKEY RRset.
fn dnskey_tags(s: &Steerd) -> Vec<u16> {
    let out = s.dig(&["+norec", "+multi", "example.test", "DNSKEY"]);
    let mut tags: Vec<u16> = out
        .lines()
        .filter_map(|l| l.split("key id = ").nth(1))
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    tags.sort_unstable();
    tags
}

#[test]
fn a_rollover_pre_publishes_then_switches_and_validation_holds() {
    let (dir, config) = setup("dnssec-rollover", "");
    let state = dir.join("state");
    let keys = state.join("dnssec");

    // Two keys made by steerd itself: start once for key A, set it
    // aside, start again for key B (it makes one when there is none).
    let mut first = Steerd::start_with(config.clone(), state.clone());
    first.proc.kill();
    let aside = dir.join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    for f in key_files(&keys) {
        std::fs::rename(&f, aside.join(f.file_name().unwrap())).unwrap();
    }
    let mut second = Steerd::start_with(config.clone(), state.clone());
    second.proc.kill();
    for f in key_files(&aside) {
        std::fs::rename(&f, keys.join(f.file_name().unwrap())).unwrap();
    }
    let privates: Vec<PathBuf> = key_files(&keys)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "private"))
        .collect();
    assert_eq!(privates.len(), 2, "{privates:?}");

    // A signs until the switch; B is published now (pre-publication),
    // signs from the switch; A stays published until it is deleted.
    let (a, b) = (&privates[0], &privates[1]);
    let (tag_a, tag_b) = (tag_of(a), tag_of(b));
    let t0 = unix_now();
    let (switch, delete) = (t0 + 10, t0 + 18);
    set_time(a, "Inactive", switch);
    set_time(a, "Delete", delete);
    set_time(b, "Publish", t0 - 60);
    set_time(b, "Activate", switch);
    let s = Steerd::start_with(config, state.clone());

    let mut both = vec![tag_a, tag_b];
    both.sort_unstable();
    assert_eq!(dnskey_tags(&s), both);
    assert_eq!(rrsig_tags(&s, "www.example.test", "A"), vec![tag_a]);
    let out = s.steerctl(&["dnssec", "ds", "example.test"]);
    let (ds, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        ds.contains(&format!(" DS {tag_a} 13 2 ")) && ds.contains("; active"),
        "{ds}"
    );
    assert!(
        ds.contains(&format!(" DS {tag_b} 13 2 ")) && ds.contains("; published"),
        "{ds}"
    );
    // The trust anchor covers both keys (as the parent's DS set would
    // during a double-DS rollover).
    let anchor: String = ds
        .lines()
        .map(|l| l.split(" ;").next().unwrap_or_default().to_owned() + "\n")
        .collect();
    let u = unbound(&dir, "both", &anchor, s.dns);
    let validated = |name: &str| {
        let out = dig(u.port, &["+dnssec", name, "A"]);
        assert!(
            flags(&out).contains(" ad") && status(&out) == "NOERROR",
            "{name} not validated:\n{out}\nunbound:\n{}",
            u.proc.log_text()
        );
    };
    validated("www.example.test");
    validated("before.wild.example.test");

    // The switch: B signs, A does not; both are in the DNSKEY RRset.
    let switched = poll(Duration::from_secs(20), || {
        (rrsig_tags(&s, "www.example.test", "A") == vec![tag_b]).then_some(())
    });
    assert!(switched.is_some(), "B never signed:\n{}", s.proc.log_text());
    assert!(unix_now() >= switch);
    assert_eq!(dnskey_tags(&s), both);
    assert_eq!(rrsig_tags(&s, "example.test", "DNSKEY"), vec![tag_b]);
    validated("www.example.test");
    validated("after.wild.example.test");
    validated("app.example.test");

    // A deleted: gone from the DNSKEY RRset and the DS list; cached and
    // fresh answers keep validating, and a resolver starting now too.
    let deleted = poll(Duration::from_secs(20), || {
        (dnskey_tags(&s) == vec![tag_b]).then_some(())
    });
    assert!(deleted.is_some(), "A never left:\n{}", s.proc.log_text());
    let out = s.steerctl(&["dnssec", "ds", "example.test"]);
    let (ds, _) = text(&out);
    assert_eq!(ds.lines().count(), 1, "{ds}");
    assert!(
        ds.contains(&format!(" DS {tag_b} 13 2 ")) && ds.contains("; active"),
        "{ds}"
    );
    validated("deleted.wild.example.test");
    let fresh = unbound(&dir, "fresh", &anchor, s.dns);
    let out = dig(fresh.port, &["+dnssec", "www.example.test", "A"]);
    assert!(flags(&out).contains(" ad"), "{out}");
    // Only A's DS: nothing validates once A is gone.
    let only_a = anchor
        .lines()
        .find(|l| l.contains(&format!(" DS {tag_a} ")))
        .unwrap()
        .to_owned();
    let stale = unbound(&dir, "stale", &only_a, s.dns);
    let out = dig(stale.port, &["+dnssec", "www.example.test", "A"]);
    assert_eq!(status(&out), "SERVFAIL", "{out}");

    // Signing metrics: signed and cached RRsets, no failures; key counts.
    let (_, metrics) = http_get(s.http, "/metrics").unwrap();
    let sample = |needle: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(-1.0)
    };
    let z = "zone=\"example.test.\"";
    assert!(
        sample(&format!(
            "steer_dnssec_signatures_total{{{z},result=\"signed\"}}"
        )) > 0.0,
        "{metrics}"
    );
    assert!(
        sample(&format!(
            "steer_dnssec_signatures_total{{{z},result=\"cached\"}}"
        )) > 0.0,
        "{metrics}"
    );
    assert!(
        sample(&format!(
            "steer_dnssec_signatures_total{{{z},result=\"failed\"}}"
        )) <= 0.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&format!("steer_dnssec_key_errors_total{{{z}}}")),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&format!("steer_dnssec_keys{{{z},state=\"active\"}}")),
        1.0,
        "{metrics}"
    );
}
