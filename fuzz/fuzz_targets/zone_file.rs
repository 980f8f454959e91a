//! Fuzzes the RFC 1035 zone-file parser and its checks (hickory's parser,
//! then ours): any text gives a zone or errors with lines, never a panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent-steer-fuzz/example.org.zone");
    let _ = steer_config::parse_zone(path, text, "example.org.");
});
