//! Service level objectives over real edge traffic.
//!
//! Agents report cumulative request counters (as the edge proxy's
//! Prometheus endpoint exposes them); [`counters::Baseline`] turns them into
//! increments without counting a reset or a restart twice. Increments go
//! into a [`history::History`] per SLO × region × PoP: one-minute buckets
//! for the last hours, one-hour buckets for the whole SLO window, so memory
//! is bounded whatever the traffic. [`eval`] computes the error budget,
//! burn rates per window and the multi-window, multi-burn-rate alerts of
//! the SRE Workbook, with a minimum-events guard for low-traffic SLOs and
//! corrections (time ranges excluded from the budget).
//!
//! Everything here is pure: time is passed in, nothing reads a clock.

pub mod alerts;
pub mod counters;
pub mod engine;
pub mod eval;
pub mod history;
pub mod promtext;
pub mod rules;
pub mod spec;
pub mod steering;

pub use engine::{SliSample, SloEngine, SloState};
pub use eval::{AlertState, Evaluation, Severity, WindowBurn, evaluate};
pub use history::{Counts, History};
pub use spec::{AlertRule, Correction, Objective, SloSpec, Steering, default_alert_rules};
pub use steering::{BudgetShift, BudgetSteering};
