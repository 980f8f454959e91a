//! A query-ready compilation of (zones, client map, Plan).
//!
//! Everything a query needs is built here, once per plan: owner names,
//! records, the client-region trie and per-target hash seeds. The query path
//! only looks things up and borrows records.

use std::{
    collections::{HashMap as StdHashMap, HashSet as StdHashSet},
    str::FromStr,
    sync::{Arc, atomic::AtomicU64},
};

use hickory_server::proto::{
    rr::{
        LowerName, Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME},
    },
    serialize::binary::{BinEncodable, BinEncoder},
};
use ipnet::IpNet;
use prefix_trie::joint::map::JointPrefixMap;
use steer_types::{
    AnswerSet, ClientNetwork, DnsSettings, Plan, PopId, RegionId, Selection, Zone,
    answers::{AnswerKey, AnswerTally},
};

use crate::{
    calibrate::{ClientSample, ClientSamples, SetKey},
    metrics::QueryMetrics,
    names::FastHash,
    select::{MAX_PICK, mix, pick_into, seed},
    sign::Signer,
    zone::Zones,
};

/// A record with its wire form pre-encoded for the UDP fast path: the
/// owner in full, then type, class, TTL and RDATA (names uncompressed).
/// The writer puts a pointer to the question in place of the owner when
/// the record is answered at the query name. `wire` is `None` only if
/// hickory could not encode it; such answers take hickory's encoder instead.
#[derive(Debug)]
pub struct Rr {
    pub record: Record,
    wire: Option<Box<[u8]>>,
    owner_len: usize,
    /// The record's type, kept: hickory works it out from the RDATA's
    /// variant at every call, and the query path asks for it per record.
    rtype: RecordType,
}

impl std::ops::Deref for Rr {
    type Target = Record;

    fn deref(&self) -> &Record {
        &self.record
    }
}

impl Rr {
    pub(crate) fn new(record: Record) -> Self {
        let owner = canonical(|e| record.name.emit(e));
        let owner_len = owner.as_ref().map_or(0, Vec::len);
        let wire = owner.and_then(|o| encode_rr(&record, &o));
        Self {
            rtype: record.record_type(),
            record,
            wire,
            owner_len,
        }
    }

    /// The record's type (as `record.record_type()`, without the match).
    pub fn record_type(&self) -> RecordType {
        self.rtype
    }

    /// For the answer section (the owner is usually the question name).
    pub(crate) fn answer(record: Record) -> Self {
        Self::new(record)
    }

    /// The record with its owner written in full.
    pub(crate) fn full(&self) -> Option<&[u8]> {
        self.wire.as_deref()
    }

    /// The owner name as written in [`Rr::full`].
    pub(crate) fn owner_wire(&self) -> Option<&[u8]> {
        self.wire.as_deref()?.get(..self.owner_len)
    }

    /// Type, class, TTL, RDLENGTH and RDATA: what follows the owner.
    pub(crate) fn body(&self) -> Option<&[u8]> {
        self.wire.as_deref()?.get(self.owner_len..)
    }
}

pub(crate) fn canonical(
    f: impl FnOnce(&mut BinEncoder<'_>) -> Result<(), hickory_server::proto::ProtoError>,
) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_canonical_form(true);
    f(&mut encoder).ok()?;
    Some(buf)
}

fn encode_rr(record: &Record, owner: &[u8]) -> Option<Box<[u8]>> {
    let rdata = canonical(|e| record.data.emit(e))?;
    let mut wire = owner.to_vec();
    wire.extend_from_slice(&u16::from(record.record_type()).to_be_bytes());
    wire.extend_from_slice(&u16::from(record.dns_class).to_be_bytes());
    wire.extend_from_slice(&record.ttl.to_be_bytes());
    wire.extend_from_slice(&u16::try_from(rdata.len()).ok()?.to_be_bytes());
    wire.extend_from_slice(&rdata);
    Some(wire.into_boxed_slice())
}

pub(crate) type HashMap<K, V> = StdHashMap<K, V, FastHash>;
pub(crate) type HashSet<K> = StdHashSet<K, FastHash>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    #[error("invalid DNS name {name:?}: {reason}")]
    Name { name: String, reason: String },
    #[error("invalid record data at {name}: {reason}")]
    Rdata { name: String, reason: String },
    #[error("cannot open geo database {path}: {reason}")]
    Geo { path: String, reason: String },
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
}

pub(crate) fn name(text: &str) -> Result<Name, ViewError> {
    Name::from_str(text).map_err(|e| ViewError::Name {
        name: text.to_owned(),
        reason: e.to_string(),
    })
}

pub(crate) struct CompiledTarget {
    pub(crate) seed: u64,
    pub(crate) weight: f64,
    pub(crate) a: Option<Rr>,
    pub(crate) aaaa: Option<Rr>,
    /// For CNAME-style services: the per-region (or per-PoP) name.
    pub(crate) cname: Option<Rr>,
    /// Its target, to follow when it is in one of our zones.
    pub(crate) cname_target: Option<LowerName>,
    /// `steer_dns_answers_total{pop}`.
    pub(crate) answered: metrics::Counter,
    /// This set's answers to this PoP, for the control loop's demand
    /// estimate (in `ANSWER_UNIT`s).
    pub(crate) tally: Arc<AtomicU64>,
}

/// One family's targets as the picker sees them: selection weights that
/// deliver the plan's shares (see `steer_types::delivery`).
pub(crate) struct Keyed {
    /// Full answers: up to `max_records` by weighted rendezvous.
    pub(crate) full: Vec<(u64, f64)>,
    /// Single-record answers, for the clients that get one.
    pub(crate) short: Vec<(u64, f64)>,
    /// Clients whose subnet hash is below this get a single record (0:
    /// nobody; the plan's shares fit in full answers).
    pub(crate) short_below: u64,
}

/// Salt of the hash that decides short vs full answers, so that decision
/// is independent of the rendezvous scores.
const SHORT_SALT: u64 = 0x5348_4f52_545f_414e;

impl Keyed {
    /// The picker for `shares` with `records` per answer; with a sample of
    /// the subnets that ask, its weights are trimmed so that they get the
    /// shares (see `calibrate`). Returns the calibration's residual error.
    fn new(
        seeds: &[u64],
        shares: &[f64],
        records: usize,
        sample: Option<(&ClientSample, u8, &[u64], &[bool])>,
    ) -> (Self, Option<f64>) {
        let m = steer_types::delivery::mix(shares, records);
        // Saturating float-to-int cast: 1.0 maps to u64::MAX.
        let short_below = (m.short_share * 18_446_744_073_709_551_616.0) as u64;
        let total: f64 = shares.iter().sum();
        let target: Vec<f64> = if total > 0.0 && total.is_finite() {
            shares.iter().map(|s| s / total).collect()
        } else {
            Vec::new()
        };
        // Calibrated answers start every target with a sliver of the
        // single-record answers; uncalibrated ones keep the mix as it is.
        let floored = crate::calibrate::floor_short(&m.short_weights, shares);
        let picker = crate::calibrate::Picker {
            seeds,
            full: &m.full_weights,
            short: &floored,
            short_below,
            records,
            short_salt: SHORT_SALT,
        };
        let calibrated = sample.and_then(|(memory, id, keys, full)| {
            let start = memory.last_trims(id, seeds);
            let goal = crate::calibrate::Goal {
                shares: &target,
                at_target: full,
            };
            let settled = crate::calibrate::calibrate(&picker, keys, &goal, &start)?;
            memory.keep_trims(id, seeds, &settled.0);
            Some(settled)
        });
        let trims = calibrated.as_ref().map(|(t, _)| t.as_slice());
        let keyed = |w: &[f64]| {
            seeds
                .iter()
                .enumerate()
                .map(|(i, &seed)| {
                    (
                        seed,
                        w[i] * trims.and_then(|t| t.get(i)).copied().unwrap_or(1.0),
                    )
                })
                .collect()
        };
        let keyed = Self {
            full: keyed(&m.full_weights),
            short: keyed(if trims.is_some() {
                &floored
            } else {
                &m.short_weights
            }),
            short_below,
        };
        (keyed, calibrated.map(|(_, err)| err))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.full.is_empty()
    }

    /// Whether the answer depends on the client's subnet hash.
    pub(crate) fn hashed(&self, records: usize) -> bool {
        self.full.len() > records || self.short_below > 0
    }

    /// Picks the records for `key`: indexes into this family's targets.
    pub(crate) fn pick(&self, key: u64, records: usize, out: &mut [usize; MAX_PICK]) -> usize {
        if self.short_below > 0 && mix(key ^ SHORT_SALT) < self.short_below {
            pick_into(key, &self.short, 1, out)
        } else {
            pick_into(key, &self.full, records, out)
        }
    }
}

pub(crate) struct CompiledSet {
    pub(crate) v4: Keyed,
    pub(crate) v4_targets: Vec<usize>,
    pub(crate) v6: Keyed,
    pub(crate) v6_targets: Vec<usize>,
    /// Every target, for CNAME-style services (one record per answer).
    pub(crate) any: Keyed,
    /// Whether every target yields the same CNAME (then the hash does not
    /// matter for the ECS scope).
    pub(crate) cname_uniform: bool,
    pub(crate) targets: Vec<CompiledTarget>,
    /// The subnets that ask this set, for the next compile's calibration;
    /// `None` when the answer does not depend on the subnet.
    pub(crate) sample: Option<Arc<ClientSample>>,
    /// The worst remaining error of this set's calibration (a share of its
    /// traffic); `None` when it was not calibrated.
    pub(crate) residual: Option<f64>,
}

pub(crate) struct CompiledService {
    pub(crate) zone: usize,
    pub(crate) max_records: usize,
    /// Indexed like `DnsView::regions`.
    pub(crate) regional: Vec<CompiledSet>,
    pub(crate) global: CompiledSet,
    /// A change's canary by client subnets, while a stage holds one.
    pub(crate) canary: Option<CompiledCanary>,
    /// Whether every region gets the same answer set (then ECS scope is 0).
    pub(crate) uniform: bool,
    /// Weighted random per query instead of sticky per subnet.
    pub(crate) random: bool,
    pub(crate) cname_style: bool,
    /// Answered when a set has no target of the asked family.
    pub(crate) fallback_v4: Vec<Rr>,
    pub(crate) fallback_v6: Vec<Rr>,
    /// `steer_dns_service_queries_total{service}`.
    pub(crate) queries: metrics::Counter,
}

/// The sets a share of client subnets takes during a change's stage.
pub(crate) struct CompiledCanary {
    /// A subnet whose canary hash is below this is in the canary.
    pub(crate) threshold: u64,
    /// Indexed like `DnsView::regions`; `None`: no change there.
    pub(crate) regional: Vec<Option<CompiledSet>>,
    pub(crate) global: Option<CompiledSet>,
}

impl CompiledCanary {
    /// The canary's set for a client in `region` whose subnet key is
    /// `subnet`, if it takes one.
    pub(crate) fn set_for(&self, region: Option<usize>, subnet: u64) -> Option<&CompiledSet> {
        if crate::select::canary_hash(subnet) >= self.threshold {
            return None;
        }
        match region {
            Some(i) => self.regional.get(i)?.as_ref(),
            None => self.global.as_ref(),
        }
    }
}

/// Whether the subnet keyed `subnet` is among a canary's `share_ppm`.
pub(crate) fn in_canary(share_ppm: u32, subnet: u64) -> bool {
    crate::select::canary_hash(subnet) < canary_threshold(share_ppm)
}

/// `share_ppm` millionths of the hash space.
fn canary_threshold(share_ppm: u32) -> u64 {
    let share = u128::from(share_ppm.min(1_000_000));
    u64::try_from((u128::from(u64::MAX) * share) / 1_000_000).unwrap_or(u64::MAX)
}

/// A view's steered services, by name and by their place in the plan (the
/// name index's [`crate::names::Known::steered`]: no second lookup by name
/// for a steered query name).
#[derive(Default)]
pub(crate) struct Services {
    list: Vec<Option<CompiledService>>,
    names: crate::names::ByName<usize>,
}

impl Services {
    fn insert(&mut self, index: usize, name: &LowerName, svc: CompiledService) {
        if self.list.len() <= index {
            self.list.resize_with(index + 1, || None);
        }
        if let Some(slot) = self.list.get_mut(index) {
            *slot = Some(svc);
            self.names.insert(name, index);
        }
    }

    /// The service at `index` in the plan's order.
    pub(crate) fn at(&self, index: u32) -> Option<&CompiledService> {
        self.list.get(usize::try_from(index).ok()?)?.as_ref()
    }

    pub(crate) fn get(&self, name: &LowerName) -> Option<&CompiledService> {
        self.list.get(*self.names.get(name)?)?.as_ref()
    }

    pub(crate) fn contains_key(&self, name: &LowerName) -> bool {
        self.get(name).is_some()
    }
}

/// The immutable view the DNS handler answers from.
pub struct DnsView {
    pub(crate) plan_version: u64,
    /// Shared with the views before and after while the zones do not
    /// change (see [`ZoneCache`]).
    pub(crate) zones: Arc<Zones>,
    pub(crate) services: Services,
    /// Steered names the config has but the plan decides nothing for (an
    /// edge that holds no plan yet): answered SERVFAIL, never NXDOMAIN, so
    /// resolvers ask another server and cache nothing.
    pub(crate) unplanned: std::collections::HashSet<LowerName>,
    pub(crate) regions: Vec<RegionId>,
    pub(crate) client_map: JointPrefixMap<IpNet, usize>,
    /// The same networks for the query path (see `netmap`).
    pub(crate) client_nets: crate::netmap::NetMap,
    pub(crate) udp_payload: u16,
    pub(crate) metrics: QueryMetrics,
    /// Region by geolocation for clients no client network matches.
    pub(crate) geo: Option<std::sync::Arc<crate::geo::GeoMap>>,
    /// Response rate limiting over UDP (`[dns.rrl]`), when on.
    pub(crate) rrl: Option<steer_types::RrlSettings>,
    /// CHAOS-class TXT records by owner (see [`crate::ident`]).
    pub(crate) chaos: Vec<(LowerName, Rr)>,
    /// The NSID option's payload, when configured.
    pub(crate) nsid: Option<Box<[u8]>>,
}

impl DnsView {
    /// Builds a view. Fails only on names hickory cannot represent, which
    /// config validation already rules out.
    pub fn compile(
        zones: &[Zone],
        client_networks: &[ClientNetwork],
        plan: &Plan,
        udp_payload: u16,
    ) -> Result<Self, ViewError> {
        let settings = DnsSettings {
            udp_payload,
            ..DnsSettings::default()
        };
        Self::compile_with(zones, client_networks, plan, &settings)
    }

    /// Builds a view with per-service DNS settings (selection, fallback,
    /// CNAME style) and the UDP payload size.
    pub fn compile_with(
        zones: &[Zone],
        client_networks: &[ClientNetwork],
        plan: &Plan,
        settings: &DnsSettings,
    ) -> Result<Self, ViewError> {
        Self::compile_counted(
            zones,
            client_networks,
            plan,
            settings,
            &AnswerTally::default(),
        )
    }

    /// As [`DnsView::compile_with`], counting the answers it serves into
    /// `tally` (per service, answer set and PoP). Zones are served
    /// unsigned; [`crate::ViewPublisher`] compiles signed ones.
    pub fn compile_counted(
        zones: &[Zone],
        client_networks: &[ClientNetwork],
        plan: &Plan,
        settings: &DnsSettings,
        tally: &AnswerTally,
    ) -> Result<Self, ViewError> {
        Self::compile_sampled(
            zones,
            client_networks,
            plan,
            settings,
            tally,
            &ClientSamples::default(),
        )
    }

    /// As [`DnsView::compile_counted`], sampling the subnets that ask each
    /// answer set into `samples` and calibrating selection on what earlier
    /// views sampled there (see [`ClientSamples`]).
    pub fn compile_sampled(
        zones: &[Zone],
        client_networks: &[ClientNetwork],
        plan: &Plan,
        settings: &DnsSettings,
        tally: &AnswerTally,
        samples: &ClientSamples,
    ) -> Result<Self, ViewError> {
        Self::compile_signed(
            zones,
            client_networks,
            plan,
            settings,
            tally,
            samples,
            &[],
            &ZoneCache::default(),
        )
    }

    /// As [`DnsView::compile_sampled`], signing the zones `signers` has a
    /// key for (by origin).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compile_signed(
        zones: &[Zone],
        client_networks: &[ClientNetwork],
        plan: &Plan,
        settings: &DnsSettings,
        tally: &AnswerTally,
        samples: &ClientSamples,
        signers: &[(String, Arc<Signer>)],
        zone_cache: &ZoneCache,
    ) -> Result<Self, ViewError> {
        let udp_payload = settings.udp_payload;
        let regions: Vec<RegionId> = plan.body.regions.iter().map(|r| r.id.clone()).collect();
        let mut client_map = JointPrefixMap::new();
        let mut mapped = Vec::new();
        for net in client_networks {
            if let Some(i) = regions.iter().position(|r| *r == net.region) {
                client_map.insert(net.prefix, i);
                mapped.push((&net.prefix, i));
            }
        }
        let client_nets = crate::netmap::NetMap::new(mapped);
        // Steered names exist in their zone too: they and their empty
        // non-terminals block wildcards and answer NODATA, not NXDOMAIN.
        let steered: Vec<LowerName> = plan
            .body
            .services
            .iter()
            .map(|svc| name(&svc.fqdn).map(|n| LowerName::new(&n)))
            .collect::<Result<_, _>>()?;
        let compiled_zones = zone_cache.get_or_compile(zones, steered, signers)?;

        let mut services = Services::default();
        let mut residual: f64 = 0.0;
        let at_target: HashSet<&PopId> = plan
            .body
            .pops
            .iter()
            .filter(|p| p.at_target)
            .map(|p| &p.id)
            .collect();
        // In the order of `steered` (the name index knows each one's place).
        for (index, svc) in plan.body.services.iter().enumerate() {
            let owner = name(&svc.fqdn)?;
            let lower = LowerName::new(&owner);
            let Some(zone) = compiled_zones.iter().position(|z| z.origin.zone_of(&lower)) else {
                continue;
            };
            let gslb = settings.services.iter().find(|g| g.fqdn == svc.fqdn);
            let cname = gslb.and_then(|g| g.cname.as_deref());
            let records = svc.max_records.max(1);
            // `sampled`: calibrated on the subnets that ask (a canary's
            // sets are not: they hold a share of the clients for a while).
            let compile_with = |set: &AnswerSet, sampled: bool| {
                let counter = |pop: &PopId| {
                    tally.cell(AnswerKey {
                        service: svc.id.clone(),
                        region: set.region.clone(),
                        pop: pop.clone(),
                    })
                };
                let sampled = sampled && gslb.is_none_or(|g| g.selection != Selection::Random);
                let sample = sampled.then(|| {
                    samples.sample(SetKey {
                        service: svc.id.clone(),
                        region: set.region.clone(),
                    })
                });
                let compiled = compile_set(
                    &owner,
                    svc.ttl,
                    set,
                    plan,
                    cname,
                    records,
                    Sinks {
                        counter: &counter,
                        sample,
                        at_target: &at_target,
                    },
                )?;
                Ok::<_, ViewError>(compiled)
            };
            let compile = |set: &AnswerSet| compile_with(set, true);
            let regional: Vec<CompiledSet> = regions
                .iter()
                .map(|r| compile(svc.for_region(Some(r))))
                .collect::<Result<_, _>>()?;
            let fallback = |v6: bool| -> Vec<Rr> {
                gslb.map(|g| g.fallback.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|ip| match ip {
                        std::net::IpAddr::V4(a) if !v6 => Some(RData::A(A(*a))),
                        std::net::IpAddr::V6(a) if v6 => Some(RData::AAAA(AAAA(*a))),
                        _ => None,
                    })
                    .map(|rdata| Rr::answer(Record::from_rdata(owner.clone(), svc.ttl, rdata)))
                    .collect()
            };
            let uniform = regions
                .iter()
                .all(|r| svc.for_region(Some(r)).targets == svc.global.targets);
            let global = compile(&svc.global)?;
            let canary = match &svc.canary {
                None => None,
                Some(c) => Some(CompiledCanary {
                    threshold: canary_threshold(c.share_ppm),
                    regional: regions
                        .iter()
                        .map(|r| {
                            let i = svc.index_of(Some(r))?;
                            c.regional.get(i)?.as_ref()
                        })
                        .map(|set| set.map(|s| compile_with(s, false)).transpose())
                        .collect::<Result<_, _>>()?,
                    global: c
                        .global
                        .as_ref()
                        .map(|s| compile_with(s, false))
                        .transpose()?,
                }),
            };
            residual = regional
                .iter()
                .chain([&global])
                .filter_map(|s| s.residual)
                .fold(residual, f64::max);
            services.insert(
                index,
                &lower,
                CompiledService {
                    zone,
                    max_records: records,
                    regional,
                    global,
                    canary,
                    uniform,
                    random: gslb.is_some_and(|g| g.selection == Selection::Random),
                    cname_style: cname.is_some(),
                    fallback_v4: fallback(false),
                    fallback_v6: fallback(true),
                    queries: crate::metrics::service_counter(svc.id.as_str()),
                },
            );
        }
        let mut unplanned = std::collections::HashSet::new();
        for g in &settings.services {
            let lower = LowerName::new(&name(&g.fqdn)?);
            if !services.contains_key(&lower)
                && compiled_zones.iter().any(|z| z.origin.zone_of(&lower))
            {
                unplanned.insert(lower);
            }
        }
        samples.finish(residual);
        Ok(Self {
            plan_version: plan.version,
            zones: compiled_zones,
            services,
            unplanned,
            regions,
            client_map,
            client_nets,
            udp_payload,
            metrics: QueryMetrics::register(),
            geo: None,
            rrl: settings.rrl.clone(),
            chaos: crate::ident::chaos_records(settings),
            nsid: crate::ident::nsid(settings),
        })
    }

    pub fn plan_version(&self) -> u64 {
        self.plan_version
    }

    /// Whether this view answers from the same compiled static zones as
    /// `other` (zones are compiled on reload, not per plan).
    pub fn shares_zones_with(&self, other: &DnsView) -> bool {
        Arc::ptr_eq(&self.zones, &other.zones)
    }

    /// Name of the region at `index` (as returned in [`crate::Answer::region`]).
    pub fn region(&self, index: usize) -> Option<&RegionId> {
        self.regions.get(index)
    }
}

/// Static zones compiled once and shared by every view until the zones
/// (a reload), the steered names in them (they block wildcards) or a zone's
/// signer (a key change) differ: a new plan recompiles only its steering
/// tables, not every zone.
#[derive(Default)]
pub(crate) struct ZoneCache(std::sync::Mutex<Option<ZoneCacheEntry>>);

struct ZoneCacheEntry {
    zones: Vec<Zone>,
    steered: Vec<LowerName>,
    signers: Vec<(String, Arc<Signer>)>,
    compiled: Arc<Zones>,
}

impl ZoneCache {
    fn get_or_compile(
        &self,
        zones: &[Zone],
        steered: Vec<LowerName>,
        signers: &[(String, Arc<Signer>)],
    ) -> Result<Arc<Zones>, ViewError> {
        let mut entry = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entry.as_ref()
            && e.steered == steered
            && e.signers.len() == signers.len()
            && e.signers
                .iter()
                .zip(signers)
                .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
            && e.zones == zones
        {
            return Ok(e.compiled.clone());
        }
        let compiled = zones
            .iter()
            .map(|z| {
                let signer = signers
                    .iter()
                    .find(|(origin, _)| *origin == z.origin)
                    .map(|(_, s)| s.clone());
                crate::zone::compile(z, &steered, signer)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let compiled = Arc::new(Zones::new(compiled, &steered));
        *entry = Some(ZoneCacheEntry {
            zones: zones.to_vec(),
            steered,
            signers: signers.to_vec(),
            compiled: compiled.clone(),
        });
        Ok(compiled)
    }
}

/// Where a compiled set reports what it serves: answers per PoP (the
/// demand estimate) and the subnets that ask (calibration).
struct Sinks<'a> {
    counter: &'a dyn Fn(&PopId) -> Arc<AtomicU64>,
    sample: Option<Arc<ClientSample>>,
    /// PoPs the plan fills to their target utilisation: calibration
    /// rounds away from them.
    at_target: &'a HashSet<&'a PopId>,
}

fn compile_set(
    owner: &Name,
    ttl: u32,
    set: &AnswerSet,
    plan: &Plan,
    cname: Option<&str>,
    records: usize,
    sinks: Sinks<'_>,
) -> Result<CompiledSet, ViewError> {
    let Sinks {
        counter,
        sample,
        at_target,
    } = sinks;
    let targets: Vec<CompiledTarget> = set
        .targets
        .iter()
        .map(|t| {
            let (cname, cname_target) = match cname {
                None => (None, None),
                Some(template) => {
                    let region = plan.pop(t.pop.as_str()).map_or("", |p| p.region.as_str());
                    let target = name(
                        &template
                            .replace("{region}", region)
                            .replace("{pop}", t.pop.as_str()),
                    )?;
                    let lower = LowerName::new(&target);
                    let rr = Rr::answer(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::CNAME(CNAME(target)),
                    ));
                    (Some(rr), Some(lower))
                }
            };
            Ok(CompiledTarget {
                seed: seed(t.pop.as_str()),
                weight: f64::from(t.weight.max(1)),
                a: t.ipv4
                    .map(|a| Rr::answer(Record::from_rdata(owner.clone(), ttl, RData::A(A(a))))),
                aaaa: t.ipv6.map(|a| {
                    Rr::answer(Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(a))))
                }),
                cname,
                cname_target,
                answered: crate::metrics::pop_counter(t.pop.as_str()),
                tally: counter(&t.pop),
            })
        })
        .collect::<Result<_, ViewError>>()?;
    // The plan's weights are the shares clients should send each target;
    // the picker needs the mix of answers that delivers them with this
    // many records per answer (see `steer_types::delivery`).
    let keys: Arc<[u64]> = sample
        .as_ref()
        .map_or_else(|| Arc::from(Vec::new()), |s| s.settled());
    let mut residual: Option<f64> = None;
    // Each picker (0: A, 1: AAAA, 2: CNAME) remembers its own trims.
    let mut keyed = |idx: &[usize], per_answer: usize, id: u8| -> Keyed {
        let shares: Vec<f64> = idx.iter().map(|&i| targets[i].weight).collect();
        let seeds: Vec<u64> = idx.iter().map(|&i| targets[i].seed).collect();
        let full: Vec<bool> = idx
            .iter()
            .map(|&i| at_target.contains(&&set.targets[i].pop))
            .collect();
        let memory = sample.as_deref().map(|s| (s, id, &keys[..], &full[..]));
        let (keyed, err) = Keyed::new(&seeds, &shares, per_answer, memory);
        if let Some(err) = err {
            residual = Some(residual.map_or(err, |r| r.max(err)));
        }
        keyed
    };
    let mut family = |has: fn(&CompiledTarget) -> bool, id: u8| {
        let idx: Vec<usize> = (0..targets.len()).filter(|&i| has(&targets[i])).collect();
        (keyed(&idx, records, id), idx)
    };
    let (v4, v4_targets) = family(|t| t.a.is_some(), 0);
    let (v6, v6_targets) = family(|t| t.aaaa.is_some(), 1);
    // A CNAME-style answer carries one target (only those use `any`).
    let all: Vec<usize> = (0..targets.len()).collect();
    let any = if cname.is_some() {
        keyed(&all, 1, 2)
    } else {
        let seeds: Vec<u64> = targets.iter().map(|t| t.seed).collect();
        let shares: Vec<f64> = targets.iter().map(|t| t.weight).collect();
        Keyed::new(&seeds, &shares, 1, None).0
    };
    let cname_uniform = targets
        .windows(2)
        .all(|w| w[0].cname.as_ref().map(|r| &r.record) == w[1].cname.as_ref().map(|r| &r.record));
    Ok(CompiledSet {
        v4,
        v4_targets,
        v6,
        v6_targets,
        any,
        cname_uniform,
        targets,
        sample,
        residual,
    })
}
