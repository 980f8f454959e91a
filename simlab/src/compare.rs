//! Comparing rollouts: the scenario's `config_change` made all at once and
//! staged, in the same world with the same seed, side by side: the demand
//! left unserved, the requests that failed, the error budget they burned,
//! how long and where the proposed config was in force, and the plans
//! published.

use std::fmt::Write;

use serde::Serialize;
use steer_config::SteerConfig;
use steer_slo::SloSpec;

use crate::{
    change::{ChangeResult, Rollout},
    engine::{self, StepRecord},
    report::{self, Summary},
    scenario::{Expect, Scenario},
    sli::BudgetBurn,
};

/// One rollout's figures.
#[derive(Debug, Serialize)]
pub(crate) struct RolloutFigures {
    pub(crate) rollout: &'static str,
    pub(crate) change: Option<ChangeResult>,
    /// Demand no PoP served (sent to a dead PoP, or past a PoP's real
    /// capacity), in request-seconds: rps summed over each second.
    pub(crate) unserved_request_s: f64,
    /// The largest share of demand left unserved in any second.
    pub(crate) unserved_peak_share: f64,
    /// Requests that failed at the PoPs (what their SLI counters count).
    pub(crate) failed_requests: f64,
    pub(crate) slo_budget: Vec<BudgetBurn>,
    /// Plans published over the run, and from the change on.
    pub(crate) plans: usize,
    pub(crate) plans_since_change: usize,
    pub(crate) trace_hash: String,
}

impl RolloutFigures {
    fn of(rollout: Rollout, s: &Summary, steps: &[StepRecord]) -> Self {
        let unserved = |st: &StepRecord| st.unserved_rps + st.overloaded_rps;
        let at_s = s.config_change.as_ref().map_or(0, |c| c.at_s) as f64;
        Self {
            rollout: rollout.name(),
            change: s.config_change.clone(),
            unserved_request_s: steps.iter().map(unserved).sum(),
            unserved_peak_share: steps
                .iter()
                .filter(|st| st.demand_rps > 0.0)
                .map(|st| unserved(st) / st.demand_rps)
                .fold(0.0, f64::max),
            failed_requests: steps.iter().map(|st| st.failed_rps).sum(),
            slo_budget: s.slo_budget.clone(),
            plans: s.plans,
            plans_since_change: steps
                .iter()
                .filter(|st| st.t_s >= at_s)
                .map(|st| st.published)
                .sum(),
            trace_hash: s.trace_hash.clone(),
        }
    }

    fn burned(&self, slo: &str) -> Option<f64> {
        self.slo_budget
            .iter()
            .find(|b| b.slo == slo)
            .map(|b| b.burned)
    }
}

/// Both rollouts of one scenario and seed, with what the scenario expects
/// of them.
#[derive(Debug, Serialize)]
pub(crate) struct Comparison {
    pub(crate) scenario: String,
    pub(crate) description: String,
    pub(crate) seed: u64,
    pub(crate) at_once: RolloutFigures,
    pub(crate) staged: RolloutFigures,
    pub(crate) failed_expectations: Vec<String>,
}

/// Runs the rollout `main` did not use, and compares the two.
pub(crate) fn compare(
    scenario: &Scenario,
    world: &SteerConfig,
    slos: &[SloSpec],
    proposed: Option<&SteerConfig>,
    main: (&Summary, &[StepRecord]),
) -> anyhow::Result<Comparison> {
    let Some(done) = main
        .0
        .config_change
        .as_ref()
        .and_then(|c| Rollout::parse(c.rollout))
    else {
        anyhow::bail!(
            "{}: comparing rollouts needs a config_change",
            scenario.name
        );
    };
    let other = match done {
        Rollout::AtOnce => Rollout::Staged,
        Rollout::Staged => Rollout::AtOnce,
    };
    let mut run = scenario.clone();
    for f in run.faults.iter_mut().filter(|f| f.kind == "config_change") {
        f.rollout = Some(other.name().to_owned());
    }
    let outcome = engine::run(&run, world, slos, proposed)?;
    let (summary, steps, _) = report::summarise(&run, outcome);
    let mine = RolloutFigures::of(done, main.0, main.1);
    let theirs = RolloutFigures::of(other, &summary, &steps);
    let (at_once, staged) = match done {
        Rollout::AtOnce => (mine, theirs),
        Rollout::Staged => (theirs, mine),
    };
    let failed_expectations = check(&scenario.expect, &at_once, &staged);
    Ok(Comparison {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        seed: scenario.seed,
        at_once,
        staged,
        failed_expectations,
    })
}

/// Every comparison expectation that does not hold, as a sentence.
fn check(expect: &Expect, at_once: &RolloutFigures, staged: &RolloutFigures) -> Vec<String> {
    let mut failed = Vec::new();
    if let Some(max) = expect.max_staged_budget_share_of_at_once {
        for b in &at_once.slo_budget {
            let got = staged.burned(&b.slo).unwrap_or(0.0);
            if b.burned <= 0.0 {
                failed.push(format!(
                    "{}: the at-once run burned none of its budget, so there is nothing to compare \
                     (the change does no harm in this world)",
                    b.slo
                ));
            } else if got > max * b.burned {
                failed.push(format!(
                    "{}: the staged run burned {:.3}% of the budget, {:.2}x the at-once run's {:.3}%, expected <= {max}x",
                    b.slo,
                    got * 100.0,
                    got / b.burned,
                    b.burned * 100.0
                ));
            }
        }
        if at_once.slo_budget.is_empty() {
            failed.push(
                "max_staged_budget_share_of_at_once: the world config has no availability SLO"
                    .to_owned(),
            );
        }
    }
    if let Some(stage) = &expect.staged_rolled_back_at_stage {
        let c = staged.change.as_ref();
        let by = c.and_then(|c| c.rolled_back_by.as_deref());
        let at = c.and_then(|c| c.rolled_back_at_stage.as_deref());
        if by != Some("steerd") || at != Some(stage.as_str()) {
            failed.push(format!(
                "the staged change was {} (rolled back by {}, at stage {}), expected rolled back by steerd's judgement at stage {stage}",
                c.map_or("not made", |c| c.state.as_str()),
                by.unwrap_or("no one"),
                at.unwrap_or("-")
            ));
        }
    }
    failed
}

impl Comparison {
    /// The side-by-side table.
    pub(crate) fn human(&self) -> String {
        let mut out = String::new();
        let at = self.at_once.change.as_ref().map_or(0, |c| c.at_s);
        let _ = writeln!(
            out,
            "compare {} (seed {}): the same config_change at {at}s, at once vs staged",
            self.scenario, self.seed
        );
        let rows = self.rows();
        let _ = writeln!(out, "  {:<38} {:<26} staged", "", "at once");
        for (label, a, s) in &rows {
            let _ = writeln!(out, "  {label:<38} {a:<26} {s}");
        }
        let mut ratios = Vec::new();
        for b in &self.at_once.slo_budget {
            if let Some(s) = self.staged.burned(&b.slo) {
                ratios.push(format!("budget {} {}", b.slo, ratio(s, b.burned)));
            }
        }
        ratios.push(format!(
            "unserved {}",
            ratio(
                self.staged.unserved_request_s,
                self.at_once.unserved_request_s
            )
        ));
        let _ = writeln!(out, "  staged / at once: {}", ratios.join(", "));
        if self.failed_expectations.is_empty() {
            let _ = writeln!(out, "  comparison expectations: all hold");
        } else {
            for f in &self.failed_expectations {
                let _ = writeln!(out, "  FAILED: {f}");
            }
        }
        out
    }

    fn rows(&self) -> Vec<(String, String, String)> {
        let both = |f: &dyn Fn(&RolloutFigures) -> String| (f(&self.at_once), f(&self.staged));
        let mut rows = Vec::new();
        let mut row = |label: &str, (a, s): (String, String)| rows.push((label.to_owned(), a, s));
        row(
            "outcome",
            both(&|r| r.change.as_ref().map_or("-".into(), outcome)),
        );
        row(
            "proposed config in force",
            both(&|r| {
                r.change.as_ref().map_or("-".into(), |c| {
                    if c.in_force_by_scope.is_empty() {
                        return "never".into();
                    }
                    c.in_force_by_scope
                        .iter()
                        .map(|(scope, s)| format!("{s:.0}s {scope}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
            }),
        );
        row(
            "in force nowhere again after",
            both(&|r| match r.change.as_ref().map(|c| c.stopped_after_s) {
                Some(Some(s)) => format!("{s:.0}s"),
                Some(None) if r.change.as_ref().is_some_and(|c| c.in_force_s > 0.0) => {
                    "still in force at the end".into()
                }
                _ => "-".into(),
            }),
        );
        row(
            "unserved demand (request-seconds)",
            both(&|r| format!("{:.0}", r.unserved_request_s)),
        );
        row(
            "unserved demand, peak share",
            both(&|r| format!("{:.2}%", r.unserved_peak_share * 100.0)),
        );
        row(
            "failed requests",
            both(&|r| format!("{:.0}", r.failed_requests)),
        );
        for b in &self.at_once.slo_budget {
            let name = b.slo.clone();
            let window = b.window.clone();
            row(
                &format!("budget burned {name}"),
                both(&|r| {
                    r.burned(&name)
                        .map_or("-".into(), |x| format!("{:.3}% of {window}", x * 100.0))
                }),
            );
        }
        row(
            "plans published (from the change on)",
            both(&|r| format!("{} ({})", r.plans, r.plans_since_change)),
        );
        rows
    }
}

fn ratio(staged: f64, at_once: f64) -> String {
    if at_once > 0.0 {
        format!("{:.3}x", staged / at_once)
    } else {
        "- (at once: none)".into()
    }
}

/// `rolled-back by steerd at canary`, `reverted`, `completed`.
fn outcome(c: &ChangeResult) -> String {
    match (&c.rolled_back_by, &c.rolled_back_at_stage) {
        (Some(by), Some(stage)) => format!("{} by {by} at {stage}", c.state),
        (Some(by), None) => format!("{} by {by}", c.state),
        _ => c.state.clone(),
    }
}

/// A run's `config_change`, for its summary.
pub(crate) fn describe_change(c: &ChangeResult) -> String {
    let mut out = String::new();
    let id = c
        .change
        .as_deref()
        .map_or(String::new(), |id| format!(", change {id}"));
    let why = c.why.as_deref().map_or(String::new(), |w| format!(": {w}"));
    let _ = writeln!(
        out,
        "  config_change at {}s ({}{id}): {}{why}",
        c.at_s,
        c.rollout,
        outcome(c)
    );
    let scopes: Vec<String> = c
        .in_force_by_scope
        .iter()
        .map(|(scope, s)| format!("{scope} {s:.0}s"))
        .collect();
    let stopped = match c.stopped_after_s {
        Some(s) => format!("; in force nowhere again {s:.0}s after it was made"),
        None if c.in_force_s > 0.0 => "; still in force at the end".to_owned(),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "  proposed config in force {:.0}s ({}){stopped}",
        c.in_force_s,
        if scopes.is_empty() {
            "nowhere".to_owned()
        } else {
            scopes.join(", ")
        }
    );
    out
}
