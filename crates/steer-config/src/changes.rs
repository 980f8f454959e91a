//! `[changes]`: change governance (approvals, stages, release windows,
//! judgement thresholds). Without the table, config changes apply with
//! `steerctl reload` as before; with it, they go through change requests.

use std::{collections::HashSet, time::Duration};

use serde::Deserialize;
use steer_change::{
    ChangeSettings, IntentKind, Judgement, RegionScope, StageSpec, Window, WindowKind, WindowTime,
};
use steer_types::{Timestamp, Topology};
use toml::Spanned;

use crate::{duration::parse_duration, error::Reporter};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChanges {
    approvals: Option<Spanned<i64>>,
    #[serde(default)]
    stages: Vec<Spanned<RawStage>>,
    #[serde(default)]
    windows: Vec<Spanned<RawWindow>>,
    judgement: Option<RawJudgement>,
    freeze_on_exhausted_budget: Option<bool>,
    /// `pop-drain`, `region-drain`, `service-drain`, `override`.
    #[serde(default)]
    reviewed_intents: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: Spanned<String>,
    /// Client regions whose answers take the new config (`["*"]`: all).
    #[serde(default)]
    regions: Option<Spanned<Vec<String>>>,
    /// PoPs whose BGP takes the new config (default: those of `regions`).
    #[serde(default)]
    pops: Option<Spanned<Vec<String>>>,
    /// Only this share (0 < share < 1) of the regions' client subnets.
    #[serde(default)]
    share: Option<Spanned<f64>>,
    bake: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    name: Spanned<String>,
    /// "allow" or "block".
    kind: Spanned<String>,
    /// `Fri 16:00 - Mon 08:00` (UTC).
    weekly: Option<Spanned<String>>,
    /// RFC 3339 (`2026-12-24T00:00:00Z`).
    from: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudgement {
    min_events: Option<Spanned<i64>>,
    max_error_ratio_increase: Option<Spanned<f64>>,
    max_error_ratio: Option<Spanned<f64>>,
}

/// Most stages a rollout may have.
const MAX_STAGES: usize = 16;

pub(crate) fn changes(
    r: &mut Reporter<'_>,
    raw: &Spanned<RawChanges>,
    topology: &Topology,
) -> ChangeSettings {
    let c = raw.get_ref();
    let mut out = ChangeSettings::default();
    if let Some(a) = &c.approvals {
        match u32::try_from(*a.get_ref()) {
            Ok(n) if n <= 10 => out.approvals = n,
            _ => r.at(a.span(), "`approvals` must be 0 to 10"),
        }
    }
    if !c.stages.is_empty() {
        out.stages = stages(r, &c.stages, topology);
    }
    if c.stages.len() > MAX_STAGES {
        r.at(raw.span(), format!("at most {MAX_STAGES} stages"));
    }
    out.windows = c.windows.iter().filter_map(|w| window(r, w)).collect();
    let mut names = HashSet::new();
    for w in &c.windows {
        if !names.insert(w.get_ref().name.get_ref()) {
            r.at(
                w.get_ref().name.span(),
                format!("window {:?} is defined twice", w.get_ref().name.get_ref()),
            );
        }
    }
    if let Some(j) = &c.judgement {
        out.judgement = judgement(r, j);
    }
    if let Some(f) = c.freeze_on_exhausted_budget {
        out.freeze_on_exhausted_budget = f;
    }
    for k in &c.reviewed_intents {
        match IntentKind::parse(k.get_ref()) {
            Some(kind) if !out.reviewed_intents.contains(&kind) => out.reviewed_intents.push(kind),
            Some(_) => r.at(k.span(), format!("{:?} is listed twice", k.get_ref())),
            None => r.at(
                k.span(),
                format!(
                    "{:?} is not an intent kind: expected one of {}",
                    k.get_ref(),
                    IntentKind::ALL.map(IntentKind::name).join(", ")
                ),
            ),
        }
    }
    out
}

fn stages(r: &mut Reporter<'_>, raw: &[Spanned<RawStage>], topology: &Topology) -> Vec<StageSpec> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for (i, s) in raw.iter().enumerate() {
        let st = s.get_ref();
        let name = st.name.get_ref().trim();
        if name.is_empty() {
            r.at(st.name.span(), "a stage needs a name");
        } else if !names.insert(name.to_owned()) {
            r.at(st.name.span(), format!("stage {name:?} is defined twice"));
        }
        let regions = stage_regions(r, st, s.span(), topology);
        let pops = st.pops.as_ref().map(|p| stage_pops(r, p, topology));
        let share_ppm = st.share.as_ref().and_then(|s| {
            let v = *s.get_ref();
            // Millionths, so 0.0001 (a hundredth of a percent) is the finest.
            let ppm = (v * 1_000_000.0).round();
            if v.is_finite() && (1.0..1_000_000.0).contains(&ppm) {
                Some(ppm as u32)
            } else {
                r.at(
                    s.span(),
                    "`share` must be above 0 and below 1 (0.05 = 5% of the client subnets), in steps of 0.000001",
                );
                None
            }
        });
        if share_ppm.is_some()
            && regions == RegionScope::Only(Vec::new())
            && let Some(s) = &st.share
        {
            r.at(
                s.span(),
                "`share` needs `regions` (a share of their client subnets)",
            );
        }
        let bake = match &st.bake {
            None => Duration::from_secs(600),
            Some(b) => match parse_duration(b.get_ref()) {
                Ok(d) => d,
                Err(e) => {
                    r.at(b.span(), e);
                    Duration::ZERO
                }
            },
        };
        let last = i + 1 == raw.len();
        if last && (regions != RegionScope::All || pops.is_some() || st.share.is_some()) {
            // Point at the key that narrows it.
            let at = match (&st.share, &st.pops, &st.regions) {
                (Some(s), _, _) => s.span(),
                (None, Some(p), _) => p.span(),
                (None, None, Some(l)) => l.span(),
                (None, None, None) => s.span(),
            };
            r.at(
                at,
                "the last stage must cover every region and PoP (regions = [\"*\"], no `pops` or `share`), or a change would never apply everywhere",
            );
        }
        out.push(StageSpec {
            name: name.to_owned(),
            regions,
            pops,
            share_ppm,
            bake,
        });
    }
    out
}

/// `regions` of a stage: `["*"]`, a list of `[[regions]]`, or left out (or
/// empty) when the stage moves only the BGP of its `pops`.
fn stage_regions(
    r: &mut Reporter<'_>,
    st: &RawStage,
    span: std::ops::Range<usize>,
    topology: &Topology,
) -> RegionScope {
    let Some(list) = &st.regions else {
        if st.pops.is_none() {
            r.at(span, "a stage needs `regions` (or [\"*\"]) or `pops`");
        }
        return RegionScope::Only(Vec::new());
    };
    let l = list.get_ref();
    if l.iter().any(|x| x == "*") {
        if l.len() > 1 {
            r.at(list.span(), "\"*\" already means every region");
        }
        return RegionScope::All;
    }
    if l.is_empty() && st.pops.is_none() {
        r.at(list.span(), "a stage needs regions (or [\"*\"]) or `pops`");
    }
    for region in l {
        if topology.region(region).is_none() {
            r.at(
                list.span(),
                format!("region {region:?} is not in [[regions]]"),
            );
        }
    }
    RegionScope::Only(l.iter().map(|x| x.as_str().into()).collect())
}

/// `pops` of a stage: PoPs of `[[pops]]`, at least one, each once.
fn stage_pops(
    r: &mut Reporter<'_>,
    list: &Spanned<Vec<String>>,
    topology: &Topology,
) -> Vec<steer_types::PopId> {
    let l = list.get_ref();
    if l.is_empty() {
        r.at(
            list.span(),
            "`pops` needs at least one PoP (leave it out for the PoPs of `regions`)",
        );
    }
    let mut seen = HashSet::new();
    for pop in l {
        if topology.pop(pop).is_none() {
            r.at(list.span(), format!("PoP {pop:?} is not in [[pops]]"));
        } else if !seen.insert(pop) {
            r.at(list.span(), format!("PoP {pop:?} is listed twice"));
        }
    }
    l.iter().map(|p| p.as_str().into()).collect()
}

fn window(r: &mut Reporter<'_>, raw: &Spanned<RawWindow>) -> Option<Window> {
    let w = raw.get_ref();
    let kind = match w.kind.get_ref().as_str() {
        "allow" => WindowKind::Allow,
        "block" => WindowKind::Block,
        other => {
            r.at(
                w.kind.span(),
                format!("kind {other:?}: expected \"allow\" or \"block\""),
            );
            return None;
        }
    };
    let time = match (&w.weekly, &w.from, &w.until) {
        (Some(weekly), None, None) => match steer_change::parse_weekly(weekly.get_ref()) {
            Ok(t) => t,
            Err(e) => {
                r.at(weekly.span(), e);
                return None;
            }
        },
        (None, Some(from), Some(until)) => {
            let at = |r: &mut Reporter<'_>, v: &Spanned<String>| {
                let t = Timestamp::parse_rfc3339(v.get_ref().trim());
                if t.is_none() {
                    r.at(
                        v.span(),
                        format!("{:?} is not RFC 3339 (2026-12-24T00:00:00Z)", v.get_ref()),
                    );
                }
                t
            };
            let (from_t, until_t) = (at(r, from), at(r, until));
            let (from_t, until_t) = (from_t?, until_t?);
            if until_t <= from_t {
                r.at(until.span(), "`until` must be after `from`");
                return None;
            }
            WindowTime::Dates {
                from: from_t,
                until: until_t,
            }
        }
        _ => {
            r.at(
                raw.span(),
                "a window needs either `weekly` (\"Fri 16:00 - Mon 08:00\") or both `from` and `until`",
            );
            return None;
        }
    };
    Some(Window {
        name: w.name.get_ref().clone(),
        kind,
        time,
    })
}

fn judgement(r: &mut Reporter<'_>, raw: &RawJudgement) -> Judgement {
    let mut j = Judgement::default();
    if let Some(n) = &raw.min_events {
        match u64::try_from(*n.get_ref()) {
            Ok(v) if v > 0 => j.min_events = v,
            _ => r.at(n.span(), "`min_events` must be at least 1"),
        }
    }
    let ratio = |r: &mut Reporter<'_>, v: &Spanned<f64>, name: &str| {
        let x = *v.get_ref();
        if (0.0..=1.0).contains(&x) {
            Some(x)
        } else {
            r.at(v.span(), format!("`{name}` must be a ratio from 0 to 1"));
            None
        }
    };
    if let Some(v) = &raw.max_error_ratio_increase
        && let Some(x) = ratio(r, v, "max_error_ratio_increase")
    {
        j.max_error_ratio_increase = x;
    }
    if let Some(v) = &raw.max_error_ratio
        && let Some(x) = ratio(r, v, "max_error_ratio")
    {
        j.max_error_ratio = x;
    }
    j
}
