//! Configuration files for `steerd` and `steer-agent`.
//!
//! Loading is two passes: serde parses the TOML into raw structs (unknown keys
//! refused), then validation checks every cross-reference and collects *all*
//! problems. Each problem names the file, line, column and dotted key, so an
//! operator can fix a config in one go. Nothing is applied unless the whole
//! file is valid.

mod agent;
mod auth;
mod bgp;
mod changes;
mod dns;
mod duration;
mod edge;
mod error;
mod guards;
mod notify;
mod openslo;
mod slo;
mod steerd;
mod tls;
mod tokens;
mod zonefile;
mod zonetext;

pub use agent::{
    AgentConfig, HttpProbe, HttpsProbe, LoadCommand, PeerProbeConfig, ProbeConfig, ProbeKind,
    SliSource,
};
pub use auth::{BearerToken, check_private_file, is_loopback, read_bearer_token};
pub use dns::parse_dns_listen;
pub use duration::parse_duration;
pub use edge::EdgeSettings;
pub use error::{ConfigError, ConfigErrors};
pub use notify::{WebhookFormat, WebhookSettings, WebhookUrl};
pub use slo::{AlertingSettings, ClusterSettings};
pub use steerd::{AuthMode, PopLocation, ServerSettings, SteerConfig};
pub use tls::{ClientTls, ServerTls};
pub use tokens::Credentials;
pub use zonefile::parse_zone;

use std::path::Path;

/// Reads and validates a steerd config file.
pub fn load_steerd(path: &Path) -> Result<SteerConfig, ConfigErrors> {
    let src = read(path)?;
    parse_steerd(path, &src)
}

/// Reads and validates a steer-agent config file.
pub fn load_agent(path: &Path) -> Result<AgentConfig, ConfigErrors> {
    let src = read(path)?;
    parse_agent(path, &src)
}

/// Validates a steerd config given as text, as [`load_steerd`] would the file
/// at `path` (files it names are read relative to `path`'s directory). Never
/// panics, whatever `src`: the fuzz tests hold it to that.
pub fn parse_steerd(path: &Path, src: &str) -> Result<SteerConfig, ConfigErrors> {
    steerd::parse(path, src)
}

/// Validates a steer-agent config given as text; see [`parse_steerd`].
pub fn parse_agent(path: &Path, src: &str) -> Result<AgentConfig, ConfigErrors> {
    agent::parse(path, src)
}

fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read config file: {e}"),
        }])
    })
}
