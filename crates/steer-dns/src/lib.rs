//! Authoritative DNS for Steer.
//!
//! The control plane publishes Plans; [`DnsView::compile`] turns a Plan plus
//! the static zones and client map into a query-ready view (pre-built
//! records, a prefix trie for client regions, pre-hashed PoP seeds), and
//! [`serve`] answers every query, over UDP and TCP alike, through one
//! request pipeline from the current view with a single lock-free `load`.
//! A plan rebuilds the steering tables; static zones are compiled when they
//! change.
//!
//! This crate knows the Plan, never the policy or the store.

mod answer;
#[cfg(target_os = "linux")]
mod batched;
mod calibrate;
mod edns;
mod explain;
mod frag;
mod geo;
mod handler;
mod ident;
mod keys;
mod metrics;
mod names;
mod netmap;
mod publisher;
mod query;
mod rollover;
mod rrl;
mod select;
mod sigcache;
mod sign;
mod signers;
mod tcp;
mod udp;
mod view;
mod wire;
mod zone;

pub use answer::{Answer, Answered, ClientInfo, MAX_CNAME_CHAIN, Owner, Question, Section, answer};
pub use calibrate::{ClientSamples, ROUNDS_PER_GENERATION};
pub use explain::explain;
pub use handler::{DnsHandler, serve};
pub use keys::KeyError;
pub use publisher::{ViewInputs, ViewPublisher};
pub use rrl::{RateLimiter, RrlAction};
pub use select::{MAX_PICK, pick, pick_into, subnet_key};
pub use signers::DsLookup;
pub use tcp::raise_nofile_limit;
pub use udp::{UdpOutcome, respond_tcp, respond_udp, respond_udp_general, spawn_udp_workers};
pub use view::{DnsView, ViewError};

/// UDP payload size we advertise and cap responses at (DNS flag day 2020).
pub const DEFAULT_UDP_PAYLOAD: u16 = 1232;
