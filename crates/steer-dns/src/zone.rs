//! A static zone compiled for RFC 1034 lookups: every name that exists
//! (owners and the empty non-terminals above them) is a [`Node`] that
//! knows, from compile time, the zone cut it sits at or below, its CNAME
//! target, whether `*.<name>` exists, and the address records that go in
//! the additional section with its MX, SRV and NS sets. A query for a name
//! that exists therefore costs one hash lookup and no more; the closest
//! encloser walk (wildcards, NXDOMAIN) runs only for names that do not.

use hickory_server::proto::{
    rr::{
        LowerName, Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, MX, NS, NULL, SOA, TXT},
    },
    serialize::binary::{BinDecodable, BinDecoder, Restrict},
};
use steer_types::{RecordData, Zone};

use std::sync::Arc;

use crate::{
    names::NameIndex,
    sign::Signer,
    view::{HashMap, HashSet, Rr, ViewError, name},
};

/// The static zones views answer from (compiled on reload, shared by the
/// views of every plan until then), and every name in them by its wire
/// form, so a query for a name that exists needs no hickory `Name`.
pub(crate) struct Zones {
    list: Vec<CompiledZone>,
    pub(crate) names: NameIndex,
}

impl Zones {
    /// The zones, compiled with `steered` names in them.
    pub(crate) fn new(list: Vec<CompiledZone>, steered: &[LowerName]) -> Self {
        let names = NameIndex::build(
            list.iter().map(|z| {
                let names = z
                    .nodes
                    .iter()
                    .map(|(n, node)| (n, node.denies_below(), Some(node)));
                (&z.origin, names.collect())
            }),
            steered,
        );
        Self { list, names }
    }
}

impl std::ops::Deref for Zones {
    type Target = [CompiledZone];

    fn deref(&self) -> &[CompiledZone] {
        &self.list
    }
}

pub(crate) struct CompiledZone {
    pub(crate) origin: LowerName,
    /// Negative answers carry this (TTL = min(SOA TTL, SOA minimum)).
    pub(crate) soa_negative: Rr,
    /// Every name that exists in the zone, empty non-terminals included
    /// (shared with the name index, see [`crate::names::Known::node`]).
    pub(crate) nodes: HashMap<LowerName, Arc<Node>>,
    /// The zone's key, when it is signed (`dnssec` opted in).
    pub(crate) signer: Option<Arc<Signer>>,
}

#[derive(Debug, Default)]
pub(crate) struct Node {
    /// Sorted by type (stable), so each RRset is one run.
    pub(crate) rrs: Vec<Rr>,
    /// A/AAAA for the targets of this name's MX, SRV and NS sets that are
    /// in the zone, by the type of the set they serve.
    pub(crate) additional: Vec<(RecordType, Vec<Rr>)>,
    /// The delegation point this name is at or below (RFC 1034 4.2.1).
    pub(crate) cut: Option<LowerName>,
    /// `*.<this name>`, when it exists.
    pub(crate) wildcard: Option<LowerName>,
    /// The CNAME target, when this name is an alias.
    pub(crate) cname: Option<LowerName>,
    /// The DNAME target, when names below this one are redirected (RFC
    /// 6672; none exists, the config refuses them).
    pub(crate) dname: Option<LowerName>,
}

impl Node {
    /// The RRset of `rtype` here (empty if none).
    pub(crate) fn rrset(&self, rtype: RecordType) -> &[Rr] {
        let Some(start) = self.rrs.iter().position(|r| r.record_type() == rtype) else {
            return &[];
        };
        let len = self.rrs[start..]
            .iter()
            .take_while(|r| r.record_type() == rtype)
            .count();
        &self.rrs[start..start + len]
    }

    /// Whether a name below this one that is not a node does not exist
    /// (NXDOMAIN): no cut here or above refers it, no wildcard here
    /// synthesizes it (see `find`'s closest encloser).
    pub(crate) fn denies_below(&self) -> bool {
        self.cut.is_none() && self.wildcard.is_none() && self.dname.is_none()
    }

    /// What goes in the additional section with the `rtype` set.
    pub(crate) fn additional(&self, rtype: RecordType) -> &[Rr] {
        self.additional
            .iter()
            .find(|(t, _)| *t == rtype)
            .map_or(&[], |(_, rrs)| rrs.as_slice())
    }
}

/// Where a name leads inside one zone (RFC 1034 4.3.2 step 3).
pub(crate) enum Found<'v> {
    /// Authoritative data: the name's node, or the wildcard's that
    /// synthesizes it (`synthesized`).
    Node {
        node: &'v Node,
        synthesized: bool,
    },
    /// At or below a zone cut: the cut's node, whose NS set refers.
    Referral(&'v Node),
    /// Below a DNAME: its owner's node; the name is substituted (RFC 6672
    /// 3.2).
    Dname(&'v Node),
    NxDomain,
}

impl CompiledZone {
    /// Looks `qname` (inside this zone) up for `qtype`.
    pub(crate) fn find(&self, qname: &LowerName, qtype: RecordType) -> Found<'_> {
        if let Some(node) = self.nodes.get(qname) {
            return self.found_at(node, qname, qtype);
        }
        // The closest encloser: the nearest ancestor that exists. No name
        // between it and qname exists, so none of them is a cut.
        let mut ce = qname.base_name();
        loop {
            if let Some(node) = self.nodes.get(&ce) {
                if let Some(cut) = &node.cut {
                    return self.referral(cut);
                }
                // RFC 6672 3.2: a DNAME at the closest encloser redirects
                // every name below it (before any wildcard).
                if node.dname.is_some() {
                    return Found::Dname(node);
                }
                // RFC 4592 3.3.1: the source of synthesis is `*.<ce>`.
                return match node.wildcard.as_ref().and_then(|w| self.nodes.get(w)) {
                    Some(node) => Found::Node {
                        node,
                        synthesized: true,
                    },
                    None => Found::NxDomain,
                };
            }
            if ce.is_root() || !self.origin.zone_of(&ce) {
                return Found::NxDomain;
            }
            ce = ce.base_name();
        }
    }

    /// What `find` gives for `qname` when its node (of this zone) is
    /// known already.
    pub(crate) fn found_at<'a>(
        &'a self,
        node: &'a Node,
        qname: &LowerName,
        qtype: RecordType,
    ) -> Found<'a> {
        match &node.cut {
            None => Found::Node {
                node,
                synthesized: false,
            },
            // DS belongs to the parent side of the cut (RFC 4035 3.1.4.1).
            Some(cut) if qtype == RecordType::DS && cut == qname => Found::Node {
                node,
                synthesized: false,
            },
            Some(cut) => self.referral(cut),
        }
    }

    fn referral(&self, cut: &LowerName) -> Found<'_> {
        self.nodes
            .get(cut)
            .map_or(Found::NxDomain, |node| Found::Referral(node))
    }

    /// Address records for `target` as the additional section would carry
    /// them: authoritative data only, except that NS targets may be glue
    /// below a cut; wildcards synthesize with `target` as the owner.
    fn addresses(&self, target: &Name, glue: bool) -> Vec<Rr> {
        let lower = LowerName::new(target);
        if !self.origin.zone_of(&lower) {
            return Vec::new();
        }
        let node: Option<&Node> = match self.nodes.get(&lower) {
            Some(node) if node.cut.is_none() || glue => Some(node),
            Some(_) => None,
            None => match self.find(&lower, RecordType::A) {
                Found::Node { node, .. } => Some(node),
                _ => None,
            },
        };
        let Some(node) = node else {
            return Vec::new();
        };
        [RecordType::A, RecordType::AAAA]
            .into_iter()
            .flat_map(|t| node.rrset(t))
            .map(|rr| {
                let mut record = rr.record.clone();
                record.name = target.clone();
                Rr::new(record)
            })
            .collect()
    }
}

fn wire_rdata(owner: &str, rtype: u16, rdata: &[u8]) -> Result<RData, ViewError> {
    let bad = |reason: String| ViewError::Rdata {
        name: owner.to_owned(),
        reason,
    };
    let len = u16::try_from(rdata.len()).map_err(|_| bad("longer than 65535 bytes".into()))?;
    let mut decoder = BinDecoder::new(rdata);
    RData::read(&mut decoder, RecordType::from(rtype), Restrict::new(len))
        .map_err(|e| bad(e.to_string()))
}

/// The target of a DNAME, from its RDATA.
fn dname_target(rdata: &[u8]) -> Option<LowerName> {
    let mut decoder = BinDecoder::new(rdata);
    let target = <Name as BinDecodable>::read(&mut decoder).ok()?;
    decoder.is_empty().then(|| LowerName::new(&target))
}

/// The names an RRset's records point at, for additional processing.
fn targets(rdata: &RData) -> Option<&Name> {
    match rdata {
        RData::MX(mx) => Some(&mx.exchange),
        RData::NS(ns) => Some(&ns.0),
        RData::SRV(srv) => Some(&srv.target),
        _ => None,
    }
}

/// Compiles `zone`; the `steered` names inside it exist as (empty) names,
/// so their ancestors are empty non-terminals and no wildcard answers
/// for them. A signed zone publishes its key (DNSKEY, CDS, CDNSKEY) at
/// the apex.
pub(crate) fn compile(
    zone: &Zone,
    steered: &[LowerName],
    signer: Option<Arc<Signer>>,
) -> Result<CompiledZone, ViewError> {
    let origin = name(&zone.origin)?;
    let soa_rdata = SOA::new(
        name(&zone.soa.mname)?,
        name(&zone.soa.rname)?,
        zone.soa.serial,
        zone.soa.refresh,
        zone.soa.retry,
        zone.soa.expire,
        zone.soa.minimum,
    );
    let mut records: HashMap<LowerName, Vec<Record>> = HashMap::default();
    let mut add = |owner: &Name, rec: Record| {
        records.entry(LowerName::new(owner)).or_default().push(rec);
    };
    add(
        &origin,
        Record::from_rdata(origin.clone(), zone.soa_ttl, RData::SOA(soa_rdata.clone())),
    );
    for ns in &zone.ns {
        add(
            &origin,
            Record::from_rdata(origin.clone(), zone.ns_ttl, RData::NS(NS(name(ns)?))),
        );
    }
    if let Some(signer) = &signer {
        for rec in signer.apex_records(zone.soa_ttl) {
            add(&origin, rec);
        }
    }
    for rec in &zone.records {
        let owner = name(&rec.name)?;
        let rdata = match &rec.data {
            RecordData::A(a) => RData::A(A(*a)),
            RecordData::Aaaa(a) => RData::AAAA(AAAA(*a)),
            RecordData::Cname(target) => RData::CNAME(CNAME(name(target)?)),
            // hickory has no DNAME type: its RDATA is the target's wire
            // form, never compressed (RFC 6672 2.5).
            RecordData::Dname(target) => RData::Unknown {
                code: RecordType::DNAME,
                rdata: NULL::with(crate::names::wire(&LowerName::new(&name(target)?)).into()),
            },
            RecordData::Ns(target) => RData::NS(NS(name(target)?)),
            RecordData::Mx {
                preference,
                exchange,
            } => RData::MX(MX::new(*preference, name(exchange)?)),
            // A character-string holds at most 255 bytes (RFC 1035 3.3).
            RecordData::Txt(text) if text.is_empty() => RData::TXT(TXT::from_bytes(vec![b""])),
            RecordData::Txt(text) => {
                RData::TXT(TXT::from_bytes(text.as_bytes().chunks(255).collect()))
            }
            RecordData::Wire { rtype, rdata } => wire_rdata(&rec.name, *rtype, rdata)?,
        };
        add(&owner, Record::from_rdata(owner.clone(), rec.ttl, rdata));
    }
    let origin_lower = LowerName::new(&origin);

    // Delegation points: NS sets anywhere but the apex.
    let cuts: HashSet<LowerName> = records
        .iter()
        .filter(|(owner, rrs)| {
            **owner != origin_lower && rrs.iter().any(|r| r.record_type() == RecordType::NS)
        })
        .map(|(owner, _)| owner.clone())
        .collect();

    let mut nodes: HashMap<LowerName, Node> = HashMap::default();
    for name in steered.iter().filter(|n| origin_lower.zone_of(n)) {
        records.entry(name.clone()).or_default();
    }
    for (owner, mut rrs) in records {
        rrs.sort_by_key(|r| u16::from(r.record_type()));
        let cname = rrs.iter().find_map(|r| match &r.data {
            RData::CNAME(c) => Some(LowerName::new(&c.0)),
            _ => None,
        });
        let dname = rrs.iter().find_map(|r| match &r.data {
            RData::Unknown {
                code: RecordType::DNAME,
                rdata,
            } => dname_target(&rdata.anything),
            _ => None,
        });
        let node = nodes.entry(owner.clone()).or_default();
        node.rrs = rrs.into_iter().map(Rr::new).collect();
        node.cname = cname;
        node.dname = dname;
        // Its ancestors up to the apex exist too (empty non-terminals).
        let mut n = owner;
        while n != origin_lower && !n.is_root() && origin_lower.zone_of(&n) {
            n = n.base_name();
            nodes.entry(n.clone()).or_default();
        }
    }
    let names: Vec<LowerName> = nodes.keys().cloned().collect();
    for n in &names {
        // The highest cut at or above `n` (names below an inner cut are
        // occluded by the outer one as well).
        let mut cut = None;
        let mut a = n.clone();
        while a != origin_lower && !a.is_root() {
            if cuts.contains(&a) {
                cut = Some(a.clone());
            }
            a = a.base_name();
        }
        let wildcard = Name::from(n)
            .prepend_label("*")
            .ok()
            .map(|w| LowerName::new(&w))
            .filter(|w| nodes.contains_key(w));
        if let Some(node) = nodes.get_mut(n) {
            node.cut = cut;
            node.wildcard = wildcard;
        }
    }
    let mut zone = CompiledZone {
        origin: origin_lower,
        soa_negative: Rr::new(Record::from_rdata(
            origin,
            zone.soa_ttl.min(zone.soa.minimum),
            RData::SOA(soa_rdata),
        )),
        nodes: nodes
            .into_iter()
            .map(|(name, node)| (name, Arc::new(node)))
            .collect(),
        signer,
    };

    // Additional-section data, now that lookups work.
    let mut additional = Vec::new();
    for (owner, node) in &zone.nodes {
        let mut by_type: Vec<(RecordType, Vec<Rr>)> = Vec::new();
        for rtype in [RecordType::MX, RecordType::SRV, RecordType::NS] {
            let mut seen: Vec<&Name> = Vec::new();
            let mut rrs = Vec::new();
            for rr in node.rrset(rtype) {
                let Some(target) = targets(&rr.data) else {
                    continue;
                };
                if seen.contains(&target) {
                    continue;
                }
                seen.push(target);
                rrs.extend(zone.addresses(target, rtype == RecordType::NS));
            }
            if !rrs.is_empty() {
                by_type.push((rtype, rrs));
            }
        }
        if !by_type.is_empty() {
            additional.push((owner.clone(), by_type));
        }
    }
    for (owner, by_type) in additional {
        // Not shared yet: the index takes its references later.
        if let Some(node) = zone.nodes.get_mut(&owner).and_then(Arc::get_mut) {
            node.additional = by_type;
        }
    }
    Ok(zone)
}
