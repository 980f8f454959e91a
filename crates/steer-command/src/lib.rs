//! The command vocabulary the control loop consumes.
//!
//! Transports (the gRPC operator API, SIGHUP reload, simlab) validate their
//! input into an [`ApiCommand`] and send it to the loop; the loop answers
//! with a result or an [`ApiError`]. This crate has no transport in it, so
//! the loop builds without tonic; each transport maps [`ApiError`] to its
//! own status codes.

use std::{sync::Arc, time::Duration};

use steer_types::{
    DrainMode, DrainScope, Intents, PopId, Topology, audit::AuditEntry, explain::Explanation,
    projection::Projection, status::StatusReport,
};
use tokio::sync::oneshot;

/// Why the control loop (or the API) refused a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unavailable(String),
    /// The request does not apply to the current state (e.g. nothing frozen).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The capacity rail refused a drain; the projection says why.
    #[error("drain refused: {}", .0.summary)]
    Refused(Projection),
}

#[derive(Debug)]
pub struct DrainCommand {
    pub scope: DrainScope,
    pub mode: DrainMode,
    /// Zero: five times the service TTL.
    pub ramp: Duration,
    pub expires_in: Option<Duration>,
    pub reason: String,
    pub principal: String,
    pub dry_run: bool,
    pub force: bool,
    /// Break glass (admin, reason): applies at once even where `[changes]
    /// reviewed_intents` puts this kind of drain through review.
    pub emergency: bool,
}

#[derive(Debug)]
pub struct DrainOutcome {
    /// Empty on a dry run.
    pub intent_id: String,
    pub plan_version: u64,
    pub applied: bool,
    pub projection: Projection,
    /// Put through review (`[changes] reviewed_intents`): the change
    /// request that will apply it once approved.
    pub proposed: Option<String>,
}

/// What a weight override did: applied (its intent id and plan version)
/// or proposed as a change request.
#[derive(Debug)]
pub struct OverrideOutcome {
    /// Empty when proposed.
    pub intent_id: String,
    pub plan_version: u64,
    pub proposed: Option<String>,
}

#[derive(Debug)]
pub struct UndrainOutcome {
    pub lifted: u32,
    pub plan_version: u64,
    /// Drains still covering PoPs of the scope, one line each.
    pub still_covered_by: Vec<String>,
}

/// Which audit entries to return.
#[derive(Debug, Default)]
pub struct AuditFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub principal: Option<String>,
    pub scope: Option<String>,
    pub limit: usize,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.since_ms.is_none_or(|t| e.at.unix_ms() >= t)
            && self.until_ms.is_none_or(|t| e.at.unix_ms() <= t)
            && self.principal.as_ref().is_none_or(|p| &e.principal == p)
            && self
                .scope
                .as_ref()
                .is_none_or(|s| e.scope.contains(s.as_str()))
    }
}

pub type Reply<T> = oneshot::Sender<Result<T, ApiError>>;

/// A validated operator request, with the channel for the answer.
#[derive(Debug)]
pub enum ApiCommand {
    Drain {
        cmd: DrainCommand,
        reply: Reply<DrainOutcome>,
    },
    Undrain {
        scope: DrainScope,
        reason: String,
        principal: String,
        reply: Reply<UndrainOutcome>,
    },
    ListIntents {
        reply: oneshot::Sender<Intents>,
    },
    SetOverride {
        pop: PopId,
        weight: u32,
        expires_in: Option<Duration>,
        reason: String,
        principal: String,
        /// Break glass past `[changes] reviewed_intents` (admin, reason).
        emergency: bool,
        reply: Reply<OverrideOutcome>,
    },
    ClearOverride {
        pop: PopId,
        reason: String,
        principal: String,
        /// (cleared, plan version)
        reply: Reply<(u32, u64)>,
    },
    Status {
        reply: oneshot::Sender<StatusReport>,
    },
    Audit {
        filter: AuditFilter,
        reply: Reply<Vec<AuditEntry>>,
    },
    /// Record a refused attempt (auth) in the audit log; no reply.
    RecordDenied {
        principal: String,
        action: String,
        scope: String,
        reason: String,
    },
    /// Unfreeze health held by the correlated-failure guard.
    ConfirmFailure {
        reason: String,
        principal: String,
        /// (PoPs released, plan version)
        reply: Reply<(Vec<String>, u64)>,
    },
    /// Exclude a time range from an SLO's budget (audited).
    CorrectSlo {
        correction: steer_slo::Correction,
        reply: Reply<()>,
    },
    /// A clustered controller won the election: read the shared state
    /// again (the previous leader may have changed it), write from now
    /// on, and publish. `basis` is the plan edges serve (the last one
    /// committed), which the first plan's step rails are measured from.
    /// Replies with the first plan version it publishes.
    Lead {
        basis: Option<Arc<steer_types::Plan>>,
        reply: Reply<u64>,
    },
    /// A clustered controller lost (or never had) leadership: write
    /// nothing, refuse changes.
    Follow,
    /// A follower saw the leader write the shared state: take its intents
    /// (plans are computed locally for reads; edges get the leader's).
    AdoptState {
        intents: Intents,
        plan_version: u64,
    },
    /// A change request step (`steerctl change ...`).
    Change(ChangeCommand),
    /// Swap in a validated topology; always publishes a new plan version.
    Reload {
        topology: Arc<Topology>,
        /// The SLOs of the new config, when it has them; `None` keeps
        /// the ones in force.
        slos: Option<SloReload>,
        /// The new config's `[changes]` (`None`: not governed).
        changes: Option<steer_change::ChangeSettings>,
        /// `steer_change::config_digest` of the new config file.
        config_digest: String,
        principal: String,
        reason: String,
        /// A break-glass reload past `[changes]` (`reload --emergency`).
        emergency: bool,
        reply: Reply<u64>,
    },
}

/// What an operator does to a change request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeAction {
    Approve,
    Reject,
    Pause,
    Resume,
    Promote,
    Abort,
    Rollback,
}

impl ChangeAction {
    pub fn name(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Promote => "promote",
            Self::Abort => "abort",
            Self::Rollback => "rollback",
        }
    }
}

/// A proposed config, validated by the transport (parsed like a reload)
/// and described against the config in force.
#[derive(Debug)]
pub struct Proposal {
    /// The file as submitted.
    pub config: String,
    pub topology: Arc<Topology>,
    /// The governance rules in force (the live config's `[changes]`).
    pub settings: steer_change::ChangeSettings,
    /// The live config file it is proposed against, and its digest.
    pub base_config: String,
    pub base_digest: String,
    pub diff: Vec<steer_change::DiffItem>,
    pub reason: String,
    pub principal: String,
    pub emergency: bool,
}

#[derive(Debug)]
pub enum ChangeCommand {
    Propose {
        proposal: Proposal,
        reply: Reply<steer_change::Change>,
    },
    List {
        reply: Reply<Vec<steer_change::Change>>,
    },
    Get {
        id: String,
        reply: Reply<steer_change::Change>,
    },
    Act {
        id: String,
        action: ChangeAction,
        principal: String,
        reason: String,
        reply: Reply<steer_change::Change>,
    },
    /// What came of applying a change's config file (`ConfigApply`): the
    /// new plan version, or why the file did not apply.
    Applied {
        id: String,
        result: Result<u64, String>,
    },
}

/// Answers explain queries from what the DNS path would really do.
pub trait Explainer: Send + Sync + 'static {
    fn explain(
        &self,
        name: &str,
        qtype: &str,
        client: ipnet::IpNet,
    ) -> Result<Explanation, ApiError>;
}

/// Projects a drain without the control loop (dry runs): the loop
/// publishes its inputs, the caller computes.
pub trait DryRunner: Send + Sync + 'static {
    /// The projection of draining `scope`, and the plan version it was
    /// taken against.
    fn project_drain(
        &self,
        scope: &steer_types::DrainScope,
    ) -> Result<(steer_types::projection::Projection, u64), ApiError>;
}

/// A config reload asked for through the API (or SIGHUP).
#[derive(Debug)]
pub struct ReloadRequest {
    pub principal: String,
    pub reason: String,
    /// Break glass: with `[changes]` configured, only an emergency reload
    /// applies a file without a change request.
    pub emergency: bool,
    /// The file to apply instead of reading it from disk: the config of a
    /// change that completed (or the one a rollback puts back).
    pub config: Option<String>,
    pub reply: Reply<u64>,
}

/// A config file the control loop asks the reloader to make the one in
/// force: a change that completed, or one rolled back after it completed.
#[derive(Debug)]
pub struct ConfigApply {
    pub change: String,
    pub config: String,
    pub reason: String,
}

/// A config file proposed as a change (`steerctl change propose`), to be
/// validated like a reload before the control loop records it.
#[derive(Debug)]
pub struct ProposeRequest {
    pub principal: String,
    pub reason: String,
    pub config: String,
    pub emergency: bool,
    pub reply: Reply<steer_change::Change>,
}

/// SLOs a reload applies, with how often they are evaluated and alerts
/// re-sent.
#[derive(Debug, Clone)]
pub struct SloReload {
    pub specs: Vec<steer_slo::SloSpec>,
    pub evaluate_every: std::time::Duration,
    pub resend_every: std::time::Duration,
}
