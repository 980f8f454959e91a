//! Names looked up by their wire form. A query's name is read straight off
//! the packet into a lowercase buffer on the stack and found in an index
//! of the names that exist (steered names, every zone node), which hands
//! back the stored `LowerName`: no hickory `Name` is built, allocated or
//! lowercased for the names a server answers most. A name not in the index
//! is denied from it too when its closest indexed ancestor has nothing
//! below it (no cut, no wildcard): NXDOMAIN, the other answer authoritative
//! servers give most. The rest (wildcard synthesis, below a cut, outside
//! our zones) take hickory's reader.

use std::{
    collections::hash_map::Entry,
    hash::{BuildHasher, Hasher},
    sync::Arc,
};

use hickory_server::proto::rr::LowerName;

use crate::{view::HashMap, zone::Node};

/// Longest name on the wire (RFC 1035 3.1).
const MAX_NAME: usize = 255;

/// A name as it is on the wire, lowercased (ASCII), root label included.
pub(crate) struct WireName {
    buf: [u8; MAX_NAME],
    len: usize,
}

impl WireName {
    pub(crate) const EMPTY: Self = Self {
        buf: [0; MAX_NAME],
        len: 0,
    };

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl Default for WireName {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// Reads the uncompressed name at `at` in `packet` into `name`,
/// lowercased; returns the index just past it. `None` for a compression
/// pointer, an extended label type, a name over 255 bytes or a short
/// packet: hickory's reader decides about those. (Filled in place: the
/// name is returned by neither value nor copy on the query path.)
pub(crate) fn read(packet: &[u8], at: usize, name: &mut WireName) -> Option<usize> {
    name.len = 0;
    let mut i = at;
    loop {
        let len = usize::from(*packet.get(i)?);
        if len > 63 {
            return None;
        }
        let label = packet.get(i + 1..i + 1 + len)?;
        let out = name.buf.get_mut(name.len..name.len + 1 + len)?;
        out[0] = len as u8;
        for (o, b) in out[1..].iter_mut().zip(label) {
            *o = b.to_ascii_lowercase();
        }
        name.len += 1 + len;
        i += 1 + len;
        if len == 0 {
            return Some(i);
        }
    }
}

/// Writes the wire form of a stored name into `buf`, lowercased (a
/// `LowerName` is, but its labels may come from anywhere). `None` only
/// past 255 bytes, which a name never is.
fn write_wire(name: &LowerName, buf: &mut WireName) -> Option<()> {
    buf.len = 0;
    for label in name.iter() {
        let out = buf.buf.get_mut(buf.len..buf.len + 1 + label.len())?;
        out[0] = label.len() as u8;
        for (o, b) in out[1..].iter_mut().zip(label) {
            *o = b.to_ascii_lowercase();
        }
        buf.len += 1 + label.len();
    }
    *buf.buf.get_mut(buf.len)? = 0;
    buf.len += 1;
    Some(())
}

/// The wire form of a stored name (lower-case), for a key.
pub(crate) fn wire(name: &LowerName) -> Box<[u8]> {
    let mut buf = WireName::default();
    let _ = write_wire(name, &mut buf);
    buf.as_bytes().into()
}

/// A name that exists, as the index knows it.
#[derive(Debug)]
pub(crate) struct Known {
    pub(crate) name: LowerName,
    /// The zone that answers it (the longest origin above it), for every
    /// type but DS (see `answer::zone_of`).
    pub(crate) zone: usize,
    /// A steered name: the view's services decide it. Its place in the
    /// steered names the index was built with, which is its service's in
    /// the view (see `view::Services::at`).
    pub(crate) steered: Option<u32>,
    /// No name below it exists but those indexed, and none is synthesized
    /// or referred (it is a node of `zone`, not at or below a cut, with
    /// no wildcard child): a name under it that is not indexed does not
    /// exist.
    pub(crate) denies_below: bool,
    /// Its node in `zone` (see [`NameIndex::build`]), so answering it
    /// needs no second lookup by `LowerName`, which hashes and compares
    /// label by label.
    pub(crate) node: Option<Arc<Node>>,
}

/// The names that exist, by wire form.
#[derive(Default)]
pub(crate) struct NameIndex(HashMap<Box<[u8]>, Known>);

impl NameIndex {
    /// Indexes every name of `zones` (each zone's origin, then its names,
    /// each with whether it denies the names below it, see
    /// [`Known::denies_below`]); the names in `steered` are marked so.
    pub(crate) fn build<'a>(
        zones: impl Iterator<
            Item = (
                &'a LowerName,
                Vec<(&'a LowerName, bool, Option<&'a Arc<Node>>)>,
            ),
        >,
        steered: &[LowerName],
    ) -> Self {
        let zones: Vec<_> = zones.collect();
        let origins: HashMap<Box<[u8]>, usize> = zones
            .iter()
            .enumerate()
            .map(|(i, (origin, _))| (wire(origin), i))
            .collect();
        let steered: HashMap<&LowerName, u32> = steered
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((n, u32::try_from(i).ok()?)))
            .collect();
        let mut map: HashMap<Box<[u8]>, Known> = HashMap::default();
        for (i, (_, names)) in zones.iter().enumerate() {
            for &(name, denies, node) in names {
                let key = wire(name);
                // The longest origin is the longest suffix of the wire
                // form, at a label boundary, that is an origin.
                let Some(zone) = suffixes(&key).find_map(|s| origins.get(s).copied()) else {
                    continue;
                };
                // Only the zone that answers the name knows what is below
                // it (a parent's glue under a child zone of ours is not).
                let denies_below = denies && zone == i;
                // Its node in the zone that answers it.
                let node = node.filter(|_| zone == i).map(Arc::clone);
                match map.entry(key) {
                    Entry::Occupied(mut known) => {
                        let known = known.get_mut();
                        known.denies_below |= denies_below;
                        if node.is_some() {
                            known.node = node;
                        }
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(Known {
                            name: name.clone(),
                            zone,
                            steered: steered.get(name).copied(),
                            denies_below,
                            node,
                        });
                    }
                }
            }
        }
        Self(map)
    }

    /// The closest ancestor of `wire` (a name not in the index) that is,
    /// when it denies the names below it: then `wire` does not exist, and
    /// that ancestor's zone answers NXDOMAIN.
    pub(crate) fn denied(&self, wire: &[u8]) -> Option<&Known> {
        suffixes(wire)
            .skip(1)
            .find_map(|s| self.0.get(s))
            .filter(|k| k.denies_below)
    }

    /// The name with this wire form, and its key (the same bytes, held
    /// by the index).
    pub(crate) fn get(&self, wire: &[u8]) -> Option<(&[u8], &Known)> {
        self.0.get_key_value(wire).map(|(k, v)| (&**k, v))
    }
}

/// Values by name, keyed by the name's lowercase wire form: a query name
/// read off the packet is found by hashing its bytes once, where a
/// `LowerName` key is hashed and compared label by label.
pub(crate) struct ByName<V>(HashMap<Box<[u8]>, V>);

impl<V> Default for ByName<V> {
    fn default() -> Self {
        Self(HashMap::default())
    }
}

impl<V> ByName<V> {
    pub(crate) fn insert(&mut self, name: &LowerName, value: V) {
        self.0.insert(wire(name), value);
    }

    pub(crate) fn get(&self, name: &LowerName) -> Option<&V> {
        let mut buf = WireName::default();
        write_wire(name, &mut buf)?;
        self.get_wire(buf.as_bytes())
    }

    /// By the lowercase wire form (as [`read`] gives it).
    pub(crate) fn get_wire(&self, wire: &[u8]) -> Option<&V> {
        self.0.get(wire)
    }
}

/// A wire name and every ancestor's wire form, longest first.
fn suffixes(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = Some(0usize);
    std::iter::from_fn(move || {
        let i = at?;
        let rest = wire.get(i..)?;
        let len = usize::from(*rest.first()?);
        at = (len > 0).then_some(i + 1 + len);
        Some(rest)
    })
}

impl std::fmt::Debug for NameIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NameIndex({} names)", self.0.len())
    }
}

/// The hash of the query path's tables: a multiply-rotate hash (as
/// rustc's FxHash, a word at a time) keyed per process. The tables are
/// filled from config, zone files and plans only and a query only probes
/// them, so flooding has nothing to grow, and the key keeps crafted names
/// from knowing which bucket they hit. SipHash was a tenth of the query
/// path; FNV a byte at a time still a few percent.
#[derive(Clone, Copy)]
pub(crate) struct FastHash(u64);

impl Default for FastHash {
    fn default() -> Self {
        use std::sync::OnceLock;
        static KEY: OnceLock<u64> = OnceLock::new();
        let key =
            *KEY.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64));
        Self(key)
    }
}

impl BuildHasher for FastHash {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

pub(crate) struct FastHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(K).rotate_left(26);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // Fold the high bits down: hashbrown picks buckets by the low bits
        // and tags by the top seven.
        let h = self.0.wrapping_mul(K);
        h ^ (h >> 32)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// The name at `at`, and the index past it.
    fn read(packet: &[u8], at: usize) -> Option<(WireName, usize)> {
        let mut name = WireName::default();
        let end = super::read(packet, at, &mut name)?;
        Some((name, end))
    }

    #[test]
    fn a_query_name_is_found_whatever_its_case() {
        let n = |s: &str| LowerName::from_str(s).unwrap();
        let (root, apex, app) = (n("."), n("example.test."), n("app.Example.test."));
        let zones = [
            (&root, vec![(&root, true, None)]),
            (&apex, vec![(&apex, true, None), (&app, true, None)]),
        ];
        let index = NameIndex::build(
            zones.iter().map(|(o, v)| (*o, v.clone())),
            std::slice::from_ref(&app),
        );
        let packet = b"\x03ApP\x07EXAMPLE\x04test\x00\x00\x01";
        let (name, end) = read(packet, 0).unwrap();
        assert_eq!(end, packet.len() - 2);
        assert_eq!(name.as_bytes(), b"\x03app\x07example\x04test\x00");
        let (key, found) = index.get(name.as_bytes()).unwrap();
        assert_eq!(key, name.as_bytes());
        assert_eq!(found.name, n("app.example.test."));
        assert_eq!((found.zone, found.steered), (1, Some(0)));
        let (wire, _) = read(b"\x07example\x04test\x00", 0).unwrap();
        let found = index.get(wire.as_bytes()).unwrap().1;
        assert_eq!((found.zone, found.steered), (1, None));
        let (wire, _) = read(b"\x00", 0).unwrap();
        assert!(index.get(wire.as_bytes()).unwrap().1.name.is_root());
        let (other, _) = read(b"\x03www\x07example\x04test\x00", 0).unwrap();
        assert!(index.get(other.as_bytes()).is_none());
    }

    #[test]
    fn by_name_finds_a_value_by_name_and_by_wire_form() {
        let n = |s: &str| LowerName::from_str(s).unwrap();
        let mut map = ByName::default();
        map.insert(&n("App.Example.test."), 7);
        map.insert(&n("."), 1);
        assert_eq!(map.get(&n("app.example.test.")), Some(&7));
        assert_eq!(map.get_wire(b"\x03app\x07example\x04test\x00"), Some(&7));
        let (packet, _) = read(b"\x03APP\x07example\x04TEST\x00", 0).unwrap();
        assert_eq!(map.get_wire(packet.as_bytes()), Some(&7));
        assert_eq!(map.get(&n(".")), Some(&1));
        assert!(map.get(&n("www.example.test.")).is_none());
        assert!(map.get(&n("app.example.test.")).is_some());
    }

    #[test]
    fn a_name_belongs_to_the_longest_origin_above_it() {
        let n = |s: &str| LowerName::from_str(s).unwrap();
        let (parent, child) = (n("example.test."), n("child.example.test."));
        // The parent holds glue below its cut; the child zone is ours too
        // and answers for it (it has no such name: NXDOMAIN there).
        let glue = n("ns.child.example.test.");
        let zones = [
            (
                &parent,
                vec![
                    (&parent, true, None),
                    (&child, false, None),
                    (&glue, false, None),
                ],
            ),
            (&child, vec![(&child, true, None)]),
        ];
        let index = NameIndex::build(zones.iter().map(|(o, v)| (*o, v.clone())), &[]);
        let zone = |s: &str| index.get(&wire(&n(s))).unwrap().1.zone;
        assert_eq!(zone("example.test."), 0);
        assert_eq!(zone("child.example.test."), 1);
        assert_eq!(zone("ns.child.example.test."), 1);
        // Names that are not: denied by the zone that answers them, unless
        // that zone does not know what is below the closest name (glue of
        // the parent's under the child's apex).
        let denied = |s: &str| index.denied(&wire(&n(s))).map(|k| k.zone);
        assert_eq!(denied("x.example.test."), Some(0));
        assert_eq!(denied("a.b.example.test."), Some(0));
        assert_eq!(denied("x.child.example.test."), Some(1));
        assert_eq!(denied("x.ns.child.example.test."), None);
        assert_eq!(denied("example.com."), None);
        let all: Vec<_> = suffixes(b"\x02ns\x05child\x00").collect();
        assert_eq!(
            all,
            [&b"\x02ns\x05child\x00"[..], b"\x05child\x00", b"\x00"]
        );
    }

    #[test]
    fn what_hickory_must_decide_is_not_read_here() {
        // A compression pointer, an extended label type, a short packet, a
        // name over 255 bytes.
        assert!(read(b"\x03app\xc0\x0c", 0).is_none());
        assert!(read(b"\x41app\x00", 0).is_none());
        assert!(read(b"\x03ap", 0).is_none());
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert!(read(&long, 0).is_none());
        // 4 x 64 - 1 = 255 bytes with the root: the longest legal name.
        let mut max = Vec::new();
        for _ in 0..3 {
            max.push(63);
            max.extend_from_slice(&[b'a'; 63]);
        }
        max.push(61);
        max.extend_from_slice(&[b'a'; 61]);
        max.push(0);
        assert_eq!(max.len(), 255);
        assert_eq!(read(&max, 0).unwrap().0.as_bytes().len(), 255);
    }
}
