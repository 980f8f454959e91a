//! What the server says about itself: CHAOS-class TXT answers with its
//! identity and version (`dig CH TXT id.server`, RFC 4892), and the NSID
//! option (RFC 5001) for queries that ask for it, so an operator can tell
//! which anycast instance answered.

use std::str::FromStr;

use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, rdata::TXT};
use steer_types::DnsSettings;

use crate::view::Rr;

/// The names NSD and Knot DNS answer in class CH, with what each says.
const IDENTITY_NAMES: [&str; 2] = ["id.server.", "hostname.bind."];
const VERSION_NAMES: [&str; 2] = ["version.server.", "version.bind."];

/// The version answered when `[dns] version` is not set.
pub(crate) fn default_version() -> String {
    format!("Steer {}", env!("CARGO_PKG_VERSION"))
}

/// The identity when `[dns] identity` is not set: the host name.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name.len() <= 255).then(|| name.to_owned())
}

/// The CHAOS TXT records, by owner: identity and version unless set to
/// the empty string (hidden: REFUSED, as for any other CH name).
pub(crate) fn chaos_records(settings: &DnsSettings) -> Vec<(LowerName, Rr)> {
    let identity = match &settings.identity {
        Some(s) => Some(s.clone()),
        None => host_name(),
    };
    let version = Some(settings.version.clone().unwrap_or_else(default_version));
    let mut out = Vec::new();
    for (names, text) in [(IDENTITY_NAMES, identity), (VERSION_NAMES, version)] {
        let Some(text) = text.filter(|t| !t.is_empty() && t.len() <= 255) else {
            continue;
        };
        for owner in names {
            let Ok(name) = Name::from_str(owner) else {
                continue;
            };
            let mut record =
                Record::from_rdata(name.clone(), 0, RData::TXT(TXT::new(vec![text.clone()])));
            record.dns_class = DNSClass::CH;
            out.push((LowerName::new(&name), Rr::new(record)));
        }
    }
    out
}

/// The NSID payload, when `[dns] nsid` is set.
pub(crate) fn nsid(settings: &DnsSettings) -> Option<Box<[u8]>> {
    settings
        .nsid
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_version_answer_under_both_names_unless_hidden() {
        let settings = DnsSettings {
            identity: Some("fra1-a".into()),
            version: Some(String::new()),
            ..DnsSettings::default()
        };
        let records = chaos_records(&settings);
        let owners: Vec<String> = records.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(owners, ["id.server.", "hostname.bind."]);
        let rr = &records[0].1;
        assert_eq!(rr.record.dns_class, DNSClass::CH);
        assert_eq!(rr.record.ttl, 0);
        assert_eq!(rr.record.data.to_string(), "fra1-a");
        assert!(rr.full().is_some(), "pre-encoded for the fast writer");

        let defaults = chaos_records(&DnsSettings::default());
        let version = defaults
            .iter()
            .find(|(n, _)| n.to_string() == "version.bind.")
            .unwrap();
        assert_eq!(version.1.record.data.to_string(), default_version());
        assert_eq!(nsid(&DnsSettings::default()), None);
        let with = DnsSettings {
            nsid: Some("fra1-a".into()),
            ..DnsSettings::default()
        };
        assert_eq!(nsid(&with).as_deref(), Some(&b"fra1-a"[..]));
    }
}
