//! `SubscribePlan`: the plan for data planes (edges).
//!
//! Each subscription gets the full plan first, then on every publication a
//! delta against the last message it was sent (changed entries, removed
//! keys), or the full plan again when the delta would not be smaller. The
//! plan watch coalesces: a subscriber that reads slowly skips versions and
//! its next delta spans them, so it is never fed a backlog.
//!
//! Bounded: at most [`MAX_PLAN_SUBSCRIBERS`] streams at once, one stream per
//! subscriber name (a resubscribe ends the older stream), and messages up to
//! [`MAX_PLAN_MESSAGE_BYTES`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use steer_plansync::{PlanContent, PlanVersion, Update};
use steer_proto::v1 as pb;
use steer_types::{Plan, Timestamp};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tonic::Status;
use tracing::{info, warn};

/// Plan subscriptions served at once.
pub const MAX_PLAN_SUBSCRIBERS: usize = 1024;
/// Largest plan message either side encodes or decodes (a 1,000-PoP ×
/// 500-region × 50-service world fits with room).
pub const MAX_PLAN_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// A plan's entries and their hash, computed once per publication.
type Encoded = (PlanVersion, Arc<PlanContent>, Arc<[u8]>);

/// A plan as it goes to edges, with its distributed version.
#[derive(Clone, Debug)]
pub struct Published {
    pub version: PlanVersion,
    pub plan: Arc<Plan>,
}

/// Where a feed's plans come from.
#[derive(Clone)]
pub enum PlanSource {
    /// This process's control loop, the only writer (epoch fixed).
    Local {
        epoch: u64,
        plans: watch::Receiver<Arc<Plan>>,
    },
    /// A clustered control plane: the leader's plans as etcd holds them;
    /// `None` until the first arrives (a subscription waits for it).
    Shared(watch::Receiver<Option<Published>>),
}

impl PlanSource {
    fn current(&mut self) -> Option<Published> {
        match self {
            Self::Local { epoch, plans } => {
                let plan = plans.borrow_and_update().clone();
                Some(Published {
                    version: PlanVersion {
                        epoch: *epoch,
                        sequence: plan.version,
                    },
                    plan,
                })
            }
            Self::Shared(rx) => rx.borrow_and_update().clone(),
        }
    }

    async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        match self {
            Self::Local { plans, .. } => plans.changed().await,
            Self::Shared(rx) => rx.changed().await,
        }
    }
}

/// A message built for (base sent, version): subscribers on the same base
/// share one diff of the plan instead of one each.
type Built = (Option<PlanVersion>, PlanVersion, Arc<pb::PlanUpdate>);

/// Messages kept per version (a full one, deltas from a few bases).
const BUILT_KEPT: usize = 4;

/// The live subscriptions: a permit each, and the way to end an older
/// stream of the same subscriber.
pub(crate) struct PlanFeed {
    permits: Arc<Semaphore>,
    by_name: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
    next_id: std::sync::atomic::AtomicU64,
    /// The last plan's entries, encoded once for every subscriber.
    encoded: Mutex<Option<Encoded>>,
    /// The last plan's messages, built once per base.
    built: Mutex<Vec<Built>>,
}

impl PlanFeed {
    pub(crate) fn new() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(MAX_PLAN_SUBSCRIBERS)),
            by_name: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
            encoded: Mutex::new(None),
            built: Mutex::new(Vec::new()),
        }
    }

    /// The message taking a subscriber from `sent` to `version`, built by
    /// the first subscriber on that base while the others wait (as for
    /// the encoding, one diff instead of one per worker thread).
    fn message(
        &self,
        version: PlanVersion,
        computed_at: Timestamp,
        sent: Option<&(PlanVersion, Arc<PlanContent>)>,
        content: &PlanContent,
        sha: &[u8],
    ) -> pb::PlanUpdate {
        let base = sent.map(|(v, _)| *v);
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, _, msg)) = built.iter().find(|(b, v, _)| *b == base && *v == version) {
            return pb::PlanUpdate::clone(msg);
        }
        let msg = update_message(version, computed_at, sent, content, sha);
        built.retain(|(_, v, _)| *v == version);
        if built.len() < BUILT_KEPT {
            built.push((base, version, Arc::new(msg.clone())));
        }
        msg
    }

    /// `plan`'s entries, encoded by the first subscriber that needs them.
    fn content(&self, version: PlanVersion, plan: &Plan) -> (Arc<PlanContent>, Arc<[u8]>) {
        // Held while encoding: the subscribers one publication wakes wait
        // for one encoding instead of every worker thread making its own.
        let mut cache = self
            .encoded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached, content, sha)) = cache.as_ref()
            && *cached == version
        {
            return (content.clone(), sha.clone());
        }
        let content = Arc::new(PlanContent::encode(&plan.body));
        let sha: Arc<[u8]> = Arc::from(&content.sha256()[..]);
        *cache = Some((version, content.clone(), sha.clone()));
        (content, sha)
    }

    pub(crate) fn subscribe(
        self: &Arc<Self>,
        subscriber: String,
        mut plans: PlanSource,
    ) -> Result<mpsc::Receiver<Result<pb::PlanUpdate, Status>>, Status> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{MAX_PLAN_SUBSCRIBERS} plan subscribers already; try another controller"
            ))
        })?;
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (cancel_tx, mut cancel_rx) = oneshot::channel();
        if !subscriber.is_empty()
            && let Ok(mut names) = self.by_name.lock()
            && let Some((_, older)) = names.insert(subscriber.clone(), (id, cancel_tx))
        {
            let _ = older.send(());
            info!(%subscriber, "plan subscriber resubscribed; older stream ended");
        }
        let (tx, rx) = mpsc::channel(2);
        let feed = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            metrics::gauge!("steer_plan_subscribers").increment(1.0);
            let mut sent: Option<(PlanVersion, Arc<PlanContent>)> = None;
            loop {
                let Some(Published { version, plan }) = plans.current() else {
                    // No plan yet (a follower before the leader's first):
                    // wait for one.
                    tokio::select! {
                        changed = plans.changed() => if changed.is_err() { break },
                        () = tx.closed() => break,
                        _ = &mut cancel_rx => break,
                    }
                    continue;
                };
                if sent.as_ref().is_some_and(|(v, _)| *v >= version) {
                    // Never backwards, never the same version twice.
                    tokio::select! {
                        changed = plans.changed() => if changed.is_err() { break },
                        () = tx.closed() => break,
                        _ = &mut cancel_rx => break,
                    }
                    continue;
                }
                let (content, sha) = feed.content(version, &plan);
                let msg = feed.message(version, plan.computed_at, sent.as_ref(), &content, &sha);
                let kind = if msg.full { "full" } else { "delta" };
                let bytes = prost::Message::encoded_len(&msg);
                if bytes > MAX_PLAN_MESSAGE_BYTES {
                    warn!(bytes, %version, "plan larger than the message limit; not sent");
                    let _ = tx
                        .send(Err(Status::resource_exhausted(format!(
                            "plan {version} is {bytes} bytes, over the {MAX_PLAN_MESSAGE_BYTES}-byte limit"
                        ))))
                        .await;
                    break;
                }
                metrics::counter!("steer_plan_updates_sent_total", "kind" => kind).increment(1);
                metrics::counter!("steer_plan_update_bytes_total", "kind" => kind)
                    .increment(bytes as u64);
                if tx.send(Ok(msg)).await.is_err() {
                    break;
                }
                sent = Some((version, content));
                tokio::select! {
                    changed = plans.changed() => if changed.is_err() { break },
                    () = tx.closed() => break,
                    _ = &mut cancel_rx => break,
                }
            }
            metrics::gauge!("steer_plan_subscribers").decrement(1.0);
            if let Ok(mut names) = feed.by_name.lock()
                && names.get(&subscriber).is_some_and(|(i, _)| *i == id)
            {
                names.remove(&subscriber);
            }
        });
        Ok(rx)
    }
}

/// Full on the first message or when a delta would not be smaller.
fn update_message(
    version: PlanVersion,
    computed_at: Timestamp,
    sent: Option<&(PlanVersion, Arc<PlanContent>)>,
    content: &PlanContent,
    sha: &[u8],
) -> pb::PlanUpdate {
    let sha = sha.to_vec();
    let full = || pb::PlanUpdate {
        version: Some(to_pb(version)),
        computed_unix_ms: computed_at.unix_ms(),
        full: true,
        base: None,
        entries: entries(content.entries.iter()),
        removed: Vec::new(),
        content_sha256: sha.clone(),
    };
    let Some((base, old)) = sent else {
        return full();
    };
    let delta = old.delta_to(content);
    if delta.size() >= content.size() {
        return full();
    }
    pb::PlanUpdate {
        version: Some(to_pb(version)),
        computed_unix_ms: computed_at.unix_ms(),
        full: false,
        base: Some(to_pb(*base)),
        entries: entries(delta.changed.iter().map(|(k, v)| (k, v))),
        removed: delta.removed,
        content_sha256: sha.clone(),
    }
}

fn entries<'a>(it: impl Iterator<Item = (&'a String, &'a Arc<[u8]>)>) -> Vec<pb::PlanEntry> {
    it.map(|(k, v)| pb::PlanEntry {
        key: k.clone(),
        body: v.to_vec(),
    })
    .collect()
}

pub fn to_pb(v: PlanVersion) -> pb::PlanVersion {
    pb::PlanVersion {
        epoch: v.epoch,
        sequence: v.sequence,
    }
}

fn from_pb(v: Option<&pb::PlanVersion>) -> PlanVersion {
    v.map(|v| PlanVersion {
        epoch: v.epoch,
        sequence: v.sequence,
    })
    .unwrap_or_default()
}

/// A received update, validated at the boundary into the follower's terms.
pub fn update_from_pb(m: pb::PlanUpdate) -> Result<Update, String> {
    let sha256: [u8; 32] = m
        .content_sha256
        .as_slice()
        .try_into()
        .map_err(|_| format!("content_sha256 is {} bytes, not 32", m.content_sha256.len()))?;
    let version = from_pb(m.version.as_ref());
    if version.epoch == 0 {
        return Err("plan version has epoch 0 (no plan)".to_owned());
    }
    Ok(Update {
        version,
        computed_at: Timestamp::from_unix_ms(m.computed_unix_ms),
        base: (!m.full).then(|| from_pb(m.base.as_ref())),
        changed: m
            .entries
            .into_iter()
            .map(|e| (e.key, Arc::<[u8]>::from(e.body)))
            .collect(),
        removed: m.removed,
        sha256,
    })
}

/// The whole plan a follower holds, as saved on disk.
pub fn plan_to_pb(version: PlanVersion, computed_at: Timestamp, content: &PlanContent) -> pb::Plan {
    pb::Plan {
        version: Some(to_pb(version)),
        computed_unix_ms: computed_at.unix_ms(),
        entries: entries(content.entries.iter()),
        content_sha256: content.sha256().to_vec(),
    }
}

/// A saved plan as a full update (checked like any other by the follower).
pub fn plan_from_pb(p: pb::Plan) -> Result<Update, String> {
    let mut update = update_from_pb(pb::PlanUpdate {
        version: p.version,
        computed_unix_ms: p.computed_unix_ms,
        full: true,
        base: None,
        entries: p.entries,
        removed: Vec::new(),
        content_sha256: p.content_sha256,
    })?;
    // A file saved before the two-level hash: checked by the hash it was
    // saved with, then held under today's, so an upgraded edge still
    // fails static on it.
    let content = PlanContent {
        entries: update.changed.iter().cloned().collect(),
    };
    let sha = content.sha256();
    if sha != update.sha256 && content.legacy_sha256() == update.sha256 {
        update.sha256 = sha;
    }
    Ok(update)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use steer_plansync::{Applied, Follower};
    use steer_types::{Degradation, PlanBody, PopHealth, PopId, PopPlan, RegionId, RegionPlan};

    fn plan(version: u64, pops: usize, drained: Option<usize>) -> Arc<Plan> {
        Arc::new(Plan {
            version,
            computed_at: Timestamp::from_unix_ms(1_000 * version as i64),
            body: PlanBody {
                services: Vec::new(),
                pops: (0..pops)
                    .map(|i| PopPlan {
                        id: PopId::from(format!("pop{i}").as_str()),
                        region: RegionId::from("eu"),
                        health: PopHealth::Up,
                        usable: drained != Some(i),
                        drained_by: (drained == Some(i)).then(|| "d".to_owned()),
                        weight: 100,
                        service_drains: Vec::new(),
                        at_target: false,
                        budget_moves: Vec::new(),
                    })
                    .collect(),
                regions: vec![RegionPlan {
                    id: RegionId::from("eu"),
                    served_by: Vec::new(),
                    level: Degradation::Normal,
                }],
                announcements: Vec::new(),
                rails: Vec::new(),
            },
        })
    }

    /// Full first, then a delta holding only the changed PoP, both applied
    /// and verified by a follower to the plan the controller published.
    #[tokio::test]
    async fn full_then_small_deltas_that_a_follower_applies() {
        let (tx, rx) = watch::channel(plan(1, 50, None));
        let feed = Arc::new(PlanFeed::new());
        let source = PlanSource::Local {
            epoch: 7,
            plans: rx,
        };
        let mut stream = feed.subscribe("edge-a".into(), source).unwrap();
        let mut follower = Follower::default();

        let first = stream.recv().await.unwrap().unwrap();
        assert!(first.full);
        let full_bytes = prost::Message::encoded_len(&first);
        let applied = follower.apply(&update_from_pb(first).unwrap()).unwrap();
        assert_eq!(applied, Applied::New);
        assert_eq!(follower.plan().unwrap().body, plan(1, 50, None).body);

        tx.send_replace(plan(2, 50, Some(3)));
        let second = stream.recv().await.unwrap().unwrap();
        assert!(!second.full);
        assert_eq!(second.entries.len(), 1, "only pop3 changed");
        assert!(prost::Message::encoded_len(&second) * 20 < full_bytes);
        follower.apply(&update_from_pb(second).unwrap()).unwrap();
        assert_eq!(follower.plan().unwrap().body, plan(2, 50, Some(3)).body);
        assert_eq!(
            follower.version(),
            Some(PlanVersion {
                epoch: 7,
                sequence: 2
            })
        );
    }

    /// Subscribers on the same base get the same message (built once per
    /// publication and base), and each applies it to the published plan.
    #[tokio::test]
    async fn subscribers_share_a_publication_and_each_base_gets_its_delta() {
        let (tx, rx) = watch::channel(plan(1, 20, None));
        let feed = Arc::new(PlanFeed::new());
        let rx = PlanSource::Local {
            epoch: 1,
            plans: rx,
        };
        let mut a = feed.subscribe("edge-a".into(), rx.clone()).unwrap();
        let mut b = feed.subscribe("edge-b".into(), rx.clone()).unwrap();
        let (mut fa, mut fb) = (Follower::default(), Follower::default());
        for (stream, f) in [(&mut a, &mut fa), (&mut b, &mut fb)] {
            let m = stream.recv().await.unwrap().unwrap();
            f.apply(&update_from_pb(m).unwrap()).unwrap();
        }
        tx.send_replace(plan(2, 20, Some(1)));
        let (ma, mb) = (
            a.recv().await.unwrap().unwrap(),
            b.recv().await.unwrap().unwrap(),
        );
        assert!(!ma.full);
        assert_eq!(ma, mb, "one message for both");
        fa.apply(&update_from_pb(ma).unwrap()).unwrap();
        assert_eq!(fa.plan().unwrap().body, plan(2, 20, Some(1)).body);
        // A third subscriber joins at 2, then 3 is published: a's base is
        // 2 as is c's; both get the same delta again.
        let mut c = feed.subscribe("edge-c".into(), rx).unwrap();
        let mut fc = Follower::default();
        fc.apply(&update_from_pb(c.recv().await.unwrap().unwrap()).unwrap())
            .unwrap();
        tx.send_replace(plan(3, 20, Some(2)));
        let (ma, mc) = (
            a.recv().await.unwrap().unwrap(),
            c.recv().await.unwrap().unwrap(),
        );
        assert_eq!(ma, mc);
        for (m, f) in [(ma, &mut fa), (mc, &mut fc)] {
            f.apply(&update_from_pb(m).unwrap()).unwrap();
            assert_eq!(f.plan().unwrap().body, plan(3, 20, Some(2)).body);
        }
    }

    /// A second stream under the same subscriber name ends the first.
    #[tokio::test]
    async fn one_stream_per_subscriber() {
        let (_tx, rx) = watch::channel(plan(1, 2, None));
        let feed = Arc::new(PlanFeed::new());
        let source = PlanSource::Local {
            epoch: 1,
            plans: rx,
        };
        let mut older = feed.subscribe("edge-a".into(), source.clone()).unwrap();
        assert!(older.recv().await.unwrap().is_ok());
        let mut newer = feed.subscribe("edge-a".into(), source).unwrap();
        assert!(newer.recv().await.unwrap().is_ok());
        assert!(older.recv().await.is_none(), "the older stream ended");
    }

    /// A shared (clustered) source: nothing is sent before the first
    /// plan, a new leader's epoch orders after the old one's, and a plan
    /// older than one already sent is never sent.
    #[tokio::test]
    async fn a_shared_source_waits_for_a_plan_and_never_goes_back() {
        let (tx, rx) = watch::channel(None);
        let feed = Arc::new(PlanFeed::new());
        let mut stream = feed
            .subscribe("edge-a".into(), PlanSource::Shared(rx))
            .unwrap();
        let published = |epoch, sequence| {
            Some(Published {
                version: PlanVersion { epoch, sequence },
                plan: plan(sequence, 3, None),
            })
        };
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), stream.recv()).await;
        assert!(quiet.is_err(), "sent something before any plan");
        tx.send_replace(published(5, 9));
        let first = update_from_pb(stream.recv().await.unwrap().unwrap()).unwrap();
        assert_eq!(
            first.version,
            PlanVersion {
                epoch: 5,
                sequence: 9
            }
        );
        // Older (a deposed leader's term): skipped.
        tx.send_replace(published(4, 20));
        // A new term with a lower sequence still orders after.
        tx.send_replace(published(6, 2));
        let next = update_from_pb(stream.recv().await.unwrap().unwrap()).unwrap();
        assert_eq!(
            next.version,
            PlanVersion {
                epoch: 6,
                sequence: 2
            }
        );
        tx.send_replace(published(5, 30));
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), stream.recv()).await;
        assert!(quiet.is_err(), "sent a plan older than one already sent");
    }

    #[test]
    fn a_plan_saved_under_the_legacy_hash_still_loads_and_a_tampered_one_does_not() {
        let content = PlanContent::encode(&plan(3, 2, None).body);
        let version = PlanVersion {
            epoch: 1,
            sequence: 3,
        };
        let mut pb = plan_to_pb(version, Timestamp::from_unix_ms(5), &content);
        pb.content_sha256 = content.legacy_sha256().to_vec();
        let mut follower = Follower::default();
        follower.apply(&plan_from_pb(pb.clone()).unwrap()).unwrap();
        assert_eq!(follower.plan().unwrap().body, plan(3, 2, None).body);
        if let Some(e) = pb.entries.last_mut() {
            e.body.push(0);
        }
        let refused = Follower::default().apply(&plan_from_pb(pb).unwrap());
        assert_eq!(refused.unwrap_err().label(), "hash_mismatch");
    }

    #[test]
    fn a_saved_plan_round_trips_and_a_bad_hash_length_is_refused() {
        let content = PlanContent::encode(&plan(3, 2, None).body);
        let version = PlanVersion {
            epoch: 1,
            sequence: 3,
        };
        let pb = plan_to_pb(version, Timestamp::from_unix_ms(5), &content);
        let update = plan_from_pb(pb.clone()).unwrap();
        assert_eq!(update.version, version);
        let mut follower = Follower::default();
        assert!(follower.apply(&update).is_ok());
        let mut bad = pb;
        bad.content_sha256.truncate(5);
        assert!(plan_from_pb(bad).unwrap_err().contains("32"));
    }
}
