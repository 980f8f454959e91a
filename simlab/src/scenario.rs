//! Scenario files: the world, the demand, the resolvers, the faults and
//! what must hold. Unknown keys are refused.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default = "default_seed")]
    pub(crate) seed: u64,
    /// More seeds the expectations must also hold on (each is a full run).
    #[serde(default)]
    pub(crate) seeds: Vec<u64>,
    pub(crate) duration_s: u64,
    #[serde(default = "default_step")]
    pub(crate) step_ms: u64,
    /// "steer" (the real control loop) or "naive" (nearest-first failover,
    /// for comparison).
    #[serde(default = "default_policy")]
    pub(crate) policy: String,
    pub(crate) world: World,
    #[serde(default)]
    pub(crate) resolvers: Resolvers,
    #[serde(default)]
    pub(crate) faults: Vec<Fault>,
    #[serde(default)]
    pub(crate) expect: Expect,
    /// Runs the scenario's `config_change` both ways (at once and staged)
    /// and compares them (`simlab compare` does so for any scenario).
    #[serde(default)]
    pub(crate) compare_rollouts: bool,
}

fn default_seed() -> u64 {
    1
}
fn default_step() -> u64 {
    1000
}
fn default_policy() -> String {
    "steer".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct World {
    /// A steerd config (topology, zones, health and policy settings),
    /// relative to the scenario file.
    pub(crate) config: PathBuf,
    /// Base demand in rps per client region id (and `global`).
    pub(crate) demand_rps: BTreeMap<String, f64>,
    #[serde(default)]
    pub(crate) curve: Curve,
    /// Agents report this often.
    #[serde(default = "default_report")]
    pub(crate) report_interval_ms: u64,
    /// How many other PoPs probe each PoP (peer observations for quorum).
    #[serde(default = "default_observers")]
    pub(crate) peer_observers: usize,
    /// Agents attribute their PoP's load to client regions
    /// (`region_load_rps`), as an edge proxy that knows client addresses
    /// can.
    #[serde(default)]
    pub(crate) region_load: bool,
    /// Agents report their PoP's real capacity (`capacity_rps` in the
    /// agent config), which the policy prefers to steerd's config. `false`:
    /// agents leave it out and the policy goes by the config's figure, so
    /// a wrong figure there steers real traffic (see `config_change`).
    #[serde(default = "yes")]
    pub(crate) agents_report_capacity: bool,
    /// Override `[policy]` knobs from the config, e.g. to show a bad value.
    #[serde(default)]
    pub(crate) min_announce_share: Option<f64>,
    /// `false` turns off the aggregator's correlated-failure freeze, e.g. to
    /// show what the anycast rail alone does.
    #[serde(default)]
    pub(crate) correlated_failure_guard: Option<bool>,
    /// Budget-aware steering for every SLO of the world config (as its
    /// `[slos.steering]` would set it); without it SLOs only measure.
    #[serde(default)]
    pub(crate) slo_steering: Option<SloSteering>,
    /// SLOs are evaluated this often (`[alerting] evaluation_interval`).
    #[serde(default = "default_slo_evaluate")]
    pub(crate) slo_evaluate_s: u64,
}

impl World {
    /// The world's knobs over `[policy]` and `[health]` of a config (the
    /// world's, or one a `config_change` proposes).
    pub(crate) fn shape(&self, topology: &mut steer_types::Topology) {
        if let Some(share) = self.min_announce_share {
            topology.policy.min_announce_share = share;
        }
        if self.correlated_failure_guard == Some(false) {
            topology.health.guards.correlation.enabled = false;
        }
    }
}

/// `[slos.steering]` for simulation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SloSteering {
    pub(crate) burn_rate: f64,
    #[serde(default)]
    pub(crate) release_below: Option<f64>,
    #[serde(default)]
    pub(crate) max_shift: Option<f64>,
    #[serde(default)]
    pub(crate) window_s: Option<u64>,
}

fn default_slo_evaluate() -> u64 {
    10
}

fn default_report() -> u64 {
    1000
}
fn default_observers() -> usize {
    3
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub(crate) enum Curve {
    #[default]
    Flat,
    /// demand × (1 + amplitude × sin(2πt / period)).
    Diurnal { amplitude: f64, period_s: u64 },
    /// demand × factor in one region (or all) for a while.
    Flash {
        at_s: u64,
        duration_s: u64,
        factor: f64,
        #[serde(default)]
        region: Option<String>,
    },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Resolvers {
    /// Resolvers (distinct /24 client subnets) per region.
    #[serde(default = "default_per_region")]
    pub(crate) per_region: usize,
    /// Share of resolvers that ignore the TTL and hold answers.
    #[serde(default)]
    pub(crate) ignore_ttl_share: f64,
    #[serde(default = "default_hold")]
    pub(crate) hold_s: u64,
    /// Send EDNS Client Subnet (else the region is inferred from the
    /// resolver's own address, which is the same here).
    #[serde(default = "yes")]
    pub(crate) ecs: bool,
    /// Resolvers hold an answer at 0 s (asked for it then; it expires
    /// over the first TTL as usual), as in a world that was running
    /// before the run, instead of arriving over the first TTL. Demand is
    /// there from the start, so the plan does not learn it from a ramp
    /// (and PoPs do not overload while it does).
    #[serde(default)]
    pub(crate) warm_start: bool,
}

fn default_per_region() -> usize {
    20
}
fn default_hold() -> u64 {
    300
}
fn yes() -> bool {
    true
}

impl Default for Resolvers {
    fn default() -> Self {
        Self {
            per_region: default_per_region(),
            ignore_ttl_share: 0.0,
            hold_s: default_hold(),
            ecs: true,
            warm_start: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Fault {
    /// pop_down | errors | gray | observer_partition | flap | agent_silence |
    /// correlated_self_report | control_restart | drain | drain_storm |
    /// capacity_loss | leader_loss | controller_partition | quorum_loss |
    /// config_change
    pub(crate) kind: String,
    pub(crate) at_s: u64,
    #[serde(default)]
    pub(crate) duration_s: Option<u64>,
    /// A PoP id, "all", or omitted with `count` / `percent`.
    #[serde(default)]
    pub(crate) target: Option<String>,
    #[serde(default)]
    pub(crate) count: Option<usize>,
    #[serde(default)]
    pub(crate) percent: Option<f64>,
    /// flap: seconds per up/down half-cycle.
    #[serde(default)]
    pub(crate) period_s: Option<u64>,
    /// capacity_loss: remaining share of capacity.
    #[serde(default)]
    pub(crate) capacity_factor: Option<f64>,
    /// drain: "soft" or "hard".
    #[serde(default)]
    pub(crate) mode: Option<String>,
    #[serde(default)]
    pub(crate) ramp_s: Option<u64>,
    #[serde(default)]
    pub(crate) force: bool,
    /// leader_loss, quorum_loss: the leader lease (`[cluster] lease_ttl`,
    /// default 3 s).
    #[serde(default)]
    pub(crate) lease_ttl_s: Option<u64>,
    /// errors: share of the PoP's requests that fail while its probes and
    /// agent say all is well (default 0.05).
    #[serde(default)]
    pub(crate) error_share: Option<f64>,
    /// config_change: the proposed steerd config, relative to the scenario
    /// file (made absolute by `load`).
    #[serde(default)]
    pub(crate) config: Option<PathBuf>,
    /// config_change: "at_once" (a plain reload) or "staged" (a change
    /// request rolled out through `[changes]`).
    #[serde(default)]
    pub(crate) rollout: Option<String>,
    /// config_change: an operator puts the old config back this long after
    /// the new one reached every region (default: never within the run).
    #[serde(default)]
    pub(crate) revert_after_s: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expect {
    pub(crate) max_unserved_share: Option<f64>,
    pub(crate) max_overloaded_share: Option<f64>,
    pub(crate) max_peak_utilisation: Option<f64>,
    /// For baselines: the scenario must show an overload at least this big.
    pub(crate) min_peak_utilisation: Option<f64>,
    pub(crate) max_time_to_detect_s: Option<f64>,
    pub(crate) max_time_to_mitigate_s: Option<f64>,
    pub(crate) min_announced: Option<usize>,
    pub(crate) max_weight_change_per_step: Option<u32>,
    pub(crate) min_rails_fired: Option<usize>,
    /// Plans published over the whole run, at most.
    pub(crate) max_plans: Option<usize>,
    /// The steady window: inputs do not change from here (s) ...
    pub(crate) steady_from_s: Option<u64>,
    /// ... to here (default: the end of the run).
    pub(crate) steady_to_s: Option<u64>,
    /// Every PoP's utilisation peak-to-peak over the steady window.
    pub(crate) max_steady_swing: Option<f64>,
    /// Plans published per minute over the steady window.
    pub(crate) max_steady_plans_per_min: Option<f64>,
    /// Highest utilisation of any PoP over the steady window (what
    /// clients send).
    pub(crate) max_steady_utilisation: Option<f64>,
    /// Highest utilisation the plan intends over the steady window.
    pub(crate) max_steady_planned_utilisation: Option<f64>,
    /// Answer churn at most this times the naive policy's in the same
    /// world (simlab runs the naive policy too).
    pub(crate) max_churn_vs_naive: Option<f64>,
    /// Answers served to clients that changed while edges had no plan
    /// source (control plane down, no leader, no etcd quorum, edges cut
    /// off from every controller).
    pub(crate) max_answer_changes_while_control_plane_gone: Option<usize>,
    /// Operator commands the control plane refused (e.g. a drain while
    /// etcd has no quorum), at least and at most.
    pub(crate) min_commands_refused: Option<usize>,
    pub(crate) max_commands_refused: Option<usize>,
    /// Share of requests that failed over the steady window (what users
    /// got), at most and at least.
    pub(crate) max_steady_error_share: Option<f64>,
    pub(crate) min_steady_error_share: Option<f64>,
    /// Comparing rollouts (`compare_rollouts`): each SLO's budget burned
    /// by the staged run, at most this share of the at-once run's.
    pub(crate) max_staged_budget_share_of_at_once: Option<f64>,
    /// Comparing rollouts: the staged change was rolled back by steerd's
    /// judgement (not by an operator), at this stage.
    pub(crate) staged_rolled_back_at_stage: Option<String>,
}

pub(crate) const KINDS: [&str; 15] = [
    "pop_down",
    "errors",
    "gray",
    "observer_partition",
    "flap",
    "agent_silence",
    "correlated_self_report",
    "control_restart",
    "drain",
    "drain_storm",
    "capacity_loss",
    "leader_loss",
    "controller_partition",
    "quorum_loss",
    "config_change",
];

/// Rollouts of a `config_change`.
pub(crate) const ROLLOUTS: [&str; 2] = ["at_once", "staged"];

/// Faults of the clustered control plane: a scenario with one runs two
/// controllers on a shared store (see `cluster`).
pub(crate) const CLUSTER_KINDS: [&str; 3] = ["leader_loss", "controller_partition", "quorum_loss"];

pub(crate) fn load(path: &Path) -> anyhow::Result<(Scenario, PathBuf)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut scenario: Scenario = toml::from_str(&text).map_err(|e| {
        let (line, col) = e.span().map_or((0, 0), |s| {
            let before = &text[..s.start.min(text.len())];
            (
                before.matches('\n').count() + 1,
                before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
            )
        });
        anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message())
    })?;
    for f in &scenario.faults {
        if !KINDS.contains(&f.kind.as_str()) {
            bail!(
                "{}: unknown fault kind {:?} (one of {})",
                path.display(),
                f.kind,
                KINDS.join(", ")
            );
        }
    }
    let mut errors = Vec::new();
    let clustered = scenario
        .faults
        .iter()
        .any(|f| CLUSTER_KINDS.contains(&f.kind.as_str()));
    for f in &scenario.faults {
        let what = format!("{} at {}s", f.kind, f.at_s);
        match f.kind.as_str() {
            "controller_partition" | "quorum_loss" if f.duration_s.is_none() => {
                errors.push(format!("{what} needs duration_s"));
            }
            // A cold restart of the only controller; a cluster has no
            // single control plane to restart.
            "control_restart" if clustered => errors.push(format!(
                "{what} models a single controller: use leader_loss with cluster faults"
            )),
            _ => {}
        }
        if f.lease_ttl_s.is_some() && !["leader_loss", "quorum_loss"].contains(&f.kind.as_str()) {
            errors.push(format!(
                "{what}: lease_ttl_s applies to leader_loss and quorum_loss"
            ));
        }
        if f.lease_ttl_s == Some(0) {
            errors.push(format!("{what}: lease_ttl_s must be positive"));
        }
        if let Some(x) = f.error_share
            && (f.kind != "errors" || !(0.0..=1.0).contains(&x))
        {
            errors.push(format!(
                "{what}: error_share is a share (0 to 1) of an errors fault"
            ));
        }
    }
    if let Some(st) = &scenario.world.slo_steering {
        let shift_ok = st.max_shift.is_none_or(|x| x > 0.0 && x < 1.0);
        let release_ok = st
            .release_below
            .is_none_or(|x| x > 0.0 && x <= st.burn_rate);
        if !(st.burn_rate > 0.0 && shift_ok && release_ok && st.window_s != Some(0)) {
            errors.push(
                "world.slo_steering: burn_rate > 0, 0 < max_shift < 1, 0 < release_below <= burn_rate, window_s > 0"
                    .to_owned(),
            );
        }
    }
    if scenario.world.slo_evaluate_s == 0 {
        errors.push("world.slo_evaluate_s must be positive".to_owned());
    }
    check_config_changes(&scenario, clustered, &mut errors);
    if !errors.is_empty() {
        bail!("{}: {}", path.display(), errors.join("; "));
    }
    if scenario.step_ms == 0 || scenario.duration_s == 0 {
        bail!(
            "{}: duration_s and step_ms must be positive",
            path.display()
        );
    }
    if !["steer", "naive"].contains(&scenario.policy.as_str()) {
        bail!("{}: policy must be \"steer\" or \"naive\"", path.display());
    }
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    for f in &mut scenario.faults {
        if let Some(proposed) = &mut f.config {
            *proposed = dir.join(&*proposed);
        }
    }
    let config = dir.join(&scenario.world.config);
    Ok((scenario, config))
}

/// A `config_change` and what goes with it: one per scenario, on the
/// single control plane, its keys on it alone.
fn check_config_changes(scenario: &Scenario, clustered: bool, errors: &mut Vec<String>) {
    let changes: Vec<&Fault> = scenario
        .faults
        .iter()
        .filter(|f| f.kind == "config_change")
        .collect();
    for f in &scenario.faults {
        let what = format!("{} at {}s", f.kind, f.at_s);
        if f.kind != "config_change" {
            if f.config.is_some() || f.rollout.is_some() || f.revert_after_s.is_some() {
                errors.push(format!(
                    "{what}: config, rollout and revert_after_s belong to a config_change"
                ));
            }
            continue;
        }
        if f.config.is_none() {
            errors.push(format!(
                "{what} needs config (the proposed steerd config, relative to the scenario file)"
            ));
        }
        if !f.rollout.as_deref().is_some_and(|r| ROLLOUTS.contains(&r)) {
            errors.push(format!("{what} needs rollout = \"at_once\" or \"staged\""));
        }
        if f.duration_s.is_some() || f.target.is_some() || f.count.is_some() || f.percent.is_some()
        {
            errors.push(format!(
                "{what} applies to the whole config: no target, count, percent or duration_s \
                 (revert_after_s puts the old config back)"
            ));
        }
        if clustered || scenario.faults.iter().any(|g| g.kind == "control_restart") {
            errors.push(format!(
                "{what} models one controller that keeps running: not with cluster faults or control_restart"
            ));
        }
    }
    if changes.len() > 1 {
        errors.push("at most one config_change per scenario".to_owned());
    }
    if !changes.is_empty() && scenario.policy != "steer" {
        errors.push(
            "a config_change needs policy = \"steer\" (the naive policy has no config)".to_owned(),
        );
    }
    if scenario.compare_rollouts && changes.is_empty() {
        errors.push("compare_rollouts needs a config_change to compare".to_owned());
    }
    let e = &scenario.expect;
    if !scenario.compare_rollouts
        && (e.max_staged_budget_share_of_at_once.is_some()
            || e.staged_rolled_back_at_stage.is_some())
    {
        errors.push(
            "max_staged_budget_share_of_at_once and staged_rolled_back_at_stage are checked when comparing rollouts: set compare_rollouts = true"
                .to_owned(),
        );
    }
}
