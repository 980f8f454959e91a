//! The plan as a distributed artifact (pure: no IO, no clock).
//!
//! A [`Plan`]'s decisions are cut into keyed entries ([`PlanContent`]), each
//! the protobuf encoding of one typed decision (`operator.proto`, "Typed
//! plan entries"; conversions in [`codec`]). The controller encodes once;
//! edges hold the bytes as received, so the content hash
//! ([`PlanContent::sha256`]) is checked over exactly what was sent. Deltas
//! carry changed entries and removed keys. A [`Follower`] applies full
//! plans and deltas and refuses anything that would move it backwards in
//! version or leave it holding content whose hash does not match.
//!
//! A delta costs the follower in proportion to the delta, not the plan: the
//! hash is two-level ([`digest`]) so only the touched buckets are hashed
//! again, and only the changed entries are decoded and put in their place
//! in the typed plan it holds ([`typed`]). Large answer sets (the set for
//! unmapped clients lists every PoP) travel in chunks by layout position,
//! so a drain resends the chunks it touches, not every such set.
//!
//! Invariant: a follower's content always hashes to the hash that came with
//! its version, and its typed plan equals a full decode of that content; a
//! refused update leaves it exactly as it was.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, HashMap},
    fmt,
    ops::Range,
    sync::Arc,
};

use prost::Message;
use steer_proto::v1 as pb;
use steer_types::{AnswerSet, Plan, PlanBody, ServiceId, Timestamp};

mod codec;
mod digest;
mod typed;

use digest::{ContentDigest, entry_digest};
use typed::{Overlay, Typed};

/// (epoch, sequence), compared epoch first. Epoch 1: a single-node or
/// embedded-store control plane; with a clustered store the leader's term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlanVersion {
    pub epoch: u64,
    pub sequence: u64,
}

/// The epoch of a control plane that is its own only writer (`--role all`,
/// or a controller on the embedded file store).
pub const SINGLE_WRITER_EPOCH: u64 = 1;

impl fmt::Display for PlanVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.sequence)
    }
}

/// The content hash of a plan (`operator.proto`, PlanUpdate.content_sha256).
pub type ContentHash = [u8; 32];

/// The entries of one plan, by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanContent {
    pub entries: BTreeMap<String, Arc<[u8]>>,
}

/// A service's answer sets are entries of their own, one per client region
/// (`set/<service>/<region>`) and one for unmapped clients
/// (`set/<service>`), so a change in one region's answers is a one-entry
/// delta; `service/<id>` holds the rest and the sets' order.
fn set_key(service: &ServiceId, set: &AnswerSet, index: usize) -> String {
    match &set.region {
        Some(r) => format!("set/{service}/{r}"),
        // Not made by the policy (a regional set always names its
        // region); keyed by position so it still round-trips.
        None => format!("set/{service}/#{index}"),
    }
}

/// A chunk of the set keyed `set_key`. Keys stay unique as long as ids
/// hold no `/` (the config allows `[a-z0-9-]` only).
fn chunk_key(set_key: &str, n: u32) -> String {
    format!("{set_key}/~{n}")
}

/// Layout PoPs per chunk of a large answer set. Smaller chunks make a
/// drain's delta smaller and the full plan a little larger (a key per
/// chunk): at 16, a 1,000-PoP set is 63 chunks of about 0.6 KiB.
const CHUNK_SPAN: usize = 16;

const LAYOUT: &str = "layout";
const RAILS: &str = "rails";

fn announce_key(a: &steer_types::Announcement) -> String {
    format!("announce/{}/{}", a.pop, a.prefix)
}

/// Cuts a set's targets into chunks of layout PoPs
/// `[CHUNK_SPAN * n, CHUNK_SPAN * (n + 1))` when it is larger than one
/// chunk and its targets follow the layout's PoP order (the policy lists
/// them in topology order); `None`: the set travels whole.
fn chunks_of(set: &AnswerSet, pop_pos: &HashMap<&str, usize>) -> Option<Vec<(u32, Range<usize>)>> {
    if set.targets.len() <= CHUNK_SPAN {
        return None;
    }
    let mut out: Vec<(u32, Range<usize>)> = Vec::new();
    let mut last = None;
    for (i, t) in set.targets.iter().enumerate() {
        let p = *pop_pos.get(t.pop.as_str())?;
        if last.is_some_and(|l| p <= l) {
            return None;
        }
        last = Some(p);
        let n = u32::try_from(p / CHUNK_SPAN).ok()?;
        match out.last_mut() {
            Some((m, r)) if *m == n => r.end = i + 1,
            _ => out.push((n, i..i + 1)),
        }
    }
    Some(out)
}

fn put(entries: &mut BTreeMap<String, Arc<[u8]>>, key: String, bytes: Vec<u8>) {
    entries.insert(key, Arc::<[u8]>::from(bytes));
}

fn put_set(
    entries: &mut BTreeMap<String, Arc<[u8]>>,
    key: String,
    set: &AnswerSet,
    pop_pos: &HashMap<&str, usize>,
) {
    let Some(chunks) = chunks_of(set, pop_pos) else {
        put(entries, key, codec::set_to(set, Vec::new()).encode_to_vec());
        return;
    };
    let numbers = chunks.iter().map(|(n, _)| *n).collect();
    for (n, range) in chunks {
        let targets = set.targets.get(range).unwrap_or_default();
        put(
            entries,
            chunk_key(&key, n),
            codec::chunk_to(targets).encode_to_vec(),
        );
    }
    put(entries, key, codec::set_to(set, numbers).encode_to_vec());
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("entry {key:?} is missing")]
    Missing { key: String },
    #[error("entry {key:?} does not decode: {error}")]
    Invalid { key: String, error: String },
}

impl PlanContent {
    /// Cuts a plan's decisions into entries. Deterministic: equal bodies
    /// give equal bytes.
    pub fn encode(body: &PlanBody) -> Self {
        let mut entries = BTreeMap::new();
        let layout = pb::PlanLayout {
            services: body.services.iter().map(|s| s.id.to_string()).collect(),
            pops: body.pops.iter().map(|p| p.id.to_string()).collect(),
            regions: body.regions.iter().map(|r| r.id.to_string()).collect(),
            announcements: body.announcements.iter().map(announce_key).collect(),
        };
        put(&mut entries, LAYOUT.to_owned(), layout.encode_to_vec());
        put(
            &mut entries,
            RAILS.to_owned(),
            codec::rails_to(&body.rails).encode_to_vec(),
        );
        let mut pop_pos = HashMap::with_capacity(body.pops.len());
        for (i, p) in body.pops.iter().enumerate() {
            pop_pos.entry(p.id.as_str()).or_insert(i);
        }
        for s in &body.services {
            let mut regional = Vec::with_capacity(s.regional.len());
            for (i, set) in s.regional.iter().enumerate() {
                let key = set_key(&s.id, set, i);
                put_set(&mut entries, key.clone(), set, &pop_pos);
                regional.push(key);
            }
            put_set(&mut entries, format!("set/{}", s.id), &s.global, &pop_pos);
            let meta = pb::PlanServiceMeta {
                id: s.id.to_string(),
                fqdn: s.fqdn.clone(),
                ttl: s.ttl,
                max_records: s.max_records as u64,
                regional,
                canary: s.canary.as_ref().map(codec::canary_to),
            };
            put(
                &mut entries,
                format!("service/{}", s.id),
                meta.encode_to_vec(),
            );
        }
        for p in &body.pops {
            put(
                &mut entries,
                format!("pop/{}", p.id),
                codec::pop_to(p).encode_to_vec(),
            );
        }
        for r in &body.regions {
            put(
                &mut entries,
                format!("region/{}", r.id),
                codec::region_to(r).encode_to_vec(),
            );
        }
        for a in &body.announcements {
            put(
                &mut entries,
                announce_key(a),
                codec::announcement_to(a).encode_to_vec(),
            );
        }
        Self { entries }
    }

    /// The content hash, computed whole (a [`Follower`] keeps its own up
    /// to date by delta; see [`digest`] for the definition).
    pub fn sha256(&self) -> ContentHash {
        ContentDigest::from_digests(self.entries.iter().map(|(k, v)| entry_digest(k, v))).root()
    }

    /// Rebuilds the typed decisions, in the layout's order.
    pub fn decode(&self) -> Result<PlanBody, DecodeError> {
        Typed::decode(&self.entries).map(|t| t.body)
    }

    /// Changed or new entries of `new`, and keys of `self` it no longer has.
    pub fn delta_to(&self, new: &PlanContent) -> Delta {
        let changed = new
            .entries
            .iter()
            // Entries shared with the previous encoding compare by pointer.
            .filter(|(k, v)| {
                self.entries
                    .get(*k)
                    .is_none_or(|old| !Arc::ptr_eq(old, v) && old != *v)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let removed = self
            .entries
            .keys()
            .filter(|k| !new.entries.contains_key(*k))
            .cloned()
            .collect();
        Delta { changed, removed }
    }

    /// The content hash of plans before the two-level one: SHA-256 over
    /// the entries in key order, each framed as u32-BE key length, key,
    /// u64-BE body length, body. Only for reading a plan file an older
    /// edge saved (its entries still decode: a set without chunks is
    /// whole).
    pub fn legacy_sha256(&self) -> ContentHash {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for (k, v) in &self.entries {
            ctx.update(&(k.len() as u32).to_be_bytes());
            ctx.update(k.as_bytes());
            ctx.update(&(v.len() as u64).to_be_bytes());
            ctx.update(v);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Total bytes of keys and bodies.
    pub fn size(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// What changed between two plans' contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub changed: Vec<(String, Arc<[u8]>)>,
    pub removed: Vec<String>,
}

impl Delta {
    pub fn size(&self) -> usize {
        self.changed
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            + self.removed.iter().map(String::len).sum::<usize>()
    }
}

/// One update as received from a controller (or read from disk).
#[derive(Clone, Debug)]
pub struct Update {
    pub version: PlanVersion,
    pub computed_at: Timestamp,
    /// `None`: a full plan (entries are everything). `Some(base)`: a delta
    /// against `base`.
    pub base: Option<PlanVersion>,
    pub changed: Vec<(String, Arc<[u8]>)>,
    pub removed: Vec<String>,
    pub sha256: ContentHash,
}

/// Why an update was not applied. Each maps to a label of
/// `steer_plan_updates_refused_total{reason}`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    #[error("plan {got} is older than the plan held ({held}); refused")]
    Backwards { held: PlanVersion, got: PlanVersion },
    #[error("delta against {base} but the plan held is {held:?}; needs a full plan")]
    WrongBase {
        held: Option<PlanVersion>,
        base: PlanVersion,
    },
    #[error("plan {version}: content hash mismatch after applying (got {got}, sent {sent})")]
    HashMismatch {
        version: PlanVersion,
        got: String,
        sent: String,
    },
    #[error("plan {version}: {error}")]
    Undecodable { version: PlanVersion, error: String },
}

impl Refusal {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Backwards { .. } => "backwards",
            Self::WrongBase { .. } => "wrong_base",
            Self::HashMismatch { .. } => "hash_mismatch",
            Self::Undecodable { .. } => "undecodable",
        }
    }
}

pub fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an edge holds: the content of the last plan it accepted, its hash
/// state and the typed plan it decodes to.
#[derive(Debug, Default)]
pub struct Follower {
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    version: PlanVersion,
    computed_at: Timestamp,
    content: PlanContent,
    digest: ContentDigest,
    typed: Typed,
}

/// Whether an update was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new version: [`Follower::plan`] is the plan to publish.
    New,
    /// The version held, resent (e.g. on resubscribe): nothing to publish.
    Same,
}

impl Follower {
    pub fn version(&self) -> Option<PlanVersion> {
        self.held.as_ref().map(|h| h.version)
    }

    pub fn content(&self) -> Option<&PlanContent> {
        self.held.as_ref().map(|h| &h.content)
    }

    /// The content hash of the plan held (kept by delta, not recomputed).
    pub fn content_hash(&self) -> Option<ContentHash> {
        self.held.as_ref().map(|h| h.digest.root())
    }

    /// The plan held, to serve: a copy of the typed plan the follower
    /// keeps (no decoding; the copy is what a publication costs, since a
    /// published plan is immutable).
    pub fn plan(&self) -> Option<Plan> {
        self.held.as_ref().map(|h| Plan {
            version: h.version.sequence,
            computed_at: h.computed_at,
            body: h.typed.body.clone(),
        })
    }

    /// Applies `update`. A delta costs in proportion to its entries (see
    /// the crate docs). A refused update leaves the follower unchanged.
    pub fn apply(&mut self, update: &Update) -> Result<Applied, Refusal> {
        let held_version = self.version();
        if let Some(held) = held_version {
            match update.version.cmp(&held) {
                Ordering::Less => {
                    return Err(Refusal::Backwards {
                        held,
                        got: update.version,
                    });
                }
                Ordering::Equal => {
                    // A resend of what we hold must be the same content.
                    if self.content_hash() == Some(update.sha256) {
                        return Ok(Applied::Same);
                    }
                }
                Ordering::Greater => {}
            }
        }
        match update.base {
            None => self.apply_full(update),
            Some(base) => match self.held.as_mut() {
                Some(held) if held.version == base => held.apply_delta(update),
                _ => Err(Refusal::WrongBase {
                    held: held_version,
                    base,
                }),
            },
        }
    }

    fn apply_full(&mut self, update: &Update) -> Result<Applied, Refusal> {
        let mut content = PlanContent::default();
        for (k, v) in &update.changed {
            content.entries.insert(k.clone(), v.clone());
        }
        let digest =
            ContentDigest::from_digests(content.entries.iter().map(|(k, v)| entry_digest(k, v)));
        check_hash(update, digest.root(), self.held.as_ref())?;
        let typed = Typed::decode(&content.entries).map_err(|e| undecodable(update, &e))?;
        self.held = Some(Held {
            version: update.version,
            computed_at: update.computed_at,
            content,
            digest,
            typed,
        });
        Ok(Applied::New)
    }
}

impl Held {
    fn apply_delta(&mut self, update: &Update) -> Result<Applied, Refusal> {
        // The new body of every key the update touches (`None`: removed):
        // removals first, then changes, so a key both removed and changed
        // ends up changed and a key sent twice ends up with its last body.
        let mut touched: HashMap<&str, Option<&Arc<[u8]>>> = HashMap::new();
        for k in &update.removed {
            touched.insert(k.as_str(), None);
        }
        for (k, v) in &update.changed {
            touched.insert(k.as_str(), Some(v));
        }
        let (mut gone, mut added) = (Vec::new(), Vec::new());
        let entries = &self.content.entries;
        touched.retain(|k, new| {
            let old = entries.get(*k);
            if old.map(|o| &o[..]) == new.map(|n| &n[..]) {
                return false;
            }
            gone.extend(old.map(|o| entry_digest(k, o)));
            added.extend(new.map(|n| entry_digest(k, n)));
            true
        });
        let staged = self.digest.stage(&gone, &added);
        check_hash(update, staged.root, Some(self))?;
        let view = Overlay {
            base: &self.content.entries,
            touched: &touched,
        };
        let patch = self
            .typed
            .patch(&view, touched.iter().map(|(k, v)| (*k, v.is_some())))
            .map_err(|e| undecodable(update, &e))?;
        // Checked and decoded: commit.
        for (k, v) in touched {
            match v {
                Some(v) => {
                    self.content.entries.insert(k.to_owned(), v.clone());
                }
                None => {
                    self.content.entries.remove(k);
                }
            }
        }
        self.digest.commit(staged);
        self.typed.commit(patch);
        self.version = update.version;
        self.computed_at = update.computed_at;
        Ok(Applied::New)
    }
}

/// The content after `update` must hash to what was sent, and a version
/// already held must not come with other content.
fn check_hash(update: &Update, got: ContentHash, held: Option<&Held>) -> Result<(), Refusal> {
    if got != update.sha256 {
        return Err(Refusal::HashMismatch {
            version: update.version,
            got: hex(&got),
            sent: hex(&update.sha256),
        });
    }
    if let Some(held) = held.filter(|h| h.version == update.version) {
        // Same version, other content: never two truths for a version.
        return Err(Refusal::HashMismatch {
            version: update.version,
            got: hex(&got),
            sent: hex(&held.digest.root()),
        });
    }
    Ok(())
}

fn undecodable(update: &Update, e: &DecodeError) -> Refusal {
    Refusal::Undecodable {
        version: update.version,
        error: e.to_string(),
    }
}

/// A full update carrying `content` at `version`.
pub fn full_update(version: PlanVersion, computed_at: Timestamp, content: &PlanContent) -> Update {
    Update {
        version,
        computed_at,
        base: None,
        changed: content
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        removed: Vec::new(),
        sha256: content.sha256(),
    }
}

#[cfg(test)]
mod tests;
