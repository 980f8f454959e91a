//! One BGP session per configured peer, driven by our own task.
//!
//! We drive netgauze's `Peer` directly and own the life cycle around it:
//!
//! ```text
//!   Idle ──attempt──▶ Connecting (netgauze: Connect/Active/OpenSent/OpenConfirm)
//!    ▲                     │ Established: send whole table + End-of-RIB
//!    │ backoff (jittered)  ▼
//!    └──── NOTIFICATION / hold timer / TCP loss ◀── Established (send diffs)
//! ```
//!
//! Every attempt builds a fresh `Peer` with the same fixed capability set, so
//! a reconnect never inherits what the peer offered last time.

use std::{
    collections::BTreeMap,
    fmt::Debug,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use netgauze_bgp_pkt::{
    BgpMessage,
    capabilities::{
        BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily,
        GracefulRestartCapability, MultiProtocolExtensionsCapability,
    },
    codec::{BgpCodec, BgpCodecDecoderError},
    iana::AS_TRANS,
    notification::{BgpNotificationMessage, CeaseError},
    open::{BgpOpenMessage, BgpOpenMessageParameter},
    wire::{deserializer::BgpParsingIgnoredErrors, serializer::BgpMessageWritingError},
};
use netgauze_bgp_speaker::{
    connection::{ActiveConnect, Connection},
    events::{BgpEvent, ConnectionEvent},
    fsm::FsmState,
    peer::{Peer, PeerAdminEvents, PeerConfigBuilder, PeerEvent, PeerPolicy, PeerProperties},
};
use netgauze_iana::address_family::AddressType;
use steer_types::bgp::{BgpPeerConfig, BgpPeerStatus, BgpSettings, BgpShutdownAction};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::watch,
    time::Instant,
};
use tokio_util::codec::{Decoder, Encoder};
use tracing::{debug, info, warn};

use crate::{
    routes::{RouteTable, diff},
    update::{build_updates, end_of_rib},
};

/// The OPEN we always send: multiprotocol IPv4 + IPv6 unicast, four-octet
/// AS, and graceful restart when enabled. Never echoes the peer.
#[derive(Clone, Debug)]
pub(crate) struct FixedCapabilities {
    open: BgpOpenMessage,
}

impl FixedCapabilities {
    pub(crate) fn new(peer: &BgpPeerConfig, settings: &BgpSettings) -> Self {
        let my_as = u16::try_from(peer.local_as).unwrap_or(AS_TRANS);
        let mut caps = vec![
            BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                AddressType::Ipv4Unicast,
            )),
            BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                AddressType::Ipv6Unicast,
            )),
            BgpCapability::FourOctetAs(FourOctetAsCapability::new(peer.local_as)),
        ];
        if settings.graceful_restart {
            caps.push(BgpCapability::GracefulRestartCapability(
                GracefulRestartCapability::new(
                    false,
                    false,
                    settings.restart_time,
                    vec![
                        // Forwarding is done by the PoP's routers, not by
                        // us: it survives our restart.
                        GracefulRestartAddressFamily::new(true, AddressType::Ipv4Unicast),
                        GracefulRestartAddressFamily::new(true, AddressType::Ipv6Unicast),
                    ],
                ),
            ));
        }
        Self {
            open: BgpOpenMessage::new(
                my_as,
                peer.hold_time,
                peer.router_id,
                vec![BgpOpenMessageParameter::Capabilities(caps.into())],
            ),
        }
    }
}

impl<A, I, D> PeerPolicy<A, I, D> for FixedCapabilities
where
    A: Send + Sync,
    I: AsyncWrite + AsyncRead + Send + Sync,
    D: Decoder<Item = (BgpMessage, BgpParsingIgnoredErrors), Error = BgpCodecDecoderError>
        + Encoder<BgpMessage, Error = BgpMessageWritingError>
        + Send
        + Sync,
{
    async fn open_message(&mut self) -> BgpOpenMessage {
        self.open.clone()
    }

    async fn pre_handle_connection_event_hook(
        &mut self,
        event: ConnectionEvent<A>,
        _connection: &Connection<A, I, D>,
    ) -> ConnectionEvent<A> {
        event
    }

    async fn post_handle_connection_event_hook(
        &self,
        event: ConnectionEvent<A>,
        _connection: Option<&Connection<A, I, D>>,
    ) -> ConnectionEvent<A> {
        event
    }

    async fn pre_handle_peer_event_hook(
        &self,
        event: Option<PeerEvent<A, I>>,
    ) -> Option<PeerEvent<A, I>> {
        event
    }

    async fn post_handle_peer_event_hook(
        &self,
        event: Option<PeerEvent<A, I>>,
    ) -> Option<PeerEvent<A, I>> {
        event
    }
}

/// Connects out, from `local_address` when configured.
#[derive(Clone, Debug)]
pub(crate) struct BoundConnect {
    local: Option<IpAddr>,
}

impl ActiveConnect<SocketAddr, TcpStream, BgpCodec> for BoundConnect {
    async fn connect(&mut self, peer_addr: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = if peer_addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(local) = self.local {
            socket.bind(SocketAddr::new(local, 0))?;
        }
        socket.set_nodelay(true)?;
        socket.connect(peer_addr).await
    }
}

type SessionPeer =
    Peer<SocketAddr, SocketAddr, TcpStream, BgpCodec, BoundConnect, FixedCapabilities>;

/// Jittered exponential backoff; randomness from the std hasher seed, so no
/// extra dependency and no shared RNG.
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            failures: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The next wait: min·2ⁿ capped at max, then scaled into [½, 1].
    pub(crate) fn next_wait(&mut self) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32 << self.failures.min(16))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        use std::hash::{BuildHasher, RandomState};
        let r = RandomState::new().hash_one(self.failures) % 1000;
        base.mul_f64(0.5 + r as f64 / 2000.0)
    }
}

/// Shared, lock-protected status of one session (read by `/status`).
pub(crate) type SharedStatus = Arc<Mutex<(BgpPeerStatus, Option<Instant>)>>;

/// Updates the shared status and mirrors it into per-peer gauges.
fn set_status(status: &SharedStatus, f: impl FnOnce(&mut BgpPeerStatus, &mut Option<Instant>)) {
    if let Ok(mut g) = status.lock() {
        let (s, since) = &mut *g;
        f(s, since);
        let labels = [("peer", s.peer.clone()), ("pop", s.pop.to_string())];
        metrics::gauge!("steer_bgp_session_established", &labels).set(if since.is_some() {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("steer_bgp_prefixes_sent", &labels).set(s.prefixes_sent as f64);
    }
}

fn state_label(s: FsmState) -> &'static str {
    match s {
        FsmState::Idle => "idle",
        FsmState::Connect => "connect",
        FsmState::Active => "active",
        FsmState::OpenSent => "open-sent",
        FsmState::OpenConfirm => "open-confirm",
        FsmState::Established => "established",
    }
}

/// How one attempt ended.
enum AttemptEnd {
    Shutdown,
    /// Never got to Established (or a setup error).
    Failed(String),
    /// An Established session went down (a flap).
    Lost(String),
}

#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) peer: BgpPeerConfig,
    pub(crate) settings: Arc<BgpSettings>,
    pub(crate) table: watch::Receiver<Arc<RouteTable>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// False while the speaker holds the first table back (startup hold):
    /// no session may send a table, or End-of-RIB, before it turns true.
    pub(crate) ready: watch::Receiver<bool>,
    pub(crate) status: SharedStatus,
}

impl Session {
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.peer.address, self.peer.port)
    }

    pub(crate) async fn run(mut self) {
        let mut backoff = Backoff::new(self.settings.reconnect_min, self.settings.reconnect_max);
        let listener = if self.peer.passive {
            let bind = SocketAddr::new(
                self.peer
                    .local_address
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                self.peer.port,
            );
            match TcpListener::bind(bind).await {
                Ok(l) => Some(l),
                Err(e) => {
                    warn!(peer = %self.addr(), %bind, error = %e, "cannot listen for passive BGP peer");
                    set_status(&self.status, |s, _| {
                        s.last_error = Some(format!("listen {bind}: {e}"));
                    });
                    return;
                }
            }
        } else {
            None
        };
        if !*self.ready.borrow() {
            set_status(&self.status, |s, _| s.state = "holding".to_owned());
            tokio::select! {
                ready = self.ready.wait_for(|r| *r) => {
                    if ready.is_err() {
                        return;
                    }
                }
                _ = self.shutdown.wait_for(|s| *s) => return,
            }
            set_status(&self.status, |s, _| s.state = "idle".to_owned());
        }
        let mut quiet = false;
        loop {
            let end = self.attempt(listener.as_ref(), &mut backoff).await;
            set_status(&self.status, |s, since| {
                s.state = "idle".to_owned();
                s.prefixes_sent = 0;
                *since = None;
            });
            match end {
                AttemptEnd::Shutdown => return,
                AttemptEnd::Lost(why) => {
                    // Already logged as a warning; the retries after it
                    // stay quiet.
                    quiet = true;
                    set_status(&self.status, |s, _| s.last_error = Some(why));
                }
                AttemptEnd::Failed(why) => {
                    // The first failure is worth a line; a peer that is
                    // simply not there is retried quietly after that.
                    if quiet {
                        debug!(peer = %self.addr(), pop = %self.peer.pop, %why, "BGP attempt failed");
                    } else {
                        info!(peer = %self.addr(), pop = %self.peer.pop, %why, "BGP session down; retrying with backoff");
                        quiet = true;
                    }
                    set_status(&self.status, |s, _| s.last_error = Some(why));
                }
            }
            let wait = backoff.next_wait();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.changed() => return,
            }
            if *self.shutdown.borrow() {
                return;
            }
        }
    }

    async fn attempt(
        &mut self,
        listener: Option<&TcpListener>,
        backoff: &mut Backoff,
    ) -> AttemptEnd {
        let addr = self.addr();
        let hold = self.peer.hold_time;
        let config = PeerConfigBuilder::new()
            .hold_timer_duration(hold)
            .hold_timer_duration_large_value(hold.max(30).saturating_mul(2).min(240))
            .keepalive_timer_duration(hold / 3)
            .open_delay_timer_duration(0)
            .connect_retry_duration(5)
            .passive_tcp_establishment(self.peer.passive)
            .allow_auto_start(false)
            .allow_auto_stop(false)
            .build();
        let props = PeerProperties::new(
            self.peer.local_as,
            self.peer.peer_as,
            self.peer.router_id,
            addr,
            false,
        );
        let mut peer: SessionPeer = Peer::new(
            addr,
            props,
            config,
            FixedCapabilities::new(&self.peer, &self.settings),
            BoundConnect {
                local: self.peer.local_address,
            },
        );
        // netgauze pops admin events last-in first-out: queue the accepted
        // connection before ManualStart so the start is handled first.
        if let Some(l) = listener {
            // Passive: wait for the peer to connect from its address.
            set_status(&self.status, |s, _| s.state = "active".to_owned());
            loop {
                tokio::select! {
                    accepted = l.accept() => match accepted {
                        Ok((stream, from)) if from.ip() == self.peer.address => {
                            peer.add_admin_event(PeerAdminEvents::TcpConnectionConfirmed((addr, stream)));
                            break;
                        }
                        Ok((_, from)) => debug!(%from, "refused BGP connection from unknown address"),
                        Err(e) => return AttemptEnd::Failed(format!("accept: {e}")),
                    },
                    _ = self.shutdown.changed() => return AttemptEnd::Shutdown,
                }
            }
        }
        peer.add_admin_event(PeerAdminEvents::ManualStart);
        set_status(&self.status, |s, _| s.state = "connect".to_owned());
        metrics::counter!("steer_bgp_connect_attempts_total", "peer" => addr.to_string())
            .increment(1);

        // Adj-RIB-Out: what this peer holds from us right now.
        let mut sent: RouteTable = BTreeMap::new();
        let mut established = false;
        let mut table_open = true;
        let mut asn4 = false;
        // Never stay in a half-open attempt forever.
        let setup_deadline = Instant::now() + Duration::from_secs(u64::from(hold.max(10)) * 2);
        loop {
            let deadline = async {
                if established {
                    std::future::pending::<()>().await
                } else {
                    tokio::time::sleep_until(setup_deadline).await
                }
            };
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => {
                    if established && self.settings.on_shutdown == BgpShutdownAction::Withdraw {
                        let changes = diff(&sent, &BTreeMap::new());
                        for m in build_updates(&changes, asn4) {
                            let _ = peer.send_bgp_message(m).await;
                        }
                        let _ = peer.send_bgp_message(BgpMessage::Notification(
                            BgpNotificationMessage::CeaseError(CeaseError::AdministrativeShutdown {
                                value: Box::new([]),
                            }),
                        )).await;
                        info!(peer = %addr, withdrawn = sent.len(), "BGP shutdown: routes withdrawn");
                    } else if established {
                        // No NOTIFICATION: the peer keeps our routes as
                        // stale for the restart time (RFC 4724).
                        info!(peer = %addr, "BGP shutdown: leaving routes to graceful restart");
                    }
                    return AttemptEnd::Shutdown;
                }
                changed = self.table.changed(), if established && table_open => {
                    if changed.is_err() {
                        // Speaker gone: keep the session and what it holds
                        // (fail static), keepalives included.
                        table_open = false;
                        continue;
                    }
                    let want = self.table.borrow_and_update().clone();
                    let changes = diff(&sent, &want);
                    if !changes.is_empty() {
                        if let Err(e) = self.send_all(&mut peer, build_updates(&changes, asn4)).await {
                            return self.lost(e);
                        }
                        info!(peer = %addr, pop = %self.peer.pop, announced = changes.announce.len(),
                              withdrawn = changes.withdraw.len(), "BGP routes updated");
                        sent = (*want).clone();
                        let n = sent.len();
                        set_status(&self.status, |s, _| s.prefixes_sent = n);
                    }
                }
                _ = deadline => {
                    return AttemptEnd::Failed(format!("no session within {}s", u64::from(hold.max(10)) * 2));
                }
                event = peer.run() => {
                    let state = peer.fsm_state();
                    match &event {
                        Err(e) => return self.lost(e.to_string()),
                        Ok(BgpEvent::NotifMsg(n)) => return self.lost(format!("NOTIFICATION received: {n:?}")),
                        Ok(BgpEvent::HoldTimerExpires) => return self.lost("hold timer expired".to_owned()),
                        Ok(BgpEvent::TcpConnectionFails) => return self.lost(if established {
                            "TCP connection lost".to_owned()
                        } else {
                            format!("cannot connect to {addr}")
                        }),
                        Ok(BgpEvent::ConnectRetryTimerExpires) if !established => {
                            return AttemptEnd::Failed(format!("connect to {addr} timed out"));
                        }
                        Ok(e @ (BgpEvent::BGPHeaderErr(_) | BgpEvent::BGPOpenMsgErr(_)
                            | BgpEvent::UpdateMsgErr(_) | BgpEvent::NotifMsgErr(_)
                            | BgpEvent::NotifMsgVerErr)) => return self.lost(format!("protocol error: {e}")),
                        Ok(_) => {}
                    }
                    if established && state != FsmState::Established {
                        return self.lost(format!("session left Established ({state})"));
                    }
                    if !established && state == FsmState::Idle && peer.connection().is_none() && peer.waiting_admin_events().is_empty() {
                        return AttemptEnd::Failed(format!("session went idle ({event:?})"));
                    }
                    set_status(&self.status, |s, _| s.state = state_label(state).to_owned());
                    if !established && state == FsmState::Established {
                        established = true;
                        backoff.reset();
                        let received = peer.main_connection_received_capabilities().unwrap_or_default();
                        asn4 = received.iter().any(|c| matches!(c, BgpCapability::FourOctetAs(_)));
                        let v6 = received.iter().any(|c| matches!(c,
                            BgpCapability::MultiProtocolExtensions(m) if m.address_type() == AddressType::Ipv6Unicast));
                        let want = self.table.borrow_and_update().clone();
                        // Initial table, then End-of-RIB.
                        let mut msgs = build_updates(&diff(&BTreeMap::new(), &want), asn4);
                        msgs.extend(end_of_rib(true, v6));
                        if let Err(e) = self.send_all(&mut peer, msgs).await {
                            return self.lost(e);
                        }
                        sent = (*want).clone();
                        let n = sent.len();
                        info!(peer = %addr, pop = %self.peer.pop, prefixes = n, asn4, "BGP session established");
                        metrics::counter!("steer_bgp_sessions_established_total", "peer" => addr.to_string()).increment(1);
                        set_status(&self.status, |s, since| {
                            // last_error stays: it says why the last
                            // session ended.
                            s.prefixes_sent = n;
                            *since = Some(Instant::now());
                        });
                    }
                }
            }
        }
    }

    async fn send_all(&self, peer: &mut SessionPeer, msgs: Vec<BgpMessage>) -> Result<(), String> {
        let n = msgs.len() as u64;
        for m in msgs {
            peer.send_bgp_message(m)
                .await
                .map_err(|e| format!("send failed: {e}"))?;
        }
        metrics::counter!("steer_bgp_updates_sent_total", "peer" => self.addr().to_string())
            .increment(n);
        set_status(&self.status, |s, _| s.updates_sent += n);
        Ok(())
    }

    /// An attempt ended; counts a flap if it had been Established.
    fn lost(&self, why: String) -> AttemptEnd {
        let mut flapped = false;
        // One update: a reader never sees the flap counted while the old
        // session still shows as established, or without its reason.
        set_status(&self.status, |s, since| {
            if since.is_some() {
                s.flaps += 1;
                s.state = "idle".to_owned();
                s.prefixes_sent = 0;
                s.last_error = Some(why.clone());
                *since = None;
                flapped = true;
            }
        });
        if flapped {
            warn!(peer = %self.addr(), pop = %self.peer.pop, %why, "BGP session lost; retrying with backoff");
            metrics::counter!("steer_bgp_session_flaps_total", "peer" => self.addr().to_string())
                .increment(1);
            AttemptEnd::Lost(why)
        } else {
            AttemptEnd::Failed(why)
        }
    }
}
