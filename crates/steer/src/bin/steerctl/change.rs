//! `steerctl change ...`: propose a config file as a change request, review
//! it, and move it through its rollout.

use std::path::PathBuf;

use clap::Subcommand;
use steer_proto::v1 as pb;

/// As steerd's limit (`steer_api`'s `MAX_CONFIG_BYTES`): an operator
/// request is at most 64 KiB.
const MAX_CONFIG_BYTES: usize = 60 * 1024;

use crate::{
    Answer, Client, Failure,
    output::{out, outln},
    render,
};

#[derive(Subcommand, Debug)]
pub(crate) enum ChangeAction {
    /// Propose a config file as a change: validated like a reload, shown
    /// with what it changes and its projected effect; prints the change id.
    Propose {
        #[arg(long)]
        config: PathBuf,
        /// Why: recorded with the change and in the audit log.
        #[arg(long)]
        reason: String,
        /// Break glass (admin): no approvals needed; flagged everywhere.
        #[arg(long)]
        emergency: bool,
    },
    /// Every change steerd keeps, newest last.
    List,
    /// One change as a story: diff, effect, approvals, every step.
    Show { id: String },
    /// Approve a change (not your own).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Hold a rollout at its stage.
    Pause {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    Resume {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Move on to the next stage now.
    Promote {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Stop a change before it completes; the old config stays in force.
    Abort {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Take a change back everywhere.
    Rollback {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

pub(crate) async fn run(
    client: &mut Client,
    action: &ChangeAction,
    json: bool,
) -> Result<(), Failure> {
    let step = |id: &String, a: pb::ChangeAction, reason: &String| pb::ActOnChangeRequest {
        id: id.clone(),
        action: a as i32,
        reason: reason.clone(),
    };
    let change = match action {
        ChangeAction::Propose {
            config,
            reason,
            emergency,
        } => {
            let text = std::fs::read_to_string(config)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", config.display())))?;
            if text.len() > MAX_CONFIG_BYTES {
                return Err(Failure::Usage(format!(
                    "{} is {} bytes; a proposed config may be at most {MAX_CONFIG_BYTES} bytes",
                    config.display(),
                    text.len()
                )));
            }
            let resp = client
                .propose_change(pb::ProposeChangeRequest {
                    config: text,
                    reason: reason.clone(),
                    emergency: *emergency,
                })
                .await
                .answer()?;
            let change = resp.change.unwrap_or_default();
            if json {
                render::json(&change_json(&change));
            } else {
                // The id first, alone on its line: scripts read it.
                outln!("{}", change.id);
                out!("{}", story(&change));
            }
            return Ok(());
        }
        ChangeAction::List => {
            let resp = client
                .list_changes(pb::ListChangesRequest {})
                .await
                .answer()?;
            if json {
                render::json(&serde_json::Value::Array(
                    resp.changes.iter().map(change_json).collect(),
                ));
            } else if resp.changes.is_empty() {
                outln!("no changes");
            } else {
                for c in &resp.changes {
                    outln!(
                        "{:<6} {:<12} {:<16} {}{}",
                        c.id,
                        state(c),
                        c.author,
                        c.reason,
                        if c.emergency { "  [EMERGENCY]" } else { "" }
                    );
                }
            }
            return Ok(());
        }
        ChangeAction::Show { id } => client
            .get_change(pb::GetChangeRequest { id: id.clone() })
            .await
            .answer()?,
        ChangeAction::Approve { id, comment } => client
            .act_on_change(step(id, pb::ChangeAction::Approve, comment))
            .await
            .answer()?,
        ChangeAction::Reject { id, reason } => client
            .act_on_change(step(id, pb::ChangeAction::Reject, reason))
            .await
            .answer()?,
        ChangeAction::Pause { id, reason } => client
            .act_on_change(step(id, pb::ChangeAction::Pause, reason))
            .await
            .answer()?,
        ChangeAction::Resume { id, reason } => client
            .act_on_change(step(id, pb::ChangeAction::Resume, reason))
            .await
            .answer()?,
        ChangeAction::Promote { id, reason } => client
            .act_on_change(step(id, pb::ChangeAction::Promote, reason))
            .await
            .answer()?,
        ChangeAction::Abort { id, reason } => client
            .act_on_change(step(id, pb::ChangeAction::Abort, reason))
            .await
            .answer()?,
        ChangeAction::Rollback { id, reason } => client
            .act_on_change(step(id, pb::ChangeAction::Rollback, reason))
            .await
            .answer()?,
    };
    let change = change.change.unwrap_or_default();
    if json {
        render::json(&change_json(&change));
    } else {
        out!("{}", story(&change));
    }
    Ok(())
}

fn state(c: &pb::Change) -> String {
    match (c.state.as_str(), c.stage) {
        (s @ ("rolling" | "paused"), Some(i)) => format!("{s}@{i}"),
        (s, _) => s.to_owned(),
    }
}

/// A change as one story, for a person: what, why, effect, then each step.
fn story(c: &pb::Change) -> String {
    let mut out = String::new();
    let at = |ms: i64| steer_types::Timestamp(ms).rfc3339();
    out.push_str(&format!(
        "change {} ({}){}\n",
        c.id,
        state(c),
        if c.emergency { " EMERGENCY" } else { "" }
    ));
    out.push_str(&format!(
        "  proposed by {} at {}: {}\n",
        c.author,
        at(c.created_at_unix_ms),
        c.reason
    ));
    out.push_str(&format!(
        "  approvals: {} of {}{}\n",
        c.approved_by.len(),
        c.required_approvals,
        if c.approved_by.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.approved_by.join(", "))
        }
    ));
    if !c.held.is_empty() {
        out.push_str(&format!("  waiting: {}\n", c.held));
    }
    if !c.stages.is_empty() {
        out.push_str("  stages:\n");
        for (i, s) in c.stages.iter().enumerate() {
            let here = if c.stage == u32::try_from(i).ok() {
                "  <- now"
            } else {
                ""
            };
            out.push_str(&format!("    {i}. {s}{here}\n"));
        }
    }
    out.push_str("  changes:\n");
    if c.diff.is_empty() {
        out.push_str("    (nothing in the topology, zones or DNS settings)\n");
    }
    for d in &c.diff {
        out.push_str(&format!("    {d}\n"));
    }
    out.push_str("  projected effect:\n");
    for e in &c.effect {
        out.push_str(&format!("    {e}\n"));
    }
    out.push_str("  history:\n");
    for e in &c.history {
        out.push_str(&format!(
            "    {}  {:<16} {}{}\n",
            at(e.at_unix_ms),
            e.principal,
            e.action,
            if e.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", e.detail)
            }
        ));
    }
    out
}

fn change_json(c: &pb::Change) -> serde_json::Value {
    serde_json::json!({
        "id": c.id,
        "author": c.author,
        "reason": c.reason,
        "created_at_unix_ms": c.created_at_unix_ms,
        "state": c.state,
        "stage": c.stage,
        "stages": c.stages,
        "diff": c.diff,
        "effect": c.effect,
        "required_approvals": c.required_approvals,
        "approved_by": c.approved_by,
        "emergency": c.emergency,
        "held": c.held,
        "history": c.history.iter().map(|e| serde_json::json!({
            "at_unix_ms": e.at_unix_ms,
            "principal": e.principal,
            "action": e.action,
            "detail": e.detail,
        })).collect::<Vec<_>>(),
    })
}
