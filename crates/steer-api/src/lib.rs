//! Operator API.
//!
//! The gRPC service authenticates the caller, validates each request at the
//! boundary into an [`ApiCommand`] and sends it to the control loop, which
//! owns intents and replies once the change is durable and published.
//! Errors map to gRPC status codes here, in one place.

mod auth;
mod changes;
mod convert;
mod denied;
pub mod plan_feed;
mod service;
mod slo_doc;
mod status_doc;
mod timeline;

pub use auth::{Authenticator, Denial, SharedAuthenticator, interceptor};
pub use denied::{AuditReader, AuditSink, DeniedAudit};
pub use service::{
    BgpStatusSource, DnssecSource, LEADER_METADATA, OperatorService, SlosSource, UNARY_TIMEOUT,
    WriteGate, api_status, register_metrics,
};
pub use slo_doc::slo_document;
pub use status_doc::{scope_text, status_document, status_response};
/// The command vocabulary lives in `steer-command` (the loop builds
/// without tonic); re-exported so API callers keep one import path.
pub use steer_command::{
    ApiCommand, ApiError, AuditFilter, ChangeAction, ChangeCommand, ConfigApply, DrainCommand,
    DrainOutcome, DryRunner, Explainer, Proposal, ProposeRequest, ReloadRequest, SloReload,
    UndrainOutcome,
};
pub use timeline::event_to as timeline_event;
