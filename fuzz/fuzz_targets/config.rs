//! Fuzzes the steerd and steer-agent config parsers: any text gives a
//! config or a list of errors, never a panic. File references resolve in a
//! directory that does not exist, so they fail cleanly.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent-steer-fuzz/steerd.toml");
    let _ = steer_config::parse_steerd(path, text);
    let _ = steer_config::parse_agent(path, text);
});
