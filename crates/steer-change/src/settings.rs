//! `[changes]`: how many approvals a change needs, the stages it rolls out
//! in, when changes may be made, and how a stage is judged.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use steer_types::{PopId, RegionId, Topology};

use crate::window::Window;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeSettings {
    /// Approvals a change needs from principals other than its author
    /// (operator role or above). Zero: a change is approved when proposed.
    pub approvals: u32,
    /// In order; the last one normally covers every region.
    pub stages: Vec<StageSpec>,
    pub windows: Vec<Window>,
    pub judgement: Judgement,
    /// Hold changes (not emergencies) while an SLO's error budget is spent.
    pub freeze_on_exhausted_budget: bool,
    /// Drains and overrides that become change requests instead of
    /// applying at once (emergencies still apply at once).
    #[serde(default)]
    pub reviewed_intents: Vec<crate::IntentKind>,
}

impl ChangeSettings {
    pub fn reviews(&self, kind: crate::IntentKind) -> bool {
        self.reviewed_intents.contains(&kind)
    }
}

impl Default for ChangeSettings {
    fn default() -> Self {
        Self {
            approvals: 1,
            stages: vec![StageSpec {
                name: "all".into(),
                regions: RegionScope::All,
                pops: None,
                share_ppm: None,
                bake: Duration::ZERO,
            }],
            windows: Vec::new(),
            judgement: Judgement::default(),
            freeze_on_exhausted_budget: true,
            reviewed_intents: Vec::new(),
        }
    }
}

/// One stage of a rollout: the client regions whose answers take the new
/// config, the PoPs whose BGP does, and how long it bakes before the next
/// stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    pub name: String,
    pub regions: RegionScope,
    /// PoPs whose state and announcements take the new config; `None`:
    /// the PoPs of `regions`.
    #[serde(default)]
    pub pops: Option<Vec<PopId>>,
    /// Only this share of the regions' client subnets (parts per million)
    /// take the new answers; `None`: all of them.
    #[serde(default)]
    pub share_ppm: Option<u32>,
    pub bake: Duration,
}

impl StageSpec {
    pub fn scope(&self) -> StageScope {
        StageScope {
            regions: self.regions.clone(),
            pops: self.pops.clone(),
            share_ppm: self.share_ppm,
        }
    }

    pub fn describe(&self) -> String {
        self.scope().describe()
    }
}

/// What a stage in force moves: answers for `regions`' clients, and BGP
/// of `pops` (or of the PoPs in `regions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageScope {
    pub regions: RegionScope,
    pub pops: Option<Vec<PopId>>,
    /// A share of the regions' client subnets (parts per million): they
    /// take the new answer sets as a canary in the plan; the rest, the
    /// regions' degradation and (without `pops`) BGP keep the old config.
    pub share_ppm: Option<u32>,
}

impl StageScope {
    /// Every client and every PoP.
    pub fn all() -> Self {
        Self {
            regions: RegionScope::All,
            pops: None,
            share_ppm: None,
        }
    }

    /// Whether `pop` (placed by `topology`) announces as the new config says.
    pub fn announces(&self, pop: &PopId, topology: &Topology) -> bool {
        match &self.pops {
            Some(list) => list.contains(pop),
            // A share of clients moves answers, not a PoP's routes.
            None if self.share_ppm.is_some() => false,
            None => topology
                .pop(pop.as_str())
                .is_some_and(|p| self.regions.covers(&p.region)),
        }
    }

    /// Whether `pop` is judged as canary: it announces the new config, or
    /// it is in one of the scope's regions (it serves their clients).
    pub fn judges(&self, pop: &PopId, region: Option<&RegionId>) -> bool {
        region.is_some_and(|r| self.regions.covers(r))
            || self.pops.as_ref().is_some_and(|l| l.contains(pop))
    }

    pub fn describe(&self) -> String {
        let mut regions = match &self.regions {
            RegionScope::Only(l) if l.is_empty() => "no client region".to_owned(),
            r => r.describe(),
        };
        if let Some(ppm) = self.share_ppm {
            regions = format!(
                "{}% of client subnets of {regions}",
                f64::from(ppm) / 10_000.0
            );
        }
        match &self.pops {
            None => regions,
            Some(l) => format!(
                "{regions}; BGP of {}",
                l.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegionScope {
    /// `["*"]`: every region, and clients that map to none.
    All,
    Only(Vec<RegionId>),
}

impl RegionScope {
    pub fn covers(&self, region: &RegionId) -> bool {
        match self {
            Self::All => true,
            Self::Only(list) => list.contains(region),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::All => "every region".into(),
            Self::Only(list) => list
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// How a stage's canary scope is judged against the baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// Fewer events than this in either scope: Inconclusive.
    pub min_events: u64,
    /// Fail when the canary's error ratio exceeds the baseline's by more
    /// than this (absolute, 0.005 = half a point)...
    pub max_error_ratio_increase: f64,
    /// ...or exceeds this outright.
    pub max_error_ratio: f64,
}

impl Default for Judgement {
    fn default() -> Self {
        Self {
            min_events: 100,
            max_error_ratio_increase: 0.005,
            max_error_ratio: 0.05,
        }
    }
}
