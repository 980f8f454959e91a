//! Static authoritative zone data (apex SOA/NS and plain records).

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Soa {
    pub mname: String,
    pub rname: String,
    pub serial: u32,
    pub refresh: i32,
    pub retry: i32,
    pub expire: i32,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Ns(String),
    Mx {
        preference: u16,
        exchange: String,
    },
    Txt(String),
    /// A DNAME (RFC 6672): names below the owner are redirected to the
    /// same names below this target (fully qualified, lower-case).
    Dname(String),
    /// Any other type (SRV, CAA, PTR, multi-string TXT, ...) as its type
    /// code and uncompressed wire-format RDATA (RFC 3597), as loaded from a
    /// zone file.
    Wire {
        rtype: u16,
        rdata: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaticRecord {
    /// Fully qualified, lower-case, trailing dot.
    pub name: String,
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    /// Fully qualified, lower-case, trailing dot.
    pub origin: String,
    pub soa: Soa,
    pub soa_ttl: u32,
    pub ns: Vec<String>,
    pub ns_ttl: u32,
    pub records: Vec<StaticRecord>,
}
