//! Every shipped config parses; unknown keys and bad values are refused with
//! file:line:col and the key; all errors are reported at once.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

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
    assert_eq!(c.server.dns_listen.to_string(), "127.0.0.1:5353");
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
    assert_eq!(good.health_guards.correlation.max_down_share, 0.3);
    assert_eq!(good.health_guards.damping.suppress, 3000.0);

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
