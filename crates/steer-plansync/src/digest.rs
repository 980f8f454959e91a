//! The content hash, kept so that a delta updates it in time proportional
//! to the delta (`operator.proto`, PlanUpdate, spells out the definition).
//!
//! Each entry has a digest over its framed key and body; digests fall into
//! 4,096 buckets by their first 12 bits; a bucket's digest covers its
//! entry digests in ascending order, and the content hash covers the
//! non-empty buckets in order. A delta touches the buckets of the entries
//! it changes, then the top level (at most 4,096 × 38 bytes). Every level
//! is SHA-256 over length-fixed or framed input, so two contents share a
//! hash only through a SHA-256 collision.

use std::collections::BTreeMap;

use ring::digest::SHA256;

use crate::ContentHash;

/// SHA-256 of one entry, framed: u32-BE key length, key, u64-BE body
/// length, body.
pub(crate) type EntryDigest = [u8; 32];

const BUCKET_BITS: u32 = 12;
const BUCKETS: usize = 1 << BUCKET_BITS;
const DOMAIN: &[u8] = b"steer.plan.content.v2";

pub(crate) fn entry_digest(key: &str, body: &[u8]) -> EntryDigest {
    // Framed into one buffer: one hash call per entry instead of four
    // (per-call overhead dominates for entries this small).
    let mut framed = Vec::with_capacity(12 + key.len() + body.len());
    // Keys are short and bodies under the message limit, so the casts
    // cannot truncate (a key over 4 GiB could not be sent).
    framed.extend_from_slice(&(key.len() as u32).to_be_bytes());
    framed.extend_from_slice(key.as_bytes());
    framed.extend_from_slice(&(body.len() as u64).to_be_bytes());
    framed.extend_from_slice(body);
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&SHA256, &framed).as_ref());
    out
}

fn bucket_of(d: &EntryDigest) -> usize {
    (usize::from(d[0]) << 4) | usize::from(d[1] >> 4)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Bucket {
    /// Ascending, no duplicates (keys are unique, so digests are).
    members: Vec<EntryDigest>,
    digest: [u8; 32],
}

impl Bucket {
    fn seal(&mut self) {
        self.digest
            .copy_from_slice(ring::digest::digest(&SHA256, self.members.as_flattened()).as_ref());
    }
}

/// The hash state of a content: every bucket's members and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContentDigest {
    buckets: Vec<Bucket>,
    root: ContentHash,
}

impl Default for ContentDigest {
    fn default() -> Self {
        Self::from_digests(std::iter::empty())
    }
}

/// Buckets a delta would change, copied and updated, with the content hash
/// they give; nothing is changed until [`ContentDigest::commit`].
#[derive(Debug)]
pub(crate) struct Staged {
    buckets: BTreeMap<usize, Bucket>,
    pub(crate) root: ContentHash,
}

impl ContentDigest {
    pub(crate) fn from_digests(digests: impl Iterator<Item = EntryDigest>) -> Self {
        let mut buckets = vec![Bucket::default(); BUCKETS];
        for d in digests {
            if let Some(b) = buckets.get_mut(bucket_of(&d)) {
                b.members.push(d);
            }
        }
        for b in &mut buckets {
            b.members.sort_unstable();
            b.members.dedup();
            b.seal();
        }
        let root = root(|i| buckets.get(i));
        Self { buckets, root }
    }

    pub(crate) fn root(&self) -> ContentHash {
        self.root
    }

    /// The hash after removing the entries digested `gone` and adding
    /// those digested `added`. A digest in `gone` that is not held is
    /// ignored (callers pass digests of held entries only).
    pub(crate) fn stage(&self, gone: &[EntryDigest], added: &[EntryDigest]) -> Staged {
        let mut touched: BTreeMap<usize, Bucket> = BTreeMap::new();
        let held = |i: usize| self.buckets.get(i).cloned().unwrap_or_default();
        for d in gone {
            let b = touched.entry(bucket_of(d)).or_insert_with_key(|i| held(*i));
            if let Ok(at) = b.members.binary_search(d) {
                b.members.remove(at);
            }
        }
        for d in added {
            let b = touched.entry(bucket_of(d)).or_insert_with_key(|i| held(*i));
            if let Err(at) = b.members.binary_search(d) {
                b.members.insert(at, *d);
            }
        }
        for b in touched.values_mut() {
            b.seal();
        }
        let root = root(|i| touched.get(&i).or_else(|| self.buckets.get(i)));
        Staged {
            buckets: touched,
            root,
        }
    }

    pub(crate) fn commit(&mut self, staged: Staged) {
        for (i, b) in staged.buckets {
            if let Some(slot) = self.buckets.get_mut(i) {
                *slot = b;
            }
        }
        self.root = staged.root;
    }
}

fn root<'a>(bucket: impl Fn(usize) -> Option<&'a Bucket>) -> ContentHash {
    // One buffer, one hash call: 4,096 small updates cost more than the
    // hashing itself.
    let mut top = Vec::with_capacity(DOMAIN.len() + BUCKETS * 38);
    top.extend_from_slice(DOMAIN);
    for i in 0..BUCKETS {
        let Some(b) = bucket(i).filter(|b| !b.members.is_empty()) else {
            continue;
        };
        // i < 4,096 and a bucket holds at most every entry of a plan.
        top.extend_from_slice(&(i as u16).to_be_bytes());
        top.extend_from_slice(&(b.members.len() as u32).to_be_bytes());
        top.extend_from_slice(&b.digest);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&SHA256, &top).as_ref());
    out
}
