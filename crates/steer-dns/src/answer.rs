//! The answer function: question + client → response parts, from a view.
//! Pure and synchronous so it can be unit-tested and benchmarked without
//! sockets.

use std::{borrow::Cow, net::IpAddr};

use hickory_server::proto::{
    op::ResponseCode,
    rr::{DNSClass, LowerName, Name, RData, Record, RecordType, rdata::CNAME},
};
use ipnet::IpNet;
use steer_types::answers::ANSWER_UNIT;

use crate::{
    names::Known,
    netmap::Lookup,
    select::{MAX_PICK, STICKY_V4, STICKY_V6, subnet_key},
    view::{CompiledService, CompiledSet, DnsView, Rr},
    zone::{CompiledZone, Found, Node},
};

pub struct Question<'a> {
    pub name: &'a LowerName,
    pub qtype: RecordType,
    pub qclass: DNSClass,
}

/// Who is asking: the EDNS Client Subnet if the query carried one, else the
/// resolver's own address.
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo {
    pub addr: IpAddr,
    /// ECS source prefix length, or the full length for a resolver address.
    pub source_prefix: u8,
    pub from_ecs: bool,
    /// Per-query randomness for services with `selection = "random"`.
    pub random: u64,
}

impl ClientInfo {
    pub fn resolver(addr: IpAddr) -> Self {
        let full = if addr.is_ipv4() { 32 } else { 128 };
        Self {
            addr,
            source_prefix: full,
            from_ecs: false,
            random: 0,
        }
    }
}

/// Whose name a record in the answer section is written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'v> {
    /// The query name as asked: a pointer to the question on the wire.
    /// Records found at the query name, and those synthesized for it from
    /// a wildcard.
    Query,
    /// The record's own owner (records reached through a CNAME).
    Record,
    /// A name reached through a CNAME that a wildcard synthesized.
    Name(&'v LowerName),
    /// The `i`th name a DNAME made for this answer (RFC 6672), followed
    /// on (see [`Answer::record`]).
    Made(u8),
}

/// One answer-section record and the owner it is sent with.
#[derive(Clone, Copy, Debug)]
pub struct Answered<'v> {
    pub rr: &'v Rr,
    pub owner: Owner<'v>,
}

impl<'v> Answered<'v> {
    /// `rr` as it is, sent with `owner`.
    pub(crate) fn new(rr: &'v Rr, owner: Owner<'v>) -> Self {
        Self { rr, owner }
    }
}

impl std::ops::Deref for Answered<'_> {
    type Target = Rr;

    fn deref(&self) -> &Rr {
        self.rr
    }
}

impl Answered<'_> {
    /// The record as sent, for encoders that take hickory records:
    /// borrowed unless its owner differs from the stored one. At the query
    /// name it is the name as asked, case included, as the fast writer's
    /// pointer to the question sends it. `made`: the answer's made names
    /// (see [`Answer::record`]).
    fn record_in(&self, qname: &Name, made: &[LowerName]) -> Cow<'_, Record> {
        let owner = match self.owner {
            Owner::Record => return Cow::Borrowed(&self.rr.record),
            Owner::Query if self.rr.record.name.eq_case(qname) => {
                return Cow::Borrowed(&self.rr.record);
            }
            Owner::Query => qname.clone(),
            Owner::Name(name) => Name::from(name),
            Owner::Made(i) => made
                .get(usize::from(i))
                .map_or_else(|| self.rr.record.name.clone(), Name::from),
        };
        let mut record = self.rr.record.clone();
        record.name = owner;
        Cow::Owned(record)
    }
}

/// What DNAMEs made for one answer (RFC 6672): the names substituted, and
/// which answer records are the CNAMEs synthesized to them. Boxed in the
/// answer, and there only when a DNAME was met.
#[derive(Debug, Default)]
pub(crate) struct Synth {
    pub(crate) names: Vec<LowerName>,
    /// (index in the answer section, index in `names` of its target).
    cnames: Vec<(usize, u8)>,
}

/// An answer section: a few records, so kept on the stack (a CNAME chain
/// of [`MAX_CNAME_CHAIN`] with a big final RRset spills to the heap).
pub type Section<'v> = smallvec::SmallVec<[Answered<'v>; 4]>;

/// Response parts borrowed from the view.
#[derive(Debug)]
pub struct Answer<'v> {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    /// The answer section: a CNAME chain, then the final RRset.
    pub answers: Section<'v>,
    /// SOA for negative answers (RFC 2308).
    pub soa: Option<&'v Rr>,
    /// The NS set of a referral (authority section; never with `soa`).
    pub referral: &'v [Rr],
    /// Addresses for the targets of the final MX, SRV or NS set (or of a
    /// referral's NS set: glue). Dropped first when a response is too big.
    pub additional: &'v [Rr],
    /// ECS scope prefix to return, when the query had ECS.
    pub ecs_scope: u8,
    /// Client region index the answer was steered for, if a GSLB answer.
    pub region: Option<usize>,
    /// An Extended DNS Error info code (RFC 8914) for the reply's OPT
    /// record, when the query had one: 20 (Not Authoritative) on a
    /// REFUSED for a name outside every zone, as NSD and Knot send.
    pub ede: Option<u16>,
    /// What sending it records; see [`Answer::record_served`].
    pub(crate) served: Served<'v>,
    /// What DNAMEs made for it (see [`Answer::record`]).
    pub(crate) synth: Option<Box<Synth>>,
}

/// What serving a steered answer records: the service's query counter, the
/// answers per PoP (`steer_dns_answers_total`) and the control loop's
/// demand tally, the subnet in the set's calibration sample, fallback
/// answers. Deciding an answer records nothing, so `steerctl explain` and
/// other dry runs leave no trace; whoever sends it calls
/// [`Answer::record_served`]. A CNAME chain through two steered names
/// records the last.
#[derive(Clone, Copy)]
pub(crate) struct Served<'v> {
    svc: Option<&'v CompiledService>,
    set: Option<&'v CompiledSet>,
    /// The client's subnet key, for the sample.
    key: u64,
    /// Indexes into `set.targets` of the records sent, and each one's
    /// share of the client (in `ANSWER_UNIT`s).
    targets: [u16; MAX_PICK],
    picked: u8,
    share: u64,
    fallback: Option<&'v metrics::Counter>,
}

impl Default for Served<'_> {
    fn default() -> Self {
        Self {
            svc: None,
            set: None,
            key: 0,
            targets: [0; MAX_PICK],
            picked: 0,
            share: 0,
            fallback: None,
        }
    }
}

impl std::fmt::Debug for Served<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("steered", &self.svc.is_some())
            .field("targets", &&self.targets[..usize::from(self.picked)])
            .field("share", &self.share)
            .field("fallback", &self.fallback.is_some())
            .finish_non_exhaustive()
    }
}

impl Served<'_> {
    fn pick(&mut self, target: usize) {
        if let (Some(slot), Ok(t)) = (
            self.targets.get_mut(usize::from(self.picked)),
            u16::try_from(target),
        ) {
            *slot = t;
            self.picked += 1;
        }
    }
}

impl<'v> Answer<'v> {
    fn refused() -> Self {
        Self::new(ResponseCode::Refused, false, Section::new())
    }

    /// A name outside every zone served.
    fn not_authoritative() -> Self {
        Self {
            ede: Some(EDE_NOT_AUTHORITATIVE),
            ..Self::refused()
        }
    }

    /// A query this server does not implement (a zone transfer over UDP).
    pub(crate) fn not_implemented() -> Self {
        Self::error(ResponseCode::NotImp)
    }

    /// An error reply's parts: `rcode` and nothing else.
    pub(crate) fn error(rcode: ResponseCode) -> Self {
        Self::new(rcode, false, Section::new())
    }

    fn new(rcode: ResponseCode, authoritative: bool, answers: Section<'v>) -> Self {
        Self {
            rcode,
            authoritative,
            answers,
            soa: None,
            referral: &[],
            additional: &[],
            ecs_scope: 0,
            region: None,
            ede: None,
            served: Served::default(),
            synth: None,
        }
    }

    /// Answer record `i` as sent, for encoders that take hickory records
    /// (see `Answered::record_in`); a CNAME a DNAME synthesized is made
    /// here: owner the name it was made for, TTL the DNAME's (RFC 6672
    /// 3.1).
    pub fn record(&self, i: usize, qname: &Name) -> Option<Cow<'_, Record>> {
        let a = self.answers.get(i)?;
        let Some(synth) = &self.synth else {
            return Some(a.record_in(qname, &[]));
        };
        let made = synth.names.as_slice();
        let Some(&(_, to)) = synth.cnames.iter().find(|(at, _)| *at == i) else {
            return Some(a.record_in(qname, made));
        };
        let owner = match a.owner {
            Owner::Record => a.rr.record.name.clone(),
            Owner::Query => qname.clone(),
            Owner::Name(name) => Name::from(name),
            Owner::Made(m) => Name::from(made.get(usize::from(m))?),
        };
        let target = Name::from(made.get(usize::from(to))?);
        Some(Cow::Owned(Record::from_rdata(
            owner,
            a.rr.record.ttl,
            RData::CNAME(CNAME(target)),
        )))
    }

    /// Every answer record as sent (see [`Answer::record`]).
    pub fn records<'a, 'q>(
        &'a self,
        qname: &'q Name,
    ) -> impl Iterator<Item = Cow<'a, Record>> + use<'a, 'q, 'v> {
        (0..self.answers.len()).filter_map(move |i| self.record(i, qname))
    }

    /// Whether answer record `i` is a CNAME a DNAME synthesized.
    pub(crate) fn synthesized(&self, i: usize) -> bool {
        self.synth
            .as_ref()
            .is_some_and(|s| s.cnames.iter().any(|(at, _)| *at == i))
    }

    /// Records that this answer was sent (see [`Served`]).
    pub fn record_served(&self) {
        self.record_served_into(&mut crate::metrics::Counts::default());
    }

    /// As [`Self::record_served`], counting into `counts` (flushed by
    /// its owner, once per batch of queries).
    pub(crate) fn record_served_into(&self, counts: &mut crate::metrics::Counts<'v>) {
        let s = &self.served;
        if let Some(svc) = s.svc {
            counts.bump(&svc.queries, 1);
        }
        if let Some(set) = s.set {
            if let Some(sample) = &set.sample {
                counts.observe(sample, s.key);
            }
            for &i in &s.targets[..usize::from(s.picked)] {
                if let Some(t) = set.targets.get(usize::from(i)) {
                    counts.bump(&t.answered, 1);
                    counts.add(&t.tally, s.share);
                }
            }
        }
        if let Some(f) = s.fallback {
            counts.bump(f, 1);
        }
    }

    /// A steered name with no decision in the plan held (an edge before
    /// its first plan): not ours to deny, so no NXDOMAIN to be cached.
    fn servfail() -> Self {
        Self::new(ResponseCode::ServFail, false, Section::new())
    }

    fn negative(rcode: ResponseCode, soa: &'v Rr, answers: Section<'v>) -> Self {
        Self {
            soa: Some(soa),
            ..Self::new(rcode, true, answers)
        }
    }
}

/// How many CNAMEs one answer carries, as Knot DNS: the target of the
/// last is still looked up, but not followed if it is an alias too. It
/// bounds the work one query can cause.
pub const MAX_CNAME_CHAIN: usize = 5;

/// RFC 8914 4.21: the server is not authoritative for the name asked.
pub(crate) const EDE_NOT_AUTHORITATIVE: u16 = 20;

/// The zone that answers `qtype` at `name`: the one with the longest
/// matching origin, except that DS at a zone's apex is the parent's data
/// (RFC 4035 3.1.4.1), so the parent answers when it is ours too.
pub(crate) fn zone_of<'v>(
    view: &'v DnsView,
    name: &LowerName,
    qtype: RecordType,
) -> Option<&'v CompiledZone> {
    let best = |apex: bool| {
        view.zones
            .iter()
            .filter(|z| z.origin.zone_of(name) && (apex || z.origin != *name))
            .max_by_key(|z| z.origin.num_labels())
    };
    if qtype == RecordType::DS {
        best(false).or_else(|| best(true))
    } else {
        best(true)
    }
}

/// Answers one question. Never panics on any input.
///
/// RFC 1034 4.3.2 over the zones and steered names of `view`: exact
/// matches, referrals at zone cuts (RFC 1034 4.3.2 3b), wildcard synthesis
/// (RFC 4592), and CNAMEs followed through our own zones (steered names
/// included), up to [`MAX_CNAME_CHAIN`] and never twice through one name.
/// The rcode is that of the last name looked up (RFC 6604).
pub fn answer<'v>(view: &'v DnsView, q: &Question<'_>, client: &ClientInfo) -> Answer<'v> {
    answer_known(view, q, client, None)
}

/// As [`answer`], with what the view's name index knows of the query
/// name (when it exists): its wire form, its zone, and whether it is
/// steered.
pub(crate) fn answer_known<'v>(
    view: &'v DnsView,
    q: &Question<'_>,
    client: &ClientInfo,
    known: Option<(&[u8], &'v Known)>,
) -> Answer<'v> {
    let mut served = Served::default();
    let mut a = resolve(view, q, client, &mut served, known);
    a.served = served;
    a
}

/// The answer for a name the view's index denies (see
/// [`Known::denies_below`]): NXDOMAIN from the zone of `encloser`, the
/// closest name above it, as [`answer`] would find.
pub(crate) fn denied<'v>(
    view: &'v DnsView,
    encloser: &Known,
    qclass: DNSClass,
    qtype: RecordType,
) -> Answer<'v> {
    match view.zones.get(encloser.zone) {
        _ if is_transfer(qtype) => Answer::refused(),
        Some(zone) if matches!(qclass, DNSClass::IN | DNSClass::ANY) => {
            Answer::negative(ResponseCode::NXDomain, &zone.soa_negative, Section::new())
        }
        _ => Answer::refused(),
    }
}

fn is_transfer(qtype: RecordType) -> bool {
    matches!(qtype, RecordType::AXFR | RecordType::IXFR)
}

/// A CHAOS-class question: the server's identity (`id.server`,
/// `hostname.bind`) and version (`version.server`, `version.bind`) as TXT,
/// not authoritative, TTL 0, as NSD and Knot answer (RFC 4892); REFUSED
/// for anything else, or when `[dns]` hides them.
fn chaos<'v>(view: &'v DnsView, q: &Question<'_>) -> Answer<'v> {
    let found = view.chaos.iter().find(|(name, _)| name == q.name);
    match found {
        Some((_, rr)) if matches!(q.qtype, RecordType::TXT | RecordType::ANY) => {
            let mut answers = Section::new();
            answers.push(Answered::new(rr, Owner::Query));
            Answer::new(ResponseCode::NoError, false, answers)
        }
        _ => Answer::refused(),
    }
}

fn resolve<'v>(
    view: &'v DnsView,
    q: &Question<'_>,
    client: &ClientInfo,
    served: &mut Served<'v>,
    known: Option<(&[u8], &'v Known)>,
) -> Answer<'v> {
    let known = known.map(|k| k.1);
    match q.qclass {
        // QCLASS * (RFC 1035 3.2.5): the zones are all class IN, so their
        // data is all there is; answered as IN, as Knot DNS does.
        DNSClass::IN | DNSClass::ANY => {}
        DNSClass::CH => return chaos(view, q),
        _ => return Answer::refused(),
    }
    // Zone transfers are not offered (no secondary is configured to take
    // one): refused, as NSD does without an ACL allowing it.
    if is_transfer(q.qtype) {
        return Answer::refused();
    }
    // DS at an apex is the parent's: the index's zone is not it.
    let hinted = known
        .filter(|_| q.qtype != RecordType::DS)
        .and_then(|k| view.zones.get(k.zone));
    // The query name's node in that zone, as the index holds it.
    let mut known_node = known
        .filter(|_| hinted.is_some())
        .and_then(|k| k.node.as_deref());
    let Some(mut zone) = hinted.or_else(|| zone_of(view, q.name, q.qtype)) else {
        return Answer::not_authoritative();
    };
    // A static name (no steered name, and no configured one the plan
    // left out) needs no look in the steering tables.
    let mut static_name = known.is_some_and(|k| k.steered.is_none()) && view.unplanned.is_empty();
    let mut chain = Section::new();
    // What DNAMEs made on the way, if one was met.
    let mut synth: Option<Box<Synth>> = None;
    // Where this step looks: the query name, a CNAME's target or a made name.
    let mut at = Step::Query;
    // Where each step after the first looked.
    let mut followed: [Option<Step<'v>>; MAX_CNAME_CHAIN] = [None; MAX_CNAME_CHAIN];
    // The node each step's CNAME came from, and whether a wildcard
    // synthesized it, for loop detection.
    let mut aliases: [Option<(&'v Node, bool)>; MAX_CNAME_CHAIN] = [None; MAX_CNAME_CHAIN];
    // The ECS scope and region of a CNAME-style steered name the chain
    // went through: the answer depends on the client there too.
    let mut steered_part = None;
    for step in 0..=MAX_CNAME_CHAIN {
        let made = synth.as_deref().map_or(&[][..], |s| s.names.as_slice());
        let current = at.name(q.name, made);
        // Whether the chain has been at `name` already.
        let been = |name: &LowerName| {
            name == q.name
                || followed
                    .iter()
                    .flatten()
                    .any(|s| s.name(q.name, made) == name)
        };
        if step > 0 {
            let Some(z) = zone_of(view, current, q.qtype) else {
                // Out of our zones: the resolver follows from here.
                let a = Answer::new(ResponseCode::NoError, true, chain);
                return done(a, steered_part, synth);
            };
            zone = z;
        }
        let svc = match (static_name, step, known) {
            (true, ..) => None,
            (false, 0, Some(k)) => k.steered.and_then(|i| view.services.at(i)),
            (false, ..) => view.services.get(current),
        };
        static_name = false;
        if let Some(svc) = svc {
            let owner = if step == 0 {
                Owner::Query
            } else {
                Owner::Record
            };
            let (a, alias) = steered(view, svc, q, client, chain, owner);
            *served = a.served;
            let follow = alias
                .filter(|&t| q.qtype != RecordType::CNAME && step < MAX_CNAME_CHAIN && !been(t));
            let Some(target) = follow else {
                return done(a, steered_part, synth);
            };
            let a = with_steered(a, steered_part);
            steered_part = Some((a.ecs_scope, a.region));
            chain = a.answers;
            followed[step] = Some(Step::View(target));
            at = Step::View(target);
            continue;
        }
        if !view.unplanned.is_empty() && view.unplanned.contains(current) {
            return Answer::servfail();
        }
        let found = match known_node.take() {
            Some(node) if step == 0 => zone.found_at(node, current, q.qtype),
            _ => zone.find(current, q.qtype),
        };
        let (node, synthesized) = match found {
            Found::NxDomain => {
                let a = Answer::negative(ResponseCode::NXDomain, &zone.soa_negative, chain);
                return done(a, steered_part, synth);
            }
            Found::Referral(cut) => {
                // Not authoritative for a referral, unless a CNAME of ours
                // led here (the answer section then is ours).
                let mut a = Answer::new(ResponseCode::NoError, step > 0, chain);
                a.referral = cut.rrset(RecordType::NS);
                a.additional = cut.additional(RecordType::NS);
                return done(a, steered_part, synth);
            }
            Found::Dname(node) => {
                // RFC 6672 3.2: the DNAME, then the CNAME it makes for
                // this name, then on to the CNAME's target.
                let (Some(dname), Some(target)) =
                    (node.rrset(RecordType::DNAME).first(), node.dname.as_ref())
                else {
                    let a = Answer::negative(ResponseCode::NXDomain, &zone.soa_negative, chain);
                    return done(a, steered_part, synth);
                };
                chain.push(Answered::new(dname, Owner::Record));
                let Some(name) = substitute(current, dname.record.name.num_labels(), target) else {
                    // Longer than a name may be (RFC 6672 2.2).
                    let a = Answer::new(ResponseCode::YXDomain, true, chain);
                    return done(a, steered_part, synth);
                };
                let looped = been(&name);
                let s = synth.get_or_insert_with(Box::default);
                let Ok(i) = u8::try_from(s.names.len()) else {
                    break;
                };
                s.names.push(name);
                s.cnames.push((chain.len(), i));
                chain.push(Answered::new(dname, at.owner()));
                if q.qtype == RecordType::CNAME || looped || step == MAX_CNAME_CHAIN {
                    break;
                }
                followed[step] = Some(Step::Made(i));
                at = Step::Made(i);
                continue;
            }
            Found::Node { node, synthesized } => (node, synthesized),
        };
        let owner = match (at, synthesized) {
            (Step::Query, _) => Owner::Query,
            (_, false) => Owner::Record,
            (at, true) => at.owner(),
        };
        let rtype = if q.qtype == RecordType::ANY {
            // RFC 8482: answer ANY minimally, with one RRset.
            node.rrs.first().map(|r| r.record_type())
        } else {
            Some(q.qtype)
        };
        let set = rtype.map_or(&[][..], |t| node.rrset(t));
        if !set.is_empty() {
            chain.extend(set.iter().map(|rr| Answered::new(rr, owner)));
            let mut a = Answer::new(ResponseCode::NoError, true, chain);
            a.additional = rtype.map_or(&[][..], |t| node.additional(t));
            return done(a, steered_part, synth);
        }
        let Some(target) = node.cname.as_ref() else {
            let a = Answer::negative(ResponseCode::NoError, &zone.soa_negative, chain);
            return done(a, steered_part, synth);
        };
        // A loop ends where it closes, with what was collected, as Knot
        // and NSD answer: an alias already in the answer is not repeated,
        // and a wildcard that synthesizes its own target stops after its
        // second CNAME (the owners differ, so both are sent).
        let seen = |(n, s): (&Node, bool)| std::ptr::eq(n, node) && s == synthesized;
        let repeated = !synthesized && aliases.iter().flatten().any(|&a| seen(a));
        if repeated || step == MAX_CNAME_CHAIN {
            break;
        }
        chain.extend(
            node.rrset(RecordType::CNAME)
                .iter()
                .map(|rr| Answered::new(rr, owner)),
        );
        let wildcard_loop = synthesized && step > 0 && aliases[step - 1].is_some_and(seen);
        if wildcard_loop {
            break;
        }
        aliases[step] = Some((node, synthesized));
        followed[step] = Some(Step::View(target));
        at = Step::View(target);
    }
    let a = Answer::new(ResponseCode::NoError, true, chain);
    done(a, steered_part, synth)
}

/// `a` as `resolve` returns it: with the steered part's scope and region
/// (see [`with_steered`]) and what DNAMEs made.
fn done<'v>(
    a: Answer<'v>,
    part: Option<(u8, Option<usize>)>,
    synth: Option<Box<Synth>>,
) -> Answer<'v> {
    let mut a = with_steered(a, part);
    a.synth = synth;
    a
}

/// Where a step of a CNAME chain looks (see `resolve`).
#[derive(Clone, Copy)]
enum Step<'v> {
    Query,
    /// A CNAME's target, held by the view.
    View(&'v LowerName),
    /// A DNAME's substitution: `Answer::made[i]`.
    Made(u8),
}

impl<'v> Step<'v> {
    fn name<'a>(self, qname: &'a LowerName, made: &'a [LowerName]) -> &'a LowerName
    where
        'v: 'a,
    {
        match self {
            Self::Query => qname,
            Self::View(name) => name,
            Self::Made(i) => made.get(usize::from(i)).unwrap_or(qname),
        }
    }

    /// The owner records found here are written with.
    fn owner(self) -> Owner<'v> {
        match self {
            Self::Query => Owner::Query,
            Self::View(name) => Owner::Name(name),
            Self::Made(i) => Owner::Made(i),
        }
    }
}

/// `name` (below the DNAME's owner, of `owner_labels` labels) with that
/// owner replaced by `target` (RFC 6672 2.2); `None` when the result is
/// longer than a name may be.
fn substitute(name: &LowerName, owner_labels: u8, target: &LowerName) -> Option<LowerName> {
    let name = Name::from(name);
    let keep = usize::from(name.num_labels().checked_sub(owner_labels)?);
    let target = Name::from(target);
    let labels: Vec<&[u8]> = name.iter().take(keep).chain(target.iter()).collect();
    let wire: usize = labels.iter().map(|l| 1 + l.len()).sum::<usize>() + 1;
    if wire > 255 {
        return None;
    }
    Name::from_labels(labels).ok().map(|n| LowerName::new(&n))
}

/// An answer that went through a steered name depends on the client as
/// that part did: the wider ECS scope of the two, and its region.
fn with_steered<'v>(mut a: Answer<'v>, part: Option<(u8, Option<usize>)>) -> Answer<'v> {
    if let Some((scope, region)) = part {
        a.ecs_scope = a.ecs_scope.max(scope);
        a.region = a.region.or(region);
    }
    a
}

/// A GSLB answer: never SERVFAIL, never an empty NOERROR for an address
/// type while the service has a fallback. `chain` holds the CNAMEs that
/// led here (empty when the service was asked for directly); the steered
/// records follow them, written with `owner`. A CNAME-style answer also
/// returns its target, for the caller to follow.
fn steered<'v>(
    view: &'v DnsView,
    svc: &'v CompiledService,
    q: &Question<'_>,
    client: &ClientInfo,
    chain: Section<'v>,
    owner: Owner<'v>,
) -> (Answer<'v>, Option<&'v LowerName>) {
    let mut alias = None;
    let answer = steered_records(view, svc, q, client, chain, owner, &mut alias);
    (answer, alias)
}

fn steered_records<'v>(
    view: &'v DnsView,
    svc: &'v CompiledService,
    q: &Question<'_>,
    client: &ClientInfo,
    mut chain: Section<'v>,
    owner: Owner<'v>,
    alias: &mut Option<&'v LowerName>,
) -> Answer<'v> {
    let zone = &view.zones[svc.zone];
    let mut served = Served {
        svc: Some(svc),
        ..Served::default()
    };
    let (region, matched_len) = client_region(view, client);
    let mut regional = region.map_or(&svc.global, |i| &svc.regional[i]);
    let subnet = subnet_key(client.addr, client.source_prefix);
    let key = if svc.random { client.random } else { subnet };
    // A change's canary by client subnets: the subnet decides the set, so
    // the answer depends on it whatever the selection.
    if let Some(c) = &svc.canary
        && let Some(set) = c.set_for(region, subnet)
    {
        regional = set;
    }
    let canary = svc.canary.is_some();
    let scope = |hashed: bool| {
        let hashed = (hashed && !svc.random) || canary;
        ecs_scope(svc.uniform, hashed, matched_len, client)
    };
    let positive = |answers: Section<'v>, hashed: bool| Answer {
        ecs_scope: scope(hashed),
        region,
        ..Answer::new(ResponseCode::NoError, true, answers)
    };

    if svc.cname_style {
        // One CNAME, whatever the type asked (RFC 1034 3.6.2).
        let set = [regional, &svc.global]
            .into_iter()
            .find(|s| !s.any.is_empty());
        if let Some(set) = set {
            served.set = Some(set);
            served.key = key;
            served.share = ANSWER_UNIT;
            let mut chosen = [0; MAX_PICK];
            let n = set.any.pick(key, 1, &mut chosen);
            let before = chain.len();
            chain.extend(chosen[..n].iter().filter_map(|&i| {
                let t = set.targets.get(i)?;
                *alias = t.cname_target.as_ref();
                let rr = t.cname.as_ref()?;
                served.pick(i);
                Some(Answered::new(rr, owner))
            }));
            if chain.len() > before {
                let mut a = positive(chain, set.any.hashed(1) && !set.cname_uniform);
                a.served = served;
                return a;
            }
            served = Served {
                svc: Some(svc),
                ..Served::default()
            };
        }
    }

    let v6 = match q.qtype {
        RecordType::A | RecordType::ANY => false,
        RecordType::AAAA => true,
        _ => {
            let mut a = Answer::negative(ResponseCode::NoError, &zone.soa_negative, chain);
            a.served = served;
            return a;
        }
    };
    // The client's set, else the global one, else the configured fallback.
    let family = |set: &'v CompiledSet| {
        if v6 {
            (&set.v6, &set.v6_targets)
        } else {
            (&set.v4, &set.v4_targets)
        }
    };
    let Some(set) = [regional, &svc.global]
        .into_iter()
        .find(|s| !family(s).0.is_empty())
    else {
        let fallback = if v6 {
            &svc.fallback_v6
        } else {
            &svc.fallback_v4
        };
        if fallback.is_empty() {
            let mut a = Answer::negative(ResponseCode::NoError, &zone.soa_negative, chain);
            a.served = served;
            return a;
        }
        served.fallback = Some(&view.metrics.fallback);
        chain.extend(
            fallback
                .iter()
                .take(svc.max_records)
                .map(|rr| Answered::new(rr, owner)),
        );
        let mut a = positive(chain, false);
        a.served = served;
        return a;
    };
    let (keyed, idx) = family(set);
    // Sampled even while the answer does not depend on the subnet, so the
    // sample is ready when a plan makes it depend (random selection has
    // no sample: its key is not the subnet's).
    served.set = Some(set);
    served.key = key;
    let mut chosen = [0; MAX_PICK];
    let n = keyed.pick(key, svc.max_records, &mut chosen);
    // Clients split their traffic over the records they get.
    served.share = ANSWER_UNIT / n.max(1) as u64;
    chain.extend(chosen[..n].iter().filter_map(|&i| {
        let target = *idx.get(i)?;
        let t = set.targets.get(target)?;
        let rr = if v6 { t.aaaa.as_ref() } else { t.a.as_ref() }?;
        served.pick(target);
        Some(Answered::new(rr, owner))
    }));
    let mut a = positive(chain, keyed.hashed(svc.max_records));
    a.served = served;
    a
}

/// The client's region index and the prefix length of the mapping that
/// decided it.
fn client_region(view: &DnsView, client: &ClientInfo) -> (Option<usize>, u8) {
    if client.source_prefix == 0 {
        return (None, 0);
    }
    let Ok(net) = IpNet::new(client.addr, client.source_prefix) else {
        return (None, 0);
    };
    let mapped = match view.client_nets.get(client.addr, client.source_prefix) {
        Lookup::Found(region, len) => Some((region, len)),
        Lookup::Missing => None,
        Lookup::Unindexed => view
            .client_map
            .get_lpm(&net.trunc())
            .map(|(prefix, &region)| (region, prefix.prefix_len())),
    };
    match mapped {
        Some((region, len)) => (Some(region), len),
        None => {
            // Then geolocation, if configured; the scope is the database
            // network that decided it.
            let by_geo = view
                .geo
                .as_ref()
                .and_then(|g| g.region(net.network()))
                .and_then(|(region, prefix, _)| {
                    view.regions
                        .iter()
                        .position(|r| r == region)
                        .map(|i| (Some(i), prefix.min(client.source_prefix)))
                });
            by_geo.unwrap_or((None, client.source_prefix))
        }
    }
}

/// RFC 7871 scope: how much of the client address the answer depended on.
fn ecs_scope(uniform: bool, hashed: bool, matched_len: u8, client: &ClientInfo) -> u8 {
    if !client.from_ecs {
        return 0;
    }
    let sticky = if client.addr.is_ipv4() {
        STICKY_V4
    } else {
        STICKY_V6
    };
    let scope = match (uniform, hashed) {
        (true, false) => 0,
        (true, true) => sticky,
        (false, false) => matched_len,
        (false, true) => matched_len.max(sticky),
    };
    scope.min(client.source_prefix.max(matched_len))
}
