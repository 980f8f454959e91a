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
//! distinct RRset; the cache is cleared when full (see `sigcache`, which
//! also holds them pre-encoded for the fast writer).
//!
//! Keys: a [`Signer`] holds every key of its zone with its state when the
//! signer was made (see [`crate::rollover`]). Published, active and retired
//! keys are in the DNSKEY RRset; active ones sign: KSKs/CSKs the DNSKEY,
//! CDS and CDNSKEY RRsets, ZSKs the rest (CSKs when there is no active
//! ZSK). A signer is replaced, cache and all, when a key or a key's state
//! changes ([`crate::ViewPublisher::refresh_keys`]).

use std::{borrow::Cow, sync::Arc};

use hickory_proto::dnssec::{
    Algorithm, TBS,
    rdata::{DNSSECRData, NSEC, RRSIG, SigInput},
};
use hickory_server::proto::{
    op::ResponseCode,
    rr::{DNSClass, LowerName, Name, RData, Record, RecordType, SerialNumber},
    serialize::binary::BinEncodable,
};
use metrics::Counter;
use ring::rand::SystemRandom;
use steer_types::DnssecDs;

use crate::{
    answer::{Answer, zone_of},
    keys::{KeyError, ZoneKey},
    rollover::KeyState,
    sigcache::{SignatureCache, Signatures},
    view::DnsView,
    zone::Found,
};

/// Signatures are valid from an hour ago (clocks behind ours)...
const INCEPTION_BACK: u32 = 3600;
/// ... to a week ahead, and re-made once a day (see `sigcache`), so a
/// cached RRSIG always has six days left.
const VALIDITY: u32 = 7 * 86_400;
/// RFC 9824: the type that says "this name does not exist".
const NXNAME: RecordType = RecordType::Unknown(128);

/// A signed zone's keys and its signature cache, shared by every view
/// compiled while the keys and their states are unchanged.
pub(crate) struct Signer {
    origin: Name,
    /// Every key of the zone, with its state when the signer was made
    /// (removed keys and keys not yet published included, for reports).
    keys: Vec<(ZoneKey, KeyState)>,
    /// Indices into `keys`: what signs the DNSKEY, CDS and CDNSKEY
    /// RRsets, and what signs everything else.
    key_signing: Vec<usize>,
    zone_signing: Vec<usize>,
    rng: SystemRandom,
    cache: SignatureCache,
    metrics: SignMetrics,
}

/// `steer_dnssec_signatures_total{zone,result}`: RRsets answered from the
/// signature cache, signed, or left unsigned because signing failed.
struct SignMetrics {
    cached: Counter,
    made: Counter,
    failed: Counter,
}

impl SignMetrics {
    fn new(zone: &str) -> Self {
        let c = |result: &'static str| metrics::counter!("steer_dnssec_signatures_total", "zone" => zone.to_owned(), "result" => result);
        Self {
            cached: c("cached"),
            made: c("signed"),
            failed: c("failed"),
        }
    }
}

impl Signer {
    /// The signer for `origin`'s `keys` at `now`; refused when no key is
    /// active (nothing could sign the zone).
    pub(crate) fn new(origin: Name, keys: Vec<ZoneKey>, now: i64) -> Result<Self, KeyError> {
        let origin = origin.to_lowercase();
        let keys: Vec<(ZoneKey, KeyState)> = keys
            .into_iter()
            .map(|k| {
                let state = k.state_at(now);
                (k, state)
            })
            .collect();
        let active = |sep: bool| -> Vec<usize> {
            keys.iter()
                .enumerate()
                .filter(|(_, (k, s))| *s == KeyState::Active && k.is_sep() == sep)
                .map(|(i, _)| i)
                .collect()
        };
        let (ksks, zsks) = (active(true), active(false));
        if ksks.is_empty() && zsks.is_empty() {
            let dir = keys
                .first()
                .and_then(|(k, _)| k.path.parent())
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            return Err(KeyError::NoActiveKey {
                zone: origin.to_string(),
                dir,
            });
        }
        // Without an active KSK the ZSKs sign the DNSKEY RRset too (and
        // the reverse): a validator needs some signature it can chain.
        let key_signing = if ksks.is_empty() {
            zsks.clone()
        } else {
            ksks.clone()
        };
        let zone_signing = if zsks.is_empty() { ksks } else { zsks };
        let metrics = SignMetrics::new(&origin.to_string());
        Ok(Self {
            origin,
            keys,
            key_signing,
            zone_signing,
            rng: SystemRandom::new(),
            cache: SignatureCache::default(),
            metrics,
        })
    }

    /// Whether every key is at `now` in the state it was made with (no
    /// Publish, Activate, Inactive or Delete time reached since).
    pub(crate) fn states_hold_at(&self, now: i64) -> bool {
        self.keys.iter().all(|(k, st)| k.state_at(now) == *st)
    }

    /// Whether `other` serves the same keys in the same states.
    pub(crate) fn same_keys(&self, other: &Self) -> bool {
        let id = |s: &Self| -> Vec<(u16, u16, Vec<u8>, KeyState, crate::rollover::KeyTiming)> {
            s.keys
                .iter()
                .map(|(k, st)| (k.tag, k.flags, k.public.clone(), *st, k.timing))
                .collect()
        };
        self.origin == other.origin && id(self) == id(other)
    }

    /// The keys in the DNSKEY RRset.
    fn published(&self) -> impl Iterator<Item = &ZoneKey> {
        self.keys
            .iter()
            .filter(|(_, s)| s.published())
            .map(|(k, _)| k)
    }

    /// How many keys are in each state (for `steer_dnssec_keys`).
    pub(crate) fn key_states(&self) -> Vec<(KeyState, usize)> {
        let mut out: Vec<(KeyState, usize)> = Vec::new();
        for (_, s) in &self.keys {
            match out.iter_mut().find(|(t, _)| t == s) {
                Some((_, n)) => *n += 1,
                None => out.push((*s, 1)),
            }
        }
        out
    }

    /// The DS records the parent may hold: one per published KSK/CSK
    /// (SHA-256 digest), with its key's state.
    pub(crate) fn ds_records(&self) -> Vec<DnssecDs> {
        self.keys
            .iter()
            .filter(|(k, s)| s.published() && k.is_sep())
            .filter_map(|(k, s)| {
                let ds = k.ds(&self.origin)?;
                Some(DnssecDs {
                    zone: self.origin.to_string(),
                    key_tag: k.tag,
                    algorithm: 13,
                    digest_type: 2,
                    digest: ds.digest().to_vec(),
                    key_state: *s,
                })
            })
            .collect()
    }

    /// Writes `dsset-<zone>` for the published KSKs/CSKs.
    pub(crate) fn write_dsset(&self, dir: &std::path::Path) -> Result<(), KeyError> {
        let keys: Vec<&ZoneKey> = self.published().filter(|k| k.is_sep()).collect();
        crate::keys::write_dsset(&self.origin, dir, &keys)
    }

    /// The key tags that sign data now (for logs).
    pub(crate) fn signing_tags(&self) -> Vec<u16> {
        let mut tags: Vec<u16> = self
            .key_signing
            .iter()
            .chain(&self.zone_signing)
            .filter_map(|i| self.keys.get(*i).map(|(k, _)| k.tag))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        tags
    }

    /// DNSKEY for every published key, CDS and CDNSKEY for the KSKs/CSKs
    /// that are published or active (RFC 7344: what the parent should
    /// publish; a retired key is on its way out), with the SOA's TTL.
    pub(crate) fn apex_records(&self, ttl: u32) -> Vec<Record> {
        let origin = self.origin.clone();
        let mut out = Vec::new();
        for key in self.published() {
            out.push(Record::from_rdata(
                origin.clone(),
                ttl,
                RData::DNSSEC(DNSSECRData::DNSKEY(key.dnskey())),
            ));
        }
        for (key, state) in &self.keys {
            if !key.is_sep() || !matches!(state, KeyState::Published | KeyState::Active) {
                continue;
            }
            if let Some((cds, cdnskey)) = key.child_records(&origin) {
                out.push(Record::from_rdata(
                    origin.clone(),
                    ttl,
                    RData::DNSSEC(DNSSECRData::CDS(cds)),
                ));
                out.push(Record::from_rdata(
                    origin.clone(),
                    ttl,
                    RData::DNSSEC(DNSSECRData::CDNSKEY(cdnskey)),
                ));
            }
        }
        out
    }

    /// The RRSIG over `rrset` (one owner, type and class), sent with
    /// `owner`; `labels` is the owner's label count, or the wildcard's
    /// for a synthesized RRset. One RRSIG per signing key; none only if
    /// hickory cannot encode the RRset or ring cannot sign (counted as
    /// `failed`: a validator will refuse the answer).
    pub(crate) fn sign(&self, owner: &Name, labels: u8, rrset: &[Record], now: u32) -> Vec<Record> {
        let made = self.sign_with_cache(owner, labels, rrset, now);
        if made.is_empty() && !rrset.is_empty() {
            self.metrics.failed.increment(1);
        }
        made
    }

    fn sign_with_cache(&self, owner: &Name, labels: u8, rrset: &[Record], now: u32) -> Vec<Record> {
        let Some(first) = rrset.first() else {
            return Vec::new();
        };
        // The key of `sigcache`: canonical RDATA, as the fast writer's
        // pre-encoded records hold it, so both paths share entries.
        let rdatas: Vec<Vec<u8>> = rrset
            .iter()
            .filter_map(|r| crate::view::canonical(|e| r.data.emit(e)))
            .collect();
        let Ok(wire) = owner.to_lowercase().to_bytes() else {
            return Vec::new();
        };
        let mut refs: Vec<&[u8]> = rdatas.iter().map(Vec::as_slice).collect();
        let key = crate::sigcache::key(&wire, labels, first.record_type(), first.ttl, &mut refs);
        let made = self.signatures(key, now, || (owner.clone(), labels, rrset.to_vec()));
        let Some(made) = made else {
            return Vec::new();
        };
        let mut sigs = made.records.clone();
        for sig in &mut sigs {
            sig.name = owner.clone();
        }
        sigs
    }

    /// The signatures cached under `key` (see [`crate::sigcache::key`]),
    /// else those made now over the RRset `make` gives (its owner, label
    /// count and records) and cached. `None` when nothing could sign it.
    pub(crate) fn signatures(
        &self,
        key: Vec<u8>,
        now: u32,
        make: impl FnOnce() -> (Name, u8, Vec<Record>),
    ) -> Option<Arc<Signatures>> {
        if let Some(cached) = self.cache.get(&key, now) {
            self.metrics.cached.increment(1);
            return Some(cached);
        }
        let (owner, labels, rrset) = make();
        let first = rrset.first()?;
        let (rtype, ttl) = (first.record_type(), first.ttl);
        let owned: Vec<Record> = rrset
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.name = owner.clone();
                r
            })
            .collect();
        let signing = match rtype {
            RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY => &self.key_signing,
            _ => &self.zone_signing,
        };
        let mut records = Vec::with_capacity(signing.len());
        for (key, _) in signing.iter().filter_map(|i| self.keys.get(*i)) {
            let input = SigInput {
                type_covered: rtype,
                algorithm: Algorithm::ECDSAP256SHA256,
                num_labels: labels,
                original_ttl: ttl,
                sig_expiration: SerialNumber::new(now.wrapping_add(VALIDITY)),
                sig_inception: SerialNumber::new(now.wrapping_sub(INCEPTION_BACK)),
                key_tag: key.tag,
                signer_name: self.origin.clone(),
            };
            let Ok(tbs) = TBS::from_input(&owner, DNSClass::IN, &input, owned.iter()) else {
                continue;
            };
            let Ok(sig) = key.pair.sign(&self.rng, tbs.as_ref()) else {
                continue;
            };
            let rrsig = RRSIG::from_sig(input, sig.as_ref().to_vec());
            records.push(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::DNSSEC(DNSSECRData::RRSIG(rrsig)),
            ));
        }
        if records.is_empty() {
            return None;
        }
        self.metrics.made.increment(1);
        let made = Arc::new(Signatures::new(now, records));
        self.cache.insert(key, made.clone());
        Some(made)
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

/// Seconds since the Unix epoch, for key timing (BIND's times are UTC).
pub(crate) fn unix_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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

/// [`sign_answer`] now, when the query's EDNS asked for DNSSEC (DO); the
/// one decision the UDP, TCP and hickory paths share.
pub(crate) fn sign_if_asked(
    view: &DnsView,
    edns: Option<&hickory_server::proto::op::Edns>,
    qname: &Name,
    qtype: RecordType,
    result: &Answer<'_>,
) -> Option<Signed> {
    if !edns.is_some_and(|e| e.flags().dnssec_ok) {
        return None;
    }
    sign_answer(view, qname, qtype, result, unix_now())
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
    let sent: Vec<Record> = result.records(qname).map(Cow::into_owned).collect();
    let mut i = 0;
    while let (Some(head), Some(first)) = (sent.get(i), result.answers.get(i)) {
        let owner = head.name.clone();
        let rtype = head.record_type();
        let synthesized = result.synthesized(i);
        let run = sent[i..]
            .iter()
            .enumerate()
            .take_while(|(k, r)| {
                r.record_type() == rtype
                    && r.name == owner
                    && result.synthesized(i + k) == synthesized
            })
            .count();
        let set: Vec<Record> = sent[i..i + run].to_vec();
        i += run;
        out.answers.extend(set.iter().cloned());
        // A CNAME a DNAME synthesized is not signed: validators check it
        // against the signed DNAME (RFC 6672 5.3.1), as NSD and Knot send it.
        if synthesized {
            continue;
        }
        // DS is the parent's, signed with its key (RFC 4035 2.4).
        let Some(signer) = signer_for(view, &owner, rtype == RecordType::DS) else {
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
        let last = sent
            .iter()
            .rev()
            .find_map(|r| match &r.data {
                RData::CNAME(c) => Some(c.0.clone()),
                _ => None,
            })
            .unwrap_or_else(|| qname.clone());
        let types = if result.rcode == ResponseCode::NXDomain {
            vec![RecordType::RRSIG, RecordType::NSEC, NXNAME]
        } else {
            types_at(view, &last, qtype)
        };
        if let Some(signer) = signer_for(view, &last, qtype == RecordType::DS) {
            out.authority
                .extend(nsec(signer, &last, types, soa.record.ttl, now));
        }
    } else if let Some(cut) = result.referral.first() {
        out.authority
            .extend(result.referral.iter().map(|r| r.record.clone()));
        // A secure delegation: the DS set at the cut, signed by the parent
        // (RFC 4035 3.1.4); none there: the parent's NSEC says so.
        if let Some(signer) = signer_for(view, &cut.record.name, true) {
            let cut_name = &cut.record.name;
            let ds = ds_at(view, cut_name);
            if ds.is_empty() {
                let ttl = cut.record.ttl;
                let types = vec![RecordType::NS, RecordType::RRSIG, RecordType::NSEC];
                out.authority
                    .extend(nsec(signer, cut_name, types, ttl, now));
            } else {
                out.authority.extend(ds.iter().cloned());
                out.authority
                    .extend(signer.sign(cut_name, cut_name.num_labels(), &ds, now));
            }
        }
    }
    out.authority.extend(denials);
    out.additional = result.additional.iter().map(|r| r.record.clone()).collect();
    Some(out)
}

/// The DS set the parent holds at the zone cut `cut`.
fn ds_at(view: &DnsView, cut: &Name) -> Vec<Record> {
    let lower = LowerName::new(cut);
    match zone_of(view, &lower, RecordType::DS).map(|z| z.find(&lower, RecordType::DS)) {
        Some(Found::Node { node, .. }) => node
            .rrset(RecordType::DS)
            .iter()
            .map(|r| r.record.clone())
            .collect(),
        _ => Vec::new(),
    }
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
