//! The query resolvers send, read without building a hickory `Message`:
//! one question and at most an OPT record (EDNS version 0, no flag but
//! DO) whose only option, if any, is a well-formed Client Subnet. Parsing a whole
//! `Message` for it allocates the OPT options' table and every record;
//! this reads the few fields an answer needs. Anything else (other flags,
//! cookies, other options or records, trailing bytes, an unusual ECS) is
//! left to the general path, so the reply is the same either way (a
//! property test compares the two).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::names::{Known, NameIndex, WireName};
use hickory_server::proto::{
    rr::{DNSClass, LowerName, Name, RecordType, rdata::opt::ClientSubnet},
    serialize::binary::{BinDecodable, BinDecoder},
};

/// What an answer needs of a plain query.
pub(crate) struct PlainQuery<'a> {
    pub(crate) name: QName<'a>,
    pub(crate) qtype: RecordType,
    pub(crate) qclass: DNSClass,
    /// The client's UDP payload size (the OPT class), when it sent EDNS.
    pub(crate) payload: Option<u16>,
    /// Its Client Subnet, address bits past the source prefix cleared.
    pub(crate) ecs: Option<ClientSubnet>,
    /// The DNSSEC OK bit (RFC 3225).
    pub(crate) dnssec_ok: bool,
    /// Its one option is a Client Subnet that RFC 7871 has servers reject
    /// with FORMERR (6, 7.2.1): a family other than IPv4 and IPv6, a
    /// source prefix longer than the address, a scope in the query, too
    /// few or too many address octets, or address bits past the prefix.
    pub(crate) bad_subnet: bool,
}

/// The query name, as far as the index tells.
pub(crate) enum QName<'a> {
    /// A name that exists: its wire form (the index's key) and what the
    /// index knows of it (its stored name among that). No allocation.
    Known(&'a [u8], &'a Known),
    /// A name that does not exist, and the closest one above it that
    /// does, which denies it (see [`Known::denies_below`]).
    Denied(&'a Known),
    /// Any other name, as hickory read it.
    Other(LowerName),
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

thread_local! {
    /// The query name's lowercase wire form, read into the same buffer
    /// for every query of a thread (a fresh one is 255 zeroed bytes).
    static WIRE: std::cell::RefCell<WireName> = const { std::cell::RefCell::new(WireName::EMPTY) };
}

/// The query, when it has the plain shape; `None` sends it down the
/// general path. A name in `names` is read off the packet without hickory,
/// and so is one it denies, when `deny` (the index decides NXDOMAIN
/// alone: no configured name is missing from it).
pub(crate) fn plain<'a>(packet: &[u8], names: &'a NameIndex, deny: bool) -> Option<PlainQuery<'a>> {
    let flags = u16_at(packet, 2)?;
    // A query (QR clear) with opcode QUERY; one question, nothing in the
    // answer and authority sections, at most the OPT record.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xf != 0 {
        return None;
    }
    if u16_at(packet, 4)? != 1 || u16_at(packet, 6)? != 0 || u16_at(packet, 8)? != 0 {
        return None;
    }
    let additional = u16_at(packet, 10)?;
    if additional > 1 {
        return None;
    }
    let indexed = WIRE.with_borrow_mut(|wire| {
        let end = crate::names::read(packet, 12, wire)?;
        match names.get(wire.as_bytes()) {
            Some((key, known)) => Some((QName::Known(key, known), end)),
            None => names
                .denied(wire.as_bytes())
                .filter(|_| deny)
                .map(|encloser| (QName::Denied(encloser), end)),
        }
    });
    let (name, end) = match indexed {
        Some(found) => found,
        None => other(packet)?,
    };
    let qtype = RecordType::from(u16_at(packet, end)?);
    let qclass = DNSClass::from(u16_at(packet, end + 2)?);
    let end = end + 4;
    let rest = packet.get(end..)?;
    let (payload, ecs, dnssec_ok) = if additional == 1 {
        opt(rest)?
    } else if rest.is_empty() {
        (None, Ok(None), false)
    } else {
        return None;
    };
    Some(PlainQuery {
        name,
        qtype,
        qclass,
        payload,
        bad_subnet: ecs.is_err(),
        ecs: ecs.ok().flatten(),
        dnssec_ok,
    })
}

/// The question's name read by hickory (names the index does not
/// decide), and the index just past the name.
fn other(packet: &[u8]) -> Option<(QName<'static>, usize)> {
    let mut decoder = BinDecoder::new(packet);
    decoder.read_slice(12).ok()?;
    let name = Name::read(&mut decoder).ok()?;
    Some((QName::Other(LowerName::new(&name)), decoder.index()))
}

/// A Client Subnet RFC 7871 rejects (see [`PlainQuery::bad_subnet`]).
pub(crate) struct BadSubnet;

/// An OPT record that ends the message: owner the root, version 0, no
/// extended rcode, no flag but DO, no option or one Client Subnet (which
/// may be malformed).
#[allow(clippy::type_complexity)]
fn opt(rest: &[u8]) -> Option<(Option<u16>, Result<Option<ClientSubnet>, BadSubnet>, bool)> {
    if rest.first() != Some(&0) || u16_at(rest, 1)? != 41 {
        return None;
    }
    let payload = u16_at(rest, 3)?;
    // Extended rcode and version zero; of the flags, DO alone or none.
    let dnssec_ok = match rest.get(5..9)? {
        [0, 0, 0, 0] => false,
        [0, 0, 0x80, 0] => true,
        _ => return None,
    };
    let rdata = rest.get(11..)?;
    if usize::from(u16_at(rest, 9)?) != rdata.len() {
        return None;
    }
    if rdata.is_empty() {
        return Some((Some(payload), Ok(None), dnssec_ok));
    }
    // One option: Client Subnet (code 8) and nothing after it.
    if u16_at(rdata, 0)? != 8 || usize::from(u16_at(rdata, 2)?) != rdata.len() - 4 {
        return None;
    }
    let bad = Some((Some(payload), Err(BadSubnet), dnssec_ok));
    let (Some(family), Some(&source), Some(&scope)) =
        (u16_at(rdata, 4), rdata.get(6), rdata.get(7))
    else {
        return bad;
    };
    let address = rdata.get(8..).unwrap_or_default();
    if scope != 0 || address.len() != usize::from(source).div_ceil(8) {
        return bad;
    }
    // Address bits past the prefix: the last octet's low bits.
    let spare = (8 - source % 8) % 8;
    if address
        .last()
        .is_some_and(|&b| b & ((1u8 << spare) - 1) != 0)
    {
        return bad;
    }
    // The address's leading bytes, the rest zero (copied a byte at a
    // time: a few bytes, where a variable-length copy would be a call to
    // memmove, and shifting them into a u128 showed in the profile).
    let mut octets = [0u8; 16];
    for (o, b) in octets.iter_mut().zip(address) {
        *o = *b;
    }
    let addr = match family {
        1 if source <= 32 => {
            let [a, b, c, d, ..] = octets;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        }
        2 if source <= 128 => IpAddr::V6(Ipv6Addr::from(octets)),
        _ => return bad,
    };
    let cs = ClientSubnet::new(addr, source, 0);
    Some((Some(payload), Ok(Some(cs)), dnssec_ok))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::{str::FromStr, sync::LazyLock};

    use super::*;

    static NAMES: LazyLock<NameIndex> = LazyLock::new(|| {
        let apex = LowerName::from_str("example.test.").unwrap();
        let app = LowerName::from_str("app.example.test.").unwrap();
        NameIndex::build(
            [(&apex, vec![(&apex, true, None), (&app, true, None)])].into_iter(),
            &[],
        )
    });

    /// Reads with `app.example.test.` in the index.
    fn parse(packet: &[u8]) -> Option<PlainQuery<'static>> {
        plain(packet, &NAMES, true)
    }

    /// `app.example.test A`, with an OPT record carrying `options` and
    /// `flags` (DO is 0x8000) when given.
    fn query(opt: Option<(u16, &[u8])>) -> Vec<u8> {
        let mut q = vec![
            0xab,
            0xcd,
            1,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        q.extend_from_slice(b"\x03app\x07example\x04test\x00\x00\x01\x00\x01");
        if let Some((flags, options)) = opt {
            q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0]);
            q.extend_from_slice(&flags.to_be_bytes());
            q.extend_from_slice(&u16::try_from(options.len()).unwrap().to_be_bytes());
            q.extend_from_slice(options);
        }
        q
    }

    #[test]
    fn the_queries_resolvers_send_are_plain() {
        let q = parse(&query(None)).unwrap();
        assert_eq!(
            (q.qtype, q.payload, q.ecs.is_none()),
            (RecordType::A, None, true)
        );
        let q = parse(&query(Some((0, &[])))).unwrap();
        assert_eq!(q.payload, Some(1232));
        // ECS 10.1.2.0/24, and a /23 with a host bit set (masked).
        let q = parse(&query(Some((0, &[0, 8, 0, 7, 0, 1, 24, 0, 10, 1, 2])))).unwrap();
        let cs = q.ecs.unwrap();
        assert_eq!(
            (cs.addr(), cs.source_prefix()),
            ("10.1.2.0".parse().unwrap(), 24)
        );
        let q = parse(&query(Some((0, &[0, 8, 0, 7, 0, 1, 23, 0, 10, 1, 2])))).unwrap();
        assert_eq!(q.ecs.unwrap().addr(), "10.1.2.0".parse::<IpAddr>().unwrap());
        assert!(!q.bad_subnet);
        // RFC 7871 has these refused with FORMERR: a host bit past the
        // prefix, a scope, too few or too many address octets, another
        // family, a prefix longer than the address, a truncated option.
        for ecs in [
            &[0, 8, 0, 7, 0, 1, 23, 0, 10, 1, 3][..],
            &[0, 8, 0, 7, 0, 1, 24, 8, 10, 1, 2],
            &[0, 8, 0, 6, 0, 1, 24, 0, 10, 1],
            &[0, 8, 0, 8, 0, 1, 24, 0, 10, 1, 2, 0],
            &[0, 8, 0, 7, 0, 3, 24, 0, 10, 1, 2],
            &[0, 8, 0, 9, 0, 1, 33, 0, 10, 1, 2, 3, 4],
            &[0, 8, 0, 1, 0],
        ] {
            let q = parse(&query(Some((0, ecs)))).unwrap();
            assert!(q.bad_subnet && q.ecs.is_none(), "{ecs:?}");
        }
    }

    #[test]
    fn a_name_not_in_the_index_reads_the_same() {
        let known = query(Some((0, &[0, 8, 0, 7, 0, 1, 24, 0, 10, 1, 2])));
        let mut unknown = known.clone();
        unknown[14] = b'X'; // "aXp", not in the index
        let (k, u) = (parse(&known).unwrap(), parse(&unknown).unwrap());
        assert!(matches!(k.name, QName::Known(..)));
        // Denied by the apex, which has nothing below it but `app`.
        let QName::Denied(apex) = u.name else {
            panic!("not denied");
        };
        assert_eq!(apex.name.to_string(), "example.test.");
        assert_eq!(
            (k.qtype, k.qclass, k.payload, k.ecs),
            (u.qtype, u.qclass, u.payload, u.ecs)
        );
        // Unless the index may not deny: hickory reads it.
        let other = plain(&unknown, &NAMES, false).unwrap();
        let QName::Other(name) = &other.name else {
            panic!("not read by hickory");
        };
        assert_eq!(name.to_string(), "axp.example.test.");
        assert_eq!((other.qtype, other.ecs), (k.qtype, k.ecs));
        // Outside every zone: hickory reads it.
        let mut outside = known.clone();
        outside[19] = b'X'; // "exXmple.test"
        assert!(matches!(parse(&outside).unwrap().name, QName::Other(_)));
        // Mixed case finds the stored name.
        let mut mixed = known.clone();
        mixed[13] = b'A';
        assert!(matches!(parse(&mixed).unwrap().name, QName::Known(..)));
    }

    #[test]
    fn anything_else_takes_the_general_path() {
        // DO is read; another flag; a cookie.
        let q = parse(&query(Some((0x8000, &[0, 8, 0, 7, 0, 1, 24, 0, 10, 1, 2])))).unwrap();
        assert!(q.dnssec_ok && q.ecs.is_some());
        assert!(!parse(&query(Some((0, &[])))).unwrap().dnssec_ok);
        assert!(parse(&query(Some((0x4000, &[])))).is_none());
        assert!(parse(&query(Some((0x8001, &[])))).is_none());
        assert!(parse(&query(Some((0, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])))).is_none());
        // Trailing bytes, a response, two questions.
        let mut q = query(None);
        q.push(0);
        assert!(parse(&q).is_none());
        let mut q = query(None);
        q[2] |= 0x80;
        assert!(parse(&q).is_none());
        let mut q = query(None);
        q[5] = 2;
        assert!(parse(&q).is_none());
    }
}
