//! The query resolvers send, read without building a hickory `Message`:
//! one question and at most an OPT record (EDNS version 0, no flags) whose
//! only option, if any, is a well-formed Client Subnet. Parsing a whole
//! `Message` for it allocates the OPT options' table and every record;
//! this reads the few fields an answer needs. Anything else (a DO bit,
//! cookies, other options or records, trailing bytes, an unusual ECS) is
//! left to the general path, so the reply is the same either way (a
//! property test compares the two).

use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::names::{Known, NameIndex, WireName};
use hickory_server::proto::{
    op::Query,
    rr::{DNSClass, LowerName, RecordType, rdata::opt::ClientSubnet},
    serialize::binary::{BinDecodable, BinDecoder},
};

/// What an answer needs of a plain query.
pub(crate) struct PlainQuery<'a> {
    /// Borrowed from the index when the name exists (no allocation).
    pub(crate) name: Cow<'a, LowerName>,
    /// What the index knows of the name, when it exists, and its wire
    /// form (the index's key).
    pub(crate) known: Option<(&'a [u8], &'a Known)>,
    pub(crate) qtype: RecordType,
    pub(crate) qclass: DNSClass,
    /// The client's UDP payload size (the OPT class), when it sent EDNS.
    pub(crate) payload: Option<u16>,
    /// Its Client Subnet, address bits past the source prefix cleared.
    pub(crate) ecs: Option<ClientSubnet>,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

/// The query, when it has the plain shape; `None` sends it down the
/// general path. A name in `names` is read off the packet without hickory.
pub(crate) fn plain<'a>(packet: &[u8], names: &'a NameIndex) -> Option<PlainQuery<'a>> {
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
    let mut wire = WireName::default();
    let (known, name, qtype, qclass, end) = match crate::names::read(packet, 12, &mut wire)
        .and_then(|end| Some((names.get(wire.as_bytes())?, end)))
    {
        Some((known, end)) => (
            Some(known),
            Cow::Borrowed(&known.1.name),
            RecordType::from(u16_at(packet, end)?),
            DNSClass::from(u16_at(packet, end + 2)?),
            end + 4,
        ),
        None => {
            let mut decoder = BinDecoder::new(packet);
            decoder.read_slice(12).ok()?;
            let query = Query::read(&mut decoder).ok()?;
            let name = Cow::Owned(LowerName::new(query.name()));
            let (qtype, qclass) = (query.query_type(), query.query_class());
            (None, name, qtype, qclass, decoder.index())
        }
    };
    let rest = packet.get(end..)?;
    let (payload, ecs) = if additional == 1 {
        opt(rest)?
    } else if rest.is_empty() {
        (None, None)
    } else {
        return None;
    };
    Some(PlainQuery {
        name,
        known,
        qtype,
        qclass,
        payload,
        ecs,
    })
}

/// An OPT record that ends the message: owner the root, version 0, no
/// extended rcode and no flags, no option or one Client Subnet.
fn opt(rest: &[u8]) -> Option<(Option<u16>, Option<ClientSubnet>)> {
    if rest.first() != Some(&0) || u16_at(rest, 1)? != 41 {
        return None;
    }
    let payload = u16_at(rest, 3)?;
    // Extended rcode, version, flags (DO among them): all zero.
    if rest.get(5..9)? != [0, 0, 0, 0] {
        return None;
    }
    let rdata = rest.get(11..)?;
    if usize::from(u16_at(rest, 9)?) != rdata.len() {
        return None;
    }
    if rdata.is_empty() {
        return Some((Some(payload), None));
    }
    // One option: Client Subnet (code 8) and nothing after it.
    if u16_at(rdata, 0)? != 8 || usize::from(u16_at(rdata, 2)?) != rdata.len() - 4 {
        return None;
    }
    let family = u16_at(rdata, 4)?;
    let source = *rdata.get(6)?;
    let scope = *rdata.get(7)?;
    let address = rdata.get(8..)?;
    if scope != 0 || address.len() != usize::from(source).div_ceil(8) {
        return None;
    }
    let addr = match family {
        1 if source <= 32 => {
            let mut a = [0u8; 4];
            a.get_mut(..address.len())?.copy_from_slice(address);
            IpAddr::V4(Ipv4Addr::from(a))
        }
        2 if source <= 128 => {
            let mut a = [0u8; 16];
            a.get_mut(..address.len())?.copy_from_slice(address);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    let cs = crate::edns::masked(&ClientSubnet::new(addr, source, 0));
    Some((Some(payload), Some(cs)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::{str::FromStr, sync::LazyLock};

    use super::*;

    /// Reads with `app.example.test.` in the index.
    fn parse(packet: &[u8]) -> Option<PlainQuery<'static>> {
        static NAMES: LazyLock<NameIndex> = LazyLock::new(|| {
            let apex = LowerName::from_str("example.test.").unwrap();
            let app = LowerName::from_str("app.example.test.").unwrap();
            NameIndex::build([(&apex, vec![&apex, &app])].into_iter(), &[])
        });
        plain(packet, &NAMES)
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
        let q = parse(&query(Some((0, &[0, 8, 0, 7, 0, 1, 23, 0, 10, 1, 3])))).unwrap();
        assert_eq!(q.ecs.unwrap().addr(), "10.1.2.0".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_name_not_in_the_index_reads_the_same() {
        let known = query(Some((0, &[0, 8, 0, 7, 0, 1, 24, 0, 10, 1, 2])));
        let mut unknown = known.clone();
        unknown[14] = b'X'; // "aXp", not in the index
        let (k, u) = (parse(&known).unwrap(), parse(&unknown).unwrap());
        assert!(matches!(k.name, Cow::Borrowed(_)));
        assert!(matches!(u.name, Cow::Owned(_)));
        assert_eq!(u.name.to_string(), "axp.example.test.");
        assert_eq!(
            (k.qtype, k.qclass, k.payload, k.ecs),
            (u.qtype, u.qclass, u.payload, u.ecs)
        );
        // Mixed case finds the stored name.
        let mut mixed = known.clone();
        mixed[13] = b'A';
        assert!(matches!(parse(&mixed).unwrap().name, Cow::Borrowed(_)));
    }

    #[test]
    fn anything_else_takes_the_general_path() {
        // DO set; a cookie; ECS with a scope; ECS with a short address.
        assert!(parse(&query(Some((0x8000, &[])))).is_none());
        assert!(parse(&query(Some((0, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])))).is_none());
        assert!(parse(&query(Some((0, &[0, 8, 0, 7, 0, 1, 24, 8, 10, 1, 2])))).is_none());
        assert!(parse(&query(Some((0, &[0, 8, 0, 6, 0, 1, 24, 0, 10, 1])))).is_none());
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
