//! The answer to "why did this client get this answer?".

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub plan_version: u64,
    /// Ordered decision trace, one step per line.
    pub steps: Vec<String>,
    /// Records as DNS would answer them, in order.
    pub answers: Vec<String>,
    pub ttl: u32,
    pub ecs_scope: u8,
    pub region: Option<String>,
}
