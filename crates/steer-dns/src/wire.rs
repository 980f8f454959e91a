//! The UDP fast path's encoder: a reply written from the view's
//! pre-encoded records, with name compression, the additional section
//! trimmed to whole RRsets that fit, and TC only when the answer and
//! authority sections do not fit. Pure and allocation-free: `out` is the
//! caller's buffer.

use std::net::IpAddr;

use hickory_server::proto::rr::{RecordType, rdata::opt::ClientSubnet};

use crate::{
    answer::{Answer, Owner},
    sigcache::Signatures,
    udp::UdpOutcome,
    view::Rr,
};

/// The reply's OPT record: none when the query had none; else the
/// payload size, the DO bit (set on signed replies) and the Client Subnet
/// echo with the answer's scope.
#[derive(Clone, Copy)]
pub(crate) struct Opt {
    pub(crate) payload: Option<u16>,
    pub(crate) ecs: Option<(ClientSubnet, u8)>,
    pub(crate) dnssec_ok: bool,
    /// An Extended DNS Error info code (RFC 8914), no text.
    pub(crate) ede: Option<u16>,
}

/// Writes the reply from pre-encoded records: header, the question copied
/// byte for byte (case kept), the answer section (owners at the query name
/// point at it), the authority section (SOA or a referral's NS set), as
/// much of the additional section as fits in whole RRsets, and the OPT
/// record. When answer and authority do not fit, the reply is TC with no
/// records (RFC 2181 9). `signatures`, when given, are the answer's
/// RRSIGs: they follow it, owned by the query name. `None` when something
/// is not pre-encoded; the caller then uses hickory's encoder. The bool
/// says it was truncated.
pub(crate) fn write_fast(
    packet: &[u8],
    result: &Answer<'_>,
    opt: &Opt,
    signatures: Option<&Signatures>,
    limit: usize,
    out: &mut Vec<u8>,
) -> Option<(UdpOutcome, bool)> {
    let Opt {
        payload,
        ecs,
        dnssec_ok,
        ede,
    } = *opt;
    let rcode = u16::from(result.rcode);
    if rcode > 0xf {
        return None;
    }
    // The question ends after its name (labels, or a pointer) and 4 bytes.
    let mut i = 12;
    loop {
        let len = *packet.get(i)?;
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 == 0xc0 {
            i += 2;
            break;
        }
        i += 1 + usize::from(len);
    }
    let question = packet.get(12..i + 4)?;
    let pre_encoded = |rr: &Rr| rr.full().is_some();
    // What a DNAME made (a CNAME, names) takes hickory's encoder.
    if !(result.synth.is_none()
        && result.answers.iter().all(|a| pre_encoded(a.rr))
        && result.soa.is_none_or(pre_encoded)
        && result.referral.iter().all(pre_encoded)
        && result.additional.iter().all(pre_encoded))
    {
        return None;
    }
    let mut opt = [0u8; 11 + 4 + 4 + 16 + 6];
    let opt_len = match payload {
        None => 0,
        Some(size) => {
            opt[..3].copy_from_slice(&[0, 0, 41]);
            opt[3..5].copy_from_slice(&size.to_be_bytes());
            // ext-rcode 0, version 0, flags: DO or nothing; RDLENGTH.
            if dnssec_ok {
                opt[7] = 0x80;
            }
            let mut n = 11;
            if let Some((cs, scope)) = ecs {
                let (family, octets): (u16, [u8; 16]) = match cs.addr() {
                    IpAddr::V4(a) => {
                        let mut o = [0; 16];
                        o[..4].copy_from_slice(&a.octets());
                        (1, o)
                    }
                    IpAddr::V6(a) => (2, a.octets()),
                };
                let bytes = usize::from(cs.source_prefix()).div_ceil(8).min(16);
                let len = (4 + bytes) as u16;
                opt[11..13].copy_from_slice(&8u16.to_be_bytes());
                opt[13..15].copy_from_slice(&len.to_be_bytes());
                opt[15..17].copy_from_slice(&family.to_be_bytes());
                opt[17] = cs.source_prefix();
                opt[18] = scope;
                opt[19..19 + bytes].copy_from_slice(&octets[..bytes]);
                n = 19 + bytes;
            }
            if let Some(code) = ede {
                opt[n..n + 2].copy_from_slice(&crate::edns::EXTENDED_ERROR.to_be_bytes());
                opt[n + 2..n + 4].copy_from_slice(&2u16.to_be_bytes());
                opt[n + 4..n + 6].copy_from_slice(&code.to_be_bytes());
                n += 6;
            }
            opt[9..11].copy_from_slice(&((n - 11) as u16).to_be_bytes());
            n
        }
    };

    out.clear();
    let (id0, id1, req2, req3) = (
        *packet.first()?,
        *packet.get(1)?,
        *packet.get(2)?,
        *packet.get(3)?,
    );
    let aa = if result.authoritative { 0x04 } else { 0 };
    // The ID; QR, the request's opcode and RD; RA and AD clear; CD
    // copied; the counts, set at the end.
    let flags = [
        0x80 | (req2 & 0x78) | aa | (req2 & 0x01),
        (req3 & 0x10) | rcode as u8,
    ];
    out.extend_from_slice(&[id0, id1, flags[0], flags[1], 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(question);
    let records_start = out.len();
    // Built on first use: a steered answer (records at the question name,
    // addresses only) never needs it.
    let mut compressor = None;
    macro_rules! names {
        () => {
            compressor.get_or_insert_with(|| Compressor::new(question))
        };
    }
    for a in &result.answers {
        match a.owner {
            Owner::Query => out.extend_from_slice(&[0xc0, 0x0c]),
            Owner::Record => names!().owner(a.rr.owner_wire()?, out),
            // Never here: answers with made names are not written here.
            Owner::Made(_) => return None,
            Owner::Name(name) => {
                for label in name.iter() {
                    out.push(label.len() as u8);
                    out.extend_from_slice(label);
                }
                out.push(0);
            }
        }
        if compressible(a.rr) {
            names!().body(a.rr, out)?;
        } else {
            out.extend_from_slice(a.rr.body()?);
        }
    }
    let mut signed = 0;
    if let Some(sigs) = signatures {
        let mut rest = &sigs.wire[..];
        for _ in 0..sigs.count {
            // Type, class, TTL, then RDLENGTH and the RDATA.
            let len = usize::from(u16::from_be_bytes([*rest.get(8)?, *rest.get(9)?]));
            let (sig, after) = rest.split_at_checked(10 + len)?;
            out.extend_from_slice(&[0xc0, 0x0c]);
            out.extend_from_slice(sig);
            rest = after;
        }
        signed = usize::from(sigs.count);
    }
    let authority = result.soa.map_or(result.referral, std::slice::from_ref);
    for rr in authority {
        let names = names!();
        names.owner(rr.owner_wire()?, out);
        names.body(rr, out)?;
    }
    let truncated = out.len() + opt_len > limit;
    let (an, ns) = if truncated {
        out.truncate(records_start);
        (0, 0)
    } else {
        (result.answers.len() + signed, authority.len())
    };
    let mut ar = 0;
    let mut glue_left_out = false;
    if !truncated {
        // Whole RRsets only, and never at the cost of the answer: one that
        // does not fit is left out and the next ones tried (as Knot).
        let mut rest = result.additional;
        while let Some(first) = rest.first() {
            let run = rest
                .iter()
                .take_while(|r| r.record_type() == first.record_type() && r.name == first.name)
                .count();
            let mark = out.len();
            let known = names!().len;
            for rr in &rest[..run] {
                let names = names!();
                names.owner(rr.owner_wire()?, out);
                names.body(rr, out)?;
            }
            if out.len() + opt_len > limit {
                out.truncate(mark);
                names!().len = known;
                // Glue below the cut is the only way to reach the child's
                // servers: without all of it the referral is TC (RFC 9471).
                glue_left_out |= result
                    .referral
                    .first()
                    .is_some_and(|cut| cut.name.zone_of(&first.name));
            } else {
                ar += run;
            }
            rest = &rest[run..];
        }
    }
    out.extend_from_slice(&opt[..opt_len]);
    if truncated || glue_left_out {
        out[2] |= 0x02;
    }
    let counts = [1, an, ns, ar + usize::from(opt_len > 0)];
    for (k, count) in counts.into_iter().enumerate() {
        let count = u16::try_from(count).ok()?;
        out[4 + 2 * k..6 + 2 * k].copy_from_slice(&count.to_be_bytes());
    }
    Some((UdpOutcome::Reply, truncated || glue_left_out))
}

/// Name compression (RFC 1035 4.1.4) for the records written with their
/// own owner and for the names inside NS, CNAME, PTR, MX and SOA RDATA
/// (the types RFC 3597 4 lets us compress; SRV's target never is): each
/// name is written as its labels up to the longest suffix already in the
/// message (the question, or a name before it), then a pointer there. A
/// few names per response, so a linear search is the fastest.
struct Compressor<'a> {
    /// Where a name starts in the message, its uncompressed wire form, and
    /// how many of its bytes are written there literally (suffix starts
    /// below that are valid pointer targets).
    names: [(usize, &'a [u8], usize); 16],
    len: usize,
}

impl<'a> Compressor<'a> {
    /// Starts with the question name, if it is written without pointers.
    fn new(question: &'a [u8]) -> Self {
        let mut c = Self {
            names: [(0, &[][..], 0); 16],
            len: 0,
        };
        let name = question.get(..question.len().saturating_sub(4));
        if let Some(name) = name
            && name.last() == Some(&0)
            && labels(name).all(|(_, len)| len < 0x40)
        {
            c.remember(12, name, name.len());
        }
        c
    }

    fn remember(&mut self, at: usize, name: &'a [u8], literal: usize) {
        if let Some(slot) = self.names.get_mut(self.len) {
            *slot = (at, name, literal);
            self.len += 1;
        }
    }

    /// Writes a record's type, class, TTL and RDATA (after its owner),
    /// compressing the names in RDATA where that is allowed.
    fn body(&mut self, rr: &'a Rr, out: &mut Vec<u8>) -> Option<()> {
        let body = rr.body()?;
        let compressible = matches!(
            rr.record_type(),
            RecordType::NS | RecordType::CNAME | RecordType::PTR | RecordType::MX | RecordType::SOA
        );
        if !compressible {
            out.extend_from_slice(body);
            return Some(());
        }
        let (fixed, rdata) = (body.get(..8)?, body.get(10..)?);
        out.extend_from_slice(fixed);
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        match rr.record_type() {
            RecordType::MX => {
                out.extend_from_slice(rdata.get(..2)?);
                self.owner(rdata.get(2..)?, out);
            }
            RecordType::SOA => {
                let mname = name_len(rdata)?;
                let rname = name_len(rdata.get(mname..)?)?;
                self.owner(rdata.get(..mname)?, out);
                self.owner(rdata.get(mname..mname + rname)?, out);
                out.extend_from_slice(rdata.get(mname + rname..)?);
            }
            _ => self.owner(rdata, out),
        }
        let len = u16::try_from(out.len() - len_at - 2).ok()?;
        out.get_mut(len_at..len_at + 2)?
            .copy_from_slice(&len.to_be_bytes());
        Some(())
    }

    /// Writes `name` (uncompressed wire form), compressed.
    fn owner(&mut self, name: &'a [u8], out: &mut Vec<u8>) {
        let at = out.len();
        for (start, _) in labels(name) {
            let suffix = &name[start..];
            let found = self.names[..self.len]
                .iter()
                .find_map(|&(pos, known, literal)| {
                    // Only the suffix of the same length can match: compare
                    // it, then check that it starts at a label.
                    // (Names are mostly asked in lowercase: a plain
                    // comparison first.)
                    let k = known.len().checked_sub(suffix.len())?;
                    let tail = known.get(k..)?;
                    // The first bytes (a label length in `suffix`) differ
                    // for most names: no comparison of the rest then.
                    let same = k < literal
                        && tail.first() == suffix.first()
                        && (tail == suffix || tail.eq_ignore_ascii_case(suffix))
                        && labels(known).any(|(s, _)| s == k);
                    same.then_some(pos + k)
                });
            if let Some(ptr) = found
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p < 0x4000)
            {
                out.extend_from_slice(&name[..start]);
                out.extend_from_slice(&(0xc000 | ptr).to_be_bytes());
                if start > 0 {
                    self.remember(at, name, start);
                }
                return;
            }
        }
        out.extend_from_slice(name);
        self.remember(at, name, name.len());
    }
}

/// Whether RDATA of `rr`'s type holds names we may compress.
fn compressible(rr: &Rr) -> bool {
    matches!(
        rr.record_type(),
        RecordType::NS | RecordType::CNAME | RecordType::PTR | RecordType::MX | RecordType::SOA
    )
}

/// The length of the uncompressed wire name at the start of `buf`.
fn name_len(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let len = usize::from(*buf.get(i)?);
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += 1 + len;
    }
}

/// The label starts of an uncompressed wire name (the root excluded),
/// with each label's length byte.
fn labels(name: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let len = *name.get(i)?;
        if len == 0 || len & 0xc0 != 0 {
            return None;
        }
        let at = i;
        i += 1 + usize::from(len);
        Some((at, len))
    })
}
