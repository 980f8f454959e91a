//! Steer's domain vocabulary, shared by every other crate.
//!
//! This crate is pure: no tokio, no clocks, no sockets. Time enters as a
//! [`Timestamp`] value chosen by the caller, so everything built on these
//! types can be replayed and property-tested.

pub mod answers;
pub mod audit;
pub mod auth;
pub mod bgp;
pub mod delivery;
mod dns;
pub mod explain;
pub mod health;
pub mod health_guard;
mod ids;
mod intent;
mod plan;
pub mod projection;
mod reason;
pub mod status;
pub mod status_doc;
mod time;
pub mod timeline;
mod topology;
mod zone;

pub use dns::{
    DnsSettings, DnssecDs, DnssecKeyState, DnssecZone, GeoSettings, GslbSettings, RrlSettings,
    Selection, TcpLimits,
};
pub use ids::{PopId, RegionId, ServiceId};
pub use intent::{Drain, DrainMode, DrainScope, IntentId, Intents, WeightOverride};
pub use plan::{
    AnnounceState, Announcement, AnswerSet, BudgetMove, Canary, Degradation, PERMILLE, Plan,
    PlanBody, PlanEvidence, PopHealth, PopPlan, RegionPlan, ServiceDrain, ServiceFigures,
    ServicePlan, WeightedTarget,
};
pub use reason::{
    AnnounceReason, DemandSource, RailFired, SetBasis, SetFigures, SetReason, SoftDrainPhase,
};
pub use time::Timestamp;
pub use topology::{
    ClientNetwork, HealthSettings, PolicySettings, Pop, Region, RegionLatency, Service, Topology,
    UnknownHealth,
};
pub use zone::{RecordData, Soa, StaticRecord, Zone};
