//! Health aggregation.
//!
//! [`aggregator`] is the pure core: it turns a stream of observed reports into
//! a [`steer_types::health::HealthSnapshot`] with hysteresis and staleness,
//! taking time as an argument. [`ingest`] is the IO shell: the gRPC stream
//! that validates agent reports and hands them to the control loop.

pub mod aggregator;
pub mod damping;
pub mod guard;
#[cfg(feature = "grpc")]
pub mod ingest;
#[cfg(feature = "grpc")]
pub mod ingest_route;
pub mod sequence;
pub mod wire;

pub use aggregator::{
    AggregatorSettings, HealthAggregator, Observation, ObservedReport, PeerObservation,
    SliCounters, Transition,
};
pub use guard::GuardEvent;
