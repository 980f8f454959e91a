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
//! Invariant: a follower's content always hashes to the hash that came with
//! its version; a refused update leaves it exactly as it was.

use std::{cmp::Ordering, collections::BTreeMap, fmt, sync::Arc};

use prost::Message;
use steer_proto::v1 as pb;
use steer_types::{AnswerSet, Plan, PlanBody, ServiceId, ServicePlan, Timestamp};

mod codec;

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

/// A SHA-256 digest of a plan's content.
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

const LAYOUT: &str = "layout";
const RAILS: &str = "rails";

fn announce_key(a: &steer_types::Announcement) -> String {
    format!("announce/{}/{}", a.pop, a.prefix)
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
        let mut put = |key: String, bytes: Vec<u8>| {
            entries.insert(key, Arc::<[u8]>::from(bytes));
        };
        let layout = pb::PlanLayout {
            services: body.services.iter().map(|s| s.id.to_string()).collect(),
            pops: body.pops.iter().map(|p| p.id.to_string()).collect(),
            regions: body.regions.iter().map(|r| r.id.to_string()).collect(),
            announcements: body.announcements.iter().map(announce_key).collect(),
        };
        put(LAYOUT.to_owned(), layout.encode_to_vec());
        put(
            RAILS.to_owned(),
            codec::rails_to(&body.rails).encode_to_vec(),
        );
        for s in &body.services {
            let mut regional = Vec::with_capacity(s.regional.len());
            for (i, set) in s.regional.iter().enumerate() {
                let key = set_key(&s.id, set, i);
                put(key.clone(), codec::set_to(set).encode_to_vec());
                regional.push(key);
            }
            put(
                format!("set/{}", s.id),
                codec::set_to(&s.global).encode_to_vec(),
            );
            let meta = pb::PlanServiceMeta {
                id: s.id.to_string(),
                fqdn: s.fqdn.clone(),
                ttl: s.ttl,
                max_records: s.max_records as u64,
                regional,
            };
            put(format!("service/{}", s.id), meta.encode_to_vec());
        }
        for p in &body.pops {
            put(format!("pop/{}", p.id), codec::pop_to(p).encode_to_vec());
        }
        for r in &body.regions {
            put(
                format!("region/{}", r.id),
                codec::region_to(r).encode_to_vec(),
            );
        }
        for a in &body.announcements {
            put(announce_key(a), codec::announcement_to(a).encode_to_vec());
        }
        Self { entries }
    }

    /// SHA-256 over the entries in key order, each framed as u32-BE key
    /// length, key, u64-BE body length, body.
    pub fn sha256(&self) -> ContentHash {
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

    /// Rebuilds the typed decisions, in the layout's order.
    pub fn decode(&self) -> Result<PlanBody, DecodeError> {
        let layout: pb::PlanLayout = self.message(LAYOUT)?;
        let rails = self.typed(RAILS, codec::rails_from)?;
        let services = layout
            .services
            .iter()
            .map(|id| self.service(id))
            .collect::<Result<_, _>>()?;
        let pops = layout
            .pops
            .iter()
            .map(|id| self.typed(&format!("pop/{id}"), codec::pop_from))
            .collect::<Result<_, _>>()?;
        let regions = layout
            .regions
            .iter()
            .map(|id| self.typed(&format!("region/{id}"), codec::region_from))
            .collect::<Result<_, _>>()?;
        let announcements = layout
            .announcements
            .iter()
            .map(|k| self.typed(k, codec::announcement_from))
            .collect::<Result<_, _>>()?;
        Ok(PlanBody {
            services,
            pops,
            regions,
            announcements,
            rails,
        })
    }

    fn service(&self, id: &str) -> Result<ServicePlan, DecodeError> {
        let key = format!("service/{id}");
        let meta: pb::PlanServiceMeta = self.message(&key)?;
        let regional = meta
            .regional
            .iter()
            .map(|k| self.set(k))
            .collect::<Result<_, _>>()?;
        Ok(ServicePlan {
            id: ServiceId::from(meta.id.as_str()),
            fqdn: meta.fqdn,
            ttl: meta.ttl,
            max_records: usize::try_from(meta.max_records).map_err(|_| DecodeError::Invalid {
                key,
                error: format!("max_records {} does not fit", meta.max_records),
            })?,
            regional,
            global: self.set(&format!("set/{id}"))?,
        })
    }

    fn set(&self, key: &str) -> Result<AnswerSet, DecodeError> {
        self.typed(key, codec::set_from)
    }

    fn message<M: Message + Default>(&self, key: &str) -> Result<M, DecodeError> {
        let bytes = self.entries.get(key).ok_or_else(|| DecodeError::Missing {
            key: key.to_owned(),
        })?;
        M::decode(&bytes[..]).map_err(|e| DecodeError::Invalid {
            key: key.to_owned(),
            error: e.to_string(),
        })
    }

    fn typed<M: Message + Default, T>(
        &self,
        key: &str,
        convert: impl FnOnce(M) -> Result<T, String>,
    ) -> Result<T, DecodeError> {
        convert(self.message(key)?).map_err(|error| DecodeError::Invalid {
            key: key.to_owned(),
            error,
        })
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

/// What an edge holds: the content of the last plan it accepted.
#[derive(Debug, Default)]
pub struct Follower {
    held: Option<(PlanVersion, PlanContent, ContentHash)>,
}

/// Whether an update was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new version: the plan to publish.
    New,
    /// The version held, resent (e.g. on resubscribe): nothing to publish.
    Same,
}

impl Follower {
    pub fn version(&self) -> Option<PlanVersion> {
        self.held.as_ref().map(|(v, _, _)| *v)
    }

    pub fn content(&self) -> Option<&PlanContent> {
        self.held.as_ref().map(|(_, c, _)| c)
    }

    /// Applies `update`; on `Ok(Applied::New)` returns the plan to serve.
    /// A refused update leaves the follower unchanged.
    pub fn apply(&mut self, update: &Update) -> Result<(Applied, Option<Plan>), Refusal> {
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
                    let same = self
                        .held
                        .as_ref()
                        .is_some_and(|(_, _, h)| *h == update.sha256);
                    if same {
                        return Ok((Applied::Same, None));
                    }
                }
                Ordering::Greater => {}
            }
        }
        let mut content = match update.base {
            None => PlanContent::default(),
            Some(base) => match &self.held {
                Some((v, c, _)) if *v == base => c.clone(),
                _ => {
                    return Err(Refusal::WrongBase {
                        held: held_version,
                        base,
                    });
                }
            },
        };
        for k in &update.removed {
            content.entries.remove(k);
        }
        for (k, v) in &update.changed {
            content.entries.insert(k.clone(), v.clone());
        }
        let got = content.sha256();
        if got != update.sha256 {
            return Err(Refusal::HashMismatch {
                version: update.version,
                got: hex(&got),
                sent: hex(&update.sha256),
            });
        }
        if held_version == Some(update.version) {
            // Same version, other content: never two truths for a version.
            return Err(Refusal::HashMismatch {
                version: update.version,
                got: hex(&got),
                sent: self
                    .held
                    .as_ref()
                    .map(|(_, _, h)| hex(h))
                    .unwrap_or_default(),
            });
        }
        let body = content.decode().map_err(|e| Refusal::Undecodable {
            version: update.version,
            error: e.to_string(),
        })?;
        let plan = Plan {
            version: update.version.sequence,
            computed_at: update.computed_at,
            body,
        };
        self.held = Some((update.version, content, got));
        Ok((Applied::New, Some(plan)))
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
