//! Records hickory's zone parser does not read, read here: the RFC 3597
//! generic form (`TYPE65280 \# 4 0a000001`, and `\#` RDATA for any type),
//! `TYPEnnn` for a known type, and the presentation forms of LOC (RFC
//! 1876), RP (RFC 1183), URI (RFC 7553), SPF (RFC 7208) and TXT (whose
//! strings hickory splits when a record spans lines).
//!
//! Each such record is replaced, in the text hickory parses, by a TXT
//! record with the same owner field, TTL and class and a marker string,
//! so owner inheritance, default TTLs and `$ORIGIN` still work as the file
//! says; [`Rewritten::take`] swaps a marker for the real type and RDATA
//! after. Every record keeps its lines, so errors keep theirs.

use std::{collections::HashMap, str::FromStr};

use hickory_proto::rr::{Name, RecordType};

/// The zone text for hickory and what its markers stand for.
pub(crate) struct Rewritten {
    pub(crate) text: String,
    /// Marker → (type code, uncompressed RDATA).
    records: HashMap<String, (u16, Vec<u8>)>,
}

impl Rewritten {
    /// The type and RDATA a TXT record's string stands for, if it is one
    /// of the markers.
    pub(crate) fn take(&self, txt: &[Box<[u8]>]) -> Option<&(u16, Vec<u8>)> {
        match txt {
            [one] => std::str::from_utf8(one)
                .ok()
                .and_then(|s| self.records.get(s)),
            _ => None,
        }
    }
}

/// Rewrites `text` (the zone `origin`'s file): `Err` lists (line, message)
/// for the records it cannot read.
pub(crate) fn rewrite(text: &str, origin: &Name) -> Result<Rewritten, Vec<(usize, String)>> {
    // Unlikely in any real TXT record, and the same for every parse of
    // this text (the line finder parses prefixes of the result).
    let nonce = format!("{:016x}", fnv(text.as_bytes()));
    let mut out = String::with_capacity(text.len());
    let mut records = HashMap::new();
    let mut errors = Vec::new();
    let mut origin = origin.clone();
    let mut ttl_set = false;
    let mut start = 0;
    let mut line = 1;
    for (end, _) in crate::zonefile::record_boundaries(text) {
        let chunk = text.get(start..end).unwrap_or_default();
        start = end;
        let lines = chunk.matches('\n').count();
        let this_line = line;
        line += lines;
        let marker = format!("steer-rdata-{nonce}-{}", records.len());
        match record(chunk, &mut origin, &mut ttl_set) {
            Ok(None) => out.push_str(chunk),
            Ok(Some((prefix, Replacement::Mnemonic(rest)))) => {
                out.push_str(&prefix);
                out.push_str(&rest);
                out.push_str(&"\n".repeat(lines));
            }
            Ok(Some((prefix, Replacement::Data(rtype, rdata)))) => {
                out.push_str(&prefix);
                out.push_str(&format!("TXT \"{marker}\""));
                out.push_str(&"\n".repeat(lines));
                records.insert(marker, (rtype, rdata));
            }
            Err(message) => {
                errors.push((this_line, message));
                out.push_str(&"\n".repeat(lines));
            }
        }
    }
    if errors.is_empty() {
        Ok(Rewritten { text: out, records })
    } else {
        Err(errors)
    }
}

enum Replacement {
    /// `TYPEnnn` of a type hickory reads: the type's mnemonic and the
    /// RDATA as written.
    Mnemonic(String),
    /// The type code and RDATA, read here.
    Data(u16, Vec<u8>),
}

/// A record without a TTL before any `$TTL` directive gets this one, as
/// NSD and Knot DNS give it (hickory refuses the record).
const DEFAULT_TTL: &str = "3600";

/// One record's text: `None` to leave it to hickory, else the owner,
/// TTL and class as written and what replaces the type and RDATA.
/// Tracks `$ORIGIN` (for names in RDATA) and whether `$TTL` was given.
fn record(
    chunk: &str,
    origin: &mut Name,
    ttl_set: &mut bool,
) -> Result<Option<(String, Replacement)>, String> {
    let tokens = tokens(chunk);
    let Some(first) = tokens.first() else {
        return Ok(None);
    };
    if first.text.starts_with('$') {
        if first.text.eq_ignore_ascii_case("$ORIGIN")
            && let Some(name) = tokens.get(1)
        {
            *origin = Name::parse(&name.text, Some(origin)).map_err(|e| e.to_string())?;
        }
        *ttl_set |= first.text.eq_ignore_ascii_case("$TTL");
        return Ok(None);
    }
    let owned = !chunk.starts_with([' ', '\t']);
    let mut i = usize::from(owned);
    let mut has_ttl = false;
    while let Some(t) = tokens
        .get(i)
        .filter(|t| !t.quoted && (is_class(&t.text) || is_ttl(&t.text)))
    {
        has_ttl |= is_ttl(&t.text);
        i += 1;
    }
    let Some(rtype) = tokens.get(i) else {
        return Ok(None);
    };
    let add_ttl = !has_ttl && !*ttl_set;
    // The owner, TTL and class fields as written, for a replacement.
    let prefix = || {
        let mut p = prefix_of(tokens.get(..i).unwrap_or_default(), owned);
        if add_ttl {
            p.push_str(DEFAULT_TTL);
            p.push(' ');
        }
        p
    };
    let rdata = tokens.get(i + 1..).unwrap_or_default();
    let generic = rdata.first().is_some_and(|t| !t.quoted && t.text == "\\#");
    let upper = rtype.text.to_ascii_uppercase();
    let code = match upper.strip_prefix("TYPE") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => Some(
            n.parse::<u16>()
                .map_err(|_| format!("{} is not a type (TYPE0 to TYPE65535)", rtype.text))?,
        ),
        _ => None,
    };
    let ours = |code: u16| matches!(code, LOC | RP | URI | SPF | TXT | DNAME);
    let code = match code {
        Some(c) => c,
        None => match upper.as_str() {
            "LOC" => LOC,
            "RP" => RP,
            "URI" => URI,
            "SPF" => SPF,
            // hickory's parser has no DNAME.
            "DNAME" => DNAME,
            // hickory splits a quoted string that a parenthesized record
            // carries over lines at its spaces: TXT is read here too.
            "TXT" => TXT,
            _ if generic => u16::from(
                RecordType::from_str(&upper).map_err(|_| format!("unknown type {}", rtype.text))?,
            ),
            // `@` for the origin in a name field: hickory reads it only as
            // an owner.
            _ if NAMED.contains(&upper.as_str()) && rdata.iter().any(is_at) => {
                let rest: Vec<String> = rdata
                    .iter()
                    .map(|t| {
                        if is_at(t) {
                            origin.to_string()
                        } else {
                            t.raw.clone()
                        }
                    })
                    .collect();
                let prefix = prefix();
                return Ok(Some((
                    prefix,
                    Replacement::Mnemonic(format!("{upper} {}", rest.join(" "))),
                )));
            }
            _ if add_ttl => {
                let rest: Vec<&str> = rdata.iter().map(|t| t.raw.as_str()).collect();
                let prefix = prefix();
                let record = format!("{} {}", rtype.raw, rest.join(" "));
                return Ok(Some((prefix, Replacement::Mnemonic(record))));
            }
            _ => return Ok(None),
        },
    };
    let prefix = prefix();
    let data = if generic {
        generic_rdata(rdata)?
    } else if ours(code) {
        match code {
            LOC => loc(rdata)?,
            RP => rp(rdata, origin)?,
            URI => uri(rdata)?,
            DNAME => dname(rdata, origin)?,
            _ => character_strings(rdata)?,
        }
    } else {
        let known = RecordType::from(code);
        if matches!(known, RecordType::Unknown(_)) {
            return Err(format!(
                "{} has no presentation form here: write its RDATA as \\# <length> <hex> (RFC 3597)",
                rtype.text
            ));
        }
        let rest: Vec<&str> = rdata.iter().map(|t| t.raw.as_str()).collect();
        return Ok(Some((
            prefix,
            Replacement::Mnemonic(format!("{known} {}", rest.join(" "))),
        )));
    };
    Ok(Some((prefix, Replacement::Data(code, data))))
}

/// Types whose RDATA holds domain names (where `@` is the origin).
const NAMED: [&str; 9] = [
    "CNAME", "NS", "MX", "PTR", "SRV", "NAPTR", "SOA", "SVCB", "HTTPS",
];

fn is_at(t: &Token) -> bool {
    !t.quoted && t.text == "@"
}

/// The owner, TTL and class fields as written (`tokens`), for the
/// replacement record; a record without an owner keeps its indent.
fn prefix_of(tokens: &[Token], owned: bool) -> String {
    let mut prefix = String::new();
    if !owned {
        prefix.push(' ');
    }
    for t in tokens {
        prefix.push_str(&t.text);
        prefix.push(' ');
    }
    prefix
}

const TXT: u16 = 16;
const RP: u16 = 17;
const LOC: u16 = 29;
const SPF: u16 = 99;
const URI: u16 = 256;
const DNAME: u16 = 39;

fn is_class(t: &str) -> bool {
    let u = t.to_ascii_uppercase();
    matches!(u.as_str(), "IN" | "CH" | "CS" | "HS" | "NONE" | "ANY")
        || u.strip_prefix("CLASS")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A TTL: seconds, or BIND's units (`1h30m`, `1w2d`).
fn is_ttl(t: &str) -> bool {
    t.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b"smhdwSMHDW".contains(&b))
}

struct Token {
    /// Unescaped for quoted strings; as written otherwise.
    text: String,
    /// As written, quotes included.
    raw: String,
    quoted: bool,
}

/// The tokens of a record: whitespace-separated, parentheses and comments
/// dropped, quoted strings kept whole.
fn tokens(chunk: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = chunk.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ';' => while chars.next_if(|&c| c != '\n').is_some() {},
            '(' | ')' => {
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '"' => {
                chars.next();
                let mut raw = String::from('"');
                let mut text = String::new();
                while let Some(c) = chars.next() {
                    raw.push(c);
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                raw.push(n);
                                text.push('\\');
                                text.push(n);
                            }
                        }
                        c => text.push(c),
                    }
                }
                out.push(Token {
                    text,
                    raw,
                    quoted: true,
                });
            }
            _ => {
                let mut raw = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | ';' | '"') {
                        break;
                    }
                    raw.push(c);
                    chars.next();
                    if c == '\\'
                        && let Some(n) = chars.next()
                    {
                        raw.push(n);
                    }
                }
                out.push(Token {
                    text: raw.clone(),
                    raw,
                    quoted: false,
                });
            }
        }
    }
    out
}

/// The bytes a character string stands for: `\X` is X, `\DDD` the octet.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let digits = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(u8::is_ascii_digit));
        if let Some(d) = digits {
            let v = d
                .iter()
                .fold(0u32, |acc, &x| acc * 10 + u32::from(x - b'0'));
            out.push(u8::try_from(v).map_err(|_| format!("\\{v} is not an octet"))?);
            i += 4;
        } else {
            let next = bytes.get(i + 1).ok_or("a lone \\ at the end")?;
            out.push(*next);
            i += 2;
        }
    }
    Ok(out)
}

/// `\# <length> <hex>...` (RFC 3597 5).
fn generic_rdata(rdata: &[Token]) -> Result<Vec<u8>, String> {
    let len: usize = rdata
        .get(1)
        .and_then(|t| t.text.parse().ok())
        .ok_or("\\# needs a length: \\# <length> <hex>")?;
    let hex: String = rdata.iter().skip(2).map(|t| t.text.as_str()).collect();
    if len > 65_535 || hex.len() != 2 * len {
        return Err(format!(
            "\\# {len} needs {len} octets of hex, got {} hex digits",
            hex.len()
        ));
    }
    (0..len)
        .map(|i| {
            hex.get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{hex:?} is not hex"))
        })
        .collect()
}

/// One or more <character-string>s, each at most 255 octets (TXT's form).
fn character_strings(rdata: &[Token]) -> Result<Vec<u8>, String> {
    if rdata.is_empty() {
        return Err("needs at least one string".into());
    }
    let mut out = Vec::new();
    for t in rdata {
        let s = unescape(&t.text)?;
        let len = u8::try_from(s.len()).map_err(|_| "a string over 255 octets".to_owned())?;
        out.push(len);
        out.extend_from_slice(&s);
    }
    Ok(out)
}

/// A domain name in RDATA, uncompressed, relative names under `origin`.
fn name_wire(text: &str, origin: &Name) -> Result<Vec<u8>, String> {
    let name = if text == "@" {
        origin.clone()
    } else {
        Name::parse(text, Some(origin)).map_err(|e| format!("{text}: {e}"))?
    };
    let mut out = Vec::new();
    for label in name.iter() {
        out.push(u8::try_from(label.len()).map_err(|_| format!("{text}: label too long"))?);
        out.extend_from_slice(label);
    }
    out.push(0);
    Ok(out)
}

/// DNAME: one target name (RFC 6672 2.1), `@` for the origin.
fn dname(rdata: &[Token], origin: &Name) -> Result<Vec<u8>, String> {
    match rdata {
        [target] if !target.quoted => name_wire(&target.text, origin),
        _ => Err("DNAME takes one target name".into()),
    }
}

/// RP: a mailbox and a TXT owner (RFC 1183 2.2).
fn rp(rdata: &[Token], origin: &Name) -> Result<Vec<u8>, String> {
    let [mbox, txt] = rdata else {
        return Err("RP needs a mailbox name and a TXT name".into());
    };
    let mut out = name_wire(&mbox.text, origin)?;
    out.extend(name_wire(&txt.text, origin)?);
    Ok(out)
}

/// URI: priority, weight, and the target as a quoted string (RFC 7553).
fn uri(rdata: &[Token]) -> Result<Vec<u8>, String> {
    let [priority, weight, target] = rdata else {
        return Err("URI needs a priority, a weight and a quoted target".into());
    };
    let number = |t: &Token| {
        t.text
            .parse::<u16>()
            .map_err(|_| format!("{} is not a number from 0 to 65535", t.text))
    };
    let mut out = number(priority)?.to_be_bytes().to_vec();
    out.extend(number(weight)?.to_be_bytes());
    let target = unescape(&target.text)?;
    if target.is_empty() {
        return Err("URI's target must not be empty".into());
    }
    out.extend(target);
    Ok(out)
}

/// LOC (RFC 1876 3): `d [m [s]] N|S d [m [s]] E|W alt[m] [size[m] [hp[m] [vp[m]]]]`.
fn loc(rdata: &[Token]) -> Result<Vec<u8>, String> {
    let words: Vec<&str> = rdata.iter().map(|t| t.text.as_str()).collect();
    let bad = || {
        format!(
            "LOC {:?}: not d [m [s]] N|S d [m [s]] E|W alt[m] [size hp vp]",
            words.join(" ")
        )
    };
    let mut at = 0;
    let mut angle = |max_deg: u32, hemis: [&str; 2]| -> Result<u32, String> {
        let deg: u32 = words.get(at).and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        at += 1;
        let mut min = 0u32;
        let mut msec = 0u32;
        if let Some(m) = words.get(at).and_then(|w| w.parse::<u32>().ok()) {
            min = m;
            at += 1;
            if let Some(s) = words.get(at).and_then(|w| fixed(w, 3)) {
                msec = u32::try_from(s).map_err(|_| bad())?;
                at += 1;
            }
        }
        let hemi = words.get(at).ok_or_else(bad)?.to_ascii_uppercase();
        at += 1;
        if deg > max_deg || min >= 60 || msec >= 60_000 {
            return Err(bad());
        }
        let offset = ((deg * 60 + min) * 60) * 1000 + msec;
        if offset > max_deg * 3_600_000 {
            return Err(bad());
        }
        match hemi {
            h if h == hemis[0] => Ok((1u32 << 31) + offset),
            h if h == hemis[1] => Ok((1u32 << 31) - offset),
            _ => Err(bad()),
        }
    };
    let latitude = angle(90, ["N", "S"])?;
    let longitude = angle(180, ["E", "W"])?;
    let metres = |w: &str| fixed(w.strip_suffix(['m', 'M']).unwrap_or(w), 2);
    let altitude = words.get(at).and_then(|w| metres(w)).ok_or_else(bad)?;
    at += 1;
    // Altitude in cm above a base 100,000 m below the WGS 84 spheroid.
    let altitude = u32::try_from(altitude + 10_000_000).map_err(|_| bad())?;
    let mut sizes = [100i64, 1_000_000, 1_000];
    for size in &mut sizes {
        if let Some(w) = words.get(at) {
            *size = metres(w)
                .filter(|v| (0..=9_000_000_000).contains(v))
                .ok_or_else(bad)?;
            at += 1;
        }
    }
    if at != words.len() {
        return Err(bad());
    }
    let mut out = vec![0];
    out.extend(sizes.iter().map(|&cm| precision(cm)));
    out.extend(latitude.to_be_bytes());
    out.extend(longitude.to_be_bytes());
    out.extend(altitude.to_be_bytes());
    Ok(out)
}

/// A decimal with at most `places` fraction digits, scaled by 10^places.
fn fixed(w: &str, places: u32) -> Option<i64> {
    let (neg, w) = match w.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, w),
    };
    let (int, frac) = w.split_once('.').unwrap_or((w, ""));
    if int.is_empty() || frac.len() > places as usize || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: i64 = int.parse().ok()?;
    let frac_value: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let scale = 10i64.pow(places);
    let v = int
        .checked_mul(scale)?
        .checked_add(frac_value * 10i64.pow(places - frac.len() as u32))?;
    Some(if neg { -v } else { v })
}

/// RFC 1876's size/precision octet: mantissa and power of ten, in cm.
fn precision(cm: i64) -> u8 {
    let (mut m, mut e) = (cm.max(0), 0u8);
    while m > 9 && e < 9 {
        m /= 10;
        e += 1;
    }
    ((m.min(9) as u8) << 4) | e
}

/// FNV-1a, for the marker's nonce.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn one(text: &str) -> (u16, Vec<u8>) {
        let origin = Name::from_str("z.test.").unwrap();
        let r = rewrite(text, &origin).unwrap();
        assert_eq!(r.records.len(), 1, "{}", r.text);
        r.records.into_values().next().unwrap()
    }

    #[test]
    fn generic_records_of_any_type() {
        assert_eq!(
            one("x TYPE65280 \\# 4 0a000001\n"),
            (65280, vec![10, 0, 0, 1])
        );
        assert_eq!(
            one("x 300 IN A \\# 4 c0 00 02 09\n"),
            (1, vec![192, 0, 2, 9])
        );
        assert_eq!(one("x TYPE65281 \\# 0\n"), (65281, vec![]));
        let origin = Name::from_str("z.test.").unwrap();
        for bad in [
            "x TYPE65280 \\# 3 0a00\n",
            "x TYPE65280 \\# 1 zz\n",
            "x TYPE65280 0a\n",
        ] {
            assert!(rewrite(bad, &origin).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_known_type_by_number_is_left_to_hickory() {
        let origin = Name::from_str("z.test.").unwrap();
        let r = rewrite("x 60 TYPE1 192.0.2.1\n", &origin).unwrap();
        assert_eq!(r.text, "x 60 A 192.0.2.1\n");
        assert!(r.records.is_empty());
    }

    #[test]
    fn records_before_any_ttl_directive_get_3600() {
        let origin = Name::from_str("z.test.").unwrap();
        let text =
            "@ SOA ns1 h ( 1 2 3 4 5 )\n  120 NS ns1\nw IN A 192.0.2.1\n$TTL 60\nv A 192.0.2.2\n";
        let r = rewrite(text, &origin).unwrap();
        let lines: Vec<&str> = r.text.split('\n').collect();
        assert_eq!(lines[0], "@ 3600 SOA ns1 h 1 2 3 4 5");
        assert_eq!(lines[1], "  120 NS ns1");
        assert_eq!(lines[2], "w IN 3600 A 192.0.2.1");
        assert_eq!(lines[4], "v A 192.0.2.2");
    }

    #[test]
    fn at_in_a_name_field_is_the_origin() {
        let origin = Name::from_str("z.test.").unwrap();
        let text = "$TTL 300\n$ORIGIN sub.z.test.\nw CNAME @\n  MX 10 @ ; c\nt TXT \"@\"\n";
        let r = rewrite(text, &origin).unwrap();
        let lines: Vec<&str> = r.text.split('\n').collect();
        assert_eq!(lines[2], "w CNAME sub.z.test.");
        assert_eq!(lines[3], " MX 10 sub.z.test.");
        assert_eq!(r.records.values().next().unwrap().1, b"\x01@");
    }

    #[test]
    fn lines_and_owners_stay_where_they_were() {
        let origin = Name::from_str("z.test.").unwrap();
        let text =
            "$TTL 60\na A 192.0.2.1\n  SPF ( \"v=spf1\"\n  \"-all\" ) ; two lines\nb A 192.0.2.2\n";
        let r = rewrite(text, &origin).unwrap();
        let lines: Vec<&str> = r.text.split('\n').collect();
        assert_eq!(lines.len(), text.split('\n').count());
        assert!(lines[2].starts_with(" TXT \"steer-rdata-"), "{lines:?}");
        assert_eq!(lines[4], "b A 192.0.2.2");
        let (rtype, rdata) = r.records.values().next().unwrap();
        assert_eq!((*rtype, rdata.as_slice()), (99, &b"\x06v=spf1\x04-all"[..]));
    }

    #[test]
    fn txt_strings_keep_their_spaces_across_lines() {
        let (t, d) = one("x TXT ( \"line one\"\n  \"line two\" ) ; c\n");
        assert_eq!((t, d.as_slice()), (16, &b"\x08line one\x08line two"[..]));
        let (_, d) = one("x TXT a\\;b \"q\\\"\\065\"\n");
        assert_eq!(d, b"\x03a;b\x03q\"A");
    }

    #[test]
    fn rp_uri_and_loc() {
        let (t, d) = one("$ORIGIN sub.z.test.\nx RP admin.z.test. info\n");
        assert_eq!(t, 17);
        assert_eq!(
            d,
            b"\x05admin\x01z\x04test\x00\x04info\x03sub\x01z\x04test\x00"
        );
        assert_eq!(
            one("x URI 10 1 \"https://z.test/\"\n"),
            (256, b"\x00\x0a\x00\x01https://z.test/".to_vec())
        );
        // RFC 1876's example, checked against NSD's encoding.
        let (t, d) = one("x LOC 42 21 54 N 71 06 18 W -24m 30m\n");
        assert_eq!(t, 29);
        assert_eq!(d[..4], [0, 0x33, 0x16, 0x13]);
        assert_eq!(
            u32::from_be_bytes(d[4..8].try_into().unwrap()),
            (1 << 31) + 152_514_000
        );
        assert_eq!(
            u32::from_be_bytes(d[8..12].try_into().unwrap()),
            (1 << 31) - 255_978_000
        );
        assert_eq!(
            u32::from_be_bytes(d[12..16].try_into().unwrap()),
            10_000_000 - 2_400
        );
        let origin = Name::from_str("z.test.").unwrap();
        for bad in [
            "x LOC 91 N 0 E 0\n",
            "x LOC 1 2 3 X 4 E 0\n",
            "x LOC 1 N 2 E\n",
            "x LOC 1 N 2 E 99999999999999999m\n",
            "x URI 1 2\n",
            "x TYPE65280 \\# 9223372036854775808 00\n",
        ] {
            assert!(rewrite(bad, &origin).is_err(), "{bad}");
        }
    }
}
