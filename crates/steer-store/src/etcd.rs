//! The clustered backend: controllers keep their state in etcd, elect one
//! leader through etcd's election API, and fence every leader write.
//!
//! Keys live under one prefix per deployment (`/steer/<cluster>/`):
//! `state` (the [`PersistedState`] as JSON), `audit/<ms>-<node>-<seq>` (one
//! entry each, so appends never rewrite) and `election` (the leader
//! election's keys, one per candidate's lease), `doc/<name>` (documents)
//! and `plan/` (the published plan: `plan/e/<entry>` one key per plan entry,
//! and `plan/head`, written last, naming the version and content hash; a
//! reader that takes the entries as of the head's revision holds exactly
//! the content the head describes).
//!
//! **Fencing.** Only a store holding a [`Fence`] writes, and every write is
//! one etcd transaction that first compares the leader key's create
//! revision: a leader that was paused past its lease (and replaced) finds
//! its key gone or owned by another lease, so the transaction fails and
//! nothing is written. A store without a fence refuses writes outright.
//!
//! **Quorum.** Every request has a deadline; when etcd cannot answer (quorum
//! lost, every member unreachable) calls fail with
//! [`StoreError::Unavailable`], which the API turns into gRPC UNAVAILABLE.
//! Nothing needs an operator when etcd comes back: the next call works.
//!
//! [`StateStore`] is synchronous, and the control loop calls it from async
//! code, so the store runs its etcd client on a thread of its own with a
//! single-threaded runtime; a call waits on a channel, never blocks a
//! runtime from inside another.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp,
};
use tokio::sync::watch;

use crate::{AuditEntry, PersistedState, StateStore, StoreError};

/// How to reach etcd and where this deployment's keys live.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Client URLs of the members, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix of this deployment, e.g. `/steer/prod-eu/`. Ends in `/`.
    pub prefix: String,
    /// This controller, as the audit keys and the election value name it.
    pub node_id: String,
    /// Where this controller's operator API is reached (e.g.
    /// `http://127.0.0.1:50051`); carried in its election value so
    /// followers can tell callers where the leader is.
    pub advertise: Option<String>,
    /// Deadline of one etcd request (a lost quorum shows as this timeout).
    pub request_timeout: Duration,
    /// Deadline of connecting to the first member.
    pub connect_timeout: Duration,
}

impl EtcdOptions {
    pub fn new(endpoints: Vec<String>, cluster: &str, node_id: &str) -> Self {
        Self {
            endpoints,
            prefix: format!("/steer/{cluster}/"),
            node_id: node_id.to_owned(),
            advertise: None,
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
        }
    }

    fn key(&self, suffix: &str) -> Vec<u8> {
        format!("{}{suffix}", self.prefix).into_bytes()
    }
}

/// Connects a client whose every request has the request deadline.
/// etcd-client connects lazily to the other members and balances over them.
pub async fn connect(options: &EtcdOptions) -> Result<Client, StoreError> {
    connect_with(options, Some(options.request_timeout)).await
}

async fn connect_with(
    options: &EtcdOptions,
    request_timeout: Option<Duration>,
) -> Result<Client, StoreError> {
    let mut connect = ConnectOptions::new();
    if let Some(t) = request_timeout {
        connect = connect.with_timeout(t);
    }
    let connect = connect
        .with_connect_timeout(options.connect_timeout)
        .with_keep_alive(Duration::from_secs(2), options.request_timeout)
        .with_keep_alive_while_idle(true);
    Client::connect(&options.endpoints, Some(connect))
        .await
        .map_err(|e| unavailable(&options.endpoints, "connect", &e))
}

fn unavailable(endpoints: &[String], op: &str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        reason: format!(
            "etcd ({}) did not answer {op}: {e}; no plan changes and no writes until it \
             has a quorum again",
            endpoints.join(", ")
        ),
    }
}

/// Runs an etcd request, retrying while the deadline allows when it could
/// not reach a member: the client balances over every endpoint, including
/// one that is down, and a request that never left cannot have applied.
/// A request that reached etcd and failed is not retried.
async fn retrying<T, F, Fut>(deadline: Duration, mut f: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let until = Instant::now() + deadline;
    let mut pause = Duration::from_millis(20);
    loop {
        match f().await {
            Err(e) if unreached(&e) && Instant::now() + pause < until => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            r => return r,
        }
    }
}

fn unreached(e: &etcd_client::Error) -> bool {
    let text = e.to_string();
    text.contains("tcp connect error") || text.contains("Connection refused")
}

/// Where the plan's entries live (below the deployment prefix).
pub const PLAN_ENTRY: &str = "plan/e/";
/// The plan's head: version and hash, written after the entries.
pub const PLAN_HEAD: &str = "plan/head";
/// etcd's defaults allow 128 operations and 1.5 MiB per request; stay well
/// inside both.
const PLAN_BATCH_OPS: usize = 100;
const PLAN_BATCH_BYTES: usize = 1024 * 1024;
/// Keys one read page returns (a large plan is read in pages, all at the
/// revision of the first).
const READ_PAGE: i64 = 1_000;

/// Keys under a prefix, relative to the deployment's prefix, with their
/// values, as of `revision`.
#[derive(Clone, Debug, Default)]
pub struct PrefixSnapshot {
    pub revision: i64,
    pub kvs: Vec<(String, Vec<u8>)>,
}

/// Reads every key starting with `start` at one revision, a page at a time.
async fn read_prefix(
    client: Client,
    start: Vec<u8>,
    strip: usize,
    deadline: Duration,
) -> Result<PrefixSnapshot, etcd_client::Error> {
    let end = prefix_end(&start);
    let mut out = PrefixSnapshot::default();
    let mut from = start;
    loop {
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_sort(SortTarget::Key, SortOrder::Ascend)
            .with_limit(READ_PAGE);
        if out.revision > 0 {
            options = options.with_revision(out.revision);
        }
        let resp = retrying(deadline, || {
            let (mut c, k, o) = (client.clone(), from.clone(), options.clone());
            async move { c.get(k, Some(o)).await }
        })
        .await?;
        if out.revision == 0 {
            out.revision = resp.header().map_or(0, |h| h.revision());
        }
        let kvs = resp.kvs();
        for kv in kvs {
            let key = kv.key();
            let rel = String::from_utf8_lossy(key.get(strip..).unwrap_or_default()).into_owned();
            out.kvs.push((rel, kv.value().to_vec()));
        }
        match kvs.last() {
            Some(last) if resp.more() => {
                // The next page starts just after the last key.
                let mut next = last.key().to_vec();
                next.push(0);
                from = next;
            }
            _ => return Ok(out),
        }
    }
}

/// The smallest key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// What a prefix watch reports, keys relative to the deployment prefix.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    /// Everything under the prefix as of a revision: sent first and after
    /// every reconnect, so a reader never needs to know what it missed.
    Snapshot(PrefixSnapshot),
    /// One key written, at `revision`.
    Put {
        key: String,
        value: Vec<u8>,
        revision: i64,
    },
    /// One key deleted, at `revision`.
    Delete { key: String, revision: i64 },
    /// etcd stopped answering; a `Snapshot` follows once it does.
    Lost { reason: String },
}

/// Watches every key under `suffix` (relative to the deployment prefix)
/// until the receiver is dropped: a snapshot, then changes in revision
/// order; on any error, a `Lost`, then a fresh snapshot once etcd answers
/// again. The client requires a raft leader, so a member cut off from
/// its quorum ends the watch instead of going silent.
pub fn watch_prefix(options: EtcdOptions, suffix: &str) -> tokio::sync::mpsc::Receiver<WatchEvent> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let start = options.key(suffix);
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(100);
        loop {
            let reason = match watch_once(&options, &start, &tx).await {
                Ok(()) => return, // receiver gone
                Err(reason) => reason,
            };
            if tx.send(WatchEvent::Lost { reason }).await.is_err() {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    });
    rx
}

/// One watch session: Ok when the receiver is gone, Err(why) when etcd
/// failed it.
async fn watch_once(
    options: &EtcdOptions,
    start: &[u8],
    tx: &tokio::sync::mpsc::Sender<WatchEvent>,
) -> Result<(), String> {
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(options.connect_timeout)
        .with_keep_alive(Duration::from_secs(2), options.request_timeout)
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    connect = connect.with_timeout(options.request_timeout);
    let client = Client::connect(&options.endpoints, Some(connect))
        .await
        .map_err(|e| e.to_string())?;
    let strip = options.prefix.len();
    let snapshot = read_prefix(
        client.clone(),
        start.to_vec(),
        strip,
        options.request_timeout,
    )
    .await
    .map_err(|e| e.to_string())?;
    let revision = snapshot.revision;
    if tx.send(WatchEvent::Snapshot(snapshot)).await.is_err() {
        return Ok(());
    }
    // The watch stream lives long: a client without a request deadline.
    let stream_client = Client::connect(
        &options.endpoints,
        Some(
            ConnectOptions::new()
                .with_connect_timeout(options.connect_timeout)
                .with_keep_alive(Duration::from_secs(2), options.request_timeout)
                .with_keep_alive_while_idle(true)
                .with_require_leader(true),
        ),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut watch_client = stream_client.clone();
    let watch = etcd_client::WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = tokio::time::timeout(
        options.request_timeout,
        watch_client.watch(start.to_vec(), Some(watch)),
    )
    .await
    .map_err(|_| "watch did not start in time".to_owned())?
    .map_err(|e| e.to_string())?;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            () = tx.closed() => return Ok(()),
        };
        let Some(resp) = msg.map_err(|e| e.to_string())? else {
            return Err("the watch stream ended".to_owned());
        };
        if resp.canceled() {
            return Err(format!("the watch was cancelled: {}", resp.cancel_reason()));
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let key =
                String::from_utf8_lossy(kv.key().get(strip..).unwrap_or_default()).into_owned();
            let revision = kv.mod_revision();
            let sent = match event.event_type() {
                etcd_client::EventType::Put => {
                    tx.send(WatchEvent::Put {
                        key,
                        value: kv.value().to_vec(),
                        revision,
                    })
                    .await
                }
                etcd_client::EventType::Delete => {
                    tx.send(WatchEvent::Delete { key, revision }).await
                }
            };
            if sent.is_err() {
                return Ok(());
            }
        }
    }
}

/// Proof of leadership that writes are made conditional on: the leader
/// key and its create revision. The revision also orders leaders (each
/// new term's key is created later), so it is the plans' epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub key: Vec<u8>,
    pub revision: i64,
}

type Job = Box<dyn FnOnce(Client) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// [`StateStore`] on etcd.
pub struct EtcdStore {
    options: EtcdOptions,
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    fence: Mutex<Option<Fence>>,
    seq: AtomicU64,
}

impl EtcdStore {
    /// Connects (waiting at most the connect timeout for a first member)
    /// and starts the store's client thread.
    pub fn connect(options: EtcdOptions) -> Result<Self, StoreError> {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), StoreError>>(1);
        let thread_options = options.clone();
        std::thread::Builder::new()
            .name("steer-etcd".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StoreError::Unavailable {
                            reason: format!("cannot start the etcd client runtime: {e}"),
                        }));
                        return;
                    }
                };
                rt.block_on(async move {
                    let client = match connect(&thread_options).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job(client.clone()));
                    }
                });
            })
            .map_err(|e| StoreError::Unavailable {
                reason: format!("cannot start the etcd client thread: {e}"),
            })?;
        let wait = options.connect_timeout + Duration::from_secs(1);
        match ready_rx.recv_timeout(wait) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(unavailable(&options.endpoints, "connect", &"timed out")),
        }
        Ok(Self {
            options,
            jobs,
            fence: Mutex::new(None),
            seq: AtomicU64::new(0),
        })
    }

    /// Writes from now on are made only while `fence` holds (the caller
    /// won an election); `None` makes the store read-only.
    pub fn set_fence(&self, fence: Option<Fence>) {
        *self.fence.lock().unwrap_or_else(|e| e.into_inner()) = fence;
    }

    pub fn fence(&self) -> Option<Fence> {
        self.fence.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn options(&self) -> &EtcdOptions {
        &self.options
    }

    /// Runs `f` on the client thread and waits for its result.
    fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            Box::pin(async move {
                let _ = tx.send(f(client).await);
            })
        });
        let endpoints = &self.options.endpoints;
        self.jobs
            .send(job)
            .map_err(|_| unavailable(endpoints, op, &"the etcd client thread is gone"))?;
        // The request itself has a deadline; this one only guards against
        // a client that never returns.
        let deadline = self.options.request_timeout * 2 + Duration::from_secs(1);
        rx.recv_timeout(deadline)
            .map_err(|_| unavailable(endpoints, op, &"timed out"))?
    }

    /// One fenced transaction: `puts` happen only if the fence holds.
    fn fenced_put(
        &self,
        op: &'static str,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        self.fenced_ops(
            op,
            puts.into_iter()
                .map(|(k, v)| TxnOp::put(k, v, None))
                .collect(),
        )
    }

    /// One fenced transaction: `ops` happen only if the fence holds.
    fn fenced_ops(&self, op: &'static str, ops: Vec<TxnOp>) -> Result<(), StoreError> {
        let Some(fence) = self.fence() else {
            // Also what a leader that just lost its lease to an etcd
            // outage says: name the store, so the operator looks there.
            return Err(StoreError::Fenced {
                reason: format!(
                    "this controller is not the leader; writes go to the leader, elected \
                     through etcd at {} (none is while etcd has no quorum)",
                    self.options.endpoints.join(",")
                ),
            });
        };
        let endpoints = self.options.endpoints.clone();
        let deadline = self.options.request_timeout;
        self.call(op, move |client| async move {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    fence.key.clone(),
                    CompareOp::Equal,
                    fence.revision,
                )])
                .and_then(ops);
            let resp = retrying(deadline, || {
                let (mut c, t) = (client.clone(), txn.clone());
                async move { c.txn(t).await }
            })
            .await
            .map_err(|e| unavailable(&endpoints, op, &e))?;
            if resp.succeeded() {
                Ok(())
            } else {
                Err(StoreError::Fenced {
                    reason: format!(
                        "leadership (term {}) was lost; the write was not made",
                        fence.revision
                    ),
                })
            }
        })
    }

    /// Appends an audit entry that records an attempt changing no shared
    /// state (a refusal, a dry run, a follower's local reload): any
    /// controller may write it, leader or not. Entries of changes go
    /// through [`StateStore::append_audit`], which is fenced.
    pub fn append_attempt(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let (key, bytes) = self.audit_record(entry)?;
        let endpoints = self.options.endpoints.clone();
        let deadline = self.options.request_timeout;
        self.call("append_audit", move |client| async move {
            retrying(deadline, || {
                let (mut c, k, v) = (client.clone(), key.clone(), bytes.clone());
                async move { c.put(k, v, None).await }
            })
            .await
            .map(|_| ())
            .map_err(|e| unavailable(&endpoints, "append_audit", &e))
        })
    }

    fn audit_record(&self, entry: &AuditEntry) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| StoreError::Corrupt {
            path: "audit".into(),
            reason: format!("cannot encode: {e}"),
        })?;
        // Ordered by time, then node, then this node's sequence; fixed
        // width so key order is time order.
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let key = self.options.key(&format!(
            "audit/{:016}-{}-{seq:010}",
            entry.at.0.max(0),
            self.options.node_id
        ));
        Ok((key, bytes))
    }

    /// Publishes a plan: the changed entries and removed keys, in fenced
    /// transactions small enough for etcd's request limits, then `head`
    /// (fenced too). A deposed leader writes nothing; a leader that dies
    /// between batches leaves entries no head describes, which readers
    /// never take on their own (they read entries as of a head) and the
    /// next leader's first publication overwrites.
    pub fn write_plan(
        &self,
        changed: Vec<(String, Vec<u8>)>,
        removed: Vec<String>,
        head: Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut batch: Vec<TxnOp> = Vec::new();
        let mut bytes = 0usize;
        for (key, value) in changed {
            let k = self.options.key(&format!("{PLAN_ENTRY}{key}"));
            bytes += k.len() + value.len();
            batch.push(TxnOp::put(k, value, None));
            if batch.len() >= PLAN_BATCH_OPS || bytes >= PLAN_BATCH_BYTES {
                self.fenced_ops("write_plan", std::mem::take(&mut batch))?;
                bytes = 0;
            }
        }
        for key in removed {
            let k = self.options.key(&format!("{PLAN_ENTRY}{key}"));
            bytes += k.len();
            batch.push(TxnOp::delete(k, None));
            if batch.len() >= PLAN_BATCH_OPS || bytes >= PLAN_BATCH_BYTES {
                self.fenced_ops("write_plan", std::mem::take(&mut batch))?;
                bytes = 0;
            }
        }
        batch.push(TxnOp::put(self.options.key(PLAN_HEAD), head, None));
        self.fenced_ops("write_plan", batch)
    }

    /// Every key under `suffix` (relative to the deployment's prefix) with
    /// its value, as of one revision, which is returned too.
    pub fn read_prefix(&self, suffix: &str) -> Result<PrefixSnapshot, StoreError> {
        let endpoints = self.options.endpoints.clone();
        let deadline = self.options.request_timeout;
        let start = self.options.key(suffix);
        let strip = self.options.prefix.len();
        self.call("read_prefix", move |client| async move {
            read_prefix(client, start, strip, deadline)
                .await
                .map_err(|e| unavailable(&endpoints, "read_prefix", &e))
        })
    }

    fn document_key(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        if !crate::valid_document_name(name) {
            return Err(StoreError::Corrupt {
                path: name.to_owned(),
                reason: "not a document name".into(),
            });
        }
        Ok(self.options.key(&format!("doc/{name}")))
    }

    /// Reads one key's value, `None` when absent.
    fn get(&self, op: &'static str, key: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        let endpoints = self.options.endpoints.clone();
        let deadline = self.options.request_timeout;
        self.call(op, move |client| async move {
            let resp = retrying(deadline, || {
                let (mut c, k) = (client.clone(), key.clone());
                async move { c.get(k, None).await }
            })
            .await
            .map_err(|e| unavailable(&endpoints, op, &e))?;
            Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
        })
    }
}

impl StateStore for EtcdStore {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let key = self.options.key("state");
        let Some(bytes) = self.get("load", key.clone())? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: format!("etcd key {}", String::from_utf8_lossy(&key)),
                reason: e.to_string(),
            })
    }

    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(state).map_err(|e| StoreError::Corrupt {
            path: "state".into(),
            reason: format!("cannot encode: {e}"),
        })?;
        self.fenced_put("save", vec![(self.options.key("state"), bytes)])
    }

    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let (key, bytes) = self.audit_record(entry)?;
        self.fenced_put("append_audit", vec![(key, bytes)])
    }

    fn append_attempt_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.append_attempt(entry)
    }

    fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read_audit_matching(limit, &|_| true)
    }

    fn save_document(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let key = self.document_key(name)?;
        self.fenced_put("save_document", vec![(key, bytes.to_vec())])
    }

    fn load_document(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.document_key(name)?;
        self.get("load_document", key)
    }

    fn read_audit_matching(
        &self,
        limit: usize,
        keep: &dyn Fn(&AuditEntry) -> bool,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        // Newest first, a page at a time, until `limit` entries match.
        const PAGE: i64 = 500;
        let prefix = self.options.key("audit/");
        let mut end: Option<Vec<u8>> = None;
        let mut hits = Vec::new();
        while hits.len() < limit {
            let endpoints = self.options.endpoints.clone();
            let start = prefix.clone();
            let upper = end.clone();
            let deadline = self.options.request_timeout;
            let page: Vec<(Vec<u8>, Vec<u8>)> = self.call("read_audit", move |client| {
                async move {
                    let mut options = GetOptions::new()
                        .with_sort(SortTarget::Key, SortOrder::Descend)
                        .with_limit(PAGE);
                    options = match upper {
                        // Keys strictly below the last page's oldest.
                        Some(upper) => options.with_range(upper),
                        None => options.with_prefix(),
                    };
                    let resp = retrying(deadline, || {
                        let (mut c, k, o) = (client.clone(), start.clone(), options.clone());
                        async move { c.get(k, Some(o)).await }
                    })
                    .await
                    .map_err(|e| unavailable(&endpoints, "read_audit", &e))?;
                    Ok(resp
                        .kvs()
                        .iter()
                        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                        .collect())
                }
            })?;
            let Some((oldest, _)) = page.last() else {
                break;
            };
            end = Some(oldest.clone());
            let full = page.len() as i64 == PAGE;
            for (key, value) in page {
                let entry: AuditEntry =
                    serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                        path: format!("etcd key {}", String::from_utf8_lossy(&key)),
                        reason: e.to_string(),
                    })?;
                if keep(&entry) {
                    hits.push(entry);
                    if hits.len() == limit {
                        break;
                    }
                }
            }
            if !full {
                break;
            }
        }
        hits.reverse();
        Ok(hits)
    }
}

/// What an elected controller holds while it leads.
pub struct Leadership {
    fence: Fence,
    lease: i64,
    lost: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
    client: Client,
}

impl Leadership {
    /// The fence for [`EtcdStore::set_fence`]; its revision is the term.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// The term: later leaders have larger terms.
    pub fn epoch(&self) -> u64 {
        u64::try_from(self.fence.revision).unwrap_or(0)
    }

    /// Whether the lease may have expired (keep-alives failed for longer
    /// than the margin allows). Once true, stays true.
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Resolves when leadership is lost.
    pub async fn lost(&mut self) {
        while !*self.lost.borrow_and_update() {
            if self.lost.changed().await.is_err() {
                return;
            }
        }
    }

    /// Gives leadership up now (revoking the lease deletes the key), so
    /// another candidate takes over without waiting for the lease.
    pub async fn resign(mut self) {
        self.keeper.abort();
        let _ = self.client.lease_revoke(self.lease).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Who leads, as the election says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    pub node: String,
    /// The leader's operator API (`[cluster] advertise`).
    pub url: Option<String>,
    pub term: u64,
}

/// A candidate in the controllers' election.
pub struct Elector {
    client: Client,
    options: EtcdOptions,
    lease_ttl: Duration,
}

impl Elector {
    /// Connects the candidate's own client: a campaign waits as long as
    /// another node leads, so this client has no per-request deadline;
    /// every other call here has one. `lease_ttl` is rounded up to whole
    /// seconds (etcd's lease unit), at least 2 s.
    pub async fn connect(options: EtcdOptions, lease_ttl: Duration) -> Result<Self, StoreError> {
        let client = connect_with(&options, None).await?;
        Ok(Self {
            client,
            options,
            lease_ttl,
        })
    }

    /// Runs one bounded request, retried while no member was reached.
    async fn bounded<T, F, Fut>(&self, op: &str, f: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = self.options.request_timeout;
        match tokio::time::timeout(deadline, retrying(deadline, f)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(&self.options.endpoints, op, &e)),
            Err(_) => Err(unavailable(&self.options.endpoints, op, &"timed out")),
        }
    }

    fn ttl_secs(&self) -> i64 {
        let secs = self.lease_ttl.as_secs() + u64::from(self.lease_ttl.subsec_nanos() > 0);
        i64::try_from(secs.max(2)).unwrap_or(2)
    }

    fn name(&self) -> Vec<u8> {
        self.options.key("election")
    }

    /// The election value: the node id, then where its API is reached.
    fn value(&self) -> String {
        match &self.options.advertise {
            Some(url) => format!("{} {url}", self.options.node_id),
            None => self.options.node_id.clone(),
        }
    }

    /// Waits until this node leads. The lease is kept alive from before
    /// the campaign; if it cannot be kept alive, the returned leadership
    /// reports itself lost a margin before etcd would expire it.
    pub async fn campaign(&self) -> Result<Leadership, StoreError> {
        let endpoints = &self.options.endpoints;
        let mut client = self.client.clone();
        let ttl = self.ttl_secs();
        let lease = self
            .bounded("lease grant", || {
                let mut c = client.clone();
                async move { c.lease_grant(ttl, None).await }
            })
            .await?
            .id();
        let (lost_tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(
            client.clone(),
            lease,
            Duration::from_secs(u64::try_from(ttl).unwrap_or(2)),
            lost_tx,
        ));
        // A member that has not applied the lease grant yet answers "lease
        // not found" (the grant may have gone through another member);
        // it catches up within a raft round or two.
        let mut attempts = 0;
        let campaigned = loop {
            let r = client.campaign(self.name(), self.value(), lease).await;
            match r {
                Err(e)
                    if attempts < 20
                        && (unreached(&e) || e.to_string().contains("lease not found")) =>
                {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => break r,
            }
        };
        let resp = match campaigned {
            Ok(r) => r,
            Err(e) => {
                keeper.abort();
                let _ = self
                    .bounded("lease revoke", || {
                        let mut c = client.clone();
                        async move { c.lease_revoke(lease).await }
                    })
                    .await;
                return Err(unavailable(endpoints, "campaign", &e));
            }
        };
        let Some(leader) = resp.leader() else {
            keeper.abort();
            return Err(unavailable(
                endpoints,
                "campaign",
                &"no leader key in the reply",
            ));
        };
        Ok(Leadership {
            fence: Fence {
                key: leader.key().to_vec(),
                revision: leader.rev(),
            },
            lease,
            lost,
            keeper,
            client,
        })
    }

    /// The current leader: node id, where its API is reached (if it
    /// said), and term.
    pub async fn leader_info(&self) -> Result<Option<LeaderInfo>, StoreError> {
        let mut client = self.client.clone();
        let name = self.name();
        let asked = tokio::time::timeout(self.options.request_timeout, client.leader(name)).await;
        match asked {
            Ok(Ok(resp)) => Ok(resp.kv().map(|kv| {
                let value = String::from_utf8_lossy(kv.value()).into_owned();
                let mut words = value.splitn(2, ' ');
                LeaderInfo {
                    node: words.next().unwrap_or_default().to_owned(),
                    url: words.next().map(str::to_owned),
                    term: u64::try_from(kv.create_revision()).unwrap_or(0),
                }
            })),
            Ok(Err(e)) if e.to_string().contains("no leader") => Ok(None),
            Ok(Err(e)) => Err(unavailable(&self.options.endpoints, "leader", &e)),
            Err(_) => Err(unavailable(&self.options.endpoints, "leader", &"timed out")),
        }
    }

    /// The current leader's node id and term, if any.
    pub async fn leader(&self) -> Result<Option<(String, u64)>, StoreError> {
        let mut client = self.client.clone();
        let name = self.name();
        let asked = tokio::time::timeout(self.options.request_timeout, client.leader(name)).await;
        match asked {
            Ok(Ok(resp)) => Ok(resp.kv().map(|kv| {
                let value = String::from_utf8_lossy(kv.value()).into_owned();
                let node = value.split(' ').next().unwrap_or_default().to_owned();
                (node, u64::try_from(kv.create_revision()).unwrap_or(0))
            })),
            // etcd answers "no leader" as an error.
            Ok(Err(e)) if e.to_string().contains("no leader") => Ok(None),
            Ok(Err(e)) => Err(unavailable(&self.options.endpoints, "leader", &e)),
            Err(_) => Err(unavailable(&self.options.endpoints, "leader", &"timed out")),
        }
    }
}

/// Keeps `lease` alive every third of its TTL. Leadership counts as lost
/// once no keep-alive has succeeded for two thirds of the TTL (before etcd
/// can expire the lease, whatever the clocks), or when etcd says the lease
/// is gone.
async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let interval = ttl / 3;
    let margin = ttl * 2 / 3;
    let mut last_ok = Instant::now();
    let lose = |lost: &watch::Sender<bool>| {
        let _ = lost.send(true);
    };
    let mut stream = None;
    loop {
        if last_ok.elapsed() >= margin {
            lose(&lost);
            return;
        }
        if stream.is_none() {
            match tokio::time::timeout(interval, client.lease_keep_alive(lease)).await {
                Ok(Ok(s)) => stream = Some(s),
                _ => {
                    tokio::time::sleep(interval / 4).await;
                    continue;
                }
            }
        }
        let Some((keeper, responses)) = stream.as_mut() else {
            continue;
        };
        let sent = Instant::now();
        let round = async {
            keeper.keep_alive().await.ok()?;
            responses.message().await.ok().flatten()
        };
        match tokio::time::timeout(interval, round).await {
            Ok(Some(resp)) if resp.ttl() > 0 => {
                last_ok = sent;
                let wait = interval.saturating_sub(sent.elapsed());
                tokio::time::sleep(wait).await;
            }
            Ok(Some(_)) => {
                // TTL 0: etcd no longer knows the lease.
                lose(&lost);
                return;
            }
            _ => {
                stream = None;
            }
        }
    }
}

/// Shared handle so a node can hand one store to the control loop and keep
/// setting its fence from the election task.
pub type SharedEtcdStore = Arc<EtcdStore>;

impl StateStore for Arc<EtcdStore> {
    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        (**self).load()
    }
    fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        (**self).save(state)
    }
    fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        (**self).append_audit(entry)
    }
    fn append_attempt_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        (**self).append_attempt(entry)
    }
    fn read_audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        (**self).read_audit(limit)
    }
    fn save_document(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        (**self).save_document(name, bytes)
    }
    fn load_document(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).load_document(name)
    }
    fn read_audit_matching(
        &self,
        limit: usize,
        keep: &dyn Fn(&AuditEntry) -> bool,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        (**self).read_audit_matching(limit, keep)
    }
}
