//! Entries to typed decisions, whole or by delta.
//!
//! [`Typed`] is the decoded plan a follower holds, with where each entry's
//! decision lives in it (its slot). A delta then decodes only the entries
//! it changes and puts each in its slot: a PoP, a region, an announcement,
//! a whole answer set, a chunk of a large set (spliced in by its position),
//! or a large set's head (region and reason). What reshapes the plan — the
//! layout, a service's meta, a set whose chunks come or go — decodes the
//! changed part (a set) or, for the layout and services, the whole plan
//! again. Either way the result equals a full decode of the new content;
//! the property test in `tests.rs` holds the two paths equal.
//!
//! Staged then committed: [`Typed::patch`] reads only, so a refused update
//! leaves the follower as it was.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use prost::Message;
use steer_proto::v1 as pb;
use steer_types::{
    Announcement, AnswerSet, PlanBody, PopPlan, RailFired, RegionId, RegionPlan, ServiceId,
    ServicePlan, SetReason, WeightedTarget,
};

use crate::{DecodeError, LAYOUT, RAILS, chunk_key, codec};

/// Read access to a content's entries.
pub(crate) trait Lookup {
    fn get(&self, key: &str) -> Option<&[u8]>;
}

impl Lookup for BTreeMap<String, Arc<[u8]>> {
    fn get(&self, key: &str) -> Option<&[u8]> {
        BTreeMap::get(self, key).map(|v| &v[..])
    }
}

/// The content a delta would give, without building it: the touched keys'
/// new bodies (`None`: removed) over the held entries.
pub(crate) struct Overlay<'a> {
    pub(crate) base: &'a BTreeMap<String, Arc<[u8]>>,
    pub(crate) touched: &'a HashMap<&'a str, Option<&'a Arc<[u8]>>>,
}

impl Lookup for Overlay<'_> {
    fn get(&self, key: &str) -> Option<&[u8]> {
        match self.touched.get(key) {
            Some(new) => new.map(|v| &v[..]),
            None => self.base.get(key).map(|v| &v[..]),
        }
    }
}

/// Which answer set: a service's regional set by position, or its set for
/// unmapped clients (`regional: None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SetPos {
    service: usize,
    regional: Option<usize>,
}

/// Where an entry's decision lives in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Layout,
    Rails,
    Service(usize),
    Set(SetPos),
    Chunk(SetPos, u32),
    Pop(usize),
    Region(usize),
    Announcement(usize),
}

/// A chunked set's chunks: number and how many targets each holds, in
/// order (the set's targets are their concatenation).
type ChunkLens = Vec<(u32, usize)>;

#[derive(Debug)]
pub(crate) struct Typed {
    pub(crate) body: PlanBody,
    slots: HashMap<String, Slot>,
    chunked: HashMap<SetPos, ChunkLens>,
    /// False when the layout names one key twice (our encoder never does):
    /// one entry then has two places, and every delta decodes it all.
    incremental: bool,
}

fn message<M: Message + Default>(entries: &impl Lookup, key: &str) -> Result<M, DecodeError> {
    let bytes = entries.get(key).ok_or_else(|| DecodeError::Missing {
        key: key.to_owned(),
    })?;
    M::decode(bytes).map_err(|e| DecodeError::Invalid {
        key: key.to_owned(),
        error: e.to_string(),
    })
}

fn typed<M: Message + Default, T>(
    entries: &impl Lookup,
    key: &str,
    convert: impl FnOnce(M) -> Result<T, String>,
) -> Result<T, DecodeError> {
    convert(message(entries, key)?).map_err(|error| DecodeError::Invalid {
        key: key.to_owned(),
        error,
    })
}

/// A set's entry and its chunks, assembled.
fn read_set(entries: &impl Lookup, key: &str) -> Result<(AnswerSet, ChunkLens), DecodeError> {
    let (mut set, chunks) = typed(entries, key, codec::set_from)?;
    let mut lens = Vec::with_capacity(chunks.len());
    for n in chunks {
        let targets = typed(entries, &chunk_key(key, n), codec::chunk_from)?;
        lens.push((n, targets.len()));
        set.targets.extend(targets);
    }
    Ok((set, lens))
}

fn set_mut(body: &mut PlanBody, pos: SetPos) -> Option<&mut AnswerSet> {
    let service = body.services.get_mut(pos.service)?;
    match pos.regional {
        Some(i) => service.regional.get_mut(i),
        None => Some(&mut service.global),
    }
}

struct Decoder<'a, L> {
    entries: &'a L,
    slots: HashMap<String, Slot>,
    chunked: HashMap<SetPos, ChunkLens>,
    duplicate: bool,
}

impl<L: Lookup> Decoder<'_, L> {
    fn claim(&mut self, key: String, slot: Slot) {
        if self.slots.insert(key, slot).is_some() {
            self.duplicate = true;
        }
    }

    fn slotted<M: Message + Default, T>(
        &mut self,
        key: String,
        slot: Slot,
        convert: impl FnOnce(M) -> Result<T, String>,
    ) -> Result<T, DecodeError> {
        let value = typed(self.entries, &key, convert)?;
        self.claim(key, slot);
        Ok(value)
    }

    fn set(&mut self, key: String, pos: SetPos) -> Result<AnswerSet, DecodeError> {
        let (set, lens) = read_set(self.entries, &key)?;
        for (n, _) in &lens {
            self.claim(chunk_key(&key, *n), Slot::Chunk(pos, *n));
        }
        if !lens.is_empty() {
            self.chunked.insert(pos, lens);
        }
        self.claim(key, Slot::Set(pos));
        Ok(set)
    }

    fn service(&mut self, i: usize, id: &str) -> Result<ServicePlan, DecodeError> {
        let key = format!("service/{id}");
        let meta: pb::PlanServiceMeta = message(self.entries, &key)?;
        let max_records = usize::try_from(meta.max_records).map_err(|_| DecodeError::Invalid {
            key: key.clone(),
            error: format!("max_records {} does not fit", meta.max_records),
        })?;
        self.claim(key, Slot::Service(i));
        let regional: Vec<AnswerSet> = meta
            .regional
            .into_iter()
            .enumerate()
            .map(|(j, k)| {
                self.set(
                    k,
                    SetPos {
                        service: i,
                        regional: Some(j),
                    },
                )
            })
            .collect::<Result<_, _>>()?;
        let global = self.set(
            format!("set/{id}"),
            SetPos {
                service: i,
                regional: None,
            },
        )?;
        let canary = meta
            .canary
            .map(|c| codec::canary_from(c, regional.len()))
            .transpose()
            .map_err(|error| DecodeError::Invalid {
                key: format!("service/{id}"),
                error,
            })?;
        Ok(ServicePlan {
            id: ServiceId::from(meta.id.as_str()),
            fqdn: meta.fqdn,
            ttl: meta.ttl,
            max_records,
            regional,
            global,
            canary,
        })
    }
}

/// What a delta changes in the typed plan, decoded and ready to commit.
#[derive(Debug)]
pub(crate) enum Patch {
    /// The layout or a service changed: the whole plan, decoded again.
    Rebuild(Box<Typed>),
    Edits(Vec<Edit>),
}

#[derive(Debug)]
pub(crate) enum Edit {
    Rails(Vec<RailFired>),
    Pop(usize, PopPlan),
    Region(usize, RegionPlan),
    Announcement(usize, Announcement),
    /// A chunked set whose chunks stay the same: its region and reason.
    Head(SetPos, Option<RegionId>, SetReason),
    /// One chunk of a chunked set, spliced in at its place.
    Chunk(SetPos, u32, Vec<WeightedTarget>),
    /// A set decoded whole (with its chunks, if any).
    Set {
        pos: SetPos,
        key: String,
        set: AnswerSet,
        lens: ChunkLens,
        old: ChunkLens,
    },
}

impl Typed {
    /// Decodes a whole content, in the layout's order.
    pub(crate) fn decode(entries: &impl Lookup) -> Result<Self, DecodeError> {
        let mut d = Decoder {
            entries,
            slots: HashMap::new(),
            chunked: HashMap::new(),
            duplicate: false,
        };
        let layout: pb::PlanLayout = message(entries, LAYOUT)?;
        d.claim(LAYOUT.to_owned(), Slot::Layout);
        let rails = d.slotted(RAILS.to_owned(), Slot::Rails, codec::rails_from)?;
        let services = layout
            .services
            .iter()
            .enumerate()
            .map(|(i, id)| d.service(i, id))
            .collect::<Result<_, _>>()?;
        let pops = layout
            .pops
            .iter()
            .enumerate()
            .map(|(i, id)| d.slotted(format!("pop/{id}"), Slot::Pop(i), codec::pop_from))
            .collect::<Result<_, _>>()?;
        let regions = layout
            .regions
            .iter()
            .enumerate()
            .map(|(i, id)| d.slotted(format!("region/{id}"), Slot::Region(i), codec::region_from))
            .collect::<Result<_, _>>()?;
        let announcements = layout
            .announcements
            .into_iter()
            .enumerate()
            .map(|(i, k)| d.slotted(k, Slot::Announcement(i), codec::announcement_from))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            body: PlanBody {
                services,
                pops,
                regions,
                announcements,
                rails,
            },
            slots: d.slots,
            chunked: d.chunked,
            incremental: !d.duplicate,
        })
    }

    /// Decodes what the touched keys change (`true`: present in the new
    /// content, `false`: removed). Reads only.
    pub(crate) fn patch<'k>(
        &self,
        view: &Overlay<'_>,
        touched: impl Iterator<Item = (&'k str, bool)>,
    ) -> Result<Patch, DecodeError> {
        let rebuild = || Typed::decode(view).map(|t| Patch::Rebuild(Box::new(t)));
        if !self.incremental {
            return rebuild();
        }
        let mut edits = Vec::new();
        let mut rebuilt: HashSet<SetPos> = HashSet::new();
        let mut chunks = Vec::new();
        let mut removed_chunks = Vec::new();
        for (key, present) in touched {
            let Some(slot) = self.slots.get(key) else {
                // Not referenced by the plan held: either unreferenced or
                // a chunk of a set whose head changed (decoded with it).
                continue;
            };
            match (*slot, present) {
                (Slot::Layout | Slot::Service(_), _) => return rebuild(),
                (Slot::Chunk(pos, _), false) => removed_chunks.push(pos),
                // A referenced entry removed without the layout changing:
                // decoding the whole says which one is missing.
                (_, false) => return rebuild(),
                (Slot::Rails, true) => {
                    edits.push(Edit::Rails(typed(view, key, codec::rails_from)?))
                }
                (Slot::Pop(i), true) => {
                    edits.push(Edit::Pop(i, typed(view, key, codec::pop_from)?))
                }
                (Slot::Region(i), true) => {
                    edits.push(Edit::Region(i, typed(view, key, codec::region_from)?));
                }
                (Slot::Announcement(i), true) => edits.push(Edit::Announcement(
                    i,
                    typed(view, key, codec::announcement_from)?,
                )),
                (Slot::Chunk(pos, n), true) => chunks.push((key, pos, n)),
                (Slot::Set(pos), true) => {
                    let (set, numbers) = typed(view, key, codec::set_from)?;
                    let old = self.chunked.get(&pos).cloned().unwrap_or_default();
                    let same = numbers.len() == old.len()
                        && numbers.iter().zip(&old).all(|(n, (m, _))| n == m);
                    if same && !numbers.is_empty() {
                        edits.push(Edit::Head(pos, set.region, set.reason));
                        continue;
                    }
                    let (set, lens) = if same {
                        (set, Vec::new())
                    } else {
                        read_set(view, key)?
                    };
                    // A new chunk's key must not be another entry's slot.
                    let clash = lens.iter().any(|(n, _)| {
                        self.slots
                            .get(&chunk_key(key, *n))
                            .is_some_and(|s| !matches!(s, Slot::Chunk(p, _) if *p == pos))
                    });
                    if clash {
                        return rebuild();
                    }
                    rebuilt.insert(pos);
                    edits.push(Edit::Set {
                        pos,
                        key: key.to_owned(),
                        set,
                        lens,
                        old,
                    });
                }
            }
        }
        if removed_chunks.iter().any(|pos| !rebuilt.contains(pos)) {
            // A chunk gone while its set still lists it.
            return rebuild();
        }
        for (key, pos, n) in chunks {
            if !rebuilt.contains(&pos) {
                edits.push(Edit::Chunk(pos, n, typed(view, key, codec::chunk_from)?));
            }
        }
        Ok(Patch::Edits(edits))
    }

    pub(crate) fn commit(&mut self, patch: Patch) {
        match patch {
            Patch::Rebuild(t) => *self = *t,
            Patch::Edits(edits) => {
                for e in edits {
                    self.edit(e);
                }
            }
        }
    }

    fn edit(&mut self, e: Edit) {
        fn put<T>(v: &mut [T], i: usize, x: T) {
            if let Some(slot) = v.get_mut(i) {
                *slot = x;
            }
        }
        let body = &mut self.body;
        match e {
            Edit::Rails(r) => body.rails = r,
            Edit::Pop(i, p) => put(&mut body.pops, i, p),
            Edit::Region(i, r) => put(&mut body.regions, i, r),
            Edit::Announcement(i, a) => put(&mut body.announcements, i, a),
            Edit::Head(pos, region, reason) => {
                if let Some(set) = set_mut(body, pos) {
                    set.region = region;
                    set.reason = reason;
                }
            }
            Edit::Chunk(pos, n, targets) => {
                let (Some(lens), Some(set)) = (self.chunked.get_mut(&pos), set_mut(body, pos))
                else {
                    return;
                };
                let mut start = 0;
                for (m, len) in lens.iter_mut() {
                    if *m == n {
                        let end = start + *len;
                        if end <= set.targets.len() {
                            *len = targets.len();
                            set.targets.splice(start..end, targets);
                        }
                        return;
                    }
                    start += *len;
                }
            }
            Edit::Set {
                pos,
                key,
                set,
                lens,
                old,
            } => {
                for (n, _) in &old {
                    self.slots.remove(&chunk_key(&key, *n));
                }
                for (n, _) in &lens {
                    self.slots.insert(chunk_key(&key, *n), Slot::Chunk(pos, *n));
                }
                if lens.is_empty() {
                    self.chunked.remove(&pos);
                } else {
                    self.chunked.insert(pos, lens);
                }
                if let Some(held) = set_mut(body, pos) {
                    *held = set;
                }
            }
        }
    }
}
