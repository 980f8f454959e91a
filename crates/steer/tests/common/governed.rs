//! Helpers for tests of governed steerds (`[changes]` with token auth):
//! four principals (alice admin, bob and dave operators, carol viewer).

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use super::{Steerd, quickstart, write_private};

pub const TOKENS: &str = r#"
[[tokens]]
principal = "alice"
role = "admin"
token = "alice-admin-token-0123456789"

[[tokens]]
principal = "bob"
role = "operator"
token = "bob-operator-token-0123456789"

[[tokens]]
principal = "dave"
role = "operator"
token = "dave-operator-token-0123456789"

[[tokens]]
principal = "carol"
role = "viewer"
token = "carol-viewer-token-0123456789"
"#;

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The quickstart with token auth and `changes` (a `[changes]` table)
/// appended, written to `dir/steerd.toml`, with each principal's token
/// file beside it.
pub fn config(dir: &Path, changes: &str) -> (PathBuf, String) {
    write_private(&dir.join("tokens.toml"), TOKENS);
    for who in ["alice", "bob", "dave", "carol"] {
        let role = match who {
            "alice" => "admin",
            "carol" => "viewer",
            _ => "operator",
        };
        write_private(
            &dir.join(format!("{who}.token")),
            format!("{who}-{role}-token-0123456789\n"),
        );
    }
    let text = std::fs::read_to_string(quickstart()).unwrap().replacen(
        "mode = \"none\"",
        "mode = \"token\"\ntokens_file = \"tokens.toml\"",
        1,
    ) + changes;
    let path = dir.join("steerd.toml");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

/// steerctl as `who` (their token file in `dir`).
pub fn as_user(s: &Steerd, dir: &Path, who: &str, args: &[&str]) -> Output {
    let file = dir.join(format!("{who}.token"));
    let mut all = vec!["--token-file", file.to_str().unwrap()];
    all.extend_from_slice(args);
    s.steerctl(&all)
}
