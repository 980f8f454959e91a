//! DNS over TCP (RFC 7766) with our own accept loop and framing, so a peer
//! holds only what the limits allow: each connection is counted against a
//! global and a per-client-address cap before it gets a task, one that
//! brings no complete query for the idle timeout is closed, and accept
//! errors (EMFILE, ENFILE) back off instead of spinning. Each message is
//! answered by the UDP pipeline ([`crate::udp::respond`]) with TCP's size
//! limit and no rate limiting (TCP sources cannot be spoofed).
//!
//! The connection table takes a mutex on accept and close only; queries
//! never touch it.

use std::{
    collections::HashMap,
    io::ErrorKind,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwap;
use metrics::{Counter, Gauge, counter, gauge};
use steer_types::TcpLimits;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::timeout,
};
use tracing::{debug, warn};

use crate::{
    udp::{Transport, UdpOutcome, is_bad_source, respond},
    view::DnsView,
};

/// Counters for every limit hit, registered (at zero) when the listener
/// starts so alerts can be written before the first incident.
pub(crate) struct TcpMetrics {
    rejected_global: Counter,
    rejected_per_client: Counter,
    rejected_bad_source: Counter,
    idle_closed: Counter,
    accept_errors: Counter,
    open: Gauge,
}

impl TcpMetrics {
    pub(crate) fn register() -> Self {
        Self {
            rejected_global: counter!("steer_dns_tcp_rejected_total", "reason" => "global_cap"),
            rejected_per_client: counter!("steer_dns_tcp_rejected_total", "reason" => "per_client_cap"),
            rejected_bad_source: counter!("steer_dns_tcp_rejected_total", "reason" => "bad_source"),
            idle_closed: counter!("steer_dns_tcp_idle_closed_total"),
            accept_errors: counter!("steer_dns_tcp_accept_errors_total"),
            open: gauge!("steer_dns_tcp_connections"),
        }
    }
}

/// Why a connection was refused on accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    GlobalCap,
    PerClientCap,
}

#[derive(Default)]
struct Counts {
    total: u32,
    per_client: HashMap<IpAddr, u32>,
}

/// Open connections, over all listeners.
pub(crate) struct Connections {
    limits: TcpLimits,
    counts: Mutex<Counts>,
}

/// One admitted connection; frees its place when dropped.
pub(crate) struct Slot {
    table: Arc<Connections>,
    client: IpAddr,
}

impl Connections {
    pub(crate) fn new(limits: TcpLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::default(),
        })
    }

    /// Admits a connection from `client` (canonical); an IPv6 client is
    /// counted by its /64, which one host usually holds whole.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Slot, Refusal> {
        let client = client_key(client);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.limits.max_connections {
            return Err(Refusal::GlobalCap);
        }
        let mine = counts.per_client.entry(client).or_insert(0);
        if *mine >= self.limits.max_connections_per_client {
            return Err(Refusal::PerClientCap);
        }
        *mine += 1;
        counts.total += 1;
        Ok(Slot {
            table: self.clone(),
            client,
        })
    }

    pub(crate) fn open(&self) -> u32 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !(u128::MAX >> 64)).into()),
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_client.remove(&self.client);
            }
        }
    }
}

/// Accept errors that mean "out of descriptors or memory": retrying at
/// once would spin, so they back off.
fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        use nix::errno::Errno;
        if let Some(n) = e.raw_os_error() {
            return matches!(
                Errno::from_raw(n),
                Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM
            );
        }
    }
    e.kind() == ErrorKind::OutOfMemory
}

/// The next wait after an accept error: 100 ms, doubling up to 1 s.
pub(crate) fn next_backoff(previous: Duration) -> Duration {
    (previous * 2).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Accepts on `listener` until the process ends.
pub(crate) async fn serve(
    listener: TcpListener,
    view: Arc<ArcSwap<DnsView>>,
    table: Arc<Connections>,
    metrics: Arc<TcpMetrics>,
) {
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(e) if is_resource_exhaustion(&e) => {
                metrics.accept_errors.increment(1);
                backoff = next_backoff(backoff);
                warn!(error = %e, ?backoff, "DNS TCP accept failed; backing off");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(e) => {
                // Per-connection errors (a peer that reset before accept):
                // the next accept is a different connection.
                metrics.accept_errors.increment(1);
                debug!(error = %e, "DNS TCP accept failed");
                continue;
            }
        };
        if is_bad_source(src) {
            metrics.rejected_bad_source.increment(1);
            continue;
        }
        let client = src.ip().to_canonical();
        let slot = match table.admit(client) {
            Ok(slot) => slot,
            Err(refusal) => {
                match refusal {
                    Refusal::GlobalCap => metrics.rejected_global.increment(1),
                    Refusal::PerClientCap => metrics.rejected_per_client.increment(1),
                }
                debug!(%client, ?refusal, "DNS TCP connection refused");
                // Dropping the stream closes it now.
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        metrics.open.set(f64::from(table.open()));
        let view = view.clone();
        let metrics = metrics.clone();
        let idle = table.limits.idle_timeout;
        tokio::spawn(async move {
            if connection(stream, client, &view, idle).await == Closed::Idle {
                metrics.idle_closed.increment(1);
            }
            let table = slot.table.clone();
            drop(slot);
            metrics.open.set(f64::from(table.open()));
        });
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Closed {
    /// By the peer, or on an IO error.
    Peer,
    /// No complete query (or no room for our reply) within the idle timeout.
    Idle,
    /// A message shorter than a DNS header: the peer does not speak DNS
    /// (NSD and Knot close such a connection too).
    NotDns,
}

/// The DNS header's length: no message is shorter.
const HEADER: usize = 12;

/// Answers length-prefixed queries in order until the peer closes or goes
/// quiet for `idle`.
async fn connection(
    mut stream: TcpStream,
    client: IpAddr,
    view: &ArcSwap<DnsView>,
    idle: Duration,
) -> Closed {
    let mut len = [0u8; 2];
    let mut packet = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(1024);
    let mut random = crate::handler::next_random();
    loop {
        match timeout(idle, stream.read_exact(&mut len)).await {
            Err(_) => return Closed::Idle,
            Ok(Err(_)) => return Closed::Peer,
            Ok(Ok(_)) => {}
        }
        packet.resize(usize::from(u16::from_be_bytes(len)), 0);
        match timeout(idle, stream.read_exact(&mut packet)).await {
            Err(_) => return Closed::Idle,
            Ok(Err(_)) => return Closed::Peer,
            Ok(Ok(_)) => {}
        }
        if packet.len() < HEADER {
            view.load().metrics.malformed.increment(1);
            return Closed::NotDns;
        }
        random = crate::select::mix(random);
        let reply = {
            let view = view.load();
            respond(
                &view,
                &packet,
                client,
                random,
                Transport::Tcp,
                &mut crate::metrics::Counts::default(),
                &mut out,
            )
        };
        if reply != UdpOutcome::Reply {
            continue;
        }
        let Ok(prefix) = u16::try_from(out.len()) else {
            continue;
        };
        let mut frame = Vec::with_capacity(out.len() + 2);
        frame.extend_from_slice(&prefix.to_be_bytes());
        frame.extend_from_slice(&out);
        match timeout(idle, stream.write_all(&frame)).await {
            Err(_) => return Closed::Idle,
            Ok(Err(_)) => return Closed::Peer,
            Ok(Ok(())) => {}
        }
    }
}

/// Binds a TCP listener; `[::]` is dual-stack unless `v6_only`.
pub(crate) fn bind(addr: SocketAddr, v6_only: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Raises this process's open-file limit to its hard limit, so connection
/// caps, not descriptors, are what bounds DNS over TCP. Returns the new
/// soft limit.
#[cfg(target_os = "linux")]
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// Elsewhere the limit is left as it is.
#[cfg(not(target_os = "linux"))]
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_client_and_overall_and_free_on_drop() {
        let table = Connections::new(TcpLimits {
            max_connections: 3,
            max_connections_per_client: 2,
            idle_timeout: Duration::from_secs(1),
        });
        let a: IpAddr = [192, 0, 2, 1].into();
        let b: IpAddr = [192, 0, 2, 2].into();
        let a1 = table.admit(a).unwrap();
        let _a2 = table.admit(a).unwrap();
        assert_eq!(table.admit(a).err(), Some(Refusal::PerClientCap));
        let _b1 = table.admit(b).unwrap();
        assert_eq!(table.admit(b).err(), Some(Refusal::GlobalCap));
        drop(a1);
        assert_eq!(table.open(), 2);
        assert!(table.admit(b).is_ok());

        // IPv6 clients are counted per /64.
        let table = Connections::new(TcpLimits {
            max_connections: 10,
            max_connections_per_client: 2,
            idle_timeout: Duration::from_secs(1),
        });
        let _x = table.admit("2001:db8:0:1::1".parse().unwrap()).unwrap();
        let _y = table.admit("2001:db8:0:1::2".parse().unwrap()).unwrap();
        assert_eq!(
            table.admit("2001:db8:0:1:ffff::3".parse().unwrap()).err(),
            Some(Refusal::PerClientCap)
        );
        assert!(table.admit("2001:db8:0:2::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn accept_errors_back_off_from_100ms_to_1s() {
        let mut d = Duration::ZERO;
        let waits: Vec<u128> = (0..6)
            .map(|_| {
                d = next_backoff(d);
                d.as_millis()
            })
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        let emfile = std::io::Error::from_raw_os_error(24);
        assert!(is_resource_exhaustion(&emfile));
        let reset = std::io::Error::from(ErrorKind::ConnectionAborted);
        assert!(!is_resource_exhaustion(&reset));
    }
}
