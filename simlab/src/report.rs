//! Summaries, expectations, the JSON report and the SVG chart.

use std::fmt::Write;

use serde::Serialize;

use crate::{
    change::ChangeResult,
    engine::{FaultResult, Outcome, StepRecord},
    scenario::{Expect, Scenario},
    sli::BudgetBurn,
};

#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub(crate) scenario: String,
    pub(crate) description: String,
    pub(crate) policy: String,
    pub(crate) seed: u64,
    pub(crate) duration_s: u64,
    pub(crate) plans: usize,
    pub(crate) demand_total: f64,
    pub(crate) unserved_share: f64,
    pub(crate) overloaded_share: f64,
    pub(crate) peak_utilisation: f64,
    pub(crate) peak_utilisation_by_pop: Vec<(String, f64)>,
    pub(crate) answer_churn: usize,
    pub(crate) min_announced: usize,
    pub(crate) max_weight_change_per_step: u32,
    pub(crate) rails_fired: usize,
    /// Seconds edges had no plan source, and answer changes meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) control_plane_gone: Option<ControlPlaneGone>,
    /// Operator commands refused (each is listed among the rails).
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) commands_refused: usize,
    /// Leaders elected after the first (clustered runs).
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) takeovers: usize,
    pub(crate) faults: Vec<FaultResult>,
    /// Over the steady window, when the scenario names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) steady: Option<Steady>,
    /// The naive policy's answer churn in the same world, when compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) naive_churn: Option<usize>,
    /// The scenario's `config_change`: how it went, where and how long
    /// the proposed config was in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) config_change: Option<ChangeResult>,
    /// Each availability SLO's error budget the run spent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) slo_budget: Vec<BudgetBurn>,
    /// FNV-1a of the step trace: same scenario + seed → same hash.
    pub(crate) trace_hash: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// While edges had no plan source, answers must hold still: nothing can
/// change them but a new plan.
#[derive(Debug, Serialize)]
pub(crate) struct ControlPlaneGone {
    pub(crate) seconds: f64,
    pub(crate) answer_changes: usize,
}

/// How still the system was while its inputs were.
#[derive(Debug, Serialize)]
pub(crate) struct Steady {
    pub(crate) from_s: f64,
    pub(crate) to_s: f64,
    /// Per PoP: utilisation peak-to-peak.
    pub(crate) swing_by_pop: Vec<(String, f64)>,
    pub(crate) swing: f64,
    pub(crate) plans: usize,
    pub(crate) plans_per_min: f64,
    pub(crate) answer_churn: usize,
    pub(crate) peak_utilisation: f64,
    pub(crate) peak_planned_utilisation: f64,
    /// Share of the demand that failed at PoPs serving it (past their
    /// capacity, or errors faults).
    pub(crate) error_share: f64,
}

fn steady(expect: &Expect, pops: &[String], steps: &[StepRecord]) -> Option<Steady> {
    let from = expect.steady_from_s? as f64;
    let to = expect
        .steady_to_s
        .map_or_else(|| steps.last().map_or(from, |s| s.t_s), |t| t as f64);
    let window: Vec<&StepRecord> = steps
        .iter()
        .filter(|s| s.t_s >= from && s.t_s <= to)
        .collect();
    let series = |i: usize, f: fn(&StepRecord) -> &Vec<f64>| {
        window
            .iter()
            .map(move |s| f(s).get(i).copied().unwrap_or(0.0))
    };
    let swing_by_pop: Vec<(String, f64)> = pops
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let hi = series(i, |s| &s.utilisation).fold(f64::MIN, f64::max);
            let lo = series(i, |s| &s.utilisation).fold(f64::MAX, f64::min);
            (p.clone(), if window.is_empty() { 0.0 } else { hi - lo })
        })
        .collect();
    // The first record's publications happened before the window.
    let plans: usize = window.iter().skip(1).map(|s| s.published).sum();
    let minutes = ((to - from) / 60.0).max(1.0 / 60.0);
    let peak = |f: fn(&StepRecord) -> &Vec<f64>| {
        window
            .iter()
            .flat_map(|s| f(s).iter().copied())
            .fold(0.0, f64::max)
    };
    Some(Steady {
        from_s: from,
        to_s: to,
        swing: swing_by_pop.iter().map(|(_, x)| *x).fold(0.0, f64::max),
        swing_by_pop,
        plans,
        plans_per_min: plans as f64 / minutes,
        answer_churn: window.iter().skip(1).map(|s| s.answer_changes).sum(),
        peak_utilisation: peak(|s| &s.utilisation),
        peak_planned_utilisation: peak(|s| &s.planned_utilisation),
        error_share: {
            let demand: f64 = window.iter().map(|s| s.demand_rps).sum();
            let failed: f64 = window.iter().map(|s| s.failed_rps).sum();
            if demand > 0.0 { failed / demand } else { 0.0 }
        },
    })
}

#[derive(Serialize)]
pub(crate) struct Report<'a> {
    pub(crate) summary: &'a Summary,
    pub(crate) failed_expectations: &'a [String],
    pub(crate) pops: &'a [String],
    pub(crate) steps: &'a [StepRecord],
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn summarise(
    scenario: &Scenario,
    out: Outcome,
) -> (Summary, Vec<StepRecord>, Vec<String>) {
    let demand: f64 = out.steps.iter().map(|s| s.demand_rps).sum();
    let unserved: f64 = out.steps.iter().map(|s| s.unserved_rps).sum();
    let overloaded: f64 = out.steps.iter().map(|s| s.overloaded_rps).sum();
    let share = |x: f64| if demand > 0.0 { x / demand } else { 0.0 };
    let peaks: Vec<(String, f64)> = out
        .pops
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let peak = out
                .steps
                .iter()
                .map(|s| s.utilisation.get(i).copied().unwrap_or(0.0))
                .fold(0.0, f64::max);
            (p.clone(), peak)
        })
        .collect();
    let trace = serde_json::to_vec(&out.steps).unwrap_or_default();
    let summary = Summary {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        policy: scenario.policy.clone(),
        seed: scenario.seed,
        duration_s: scenario.duration_s,
        plans: out.plans,
        demand_total: demand,
        unserved_share: share(unserved),
        overloaded_share: share(overloaded),
        peak_utilisation: peaks.iter().map(|(_, x)| *x).fold(0.0, f64::max),
        peak_utilisation_by_pop: peaks,
        answer_churn: out.steps.iter().map(|s| s.answer_changes).sum(),
        min_announced: out.steps.iter().map(|s| s.min_announced).min().unwrap_or(0),
        max_weight_change_per_step: out.max_weight_change_per_step,
        rails_fired: out.rails_fired,
        control_plane_gone: (out.control_plane_gone_ms > 0).then(|| ControlPlaneGone {
            seconds: out.control_plane_gone_ms as f64 / 1000.0,
            answer_changes: out.answer_changes_while_gone,
        }),
        commands_refused: out.commands_refused,
        takeovers: out.takeovers,
        faults: out.faults,
        steady: steady(&scenario.expect, &out.pops, &out.steps),
        naive_churn: None,
        config_change: out.config_change,
        slo_budget: out.slo_budget,
        trace_hash: format!("{:016x}", fnv(&trace)),
    };
    (summary, out.steps, out.pops)
}

/// Every expectation that does not hold, as a sentence.
pub(crate) fn check(expect: &Expect, s: &Summary) -> Vec<String> {
    let mut failed = Vec::new();
    for (what, got, max) in [
        (
            "unserved_share",
            s.unserved_share,
            expect.max_unserved_share,
        ),
        (
            "overloaded_share",
            s.overloaded_share,
            expect.max_overloaded_share,
        ),
        (
            "peak_utilisation",
            s.peak_utilisation,
            expect.max_peak_utilisation,
        ),
        (
            "max_weight_change_per_step",
            f64::from(s.max_weight_change_per_step),
            expect.max_weight_change_per_step.map(f64::from),
        ),
    ] {
        if let Some(max) = max
            && got > max
        {
            failed.push(format!("{what} = {got:.4}, expected <= {max}"));
        }
    }
    if let Some(min) = expect.min_peak_utilisation
        && s.peak_utilisation < min
    {
        failed.push(format!(
            "peak_utilisation = {:.4}, expected >= {min}",
            s.peak_utilisation
        ));
    }
    for f in &s.faults {
        let name = format!("{} at {}s", f.kind, f.at_s);
        if let Some(max) = expect.max_time_to_detect_s {
            match f.time_to_detect_s {
                Some(t) if t <= max => {}
                Some(t) => {
                    failed.push(format!("{name}: time_to_detect_s = {t}, expected <= {max}"))
                }
                None if matches!(
                    f.kind.as_str(),
                    "pop_down" | "gray" | "flap" | "drain" | "drain_storm"
                ) =>
                {
                    failed.push(format!("{name}: never detected, expected within {max}s"));
                }
                None => {}
            }
        }
        if let Some(max) = expect.max_time_to_mitigate_s {
            match f.time_to_mitigate_s {
                Some(t) if t <= max => {}
                Some(t) => failed.push(format!(
                    "{name}: time_to_mitigate_s = {t}, expected <= {max}"
                )),
                None if matches!(f.kind.as_str(), "pop_down" | "gray") => {
                    failed.push(format!("{name}: never mitigated, expected within {max}s"));
                }
                None => {}
            }
        }
    }
    if let Some(min) = expect.min_announced
        && s.min_announced < min
    {
        failed.push(format!(
            "min_announced = {}, expected >= {min}",
            s.min_announced
        ));
    }
    if let Some(max) = expect.max_plans
        && s.plans > max
    {
        failed.push(format!("plans = {}, expected <= {max}", s.plans));
    }
    if let Some(min) = expect.min_rails_fired
        && s.rails_fired < min
    {
        failed.push(format!(
            "rails_fired = {}, expected >= {min}",
            s.rails_fired
        ));
    }
    if let Some(st) = &s.steady {
        let worst = st
            .swing_by_pop
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or("-", |(p, _)| p.as_str());
        for (what, got, max) in [
            (
                format!("steady swing ({worst}, peak-to-peak)"),
                st.swing,
                expect.max_steady_swing,
            ),
            (
                "steady plans per minute".to_owned(),
                st.plans_per_min,
                expect.max_steady_plans_per_min,
            ),
            (
                "steady utilisation".to_owned(),
                st.peak_utilisation,
                expect.max_steady_utilisation,
            ),
            (
                "steady planned utilisation".to_owned(),
                st.peak_planned_utilisation,
                expect.max_steady_planned_utilisation,
            ),
            (
                "steady error share".to_owned(),
                st.error_share,
                expect.max_steady_error_share,
            ),
        ] {
            if let Some(max) = max
                && got > max + 1e-9
            {
                failed.push(format!(
                    "{what} = {got:.4} over {:.0}-{:.0}s, expected <= {max}",
                    st.from_s, st.to_s
                ));
            }
        }
    }
    if let (Some(min), Some(st)) = (expect.min_steady_error_share, &s.steady)
        && st.error_share < min
    {
        failed.push(format!(
            "steady error share = {:.4} over {:.0}-{:.0}s, expected >= {min}",
            st.error_share, st.from_s, st.to_s
        ));
    }
    if let Some(max) = expect.max_answer_changes_while_control_plane_gone {
        let got = s
            .control_plane_gone
            .as_ref()
            .map_or(0, |g| g.answer_changes);
        if got > max {
            failed.push(format!(
                "answer changes while the control plane was gone = {got}, expected <= {max}"
            ));
        }
    }
    if let Some(min) = expect.min_commands_refused
        && s.commands_refused < min
    {
        failed.push(format!(
            "commands refused = {}, expected >= {min}",
            s.commands_refused
        ));
    }
    if let Some(max) = expect.max_commands_refused
        && s.commands_refused > max
    {
        failed.push(format!(
            "commands refused = {}, expected <= {max}",
            s.commands_refused
        ));
    }
    if let (Some(max), Some(naive)) = (expect.max_churn_vs_naive, s.naive_churn) {
        let ratio = s.answer_churn as f64 / (naive.max(1)) as f64;
        if ratio > max + 1e-9 {
            failed.push(format!(
                "answer churn = {} ({ratio:.3}x naive's {naive}), expected <= {max}x",
                s.answer_churn
            ));
        }
    }
    failed
}

pub(crate) fn human(s: &Summary, failed: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {} (policy {}, seed {}, {}s)",
        s.scenario, s.policy, s.seed, s.duration_s
    );
    if !s.description.is_empty() {
        let _ = writeln!(out, "  {}", s.description);
    }
    let _ = writeln!(
        out,
        "  unserved {:.2}%  overloaded {:.2}%  peak utilisation {:.0}%  plans {}  answer churn {}",
        s.unserved_share * 100.0,
        s.overloaded_share * 100.0,
        s.peak_utilisation * 100.0,
        s.plans,
        s.answer_churn
    );
    let _ = writeln!(
        out,
        "  min announced {}  max weight step {}‰  rails fired {}  trace {}",
        s.min_announced, s.max_weight_change_per_step, s.rails_fired, s.trace_hash
    );
    if let Some(naive) = s.naive_churn {
        let _ = writeln!(
            out,
            "  answer churn {} vs naive policy {} ({:.2}x)",
            s.answer_churn,
            naive,
            s.answer_churn as f64 / naive.max(1) as f64
        );
    }
    if let Some(st) = &s.steady {
        let _ = writeln!(
            out,
            "  steady {:.0}-{:.0}s: swing {:.1} pts  plans {} ({:.2}/min)  churn {}  peak {:.0}% (planned {:.0}%)",
            st.from_s,
            st.to_s,
            st.swing * 100.0,
            st.plans,
            st.plans_per_min,
            st.answer_churn,
            st.peak_utilisation * 100.0,
            st.peak_planned_utilisation * 100.0
        );
        if st.error_share > 0.0 {
            let _ = writeln!(
                out,
                "  steady errors: {:.3}% of requests failed",
                st.error_share * 100.0
            );
        }
    }
    let mut control = Vec::new();
    if let Some(g) = &s.control_plane_gone {
        control.push(format!(
            "control plane gone {:.0}s (answer changes meanwhile {})",
            g.seconds, g.answer_changes
        ));
    }
    if s.commands_refused > 0 {
        control.push(format!("commands refused {}", s.commands_refused));
    }
    if s.takeovers > 0 {
        control.push(format!("takeovers {}", s.takeovers));
    }
    if !control.is_empty() {
        let _ = writeln!(out, "  {}", control.join("  "));
    }
    if let Some(c) = &s.config_change {
        out.push_str(&crate::compare::describe_change(c));
    }
    if s.slo_budget.iter().any(|b| b.failed > 0.0) {
        let burned: Vec<String> = s
            .slo_budget
            .iter()
            .map(|b| {
                format!(
                    "{} {:.3}% of its {} budget ({:.0} of {:.0} requests failed)",
                    b.slo,
                    b.burned * 100.0,
                    b.window,
                    b.failed,
                    b.requests
                )
            })
            .collect();
        let _ = writeln!(out, "  SLO budget burned: {}", burned.join("; "));
    }
    for f in &s.faults {
        let t = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}s"));
        let _ = writeln!(
            out,
            "  fault {:<24} at {:>4}s on {:<20} detect {:>5} mitigate {:>5}",
            f.kind,
            f.at_s,
            f.targets.join(","),
            t(f.time_to_detect_s),
            t(f.time_to_mitigate_s)
        );
    }
    if failed.is_empty() {
        let _ = writeln!(out, "  expectations: all hold");
    } else {
        for f in failed {
            let _ = writeln!(out, "  FAILED: {f}");
        }
    }
    out
}

const COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// Per-PoP utilisation over time, the 100% line, and fault markers.
pub(crate) fn svg(s: &Summary, pops: &[String], steps: &[StepRecord]) -> String {
    let (w, h, left, top, right, bottom) = (960.0, 420.0, 60.0, 40.0, 150.0, 40.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let t_max = steps.last().map_or(1.0, |x| x.t_s.max(1.0));
    let y_max = s.peak_utilisation.max(1.2);
    let x = |t: f64| left + t / t_max * plot_w;
    let y = |u: f64| top + plot_h - u / y_max * plot_h;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="20" font-size="14">{} ({}): utilisation per PoP</text>"#,
        s.scenario, s.policy
    );
    // Axes and grid.
    for k in 0..=((y_max * 4.0).ceil() as usize) {
        let u = k as f64 * 0.25;
        if u > y_max {
            break;
        }
        let _ = writeln!(
            out,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{:.0}%</text>"##,
            left + plot_w,
            left - 6.0,
            y(u) + 4.0,
            u * 100.0,
            y = y(u)
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#d62728" stroke-dasharray="6 4"/>"##,
        left + plot_w,
        y = y(1.0)
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">time (s)</text>"#,
        left + plot_w / 2.0,
        h - 8.0
    );
    for k in 0..=5 {
        let t = t_max * f64::from(k) / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}</text>"#,
            x(t),
            top + plot_h + 16.0,
            t
        );
    }
    // While edges had no plan source: shaded.
    let mut gone_from: Option<f64> = None;
    let step_s = steps.get(1).map_or(1.0, |st| st.t_s) - steps.first().map_or(0.0, |st| st.t_s);
    for (i, st) in steps.iter().enumerate() {
        if st.control_plane_gone && gone_from.is_none() {
            gone_from = Some(st.t_s);
        }
        let ends = !st.control_plane_gone || i + 1 == steps.len();
        if let Some(from) = gone_from
            && ends
        {
            let to = if st.control_plane_gone {
                st.t_s + step_s
            } else {
                st.t_s
            };
            let _ = writeln!(
                out,
                r##"<rect x="{:.1}" y="{top}" width="{:.1}" height="{plot_h}" fill="#999" fill-opacity="0.15"/>"##,
                x(from),
                x(to) - x(from)
            );
            gone_from = None;
        }
    }
    // Fault markers.
    for f in &s.faults {
        let fx = x(f.at_s as f64);
        let _ = writeln!(
            out,
            r##"<line x1="{fx:.1}" x2="{fx:.1}" y1="{top}" y2="{}" stroke="#555" stroke-dasharray="2 3"/><text x="{:.1}" y="{}" font-size="10">{} {}</text>"##,
            top + plot_h,
            fx + 3.0,
            top + 10.0,
            f.kind,
            f.targets.join(",")
        );
    }
    // One line per PoP.
    for (i, pop) in pops.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = steps
            .iter()
            .map(|st| {
                format!(
                    "{:.1},{:.1}",
                    x(st.t_s),
                    y(st.utilisation.get(i).copied().unwrap_or(0.0))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let ly = top + 14.0 + i as f64 * 16.0;
        let _ = writeln!(
            out,
            r#"<rect x="{}" y="{:.1}" width="12" height="3" fill="{colour}"/><text x="{}" y="{:.1}">{pop}</text>"#,
            left + plot_w + 12.0,
            ly - 4.0,
            left + plot_w + 30.0,
            ly
        );
    }
    out.push_str("</svg>\n");
    out
}
