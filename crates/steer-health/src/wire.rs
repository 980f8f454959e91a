//! A health report read in place from its protobuf bytes.
//!
//! Ingest sees tens of thousands of reports a second; decoding each into
//! `steer_proto::v1::HealthReport` allocates a string per probe name, kind
//! and detail and a vector per list, only for [`crate::ingest`] to turn
//! them into an [`crate::aggregator::ObservedReport`] and drop them. A
//! [`ReportView`] borrows every string from the received bytes instead.
//!
//! It accepts exactly what prost accepts for `HealthReport` (the fuzz
//! target compares the two on arbitrary bytes): unknown fields and groups
//! are skipped, a known field with another wire type, a truncated value, a
//! bad varint or key, invalid UTF-8 in a string and over-deep group nesting
//! are errors; a repeated scalar field's last value wins, repeated messages
//! append and a map's later entry for a key replaces the earlier one.
//! [`ReportView::parse`] checks the whole message, nested ones included,
//! so the iterators afterwards cannot fail.

/// Why bytes are not a `HealthReport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// prost's default recursion limit, which bounds nested unknown groups.
const RECURSION_LIMIT: u32 = 100;

#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Bytes(&'a [u8]),
    Group,
}

fn varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(WireError("truncated varint"));
        };
        *buf = rest;
        if i == 9 && b > 1 {
            return Err(WireError("invalid varint"));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError("invalid varint"))
}

fn key(buf: &mut &[u8]) -> Result<(u32, u8), WireError> {
    let key = varint(buf)?;
    let key = u32::try_from(key).map_err(|_| WireError("invalid key"))?;
    let wire_type = (key & 7) as u8;
    if wire_type > 5 {
        return Err(WireError("invalid wire type"));
    }
    let tag = key >> 3;
    if tag == 0 {
        return Err(WireError("invalid tag 0"));
    }
    Ok((tag, wire_type))
}

fn take<'a>(buf: &mut &'a [u8], len: u64) -> Result<&'a [u8], WireError> {
    let len = usize::try_from(len).map_err(|_| WireError("buffer underflow"))?;
    if len > buf.len() {
        return Err(WireError("buffer underflow"));
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

/// Reads one value of `wire_type`; a group is read to its end group
/// (`depth` is what is left of the recursion limit).
fn value<'a>(
    buf: &mut &'a [u8],
    tag: u32,
    wire_type: u8,
    depth: u32,
) -> Result<Value<'a>, WireError> {
    match wire_type {
        0 => varint(buf).map(Value::Varint),
        1 => {
            let b = take(buf, 8)?;
            let mut raw = [0u8; 8];
            raw.copy_from_slice(b);
            Ok(Value::Fixed64(u64::from_le_bytes(raw)))
        }
        2 => {
            let len = varint(buf)?;
            take(buf, len).map(Value::Bytes)
        }
        3 => {
            skip_group(buf, tag, depth)?;
            Ok(Value::Group)
        }
        5 => take(buf, 4).map(|_| Value::Fixed32),
        _ => Err(WireError("unexpected end group")),
    }
}

fn skip_group(buf: &mut &[u8], tag: u32, depth: u32) -> Result<(), WireError> {
    if depth == 0 {
        return Err(WireError("recursion limit reached"));
    }
    loop {
        let (inner, wire_type) = key(buf)?;
        if wire_type == 4 {
            return if inner == tag {
                Ok(())
            } else {
                Err(WireError("unexpected end group"))
            };
        }
        if depth - 1 == 0 {
            return Err(WireError("recursion limit reached"));
        }
        value(buf, inner, wire_type, depth - 1)?;
    }
}

/// The fields of one message, in order.
#[derive(Clone, Copy)]
struct Fields<'a> {
    buf: &'a [u8],
    depth: u32,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8], depth: u32) -> Self {
        Self { buf, depth }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let read = key(&mut self.buf)
            .and_then(|(tag, wt)| value(&mut self.buf, tag, wt, self.depth).map(|v| (tag, v)));
        if read.is_err() {
            self.buf = &[];
        }
        Some(read)
    }
}

fn uint(v: Value<'_>) -> Result<u64, WireError> {
    match v {
        Value::Varint(n) => Ok(n),
        _ => Err(WireError("wrong wire type for a varint field")),
    }
}

fn double(v: Value<'_>) -> Result<f64, WireError> {
    match v {
        Value::Fixed64(bits) => Ok(f64::from_bits(bits)),
        _ => Err(WireError("wrong wire type for a double field")),
    }
}

fn bytes(v: Value<'_>) -> Result<&[u8], WireError> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err(WireError("wrong wire type for a length-delimited field")),
    }
}

fn string(v: Value<'_>) -> Result<&str, WireError> {
    std::str::from_utf8(bytes(v)?).map_err(|_| WireError("string is not UTF-8"))
}

/// One `ProbeResult`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProbeView<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub ok: bool,
    pub detail: &'a str,
    pub latency_ms: u32,
}

impl<'a> ProbeView<'a> {
    fn parse(buf: &'a [u8], depth: u32) -> Result<Self, WireError> {
        let mut p = Self::default();
        for field in Fields::new(buf, depth) {
            match field? {
                (1, v) => p.name = string(v)?,
                (2, v) => p.kind = string(v)?,
                (3, v) => p.ok = uint(v)? != 0,
                (4, v) => p.detail = string(v)?,
                (5, v) => p.latency_ms = uint(v)? as u32,
                _ => {}
            }
        }
        Ok(p)
    }
}

/// One `ServiceHealth`; its probes are read on demand.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServiceView<'a> {
    pub service: &'a str,
    pub status: i32,
    pub requests_total: u64,
    pub requests_failed: u64,
    pub sli_present: bool,
    pub requests_slow: u64,
    pub slow_present: bool,
    buf: &'a [u8],
    depth: u32,
}

impl<'a> ServiceView<'a> {
    fn parse(buf: &'a [u8], depth: u32) -> Result<Self, WireError> {
        let mut s = Self {
            buf,
            depth,
            ..Self::default()
        };
        for field in Fields::new(buf, depth) {
            match field? {
                (1, v) => s.service = string(v)?,
                (2, v) => s.status = uint(v)? as i32,
                (3, v) => {
                    ProbeView::parse(bytes(v)?, depth - 1)?;
                }
                (4, v) => s.requests_total = uint(v)?,
                (5, v) => s.requests_failed = uint(v)?,
                (6, v) => s.sli_present = uint(v)? != 0,
                (7, v) => s.requests_slow = uint(v)?,
                (8, v) => s.slow_present = uint(v)? != 0,
                _ => {}
            }
        }
        Ok(s)
    }

    pub fn probes(&self) -> impl Iterator<Item = ProbeView<'a>> + 'a {
        let depth = self.depth;
        Fields::new(self.buf, depth).filter_map(move |f| match f {
            Ok((3, Value::Bytes(b))) => ProbeView::parse(b, depth - 1).ok(),
            _ => None,
        })
    }
}

/// One `PeerObservation`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PeerView<'a> {
    pub pop: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub reachable: bool,
    pub detail: &'a str,
    pub latency_ms: u32,
}

impl<'a> PeerView<'a> {
    fn parse(buf: &'a [u8], depth: u32) -> Result<Self, WireError> {
        let mut p = Self::default();
        for field in Fields::new(buf, depth) {
            match field? {
                (1, v) => p.pop = string(v)?,
                (2, v) => p.name = string(v)?,
                (3, v) => p.kind = string(v)?,
                (4, v) => p.reachable = uint(v)? != 0,
                (5, v) => p.detail = string(v)?,
                (6, v) => p.latency_ms = uint(v)? as u32,
                _ => {}
            }
        }
        Ok(p)
    }
}

/// One `region_load_rps` map entry (missing key or value: the default).
fn region_entry(buf: &[u8], depth: u32) -> Result<(&str, f64), WireError> {
    let (mut region, mut rps) = ("", 0.0);
    for field in Fields::new(buf, depth) {
        match field? {
            (1, v) => region = string(v)?,
            (2, v) => rps = double(v)?,
            _ => {}
        }
    }
    Ok((region, rps))
}

/// A `HealthReport`, borrowed from its bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReportView<'a> {
    pub pop: &'a str,
    pub sequence: u64,
    pub agent_time_unix_ms: i64,
    pub capacity_rps: f64,
    pub load_rps: f64,
    pub agent_instance: u64,
    pub bandwidth_bps: f64,
    pub error_ratio: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub agent_started_unix_ms: i64,
    pub ack_interval_ms: u32,
    /// How many `services`, `peers` and `region_load_rps` entries there
    /// are (map entries before duplicate keys collapse).
    pub service_count: usize,
    pub peer_count: usize,
    pub region_entries: usize,
    buf: &'a [u8],
}

impl<'a> ReportView<'a> {
    /// Checks the whole message and reads its scalar fields.
    pub fn parse(buf: &'a [u8]) -> Result<Self, WireError> {
        let depth = RECURSION_LIMIT;
        let mut r = Self {
            buf,
            ..Self::default()
        };
        for field in Fields::new(buf, depth) {
            match field? {
                (1, v) => r.pop = string(v)?,
                (2, v) => r.sequence = uint(v)?,
                (3, v) => r.agent_time_unix_ms = uint(v)? as i64,
                (4, v) => {
                    ServiceView::parse(bytes(v)?, depth - 1)?;
                    r.service_count += 1;
                }
                (5, v) => r.capacity_rps = double(v)?,
                (6, v) => r.load_rps = double(v)?,
                (7, v) => r.agent_instance = uint(v)?,
                (8, v) => r.bandwidth_bps = double(v)?,
                (9, v) => r.error_ratio = double(v)?,
                (10, v) => r.latency_p50_ms = double(v)?,
                (11, v) => r.latency_p99_ms = double(v)?,
                (12, v) => {
                    PeerView::parse(bytes(v)?, depth - 1)?;
                    r.peer_count += 1;
                }
                (13, v) => r.agent_started_unix_ms = uint(v)? as i64,
                (14, v) => {
                    region_entry(bytes(v)?, depth - 1)?;
                    r.region_entries += 1;
                }
                (15, v) => r.ack_interval_ms = uint(v)? as u32,
                _ => {}
            }
        }
        Ok(r)
    }

    fn nested(&self, tag: u32) -> impl Iterator<Item = &'a [u8]> + 'a {
        Fields::new(self.buf, RECURSION_LIMIT).filter_map(move |f| match f {
            Ok((t, Value::Bytes(b))) if t == tag => Some(b),
            _ => None,
        })
    }

    pub fn services(&self) -> impl Iterator<Item = ServiceView<'a>> + 'a {
        self.nested(4)
            .filter_map(|b| ServiceView::parse(b, RECURSION_LIMIT - 1).ok())
    }

    pub fn peers(&self) -> impl Iterator<Item = PeerView<'a>> + 'a {
        self.nested(12)
            .filter_map(|b| PeerView::parse(b, RECURSION_LIMIT - 1).ok())
    }

    /// `region_load_rps` entries in wire order; a later entry for the same
    /// region replaces an earlier one, as in a map.
    pub fn region_load(&self) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.nested(14)
            .filter_map(|b| region_entry(b, RECURSION_LIMIT - 1).ok())
    }
}

#[cfg(all(test, feature = "grpc"))]
#[path = "wire_tests.rs"]
pub(crate) mod tests;
