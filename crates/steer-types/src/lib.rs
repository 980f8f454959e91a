//! Steer's domain vocabulary, shared by every other crate.
//!
//! This crate is pure: no tokio, no clocks, no sockets. Time enters as a
//! [`Timestamp`] value chosen by the caller, so everything built on these
//! types can be replayed and property-tested.

mod dns;
pub mod health;
mod ids;
mod intent;
mod plan;
pub mod status;
mod time;
mod topology;
mod zone;

pub use dns::{DnsSettings, GslbSettings, RrlSettings, Selection};
pub use ids::{PopId, RegionId, ServiceId};
pub use intent::{Drain, DrainMode, DrainScope, IntentId, Intents};
pub use plan::{
    AnnounceState, Announcement, AnswerSet, PERMILLE, Plan, PlanBody, PopHealth, PopPlan,
    RegionPlan, ServicePlan, WeightedTarget,
};
pub use time::Timestamp;
pub use topology::{
    ClientNetwork, HealthSettings, PolicySettings, Pop, Region, Service, Topology, UnknownHealth,
};
pub use zone::{RecordData, Soa, StaticRecord, Zone};
