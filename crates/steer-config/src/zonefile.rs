//! RFC 1035 master files, parsed with hickory-proto's zone parser and
//! checked into a [`Zone`].
//!
//! hickory's parser reports what went wrong but not where, so the line of
//! an error is found by parsing growing prefixes of the file, cut only at
//! record boundaries (outside parentheses, quotes and comments): the first
//! prefix that fails ends in the bad record. A parse is sequential, so once
//! a prefix fails every longer one does, and a binary search needs
//! O(log records) parses — only when the file is wrong.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    str::FromStr,
};

use hickory_proto::{
    rr::{DNSClass, LowerName, Name, RData, RecordSet, RecordType, RrKey},
    serialize::{
        binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder, Restrict},
        txt::Parser,
    },
};
use steer_types::{RecordData, Soa, StaticRecord, Zone};

use crate::error::ConfigError;

type Parsed = BTreeMap<RrKey, RecordSet>;

/// Loads the zone `origin` (fully qualified, lower-case) from `path`.
/// Every problem is returned, each with the zone file's line.
pub(crate) fn load(path: &Path, origin: &str) -> Result<Zone, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read zone file: {e}"),
        }]
    })?;
    parse(path, &text, origin)
}

/// Parses the zone `origin` from `text`, the contents of `path` (which names
/// the file in errors and anchors `$INCLUDE`). Never panics, whatever `text`.
pub fn parse_zone(path: &Path, text: &str, origin: &str) -> Result<Zone, Vec<ConfigError>> {
    parse(path, text, origin)
}

fn parse(path: &Path, text: &str, origin: &str) -> Result<Zone, Vec<ConfigError>> {
    let file = path.display().to_string();
    let err = |line: usize, message: String| ConfigError {
        file: file.clone(),
        line,
        column: if line > 0 { 1 } else { 0 },
        key: String::new(),
        message,
    };
    let origin_name =
        Name::from_str(origin).map_err(|e| vec![err(0, format!("bad origin {origin}: {e}"))])?;
    // What hickory's parser does not read (RFC 3597 generic records, LOC,
    // RP, URI, SPF) is read first and stands in as marked TXT records.
    let rewritten = crate::zonetext::rewrite(text, &origin_name).map_err(|errors| {
        errors
            .into_iter()
            .map(|(line, message)| err(line, message))
            .collect::<Vec<_>>()
    })?;
    let text = rewritten.text.as_str();
    let boundaries = record_boundaries(text);
    let parse = |end: usize| -> Result<Parsed, String> {
        let src = text.get(..end).unwrap_or(text);
        Parser::new(src, Some(path.to_path_buf()), Some(origin_name.clone()))
            .parse()
            .map(|(_, records)| records)
            .map_err(|e| e.to_string())
    };
    let records = match parse(text.len()) {
        Ok(records) => records,
        Err(message) => {
            let line = first_failing(&boundaries, |end| parse(end).is_err());
            return Err(vec![err(line, message)]);
        }
    };
    // The line where a record first appears, for semantic errors.
    let line_of = |key: &RrKey| {
        first_failing(&boundaries, |end| {
            parse(end).is_ok_and(|p| p.contains_key(key))
        })
    };

    let mut errors = Vec::new();
    let origin_lower = LowerName::new(&origin_name);
    let mut soa = None;
    let mut ns = Vec::new();
    let mut ns_ttl = 0;
    let mut out = Vec::new();
    let mut cname_owners = HashSet::new();
    let mut other_owners = HashSet::new();
    for (key, set) in &records {
        let owner = key.name.to_string().to_ascii_lowercase();
        if !origin_lower.zone_of(&key.name) {
            errors.push(err(
                line_of(key),
                format!("{owner} is outside zone {origin}"),
            ));
            continue;
        }
        for record in set.records_without_rrsigs() {
            if record.dns_class != DNSClass::IN {
                errors.push(err(
                    line_of(key),
                    format!("{owner}: only class IN is served, got {}", record.dns_class),
                ));
                continue;
            }
            let apex = key.name == origin_lower;
            let swapped;
            let data = match &record.data {
                RData::TXT(txt) => match rewritten.take(&txt.txt_data) {
                    Some((rtype, rdata)) => match decode(*rtype, rdata) {
                        Ok(d) => {
                            swapped = d;
                            &swapped
                        }
                        Err(message) => {
                            errors.push(err(line_of(key), format!("{owner}: {message}")));
                            continue;
                        }
                    },
                    None => &record.data,
                },
                d => d,
            };
            match data {
                RData::SOA(s) if apex => {
                    if soa.is_some() {
                        errors.push(err(line_of(key), "more than one SOA at the apex".into()));
                    }
                    soa = Some((
                        Soa {
                            mname: lower(&s.mname),
                            rname: lower(&s.rname),
                            serial: s.serial,
                            refresh: s.refresh,
                            retry: s.retry,
                            expire: s.expire,
                            minimum: s.minimum,
                        },
                        record.ttl,
                    ));
                }
                RData::SOA(_) => errors.push(err(
                    line_of(key),
                    format!("SOA at {owner}: only the apex {origin} may have one"),
                )),
                RData::NS(target) if apex => {
                    ns.push(lower(&target.0));
                    ns_ttl = record.ttl;
                }
                data => match convert(data) {
                    Ok(data) => {
                        if data_is_cname(&data) {
                            cname_owners.insert(owner.clone());
                        } else {
                            other_owners.insert(owner.clone());
                        }
                        out.push(StaticRecord {
                            name: owner.clone(),
                            ttl: record.ttl,
                            data,
                        });
                    }
                    Err(message) => errors.push(err(line_of(key), format!("{owner}: {message}"))),
                },
            }
        }
    }
    for owner in cname_owners.intersection(&other_owners) {
        let key = records
            .keys()
            .find(|k| k.name.to_string().eq_ignore_ascii_case(owner))
            .cloned();
        let line = key.as_ref().map_or(0, &line_of);
        errors.push(err(
            line,
            format!("{owner} has a CNAME and other data (RFC 1034 3.6.2)"),
        ));
    }
    // RFC 6672 2.3, 2.4: one DNAME per owner, and no name below it (a
    // query there is redirected: such data would never be served).
    for (key, set) in &records {
        let count = set
            .records_without_rrsigs()
            .filter(|r| is_dname(&r.data, &rewritten))
            .count();
        if count > 1 {
            errors.push(err(
                line_of(key),
                format!(
                    "{}: more than one DNAME (RFC 6672 2.4)",
                    lower(&Name::from(&key.name))
                ),
            ));
        }
    }
    for key in records.keys() {
        let name = lower(&Name::from(&key.name));
        if let Some(owner) = dname_above(&out, &name) {
            errors.push(err(
                line_of(key),
                format!(
                    "{name} is below the DNAME at {owner}: names there are redirected, never served (RFC 6672 2.3)"
                ),
            ));
        }
    }
    let Some((soa, soa_ttl)) = soa else {
        errors.push(err(0, format!("no SOA record at the apex {origin}")));
        return Err(errors);
    };
    if ns.is_empty() {
        errors.push(err(0, format!("no NS record at the apex {origin}")));
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.line);
        return Err(errors);
    }
    Ok(Zone {
        origin: origin.to_owned(),
        soa,
        soa_ttl,
        ns,
        ns_ttl,
        records: out,
    })
}

fn lower(name: &Name) -> String {
    let mut n = name.to_string().to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// The owner of a DNAME in `records` strictly above `name` (both fully
/// qualified, lower-case), if any: such a name is never served.
pub(crate) fn dname_above<'a>(records: &'a [StaticRecord], name: &str) -> Option<&'a str> {
    records
        .iter()
        .filter(|rec| matches!(rec.data, RecordData::Dname(_)))
        .map(|rec| rec.name.as_str())
        .find(|owner| name != *owner && (*owner == "." || name.ends_with(&format!(".{owner}"))))
}

/// Whether `data` is a DNAME, in the generic or the presentation form
/// (which stands in as a marked TXT record, see [`crate::zonetext`]).
fn is_dname(data: &RData, rewritten: &crate::zonetext::Rewritten) -> bool {
    match data {
        RData::Unknown { code, .. } => *code == RecordType::DNAME,
        RData::TXT(txt) => rewritten
            .take(&txt.txt_data)
            .is_some_and(|(rtype, _)| *rtype == u16::from(RecordType::DNAME)),
        _ => false,
    }
}

fn data_is_cname(data: &RecordData) -> bool {
    matches!(data, RecordData::Cname(_))
}

/// RDATA of type `rtype` read from its wire form (a record read by
/// [`crate::zonetext`]): a type hickory knows is checked by decoding it.
fn decode(rtype: u16, rdata: &[u8]) -> Result<RData, String> {
    let len = u16::try_from(rdata.len()).map_err(|_| "RDATA over 65535 octets".to_owned())?;
    let mut decoder = BinDecoder::new(rdata);
    let data = RData::read(&mut decoder, RecordType::from(rtype), Restrict::new(len))
        .map_err(|e| format!("{} RDATA: {e}", RecordType::from(rtype)))?;
    if !decoder.is_empty() {
        return Err(format!(
            "{} RDATA has trailing octets",
            RecordType::from(rtype)
        ));
    }
    Ok(data)
}

/// Types that are not data a zone file gives: meta and query types, and
/// those the online signer makes.
fn refused_type(rtype: RecordType) -> Option<&'static str> {
    use RecordType::*;
    Some(match rtype {
        DNSKEY | RRSIG | NSEC | NSEC3 | NSEC3PARAM | CDS | CDNSKEY | KEY | SIG => {
            "is made by the online signer (dnssec = true on the zone), not loaded"
        }
        OPT | TSIG | AXFR | IXFR | ANY | ZERO => "is not a record type a zone holds",
        Unknown(249 | 253 | 254) => "is not a record type a zone holds",
        _ => return None,
    })
}

/// Record data Steer can serve; the common types typed, the rest as wire.
fn convert(data: &RData) -> Result<RecordData, String> {
    if let Some(why) = refused_type(data.record_type()) {
        return Err(format!("record type {} {why}", data.record_type()));
    }
    Ok(match data {
        RData::Unknown {
            code: RecordType::DNAME,
            rdata,
        } => {
            let mut decoder = BinDecoder::new(&rdata.anything);
            let target = <Name as BinDecodable>::read(&mut decoder)
                .map_err(|e| format!("DNAME target: {e}"))?;
            if !decoder.is_empty() {
                return Err("DNAME RDATA has trailing octets".into());
            }
            RecordData::Dname(lower(&target))
        }
        RData::A(a) => RecordData::A(a.0),
        RData::AAAA(a) => RecordData::Aaaa(a.0),
        RData::CNAME(c) => RecordData::Cname(lower(&c.0)),
        RData::NS(n) => RecordData::Ns(lower(&n.0)),
        RData::MX(mx) => RecordData::Mx {
            preference: mx.preference,
            exchange: lower(&mx.exchange),
        },
        RData::TXT(_)
        | RData::SRV(_)
        | RData::CAA(_)
        | RData::PTR(_)
        | RData::HINFO(_)
        | RData::NAPTR(_)
        | RData::SSHFP(_)
        | RData::TLSA(_)
        | RData::SVCB(_)
        | RData::HTTPS(_)
        | RData::CERT(_)
        | RData::CSYNC(_)
        | RData::OPENPGPKEY(_)
        | RData::SMIMEA(_)
        | RData::NULL(_)
        | RData::DNSSEC(_)
        | RData::Unknown { .. } => {
            let mut rdata = Vec::new();
            let mut encoder = BinEncoder::new(&mut rdata);
            // Names inside RDATA stay uncompressed: the view re-decodes them.
            encoder.set_canonical_form(true);
            data.emit(&mut encoder).map_err(|e| e.to_string())?;
            RecordData::Wire {
                rtype: u16::from(data.record_type()),
                rdata,
            }
        }
        other => {
            return Err(format!(
                "record type {} is not served here",
                other.record_type()
            ));
        }
    })
}

/// Byte offsets just past each record's last line, and the 1-based line
/// each record starts on.
pub(crate) fn record_boundaries(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut comment) = (0u32, false, false, false);
    let mut line = 1;
    let mut start_line = 1;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\n' => {
                comment = false;
                line += 1;
                if depth == 0 && !quoted {
                    out.push((i + 1, start_line));
                    start_line = line;
                }
            }
            _ if comment => {}
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => comment = true,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    out.push((text.len(), start_line));
    out
}

/// The start line of the first record for which `fails(end of prefix)`
/// holds, assuming it stays true for every longer prefix.
fn first_failing(boundaries: &[(usize, usize)], fails: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, boundaries.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fails(boundaries[mid].0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    boundaries.get(lo).map_or(0, |&(_, line)| line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("steer-zonefile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or(());
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap_or(());
        p
    }

    const GOOD: &str = r#"$TTL 300
@ IN SOA ns1 hostmaster ( 7 3600 600
  604800 60 ) ; multi-line
  IN NS ns1
ns1 A 127.0.0.1
www 60 A 192.0.2.1
www AAAA 2001:db8::1
txt TXT "a;b" "c"
_sip._udp SRV 10 5 5060 sip
@ CAA 0 issue "ca.example.net"
1 PTR www
mail MX 10 www
"#;

    #[test]
    fn loads_every_listed_type() {
        let zone = load(&write("good.zone", GOOD), "example.test.");
        let zone = match zone {
            Ok(z) => z,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(zone.soa.serial, 7);
        assert_eq!(zone.soa.minimum, 60);
        assert_eq!(zone.ns, ["ns1.example.test."]);
        assert_eq!(zone.records.len(), 8);
        assert!(
            zone.records
                .iter()
                .any(|r| r.name == "www.example.test." && r.ttl == 60)
        );
    }

    #[test]
    fn dnames_load_and_nothing_may_be_below_one() {
        let text = format!("{GOOD}old DNAME www\nold2 TYPE39 \\# 5 03 6e 65 77 00\nat DNAME @\n");
        let zone = match load(&write("dname.zone", &text), "example.test.") {
            Ok(z) => z,
            Err(e) => panic!("{e:?}"),
        };
        let dnames: Vec<(&str, &RecordData)> = zone
            .records
            .iter()
            .filter(|r| matches!(r.data, RecordData::Dname(_)))
            .map(|r| (r.name.as_str(), &r.data))
            .collect();
        assert_eq!(
            dnames,
            [
                (
                    "at.example.test.",
                    &RecordData::Dname("example.test.".into())
                ),
                (
                    "old.example.test.",
                    &RecordData::Dname("www.example.test.".into())
                ),
                ("old2.example.test.", &RecordData::Dname("new.".into())),
            ]
        );
        // A name below a DNAME, and two DNAMEs at one owner: the lines.
        let below = format!("{GOOD}old DNAME www\nx.old A 192.0.2.7\nold DNAME mail\n");
        let errs = load(&write("below.zone", &below), "example.test.")
            .err()
            .unwrap_or_default();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.contains("more than one DNAME"), "{errs:?}");
        assert_eq!(errs[0].line, 13, "{errs:?}");
        assert!(
            errs[1]
                .message
                .contains("x.old.example.test. is below the DNAME at old.example.test."),
            "{errs:?}"
        );
        assert_eq!(errs[1].line, 14, "{errs:?}");
        // A DNAME and a CNAME at one name.
        let both = format!("{GOOD}old DNAME www\nold CNAME www\n");
        let errs = load(&write("both.zone", &both), "example.test.")
            .err()
            .unwrap_or_default();
        assert!(errs[0].message.contains("CNAME and other data"), "{errs:?}");
    }

    #[test]
    fn errors_name_the_line() {
        let bad = GOOD.replace("www AAAA 2001:db8::1", "www AAAA 2001:db8::zz");
        let errs = load(&write("bad.zone", &bad), "example.test.")
            .err()
            .unwrap_or_default();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 7, "{errs:?}");
        assert!(errs[0].file.ends_with("bad.zone"));

        let outside = format!("{GOOD}other.test. A 192.0.2.9\n");
        let errs = load(&write("out.zone", &outside), "example.test.")
            .err()
            .unwrap_or_default();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 13, "{errs:?}");
        assert!(errs[0].message.contains("outside zone"), "{errs:?}");

        let both = format!("{GOOD}www CNAME txt\n");
        let errs = load(&write("cname.zone", &both), "example.test.")
            .err()
            .unwrap_or_default();
        assert!(
            errs.iter()
                .any(|e| e.message.contains("CNAME and other data")),
            "{errs:?}"
        );
    }
}
