//! DNSSEC online signing: steered answers differ per client, so RRSIGs are
//! made when answering (RFC 4034 3, canonical form 6.2/6.3 through
//! hickory's to-be-signed builder), over whatever RRsets an answer holds,
//! static and steered alike.
//!
//! Denial of existence is compact (RFC 9824): a name that does not exist
//! is answered NOERROR with an NSEC at the name whose next name is
//! `\000.<name>` and whose types are RRSIG, NSEC and NXNAME; a NODATA's
//! NSEC at the name lists the types there. A wildcard answer's RRSIG has
//! the wildcard's label count (RFC 4034 3.1.3), so it comes with an NSEC
//! that covers only the next closer name (RFC 4470's minimally covering
//! NSEC, which spans the next closer's subtree). Referrals carry an NSEC at the cut proving it has no DS.
//!
//! Signatures are cached by the RRset's content (owner, type, TTL, label
//! count and sorted RDATA), so a hot steered answer is signed once per
//! distinct RRset; the cache is cleared when full.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use hickory_proto::dnssec::{
    Algorithm, TBS,
    rdata::{DNSSECRData, NSEC, RRSIG, SigInput},
};
use hickory_server::proto::{
    op::ResponseCode,
    rr::{DNSClass, LowerName, Name, RData, Record, RecordType, SerialNumber},
    serialize::binary::BinEncodable,
};
use ring::rand::SystemRandom;

use crate::{
    answer::{Answer, zone_of},
    keys::ZoneKey,
    view::DnsView,
    zone::Found,
};

/// Signatures are valid from an hour ago (clocks behind ours)...
const INCEPTION_BACK: u32 = 3600;
/// ... to a week ahead, and re-made once a day, so a cached RRSIG always
/// has six days left.
const VALIDITY: u32 = 7 * 86_400;
const RESIGN_AFTER: u32 = 86_400;
/// Distinct RRsets whose signatures are kept; the cache is cleared when
/// it holds this many.
const CACHE_CAP: usize = 20_000;
/// RFC 9824: the type that says "this name does not exist".
const NXNAME: RecordType = RecordType::Unknown(128);

/// A signed zone's key and its signature cache, shared by every view
/// compiled while the key is unchanged.
pub(crate) struct Signer {
    origin: Name,
    key: ZoneKey,
    rng: SystemRandom,
    cache: Mutex<HashMap<Vec<u8>, (u32, Record)>>,
}

impl Signer {
    pub(crate) fn new(origin: Name, key: ZoneKey) -> Self {
        Self {
            origin: origin.to_lowercase(),
            key,
            rng: SystemRandom::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// DNSKEY, CDS and CDNSKEY at the apex, with the SOA's TTL.
    pub(crate) fn apex_records(&self, ttl: u32) -> Vec<Record> {
        let origin = self.origin.clone();
        let mut out = vec![Record::from_rdata(
            origin.clone(),
            ttl,
            RData::DNSSEC(DNSSECRData::DNSKEY(self.key.dnskey())),
        )];
        if let Some((cds, cdnskey)) = self.key.child_records(&origin) {
            out.push(Record::from_rdata(
                origin.clone(),
                ttl,
                RData::DNSSEC(DNSSECRData::CDS(cds)),
            ));
            out.push(Record::from_rdata(
                origin,
                ttl,
                RData::DNSSEC(DNSSECRData::CDNSKEY(cdnskey)),
            ));
        }
        out
    }

    /// The RRSIG over `rrset` (one owner, type and class), sent with
    /// `owner`; `labels` is the owner's label count, or the wildcard's
    /// for a synthesized RRset. `None` only if hickory cannot encode it.
    pub(crate) fn sign(
        &self,
        owner: &Name,
        labels: u8,
        rrset: &[Record],
        now: u32,
    ) -> Option<Record> {
        let first = rrset.first()?;
        let (rtype, ttl) = (first.record_type(), first.ttl);
        let mut rdatas: Vec<Vec<u8>> = rrset
            .iter()
            .filter_map(|r| r.data.to_bytes().ok())
            .collect();
        rdatas.sort();
        let mut key = owner.to_lowercase().to_bytes().ok()?;
        key.push(labels);
        key.extend_from_slice(&u16::from(rtype).to_be_bytes());
        key.extend_from_slice(&ttl.to_be_bytes());
        for r in &rdatas {
            key.extend_from_slice(&(r.len() as u32).to_be_bytes());
            key.extend_from_slice(r);
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, sig)) = cache.get(&key)
            && now.wrapping_sub(*at) < RESIGN_AFTER
        {
            let mut sig = sig.clone();
            sig.name = owner.clone();
            return Some(sig);
        }
        drop(cache);
        let input = SigInput {
            type_covered: rtype,
            algorithm: Algorithm::ECDSAP256SHA256,
            num_labels: labels,
            original_ttl: ttl,
            sig_expiration: SerialNumber::new(now.wrapping_add(VALIDITY)),
            sig_inception: SerialNumber::new(now.wrapping_sub(INCEPTION_BACK)),
            key_tag: self.key.tag,
            signer_name: self.origin.clone(),
        };
        let owned: Vec<Record> = rrset
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.name = owner.clone();
                r
            })
            .collect();
        let tbs = TBS::from_input(owner, DNSClass::IN, &input, owned.iter()).ok()?;
        let sig = self.key.pair.sign(&self.rng, tbs.as_ref()).ok()?;
        let rrsig = RRSIG::from_sig(input, sig.as_ref().to_vec());
        let record =
            Record::from_rdata(owner.clone(), ttl, RData::DNSSEC(DNSSECRData::RRSIG(rrsig)));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(key, (now, record.clone()));
        Some(record)
    }
}

/// A signed response's sections, for hickory's encoder.
#[derive(Debug, Default)]
pub(crate) struct Signed {
    pub(crate) rcode: ResponseCode,
    pub(crate) answers: Vec<Record>,
    pub(crate) authority: Vec<Record>,
    pub(crate) additional: Vec<Record>,
}

impl Signed {
    pub(crate) fn refs(&self, additional: bool) -> crate::udp::SectionRefs<'_> {
        crate::udp::SectionRefs {
            answers: self.answers.iter().collect(),
            authority: self.authority.iter().collect(),
            additional: if additional {
                self.additional.iter().collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// Seconds since the Unix epoch, for signature validity (RFC 4034 3.1.5
/// serial arithmetic makes the u32 wrap harmless).
pub(crate) fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

/// The signer of the zone authoritative for `name` (the longest origin;
/// `below_apex` skips a zone whose apex `name` is: the parent side of a
/// cut), if that zone is signed.
fn signer_for<'v>(view: &'v DnsView, name: &Name, below_apex: bool) -> Option<&'v Arc<Signer>> {
    let lower = LowerName::new(name);
    view.zones
        .iter()
        .filter(|z| z.origin.zone_of(&lower) && !(below_apex && z.origin == lower))
        .max_by_key(|z| z.origin.num_labels())?
        .signer
        .as_ref()
}

/// Whether answers to `qname` come from a signed zone: those are signed
/// when the query has DO set.
pub(crate) fn is_signed(view: &DnsView, qname: &LowerName, qtype: RecordType) -> bool {
    zone_of(view, qname, qtype).is_some_and(|z| z.signer.is_some())
}

/// `result` with RRSIGs and compact denial, for a query with DO set to a
/// signed zone; `None` when the answer is not one we sign (REFUSED,
/// SERVFAIL, another server's zone), and the caller answers as usual.
/// `now` is the Unix time in seconds.
pub(crate) fn sign_answer(
    view: &DnsView,
    qname: &Name,
    qtype: RecordType,
    result: &Answer<'_>,
    now: u32,
) -> Option<Signed> {
    let lower = LowerName::new(qname);
    if !is_signed(view, &lower, qtype)
        || !matches!(result.rcode, ResponseCode::NoError | ResponseCode::NXDomain)
    {
        return None;
    }
    let mut out = Signed {
        rcode: ResponseCode::NoError,
        ..Signed::default()
    };
    let mut denials: Vec<Record> = Vec::new();
    // The answer section, RRset by RRset (runs of one owner and type).
    let mut i = 0;
    while let Some(first) = result.answers.get(i) {
        let owner = first.record(qname).name.clone();
        let rtype = first.record_type();
        let run = result.answers[i..]
            .iter()
            .take_while(|a| a.record_type() == rtype && a.record(qname).name == owner)
            .count();
        let set: Vec<Record> = result.answers[i..i + run]
            .iter()
            .map(|a| a.record(qname).into_owned())
            .collect();
        i += run;
        out.answers.extend(set.iter().cloned());
        let Some(signer) = signer_for(view, &owner, false) else {
            continue;
        };
        let stored = &first.rr.record.name;
        let mut labels = owner.num_labels();
        if stored.is_wildcard() && *stored != owner {
            // Synthesized: signed as the wildcard, with proof that the
            // next closer name does not exist; else as the name itself
            // (an online signer may treat it as existing).
            if let Some(nsec) = next_closer_denial(view, signer, &owner, stored, now) {
                labels = stored.num_labels();
                denials.extend(nsec);
            }
        }
        out.answers.extend(signer.sign(&owner, labels, &set, now));
    }
    // The authority section.
    if let Some(soa) = result.soa {
        let soa_set = [soa.record.clone()];
        out.authority.push(soa.record.clone());
        if let Some(signer) = signer_for(view, &soa.record.name, false) {
            out.authority.extend(signer.sign(
                &soa.record.name,
                soa.record.name.num_labels(),
                &soa_set,
                now,
            ));
        }
        // The name the negative answer is about: the end of the chain.
        let last = result
            .answers
            .iter()
            .rev()
            .find_map(|a| match &a.rr.record.data {
                RData::CNAME(c) => Some(c.0.clone()),
                _ => None,
            })
            .unwrap_or_else(|| qname.clone());
        let types = if result.rcode == ResponseCode::NXDomain {
            vec![RecordType::RRSIG, RecordType::NSEC, NXNAME]
        } else {
            types_at(view, &last, qtype)
        };
        if let Some(signer) = signer_for(view, &last, false) {
            out.authority
                .extend(nsec(signer, &last, types, soa.record.ttl, now));
        }
    } else if let Some(cut) = result.referral.first() {
        out.authority
            .extend(result.referral.iter().map(|r| r.record.clone()));
        // No DS at the cut: the parent's NSEC there says so.
        if let Some(signer) = signer_for(view, &cut.record.name, true) {
            let ttl = cut.record.ttl;
            let types = vec![RecordType::NS, RecordType::RRSIG, RecordType::NSEC];
            out.authority
                .extend(nsec(signer, &cut.record.name, types, ttl, now));
        }
    }
    out.authority.extend(denials);
    out.additional = result.additional.iter().map(|r| r.record.clone()).collect();
    Some(out)
}

/// The types at `name` for a NODATA's NSEC (plus RRSIG and NSEC).
fn types_at(view: &DnsView, name: &Name, qtype: RecordType) -> Vec<RecordType> {
    let lower = LowerName::new(name);
    let mut types: Vec<RecordType> = if let Some(svc) = view.services.get(&lower) {
        if svc.cname_style {
            vec![RecordType::CNAME]
        } else {
            // What a steered name holds depends on the plan; the asked
            // type is the one it does not have now.
            [RecordType::A, RecordType::AAAA]
                .into_iter()
                .filter(|t| *t != qtype)
                .collect()
        }
    } else {
        match zone_of(view, &lower, qtype).map(|z| z.find(&lower, qtype)) {
            Some(Found::Node { node, .. }) => node.rrs.iter().map(|r| r.record_type()).collect(),
            _ => Vec::new(),
        }
    };
    types.retain(|t| *t != qtype);
    types.extend([RecordType::RRSIG, RecordType::NSEC]);
    types.sort();
    types.dedup();
    types
}

/// An NSEC at `owner` whose next name is `\000.<owner>` (it covers no
/// other name), and its RRSIG.
fn nsec(signer: &Signer, owner: &Name, types: Vec<RecordType>, ttl: u32, now: u32) -> Vec<Record> {
    let Ok(next) = owner.prepend_label(&[0u8][..]) else {
        return Vec::new();
    };
    nsec_between(signer, owner, next, types, ttl, now)
}

fn nsec_between(
    signer: &Signer,
    owner: &Name,
    next: Name,
    types: Vec<RecordType>,
    ttl: u32,
    now: u32,
) -> Vec<Record> {
    let record = Record::from_rdata(
        owner.clone(),
        ttl,
        RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(next, types))),
    );
    let set = [record];
    let sig = signer.sign(owner, owner.num_labels(), &set, now);
    let [record] = set;
    std::iter::once(record).chain(sig).collect()
}

/// For an RRset that `wildcard` synthesized for `owner`: an NSEC that
/// covers the next closer name, its subtree (the query name) and nothing
/// that exists (RFC 4470 3), from just before it to just after it (its
/// label with a zero octet appended), and its RRSIG. `None` when no
/// such NSEC can be written without also denying the wildcard.
fn next_closer_denial(
    view: &DnsView,
    signer: &Signer,
    owner: &Name,
    wildcard: &Name,
    now: u32,
) -> Option<Vec<Record>> {
    let encloser = wildcard.base_name();
    let next_closer = owner.trim_to(usize::from(encloser.num_labels()) + 1);
    let label = next_closer.iter().next()?.to_ascii_lowercase();
    let before = predecessor_label(&label)?;
    // The wildcard itself must stay outside the range.
    if before.as_slice() <= &b"*"[..] {
        return None;
    }
    // After the next closer's whole subtree: the query name may be below
    // it, and the NSEC must cover the query name too.
    if label.len() >= 63 {
        return None;
    }
    let mut after = label.clone();
    after.push(0);
    let from = encloser.prepend_label(before).ok()?;
    let to = encloser.prepend_label(after).ok()?;
    let ttl = zone_of(view, &LowerName::new(owner), RecordType::SOA)
        .map_or(3600, |z| z.soa_negative.record.ttl);
    let types = vec![RecordType::RRSIG, RecordType::NSEC];
    Some(nsec_between(signer, &from, to, types, ttl, now))
}

/// A label that sorts just before `label` in canonical order (RFC 4034
/// 6.1): its last octet decremented, then `\255` (RFC 4471 3.1's
/// approximation). Upper-case letters compare as lower case, so a
/// decrement into `A`-`Z` becomes `@`. `None` when the label ends in a
/// zero octet (its predecessor would be a prefix, whose subtree exists).
fn predecessor_label(label: &[u8]) -> Option<Vec<u8>> {
    let (&last, rest) = label.split_last()?;
    let mut dec = last.checked_sub(1)?;
    if dec.is_ascii_uppercase() {
        dec = b'@';
    }
    let mut out = rest.to_vec();
    out.push(dec);
    if out.len() < 63 {
        out.push(0xff);
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn predecessor_sorts_just_before() {
        assert_eq!(predecessor_label(b"foo").unwrap(), b"fon\xff");
        assert_eq!(predecessor_label(b"a").unwrap(), b"`\xff");
        assert_eq!(predecessor_label(b"x[").unwrap(), b"x@\xff");
        assert!(predecessor_label(b"a\0").is_none());
        let long = [b'b'; 63];
        assert_eq!(predecessor_label(&long).unwrap().len(), 63);
    }
}
