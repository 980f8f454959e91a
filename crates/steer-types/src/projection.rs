//! Projected load per PoP for a proposed change (drain dry-runs and the
//! capacity rail).

use serde::{Deserialize, Serialize};

use crate::PopId;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopProjection {
    pub pop: PopId,
    pub capacity_rps: f64,
    pub current_rps: f64,
    pub projected_rps: f64,
    pub projected_utilisation: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    pub pops: Vec<PopProjection>,
    pub over_capacity: bool,
    pub summary: String,
}
