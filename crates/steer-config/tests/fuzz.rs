//! The config and zone-file parsers under fuzzing (issue 11, item 10): any
//! text, and the shipped files with random edits, must give `Ok` or `Err`,
//! never a panic. Inputs are kept small so a case costs little in debug.
//!
//! `STEER_FUZZ_CASES` overrides the case count (default 100,000).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("STEER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn shipped(name: &str) -> String {
    std::fs::read_to_string(configs_dir().join(name)).unwrap()
}

/// Pieces of valid files, so random edits stay close to the grammar.
fn seeds() -> &'static [String] {
    static SEEDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        [
            "quickstart.toml",
            "zonefiles.toml",
            "agent-fra1.toml",
            "zones/example.org.zone",
        ]
        .iter()
        .map(|f| shipped(f))
        .collect()
    })
}

/// A seed with a few byte-level edits: deletions, insertions and
/// replacements of short runs, cut at a char boundary.
fn edit(seed: &str, edits: &[(usize, usize, String)]) -> String {
    let mut text = seed.to_owned();
    for (at, del, insert) in edits {
        if text.is_empty() {
            text.push_str(insert);
            continue;
        }
        let mut start = at % text.len();
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + del % 16).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        text.replace_range(start..end, insert);
    }
    text
}

fn edits() -> impl Strategy<Value = Vec<(usize, usize, String)>> {
    let insert = prop_oneof![
        "\\PC{0,6}",
        Just("\"".to_owned()),
        Just("[[".to_owned()),
        Just("=".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(";".to_owned()),
        Just("\n".to_owned()),
        Just("$ORIGIN .".to_owned()),
        Just("$TTL 0".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("0s".to_owned()),
    ];
    proptest::collection::vec((any::<usize>(), any::<usize>(), insert), 1..4)
}

/// Every parser over `text`; the config's directory is a scratch path that
/// holds nothing, so file references fail cleanly.
fn parse_all(text: &str) {
    let path = Path::new("/nonexistent-steer-fuzz/steerd.toml");
    let _ = steer_config::parse_steerd(path, text);
    let _ = steer_config::parse_agent(path, text);
    let _ = steer_config::parse_zone(
        Path::new("/nonexistent-steer-fuzz/z.zone"),
        text,
        "example.org.",
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_config_and_zone_text(text in "\\PC{0,200}") {
        parse_all(&text);
    }

    #[test]
    fn fuzz_config_and_zone_edits(seed in 0..4usize, edits in edits()) {
        let text = edit(&seeds()[seed], &edits);
        parse_all(&text);
    }
}

#[test]
fn the_seeds_parse_unedited() {
    // The edits test is only worth its cases if the seeds are valid.
    let dir = configs_dir();
    assert!(steer_config::parse_steerd(&dir.join("quickstart.toml"), &seeds()[0]).is_ok());
    assert!(steer_config::parse_agent(&dir.join("agent-fra1.toml"), &seeds()[2]).is_ok());
    let zone = dir.join("zones/example.org.zone");
    assert!(steer_config::parse_zone(&zone, &seeds()[3], "example.org.").is_ok());
}
