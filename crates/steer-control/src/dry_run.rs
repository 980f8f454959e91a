//! Dry-run projections off the control loop.
//!
//! The loop publishes the inputs of its latest compute (topology, health
//! with demand, intents); a dry run projects a drain against them on the
//! caller's thread. A viewer asking "what if" as often as they like never
//! queues behind, or delays, a real drain. The projection is the same pure
//! function the loop's capacity rail uses, so the two agree on equal inputs.

use std::sync::Arc;

use arc_swap::ArcSwap;
use steer_command::{ApiError, DryRunner};
use steer_types::{
    DrainScope, Intents, Timestamp, Topology, health::HealthSnapshot, projection::Projection,
};

use crate::scope_known;

/// What the loop last computed from.
pub struct ProjectionInputs {
    pub topology: Arc<Topology>,
    pub health: HealthSnapshot,
    pub intents: Intents,
    /// The plan in force when these inputs were taken.
    pub plan_version: u64,
    pub at: Timestamp,
}

pub struct DrainProjector {
    inputs: ArcSwap<ProjectionInputs>,
}

impl DrainProjector {
    pub fn new(inputs: ProjectionInputs) -> Self {
        Self {
            inputs: ArcSwap::from_pointee(inputs),
        }
    }

    pub(crate) fn publish(&self, inputs: ProjectionInputs) {
        self.inputs.store(Arc::new(inputs));
    }
}

impl DryRunner for DrainProjector {
    fn project_drain(&self, scope: &DrainScope) -> Result<(Projection, u64), ApiError> {
        let inputs = self.inputs.load();
        if !scope_known(&inputs.topology, scope) {
            return Err(ApiError::NotFound(format!(
                "{} is not in the configuration",
                scope.describe()
            )));
        }
        let projection = steer_policy::project_drain(
            &inputs.topology,
            &inputs.health,
            &inputs.intents,
            scope,
            inputs.at,
        );
        Ok((projection, inputs.plan_version))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use steer_command::{ApiCommand, DrainCommand};
    use steer_types::{DrainMode, PopId, RegionId};

    use super::*;
    use crate::{
        ControlLoop, MemStore, ReplayClock,
        test_world::{report, topology},
    };

    /// Off the loop and on it, a dry run projects the same figures.
    #[test]
    fn off_loop_dry_runs_agree_with_the_loop() {
        let clock = ReplayClock::default();
        clock.set(Timestamp(1_000_000));
        let (mut c, handles) = ControlLoop::new(
            Arc::new(topology()),
            Box::new(MemStore::default()),
            Box::new(clock.clone()),
        )
        .unwrap();
        for (i, load) in [6000.0, 7000.0, 7000.0].into_iter().enumerate() {
            clock.set(Timestamp(1_000_000 + 1000 * i as i64));
            let batch: Vec<_> = ["fra1", "ams1", "iad1", "ord1"]
                .iter()
                .map(|p| report(p, true, load))
                .collect();
            c.step_reports(&batch);
        }
        for scope in [
            DrainScope::Region {
                region: RegionId::new("eu-west"),
            },
            DrainScope::Pop {
                pop: PopId::new("iad1"),
            },
        ] {
            let (off_loop, version) = handles.projector.project_drain(&scope).unwrap();
            let (tx, mut rx) = tokio::sync::oneshot::channel();
            c.handle(ApiCommand::Drain {
                cmd: DrainCommand {
                    scope: scope.clone(),
                    mode: DrainMode::Hard,
                    ramp: Duration::ZERO,
                    expires_in: None,
                    reason: "what if".into(),
                    principal: "t".into(),
                    dry_run: true,
                    force: false,
                    emergency: false,
                },
                reply: tx,
            });
            let on_loop = rx.try_recv().unwrap().unwrap();
            assert_eq!(off_loop, on_loop.projection, "{scope:?}");
            assert_eq!(version, on_loop.plan_version);
        }
        let unknown = DrainScope::Pop {
            pop: PopId::new("nowhere"),
        };
        assert!(matches!(
            handles.projector.project_drain(&unknown),
            Err(ApiError::NotFound(_))
        ));
    }
}
