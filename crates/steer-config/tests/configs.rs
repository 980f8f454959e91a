//! Every shipped config parses; unknown keys and bad values are refused with
//! file:line:col and the key; all errors are reported at once.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(configs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn is_agent(path: &Path) -> bool {
    path.file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("agent-")
}

#[test]
fn every_shipped_config_parses() {
    let files = shipped();
    assert!(files.len() >= 2, "{files:?}");
    for path in files {
        let result = if is_agent(&path) {
            steer_config::load_agent(&path).map(|_| ())
        } else {
            steer_config::load_steerd(&path).map(|_| ())
        };
        if let Err(e) = result {
            panic!("{} does not parse:\n{e}", path.display());
        }
    }
}

#[test]
fn quickstart_is_the_documented_world() {
    let c = steer_config::load_steerd(&configs_dir().join("quickstart.toml")).unwrap();
    let t = &c.topology;
    assert_eq!(t.regions.len(), 3);
    assert_eq!(t.pops.len(), 6);
    assert!(t.pops.iter().all(|p| p.capacity_rps == 10_000.0));
    assert_eq!(t.client_networks.len(), 6);
    assert_eq!(t.services[0].fqdn, "app.example.test.");
    assert_eq!(t.services[0].ttl, 30);
    assert_eq!(t.services[0].max_records, 2);
    assert_eq!(
        t.health.unknown_health,
        steer_types::UnknownHealth::AssumeUp
    );
    assert_eq!(c.server.dns_listen, ["127.0.0.1:5353".parse().unwrap()]);
    assert_eq!(c.server.grpc_listen.to_string(), "127.0.0.1:50051");
    assert_eq!(c.server.http_listen.to_string(), "127.0.0.1:9100");
    let fb: Vec<&str> = t.regions[2].fallback.iter().map(|r| r.as_str()).collect();
    assert_eq!(fb, ["eu-west", "us-east"]);
}

fn with_edit(name: &str, original: &str, from: &str, to: &str) -> (PathBuf, String) {
    let text = std::fs::read_to_string(configs_dir().join(original)).unwrap();
    assert!(text.contains(from), "{from:?} not in {original}");
    let text = text.replacen(from, to, 1);
    let dir = std::env::temp_dir().join(format!("steer-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn unknown_keys_are_refused_in_every_table() {
    for (from, to, key) in [
        ("[server]\n", "[server]\nlisten_dns = \"x\"\n", "listen_dns"),
        (
            "[health]\n",
            "[health]\nunknown_healht = \"assume-up\"\n",
            "unknown_healht",
        ),
        ("[[pops]]\n", "[[pops]]\nweight = 3\n", "weight"),
        ("[[services]]\n", "[[services]]\nttls = 3\n", "ttls"),
    ] {
        let (path, text) = with_edit("unknown.toml", "quickstart.toml", from, to);
        let err = steer_config::load_steerd(&path).unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.line, line_of(&text, &format!("{key} =")), "{err}");
        assert_eq!(e.column, 1, "{err}");
        assert!(e.message.contains(key), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{}:{}:", path.display(), e.line)),
            "{err}"
        );
    }
    let (path, text) = with_edit(
        "agent.toml",
        "agent-fra1.toml",
        "[[probes]]\n",
        "[[probes]]\nretries = 3\n",
    );
    let err = steer_config::load_agent(&path).unwrap_err();
    assert_eq!(err.0[0].line, line_of(&text, "retries"));
}

/// Issue 18, item 4: with several unknown keys only the first was
/// reported. Each is, with its line, in tables, arrays of tables and
/// whole unknown tables alike, in the steerd, agent and tokens files.
#[test]
fn every_unknown_key_is_reported_with_its_line() {
    let (path, text) = with_edit(
        "unknown-many.toml",
        "quickstart.toml",
        "[health]\n",
        "[health]\nunknown_healht = \"assume-up\"\nstale_afterr = \"5s\"\n",
    );
    let text = text.replacen("[[pops]]\n", "[[pops]]\nweight = 3\n", 1)
        + "\n[nonsense]\nfoo = 1\nbar = 2\n";
    std::fs::write(&path, &text).unwrap();
    let err = steer_config::load_steerd(&path).unwrap_err();
    let got: Vec<(usize, bool)> = err
        .0
        .iter()
        .map(|e| (e.line, e.message.contains("unknown field")))
        .collect();
    let want: Vec<(usize, bool)> = [
        "unknown_healht =",
        "stale_afterr =",
        "weight = 3",
        "[nonsense]",
    ]
    .iter()
    .map(|k| (line_of(&text, k), true))
    .collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got, want_sorted, "{err}");
    for key in ["unknown_healht", "stale_afterr", "weight", "nonsense"] {
        assert!(err.to_string().contains(&format!("`{key}`")), "{err}");
    }

    let (path, text) = with_edit(
        "agent-many.toml",
        "agent-fra1.toml",
        "[[probes]]\n",
        "report_intervall = \"1s\"\n[[probes]]\nretries = 3\n",
    );
    let err = steer_config::load_agent(&path).unwrap_err();
    let lines: Vec<usize> = err.0.iter().map(|e| e.line).collect();
    assert_eq!(
        lines,
        [
            line_of(&text, "report_intervall"),
            line_of(&text, "retries")
        ],
        "{err}"
    );
}

#[test]
fn all_semantic_errors_are_reported_together() {
    let (path, text) = with_edit(
        "many.toml",
        "quickstart.toml",
        "id = \"ord1\"\nregion = \"us-east\"\nipv4 = \"192.0.2.22\"",
        "id = \"ord1\"\nregion = \"us-eest\"\nipv4 = \"192.0.2.300\"",
    );
    let text2 = text.replacen("ttl = 30", "ttl = 999999", 1).replacen(
        "\"10.2.0.0/16\"",
        "\"10.2.0.1/16\"",
        1,
    );
    std::fs::write(&path, &text2).unwrap();
    let err = steer_config::load_steerd(&path).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "regions[1].networks",
            "pops[3].region",
            "pops[3].ipv4",
            "services[0].ttl"
        ],
        "{err}"
    );
    assert_eq!(err.0[1].line, line_of(&text2, "us-eest"));
    assert!(
        err.0[0].message.contains("did you mean 10.2.0.0/16"),
        "{err}"
    );
}

#[test]
fn agent_probe_errors_name_the_probe() {
    let (path, _) = with_edit(
        "agent-bad.toml",
        "agent-fra1.toml",
        "kind = \"tcp\"",
        "kind = \"icmp\"",
    );
    let err = steer_config::load_agent(&path).unwrap_err();
    assert_eq!(err.0[0].key, "probes[0].kind", "{err}");
    assert!(err.0[0].message.contains("tcp, http or exec"), "{err}");
}

#[test]
fn health_guards_and_peer_probes_are_validated() {
    let dir = std::env::temp_dir().join(format!("steer-cfg-guards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let qs = std::fs::read_to_string(configs_dir().join("quickstart.toml")).unwrap();
    let bad = qs
        .replace("suppress = 3000", "suppress = 3000\nbogus = 1")
        .replace("reuse = 750", "reuse = 5000")
        .replace("max_down_share = 0.3", "max_down_share = 1.5");
    let path = dir.join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let text = steer_config::load_steerd(&path).unwrap_err().to_string();
    assert!(text.contains("bogus"), "{text}");
    let good = steer_config::load_steerd(&configs_dir().join("quickstart.toml")).unwrap();
    assert_eq!(good.topology.health.guards.correlation.max_down_share, 0.3);
    assert_eq!(good.topology.health.guards.damping.suppress, 3000.0);

    let agent = steer_config::load_agent(&configs_dir().join("agent-ams1.toml")).unwrap();
    assert_eq!(agent.peers.len(), 2);
    assert_eq!(agent.peers[0].pop, "fra1");
    assert!(agent.load_command.is_some());
    let src = std::fs::read_to_string(configs_dir().join("agent-ams1.toml")).unwrap();
    let path = dir.join("agent-bad.toml");
    std::fs::write(&path, src.replace("pop = \"fra1\"", "service = \"app\"")).unwrap();
    let text = steer_config::load_agent(&path).unwrap_err().to_string();
    assert!(text.contains("peer probe"), "{text}");
}

#[test]
fn quickstart_bgp_is_the_documented_peering() {
    let c = steer_config::load_steerd(&configs_dir().join("quickstart.toml")).unwrap();
    let b = c.bgp.unwrap();
    let peers: Vec<(String, String, u16, u32, u32)> = b
        .peers
        .iter()
        .map(|p| {
            (
                p.pop.to_string(),
                p.address.to_string(),
                p.port,
                p.peer_as,
                p.local_as,
            )
        })
        .collect();
    assert_eq!(
        peers,
        [
            ("fra1".into(), "127.0.0.2".into(), 1179, 65001, 65000),
            ("ams1".into(), "127.0.0.3".into(), 1179, 65002, 65000)
        ]
    );
    // Next hops default to the PoP's addresses.
    assert_eq!(b.peers[0].next_hop_ipv4.unwrap().to_string(), "192.0.2.11");
    assert_eq!(
        b.peers[1].next_hop_ipv6.unwrap().to_string(),
        "2001:db8::12"
    );
    assert_eq!(b.announce.communities, [65000 << 16 | 100]);
    assert_eq!(b.prepend.communities, [65000 << 16 | 200]);
    assert!(b.graceful_restart && !b.add_path);
    let anycast: Vec<String> = c.topology.services[0]
        .anycast
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(anycast, ["203.0.113.0/24", "2001:db8:ffff::/48"]);
}

#[test]
fn bgp_tables_refuse_unknown_keys_and_report_every_error() {
    for (from, to, key) in [
        ("[bgp]\n", "[bgp]\nlocal_asn = 1\n", "local_asn"),
        (
            "[[bgp.peers]]\n",
            "[[bgp.peers]]\nremote_as = 1\n",
            "remote_as",
        ),
    ] {
        let (path, text) = with_edit("bgp-unknown.toml", "quickstart.toml", from, to);
        let err = steer_config::load_steerd(&path).unwrap_err();
        assert_eq!(err.0[0].line, line_of(&text, &format!("{key} =")), "{err}");
        assert!(err.0[0].message.contains(key), "{err}");
    }
    let (path, text) = with_edit(
        "bgp-bad.toml",
        "quickstart.toml",
        "pop = \"fra1\"\naddress = \"127.0.0.2\"",
        "pop = \"frx1\"\naddress = \"127.0.0.2\"\nmd5_password = \"s3cret\"",
    );
    let text = text.replacen("\"65000:200\"", "\"65000:x\"", 1).replacen(
        "on_shutdown = \"graceful-restart\"",
        "on_shutdown = \"drop\"",
        1,
    );
    std::fs::write(&path, &text).unwrap();
    let err = steer_config::load_steerd(&path).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "bgp.on_shutdown",
            "bgp.prepend",
            "bgp.peers[0].pop",
            "bgp.peers[0].md5_password"
        ],
        "{err}"
    );
    assert!(err.0[2].message.contains("unknown pop"), "{err}");
    assert!(err.0[1].message.contains("65000:x"), "{err}");
}

#[test]
fn bgp_startup_hold_defaults_from_health_and_must_fit_restart_time() {
    // assume-up (the quickstart): no hold.
    let c = steer_config::load_steerd(&configs_dir().join("quickstart.toml")).unwrap();
    assert_eq!(c.bgp.unwrap().startup_hold, Duration::ZERO);
    // assume-down: hold as long as a silent agent is trusted (stale_after).
    let (path, _) = with_edit(
        "bgp-hold.toml",
        "quickstart.toml",
        "unknown_health = \"assume-up\"",
        "unknown_health = \"assume-down\"",
    );
    let c = steer_config::load_steerd(&path).unwrap();
    assert_eq!(c.bgp.unwrap().startup_hold, Duration::from_secs(10));
    // A hold the peers would not wait for is refused, naming the key.
    let (path, text) = with_edit(
        "bgp-hold-long.toml",
        "quickstart.toml",
        "restart_time = 120\n",
        "restart_time = 120\nstartup_hold = \"3m\"\n",
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    assert_eq!(err.0[0].key, "bgp.startup_hold", "{err}");
    assert_eq!(err.0[0].line, line_of(&text, "startup_hold ="), "{err}");
    assert!(err.0[0].message.contains("restart_time"), "{err}");
}

#[test]
fn dns_keys_are_validated_with_line_and_key() {
    // Unknown keys in [dns] and [dns.rrl] are refused.
    for (extra, key) in [
        ("[dns]\nudp_paylod = 1232\n", "udp_paylod"),
        ("[dns.rrl]\nrate = 5\n", "rate"),
    ] {
        let (path, text) = with_edit(
            "dns-unknown.toml",
            "quickstart.toml",
            "[[regions]]\n",
            &format!("{extra}\n[[regions]]\n"),
        );
        let err = steer_config::load_steerd(&path).unwrap_err();
        assert_eq!(err.0[0].line, line_of(&text, &format!("{key} =")), "{err}");
        assert!(err.0[0].message.contains(key), "{err}");
    }
    // Bad values in the DNS keys of a service, all reported at once.
    let (path, text) = with_edit(
        "dns-bad.toml",
        "quickstart.toml",
        "max_records = 2\n",
        "max_records = 2\nselection = \"roundrobin\"\nfallback = [\"192.0.2.300\"]\ncname = \"{city}.cdn.example.net.\"\n",
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    let lines: Vec<(usize, &str)> = err.0.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        lines,
        [
            (line_of(&text, "selection ="), "services[0].selection"),
            (line_of(&text, "192.0.2.300"), "services[0].fallback"),
            (line_of(&text, "cname ="), "services[0].cname"),
        ],
        "{err}"
    );
    // The shipped zone-file example and a good [dns.rrl] parse.
    let (path, _) = with_edit(
        "dns-ok.toml",
        "quickstart.toml",
        "max_records = 2\n",
        "max_records = 2\nselection = \"random\"\nfallback = [\"192.0.2.99\", \"2001:db8::99\"]\n",
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[dns]\nudp_payload = 1400\nudp_workers = 2\n[dns.rrl]\nresponses_per_second = 5\nslip = 0\nwindow = \"2s\"\n");
    std::fs::write(&path, text).unwrap();
    let c = steer_config::load_steerd(&path).unwrap();
    assert_eq!(c.dns.udp_payload, 1400);
    assert_eq!(c.dns.udp_workers, Some(2));
    let rrl = c.dns.rrl.unwrap();
    assert_eq!((rrl.responses_per_second, rrl.slip), (5, 0));
    assert_eq!(c.dns.services[0].selection, steer_types::Selection::Random);
    assert_eq!(c.dns.services[0].fallback.len(), 2);
    let z = steer_config::load_steerd(&configs_dir().join("zonefiles.toml")).unwrap();
    assert_eq!(z.zones[0].origin, "example.org.");
    assert_eq!(z.zones[0].soa.serial, 2_026_112_801);
}

#[test]
fn dns_listen_takes_one_address_or_a_list_and_names_line_and_key() {
    let from = "dns_listen = \"127.0.0.1:5353\"";
    let (path, _) = with_edit(
        "listen-list.toml",
        "quickstart.toml",
        from,
        "dns_listen = [\"127.0.0.1:53\", \"[::1]:53\", \"[::]:5300\"]",
    );
    let c = steer_config::load_steerd(&path).unwrap();
    let want: Vec<std::net::SocketAddr> = ["127.0.0.1:53", "[::1]:53", "[::]:5300"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(c.server.dns_listen, want);
    for (bad, says) in [
        (
            "dns_listen = [\"127.0.0.1:53\", \"localhost\"]",
            "localhost",
        ),
        ("dns_listen = []", "at least one"),
        ("dns_listen = [\"[::]:53\", \"[::]:53\"]", "twice"),
        ("dns_listen = [53]", "string"),
    ] {
        let (path, text) = with_edit("listen-bad.toml", "quickstart.toml", from, bad);
        let err = steer_config::load_steerd(&path).unwrap_err();
        assert_eq!(err.0[0].key, "server.dns_listen", "{err}");
        assert_eq!(err.0[0].line, line_of(&text, "dns_listen ="), "{err}");
        assert!(err.0[0].message.contains(says), "{err}");
    }
}

#[test]
fn rrl_is_on_by_default_sparing_loopback_and_tcp_limits_have_defaults() {
    let c = steer_config::load_steerd(&configs_dir().join("quickstart.toml")).unwrap();
    let rrl = c.dns.rrl.unwrap();
    assert!(rrl.is_exempt("127.0.0.1".parse().unwrap()));
    assert!(rrl.is_exempt("::1".parse().unwrap()));
    assert!(rrl.is_exempt("::ffff:127.0.0.9".parse().unwrap()));
    assert!(!rrl.is_exempt("192.0.2.1".parse().unwrap()));
    assert_eq!(c.dns.tcp, steer_types::TcpLimits::default());
    assert_eq!(
        (
            c.dns.tcp.max_connections,
            c.dns.tcp.max_connections_per_client
        ),
        (1024, 64)
    );

    let (path, _) = with_edit(
        "dns-limits.toml",
        "quickstart.toml",
        "[[regions]]\n",
        "[dns]\ntcp_max_connections = 100\ntcp_max_connections_per_client = 10\n\
         tcp_idle_timeout = \"3s\"\ncalibrate_every = \"off\"\n[dns.rrl]\nexempt = [\"10.0.0.0/8\", \"192.0.2.1\"]\n\n[[regions]]\n",
    );
    let c = steer_config::load_steerd(&path).unwrap();
    assert_eq!(c.dns.calibrate_every, None, "\"off\" turns calibration off");
    assert_eq!(
        c.dns.tcp,
        steer_types::TcpLimits {
            max_connections: 100,
            max_connections_per_client: 10,
            idle_timeout: Duration::from_secs(3),
        }
    );
    let rrl = c.dns.rrl.unwrap();
    assert!(rrl.is_exempt("10.9.9.9".parse().unwrap()));
    assert!(rrl.is_exempt("192.0.2.1".parse().unwrap()));
    assert!(!rrl.is_exempt("127.0.0.1".parse().unwrap()));

    // Off only when asked.
    let (path, _) = with_edit(
        "dns-rrl-off.toml",
        "quickstart.toml",
        "[[regions]]\n",
        "[dns.rrl]\nenabled = false\n\n[[regions]]\n",
    );
    assert_eq!(steer_config::load_steerd(&path).unwrap().dns.rrl, None);

    // Bad values, every one reported with its line and key.
    let (path, text) = with_edit(
        "dns-limits-bad.toml",
        "quickstart.toml",
        "[[regions]]\n",
        "[dns]\ntcp_max_connections = 0\ntcp_idle_timeout = \"1h\"\ncalibrate_every = \"2h\"\n\
         [dns.rrl]\nexempt = [\"10.0.0.0/33\"]\n\n[[regions]]\n",
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    let got: Vec<(usize, &str)> = err.0.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (
                line_of(&text, "tcp_max_connections ="),
                "dns.tcp_max_connections"
            ),
            (line_of(&text, "tcp_idle_timeout ="), "dns.tcp_idle_timeout"),
            (line_of(&text, "calibrate_every ="), "dns.calibrate_every"),
            (line_of(&text, "exempt ="), "dns.rrl.exempt"),
        ],
        "{err}"
    );
}

#[test]
fn identity_version_and_nsid_are_read_and_checked() {
    let (path, _) = with_edit(
        "dns-identity.toml",
        "quickstart.toml",
        "[[regions]]\n",
        "[dns]\nidentity = \"fra1-a\"\nversion = \"\"\nnsid = \"fra1-a\"\n\n[[regions]]\n",
    );
    let c = steer_config::load_steerd(&path).unwrap();
    assert_eq!(c.dns.identity.as_deref(), Some("fra1-a"));
    assert_eq!(c.dns.version.as_deref(), Some(""), "empty: hidden");
    assert_eq!(c.dns.nsid.as_deref(), Some("fra1-a"));
    let c = steer_config::load_steerd(&configs_dir().join("quickstart.toml")).unwrap();
    assert_eq!(
        (c.dns.identity, c.dns.version, c.dns.nsid),
        (None, None, None)
    );

    let long = "x".repeat(256);
    let (path, text) = with_edit(
        "dns-identity-bad.toml",
        "quickstart.toml",
        "[[regions]]\n",
        &format!("[dns]\nidentity = \"{long}\"\nnsid = \"tab\\there\"\n\n[[regions]]\n"),
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    let got: Vec<(usize, &str)> = err.0.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (line_of(&text, "identity ="), "dns.identity"),
            (line_of(&text, "nsid ="), "dns.nsid"),
        ],
        "{err}"
    );
}

#[test]
fn cluster_names_the_deployment_and_must_not_be_empty() {
    let from = "[server]\n";
    let c = steer_config::load_steerd(&configs_dir().join("quickstart.toml")).unwrap();
    assert_eq!(c.server.cluster, None);
    let (path, _) = with_edit(
        "cluster.toml",
        "quickstart.toml",
        from,
        "[server]\ncluster = \"edge-prod\"\n",
    );
    let c = steer_config::load_steerd(&path).unwrap();
    assert_eq!(c.server.cluster.as_deref(), Some("edge-prod"));
    let (path, text) = with_edit(
        "cluster-empty.toml",
        "quickstart.toml",
        from,
        "[server]\ncluster = \" \"\n",
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    assert_eq!(err.0[0].line, line_of(&text, "cluster ="), "{err}");
    assert!(err.0[0].message.contains("must not be empty"), "{err}");
}

#[test]
fn slos_alerting_and_cluster_parse_and_name_their_errors() {
    // The quickstart ships the minimal form, as written; here it
    // is checked together with [alerting].
    let quickstart = std::fs::read_to_string(configs_dir().join("quickstart.toml")).unwrap();
    let minimal = "[[slos]]\nname = \"app-availability\"\nservice = \"app\"\nobjective = 0.999\nwindow = \"28d\"\n";
    assert!(
        quickstart.contains(minimal),
        "the quickstart's SLO is not the minimal form"
    );
    let (path, _) = with_edit(
        "slo-ok.toml",
        "quickstart.toml",
        minimal,
        &format!("{minimal}\n[alerting]\nalertmanagers = [\"http://127.0.0.1:9093\"]\n"),
    );
    let c = steer_config::load_steerd(&path).unwrap();
    assert_eq!(c.slos.len(), 1);
    let s = &c.slos[0];
    assert_eq!(
        (s.name.as_str(), s.service.as_str()),
        ("app-availability", "app")
    );
    assert_eq!(s.objective.target(), 0.999);
    assert_eq!(s.window, Duration::from_secs(28 * 86_400));
    assert_eq!(s.alerts, steer_slo::default_alert_rules());
    assert_eq!(c.alerting.alertmanagers, ["http://127.0.0.1:9093"]);
    assert!(c.cluster.is_none());

    // Every mistake at its line, with its key.
    let (path, text) = with_edit(
        "slo-bad.toml",
        "quickstart.toml",
        "[[regions]]\n",
        "[[slos]]\nname = \"lat\"\nservice = \"nosuch\"\nobjective = 99.9\nkind = \"latency\"\nwindow = \"28days\"\npop = \"xyz1\"\n[[slos.alerts]]\nseverity = \"wake-everyone\"\nburn_rate = 2\nlong = \"1h\"\nshort = \"5m\"\n[[slos.alerts]]\nseverity = \"page\"\nburn_rate = 2\nlong = \"5m\"\nshort = \"1h\"\n\n[alerting]\nalertmanagers = [\"127.0.0.1:9093\"]\n\n[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nlease_ttl = \"500ms\"\n\n[[regions]]\n",
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    let got: Vec<(usize, &str)> = err.0.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (line_of(&text, "service = \"nosuch\""), "slos[0].service"),
            (line_of(&text, "objective = 99.9"), "slos[0].objective"),
            (line_of(&text, "kind = \"latency\""), "slos[0].kind"),
            (line_of(&text, "window = \"28days\""), "slos[0].window"),
            (line_of(&text, "pop = \"xyz1\""), "slos[0].pop"),
            (
                line_of(&text, "wake-everyone"),
                "slos[0].alerts[0].severity"
            ),
            (line_of(&text, "short = \"1h\""), "slos[0].alerts[1].short"),
            (
                line_of(&text, "127.0.0.1:9093\"]"),
                "alerting.alertmanagers"
            ),
            (line_of(&text, "lease_ttl"), "cluster.lease_ttl"),
        ],
        "{err}"
    );
    // Unknown keys too.
    let (path, text) = with_edit(
        "slo-unknown.toml",
        "quickstart.toml",
        "[[regions]]\n",
        "[[slos]]\nname = \"a\"\nservice = \"app\"\nobjective = 0.99\ntarget = 0.99\n\n[[regions]]\n",
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    assert_eq!(err.0[0].line, line_of(&text, "target = 0.99"), "{err}");
    assert!(err.0[0].message.contains("target"), "{err}");
}

#[test]
fn slo_steering_parses_with_defaults_and_names_its_errors() {
    let minimal = "[[slos]]\nname = \"app-availability\"\nservice = \"app\"\nobjective = 0.999\nwindow = \"28d\"\n";
    let (path, _) = with_edit(
        "slo-steer.toml",
        "quickstart.toml",
        minimal,
        &format!("{minimal}[slos.steering]\nburn_rate = 10\n"),
    );
    let c = steer_config::load_steerd(&path).unwrap();
    let st = c.slos[0].steering.clone().expect("steering");
    assert_eq!(st.burn_rate, 10.0);
    assert_eq!(st.release_below, 5.0);
    assert_eq!(st.max_shift, steer_slo::spec::DEFAULT_MAX_SHIFT);
    // The shortest alert window of the Workbook's table.
    assert_eq!(st.window, Duration::from_secs(300));
    let (path, _) = with_edit(
        "slo-steer-full.toml",
        "quickstart.toml",
        minimal,
        &format!(
            "{minimal}[slos.steering]\nburn_rate = 6\nrelease_below = 1\nmax_shift = 0.9\nwindow = \"2m\"\n"
        ),
    );
    let st = steer_config::load_steerd(&path).unwrap().slos[0]
        .steering
        .clone()
        .expect("steering");
    assert_eq!(
        (st.burn_rate, st.release_below, st.max_shift, st.window),
        (6.0, 1.0, 0.9, Duration::from_secs(120))
    );
    let (path, text) = with_edit(
        "slo-steer-bad.toml",
        "quickstart.toml",
        minimal,
        &format!(
            "{minimal}[slos.steering]\nburn_rate = 6\nrelease_below = 8\nmax_shift = 1.0\nwindow = \"0s\"\nshare = 1\n"
        ),
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    assert_eq!(err.0[0].line, line_of(&text, "share = 1"), "{err}");
    assert!(err.0[0].message.contains("share"), "{err}");
    let (path, text) = with_edit(
        "slo-steer-bad2.toml",
        "quickstart.toml",
        minimal,
        &format!("{minimal}[slos.steering]\nburn_rate = 6\nrelease_below = 8\n"),
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    assert_eq!(
        (err.0[0].line, err.0[0].key.as_str()),
        (
            line_of(&text, "release_below = 8"),
            "slos[0].steering.release_below"
        ),
        "{err}"
    );
    let (path, text) = with_edit(
        "slo-steer-bad3.toml",
        "quickstart.toml",
        minimal,
        &format!("{minimal}[slos.steering]\nburn_rate = 6\nmax_shift = 1.0\n"),
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    assert_eq!(
        (err.0[0].line, err.0[0].key.as_str()),
        (
            line_of(&text, "max_shift = 1.0"),
            "slos[0].steering.max_shift"
        ),
        "{err}"
    );
}

#[test]
fn agent_sli_sources_parse_and_name_their_errors() {
    let mut text = std::fs::read_to_string(configs_dir().join("agent-fra1.toml")).unwrap();
    text.push_str(
        "\n[[sli]]\nservice = \"app\"\nurl = \"http://127.0.0.1:8404/metrics\"\ntotal = 'haproxy_backend_http_responses_total{proxy=\"app\"}'\nerrors = 'haproxy_backend_http_responses_total{proxy=\"app\",code=~\"5..\"}'\nlatency_histogram = 'http_request_duration_seconds{job=\"app\"}'\nlatency_le = \"0.3\"\n",
    );
    let dir = std::env::temp_dir().join(format!("steer-config-sli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent-sli.toml");
    std::fs::write(&path, &text).unwrap();
    let c = steer_config::load_agent(&path).unwrap();
    assert_eq!(c.sli.len(), 1);
    assert_eq!(c.sli[0].addr.port(), 8404);
    assert_eq!(c.sli[0].path, "/metrics");
    assert_eq!(
        c.sli[0].latency,
        Some((
            "http_request_duration_seconds{job=\"app\"}".into(),
            "0.3".into()
        ))
    );

    let bad = format!(
        "{}\n[[sli]]\nservice = \"app\"\nurl = \"ftp://x\"\ntotal = 'm{{code=~\"(\"}}'\nerrors = 'm'\nlatency_le = \"fast\"\n",
        text
    );
    std::fs::write(&path, &bad).unwrap();
    let err = steer_config::load_agent(&path).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "sli[1].service",
            "sli[1].url",
            "sli[1].total",
            "sli[1].latency_le"
        ],
        "{err}"
    );
    assert!(err.0[0].message.contains("already has"), "{err}");
    assert!(err.0[2].message.contains("bad regex"), "{err}");
}

/// Issue 12: the quickstart plus an `[edge]` table is a valid edge config;
/// the table's errors name file:line:col and key, unknown keys included.
#[test]
fn edge_table_parses_and_reports_errors_with_their_keys() {
    let edge = "[edge]\ncontrollers = [\"http://127.0.0.1:50051\", \"http://127.0.0.1:50052\"]\nstate_dir = \"/var/lib/steer/edge\"\n\n[server]\n";
    let (path, _) = with_edit("edge-ok.toml", "quickstart.toml", "[server]\n", edge);
    let config = steer_config::load_steerd(&path).unwrap();
    let e = config.edge.unwrap();
    assert_eq!(e.controllers.len(), 2);
    assert_eq!(e.state_dir, Some(PathBuf::from("/var/lib/steer/edge")));
    // Without the table: no edge settings (controllers ignore it anyway).
    let plain = steer_config::load_steerd(&configs_dir().join("quickstart.toml")).unwrap();
    assert!(plain.edge.is_none());

    let bad = "[edge]\ncontrollers = [\"127.0.0.1:50051\"]\ncontroler = \"x\"\n\n[server]\n";
    let (path, text) = with_edit("edge-bad.toml", "quickstart.toml", "[server]\n", bad);
    let err = steer_config::load_steerd(&path).unwrap_err();
    let unknown = err
        .0
        .iter()
        .find(|e| e.message.contains("controler"))
        .unwrap_or_else(|| panic!("unknown key not reported: {err}"));
    assert_eq!(unknown.line, line_of(&text, "controler ="), "{err}");
    assert_eq!(unknown.column, 1, "{err}");
    assert!(
        err.to_string().contains(&format!("{}:", path.display())),
        "{err}"
    );

    let (path, text) = with_edit(
        "edge-scheme.toml",
        "quickstart.toml",
        "[server]\n",
        "[edge]\ncontrollers = [\"127.0.0.1:50051\"]\n\n[server]\n",
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    let e = &err.0[0];
    assert_eq!(e.line, line_of(&text, "controllers ="), "{err}");
    assert!(e.key.starts_with("edge.controllers"), "{err}");
    assert!(e.message.contains("http://"), "{err}");

    let (path, _) = with_edit(
        "edge-empty.toml",
        "quickstart.toml",
        "[server]\n",
        "[edge]\ncontrollers = []\n\n[server]\n",
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    assert!(err.0[0].message.contains("at least one"), "{err}");
    assert!(err.0[0].key.starts_with("edge"), "{err}");
}

#[test]
fn dnssec_is_opted_in_per_zone_and_only_algorithm_13_is_accepted() {
    let zone = "origin = \"example.test.\"\n";
    let plain = steer_config::load_steerd(&configs_dir().join("quickstart.toml")).unwrap();
    assert!(plain.dns.dnssec.is_empty());
    for (to, signed) in [
        ("origin = \"example.test.\"\ndnssec = true\n", true),
        ("origin = \"example.test.\"\ndnssec = false\n", false),
        (
            "origin = \"example.test.\"\ndnssec = { algorithm = \"ECDSAP256SHA256\" }\n",
            true,
        ),
        (
            "origin = \"example.test.\"\ndnssec = { enabled = false }\n",
            false,
        ),
    ] {
        let (path, _) = with_edit("dnssec.toml", "quickstart.toml", zone, to);
        let c = steer_config::load_steerd(&path).unwrap();
        if signed {
            assert_eq!(c.dns.dnssec.len(), 1, "{to}");
            assert_eq!(c.dns.dnssec[0].origin, "example.test.");
            assert_eq!(
                c.dns.dnssec[0].key_dir,
                c.server.state_dir.join("dnssec"),
                "{to}"
            );
        } else {
            assert!(c.dns.dnssec.is_empty(), "{to}");
        }
    }
    let (path, text) = with_edit(
        "dnssec-bad.toml",
        "quickstart.toml",
        zone,
        "origin = \"example.test.\"\ndnssec = { algorithm = \"rsasha256\" }\n",
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    assert_eq!(err.0[0].line, line_of(&text, "rsasha256"), "{err}");
    assert!(err.to_string().contains("ecdsap256sha256"), "{err}");
    let (path, _) = with_edit(
        "dnssec-unknown.toml",
        "quickstart.toml",
        zone,
        "origin = \"example.test.\"\ndnssec = { algoritm = \"ecdsap256sha256\" }\n",
    );
    assert!(steer_config::load_steerd(&path).is_err());
}

#[test]
fn openslo_files_are_imported_beside_slos_and_their_errors_name_the_yaml_line() {
    let (path, text) = with_edit(
        "openslo.toml",
        "quickstart.toml",
        "[server]",
        "openslo = [\"openslo.yaml\"]\n\n[server]",
    );
    let dir = path.parent().unwrap();
    std::fs::copy(configs_dir().join("openslo.yaml"), dir.join("openslo.yaml")).unwrap();
    let c = steer_config::load_steerd(&path).unwrap();
    let names: Vec<&str> = c.slos.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app-availability", "app-edge-availability"]);
    let imported = &c.slos[1];
    assert_eq!(imported.objective.target(), 0.995);
    assert_eq!(imported.window, Duration::from_secs(28 * 86_400));

    // A bad file: the error names the YAML file and line.
    let yaml = std::fs::read_to_string(configs_dir().join("openslo.yaml"))
        .unwrap()
        .replace("service: app", "service: nope");
    std::fs::write(dir.join("openslo.yaml"), &yaml).unwrap();
    let err = steer_config::load_steerd(&path).unwrap_err().to_string();
    let line = line_of(&yaml, "service: nope");
    assert!(
        err.contains(&format!("openslo.yaml:{line}:")) && err.contains("no service \"nope\""),
        "{err}"
    );

    // The same name twice, and a file that is not there.
    let yaml = yaml
        .replace("service: nope", "service: app")
        .replace("name: app-edge-availability", "name: app-availability");
    std::fs::write(dir.join("openslo.yaml"), &yaml).unwrap();
    let err = steer_config::load_steerd(&path).unwrap_err().to_string();
    assert!(err.contains("defined twice"), "{err}");
    std::fs::remove_file(dir.join("openslo.yaml")).unwrap();
    let err = steer_config::load_steerd(&path).unwrap_err().to_string();
    let at = format!("openslo.toml:{}:", line_of(&text, "openslo = "));
    assert!(err.contains("cannot read") && err.contains(&at), "{err}");
}

#[test]
fn pop_coordinates_are_optional_paired_and_in_range() {
    let c = steer_config::load_steerd(&configs_dir().join("quickstart.toml")).unwrap();
    assert_eq!(c.pop_locations.len(), 6);
    let fra1 = c.pop_locations[&steer_types::PopId::new("fra1")];
    assert!((fra1.lat - 50.11).abs() < 1e-9 && (fra1.lon - 8.68).abs() < 1e-9);

    let (path, text) = with_edit(
        "coords.toml",
        "quickstart.toml",
        "lat = 52.37",
        "lat = 152.37",
    );
    let text = text.replacen("lon = -77.49\n", "", 1);
    std::fs::write(&path, &text).unwrap();
    let err = steer_config::load_steerd(&path).unwrap_err();
    let found: Vec<(&str, usize)> = err.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert_eq!(
        found,
        [
            ("pops[1].lat", line_of(&text, "lat = 152.37")),
            ("pops[2].lat", line_of(&text, "lat = 39.04")),
        ],
        "{err}"
    );
    assert!(err.0[0].message.contains("-90 to 90"), "{err}");
    assert!(err.0[1].message.contains("needs `lon`"), "{err}");
}

#[test]
fn a_dname_redirects_everything_below_it_so_nothing_may_be_there() {
    let (path, text) = with_edit(
        "dname.toml",
        "quickstart.toml",
        "  { name = \"www\", type = \"A\", value = \"192.0.2.80\" },\n",
        "  { name = \"www\", type = \"A\", value = \"192.0.2.80\" },\n  { name = \"@\", type = \"DNAME\", value = \"other.test.\" },\n",
    );
    let err = steer_config::load_steerd(&path).unwrap_err();
    let messages: Vec<&str> = err.0.iter().map(|e| e.message.as_str()).collect();
    for name in ["ns1", "www"] {
        let e = err
            .0
            .iter()
            .find(|e| {
                e.message.starts_with(&format!(
                    "{name}.example.test. is below the DNAME at example.test."
                ))
            })
            .unwrap_or_else(|| panic!("{name}: {messages:?}"));
        assert_eq!(
            e.line,
            line_of(&text, &format!("name = \"{name}\"")),
            "{err}"
        );
    }
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("app.example.test. is below the DNAME at example.test.")),
        "the steered name too: {messages:?}"
    );

    // One below the apex redirects only its own subtree.
    let (path, _) = with_edit(
        "dname-ok.toml",
        "quickstart.toml",
        "  { name = \"www\", type = \"A\", value = \"192.0.2.80\" },\n",
        "  { name = \"www\", type = \"A\", value = \"192.0.2.80\" },\n  { name = \"old\", type = \"DNAME\", value = \"www.example.test.\" },\n",
    );
    let c = steer_config::load_steerd(&path).unwrap();
    let zone = &c.zones[0];
    assert!(zone.records.iter().any(|r| r.name == "old.example.test."
        && r.data == steer_types::RecordData::Dname("www.example.test.".into())));
}
