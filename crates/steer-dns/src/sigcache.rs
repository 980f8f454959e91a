//! Signatures by RRset, made once and answered many times: each entry
//! holds an RRset's RRSIGs as hickory records, for the general encoder,
//! and pre-encoded, for the fast writer ([`crate::wire::write_fast`]),
//! which answers a signed query for a name that exists (a steered answer,
//! a static RRset) without building a message: the answer's records and
//! their RRSIGs are copied, owners pointing at the question.
//!
//! An entry is keyed by what its signatures cover (RFC 4034 3.1.8.1):
//! the owner in canonical form, the label count, the type, the original
//! TTL and the RDATA in canonical form, sorted. Both paths build that key
//! from the same bytes, so they share entries.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use hickory_server::proto::rr::{Record, RecordType};

use crate::{
    answer::{Answer, Owner},
    view::{DnsView, Rr},
};

/// Distinct RRsets whose signatures are kept; the cache is cleared when
/// it holds this many.
const CACHE_CAP: usize = 20_000;
/// Signatures are re-made once a day (they are valid for a week).
const RESIGN_AFTER: u32 = 86_400;

/// One RRset's signatures: one RRSIG per signing key.
pub(crate) struct Signatures {
    /// When they were made (Unix seconds).
    pub(crate) at: u32,
    pub(crate) records: Vec<Record>,
    /// The RRSIGs' type, class, TTL, RDLENGTH and RDATA, one after the
    /// other (each follows its owner in a message).
    pub(crate) wire: Box<[u8]>,
    pub(crate) count: u16,
}

impl Signatures {
    pub(crate) fn new(at: u32, records: Vec<Record>) -> Self {
        let mut wire = Vec::new();
        let mut count = 0u16;
        for r in &records {
            if let Some(body) = Rr::new(r.clone()).body() {
                wire.extend_from_slice(body);
                count = count.saturating_add(1);
            }
        }
        // A signature that cannot be encoded leaves the fast writer out.
        if usize::from(count) != records.len() {
            wire.clear();
            count = 0;
        }
        Self {
            at,
            records,
            wire: wire.into_boxed_slice(),
            count,
        }
    }
}

/// The cache. Filled by queries, so its hash is SipHash (std's, keyed per
/// process) and its size is capped.
#[derive(Default)]
pub(crate) struct SignatureCache(Mutex<HashMap<Vec<u8>, Arc<Signatures>>>);

impl SignatureCache {
    /// The entry for `key`, if it was made less than a day before `now`.
    pub(crate) fn get(&self, key: &[u8], now: u32) -> Option<Arc<Signatures>> {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|s| now.wrapping_sub(s.at) < RESIGN_AFTER)
            .cloned()
    }

    pub(crate) fn insert(&self, key: Vec<u8>, signatures: Arc<Signatures>) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(key, signatures);
    }
}

/// The cache key of an RRset: `owner` in lowercase wire form, its label
/// count, type and TTL, then each RDATA (canonical form) with its length,
/// sorted. `rdatas` is sorted in place.
pub(crate) fn key(
    owner: &[u8],
    labels: u8,
    rtype: RecordType,
    ttl: u32,
    rdatas: &mut [&[u8]],
) -> Vec<u8> {
    rdatas.sort_unstable();
    let len: usize = rdatas.iter().map(|r| r.len() + 4).sum();
    let mut key = Vec::with_capacity(owner.len() + 7 + len);
    key.extend_from_slice(owner);
    key.push(labels);
    key.extend_from_slice(&u16::from(rtype).to_be_bytes());
    key.extend_from_slice(&ttl.to_be_bytes());
    for r in rdatas.iter() {
        key.extend_from_slice(&(r.len() as u32).to_be_bytes());
        key.extend_from_slice(r);
    }
    key
}

/// Labels in a wire name (the root's not counted).
fn labels(wire: &[u8]) -> Option<u8> {
    let mut i = 0;
    let mut n = 0u8;
    loop {
        let len = usize::from(*wire.get(i)?);
        if len == 0 {
            return Some(n);
        }
        n = n.checked_add(1)?;
        i += 1 + len;
    }
}

/// The signatures of `result`'s answer, when the fast writer can send it
/// signed: one RRset found at the query name (not synthesized from a
/// wildcard, not reached through a CNAME), nothing in the authority or
/// additional sections, from zone `zone` which is signed. `qname` is the
/// query name's lowercase wire form. `None` sends the query through the
/// general encoder, which signs every other shape.
pub(crate) fn for_answer(
    view: &DnsView,
    zone: usize,
    qname: &[u8],
    qtype: RecordType,
    result: &Answer<'_>,
    now: u32,
) -> Option<Arc<Signatures>> {
    // DS at an apex is the parent zone's (see `answer::zone_of`).
    if qtype == RecordType::DS
        || result.rcode != hickory_server::proto::op::ResponseCode::NoError
        || result.soa.is_some()
        || !result.referral.is_empty()
        || !result.additional.is_empty()
    {
        return None;
    }
    let signer = view.zones.get(zone)?.signer.as_ref()?;
    let first = result.answers.first()?;
    let (rtype, ttl) = (first.record_type(), first.ttl);
    let one_rrset = result.answers.iter().all(|a| {
        a.owner == Owner::Query && a.record_type() == rtype && !a.rr.record.name.is_wildcard()
    });
    if !one_rrset {
        return None;
    }
    let mut rdatas: smallvec::SmallVec<[&[u8]; 8]> = smallvec::SmallVec::new();
    for a in &result.answers {
        rdatas.push(a.rr.body()?.get(10..)?);
    }
    let labels = labels(qname)?;
    let key = key(qname, labels, rtype, ttl, &mut rdatas);
    let signatures = signer.signatures(key, now, || {
        let owner = first.rr.record.name.clone();
        let rrset = result.answers.iter().map(|a| a.rr.record.clone()).collect();
        (owner, labels, rrset)
    })?;
    (signatures.count > 0).then_some(signatures)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_key_does_not_depend_on_the_order_of_the_records() {
        let (a, b): (&[u8], &[u8]) = (&[192, 0, 2, 1], &[192, 0, 2, 2]);
        let one = key(b"\x03app\x00", 1, RecordType::A, 30, &mut [b, a]);
        let two = key(b"\x03app\x00", 1, RecordType::A, 30, &mut [a, b]);
        assert_eq!(one, two);
        let other = key(b"\x03app\x00", 1, RecordType::A, 60, &mut [a, b]);
        assert_ne!(one, other);
        assert_eq!(labels(b"\x03app\x07example\x04test\x00"), Some(3));
        assert_eq!(labels(b"\x00"), Some(0));
        assert_eq!(labels(b"\x03ap"), None);
    }
}
