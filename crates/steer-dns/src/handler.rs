//! Serving DNS: binds the listeners and runs every transport through the
//! one request pipeline (`crate::udp::respond`): UDP on fast-path worker
//! threads or, with `udp_workers = 0`, on the tokio runtime; TCP on our own
//! listener.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use arc_swap::ArcSwap;
use steer_types::TcpLimits;
use tokio::net::UdpSocket;
use tracing::warn;

use crate::{
    rrl::RateLimiter,
    tcp::{Connections, TcpMetrics},
    udp::{UdpBind, UdpOutcome, datagram},
    view::DnsView,
};

/// Answers queries from whatever view is current. Cloning shares the view.
#[derive(Clone)]
pub struct DnsHandler {
    view: Arc<ArcSwap<DnsView>>,
    /// Per-prefix UDP response accounting; the view says whether and how
    /// to limit (`[dns.rrl]`, on unless turned off, changed by reloads).
    rrl: Arc<RateLimiter>,
}

impl DnsHandler {
    pub fn new(view: Arc<ArcSwap<DnsView>>) -> Self {
        Self {
            view,
            rrl: Arc::new(RateLimiter::new()),
        }
    }
}

/// Per-thread weighted-random source for `selection = "random"`: a
/// splitmix64 sequence seeded once per thread, no locks, no syscalls.
pub(crate) fn next_random() -> u64 {
    use std::{
        cell::Cell,
        hash::{BuildHasher, RandomState},
    };
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(0u64));
    }
    STATE.with(|s| {
        let next = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        s.set(next);
        crate::select::mix(next)
    })
}

/// UDP on the runtime instead of worker threads (`udp_workers = 0`): the
/// same pipeline as the workers, one datagram at a time.
async fn serve_udp(socket: UdpSocket, view: Arc<ArcSwap<DnsView>>, rrl: Arc<RateLimiter>) {
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    let mut random = next_random();
    loop {
        let (len, src) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let started = Instant::now();
        {
            // The view is pinned for this query only, never across an await.
            let view = view.load();
            let packet = buf.get(..len).unwrap_or_default();
            match datagram(&view, packet, src, &mut random, Some(&rrl), &mut out) {
                None => continue,
                Some(UdpOutcome::Reply) => {}
                Some(UdpOutcome::Drop) => {
                    view.metrics.latency.record(started.elapsed().as_secs_f64());
                    continue;
                }
            }
        }
        let mut sent = socket.send_to(&out, src).await;
        let mut truncated = false;
        if let Err(e) = &sent
            && crate::frag::too_big(e)
            && crate::frag::truncated(&out.clone(), &mut out)
        {
            // Too big for the interface (see `frag`): TC instead.
            truncated = true;
            sent = socket.send_to(&out, src).await;
        }
        // The metrics handles are the same in every view.
        let view = view.load();
        if truncated {
            view.metrics.truncated.increment(1);
        }
        if let Err(e) = sent {
            view.metrics.send_failed.increment(1);
            tracing::debug!(error = %e, "UDP send failed");
        }
        view.metrics.latency.record(started.elapsed().as_secs_f64());
    }
}

/// Binds UDP and TCP on every address of `addrs` and serves until the
/// process ends. UDP is answered by `udp_workers` fast-path threads per
/// address (one SO_REUSEPORT socket each), or on the runtime when
/// `udp_workers` is 0; TCP by our own listener under `tcp_limits`. All
/// of them answer through the same request pipeline.
/// `[::]` serves IPv4 too, unless `0.0.0.0` on the same port is listed.
pub async fn serve(
    addrs: Vec<SocketAddr>,
    handler: DnsHandler,
    udp_workers: usize,
    tcp_limits: TcpLimits,
) -> std::io::Result<()> {
    let metrics = Arc::new(TcpMetrics::register());
    let table = Connections::new(tcp_limits);
    let mut tcp_tasks = tokio::task::JoinSet::new();
    for &addr in &addrs {
        let v6_only = addr.is_ipv6()
            && addrs.contains(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port())));
        let tcp = crate::tcp::bind(addr, v6_only)?;
        let bind = UdpBind { addr, v6_only };
        if udp_workers == 0 {
            tokio::spawn(serve_udp(
                bind_udp(bind)?,
                handler.view.clone(),
                handler.rrl.clone(),
            ));
        } else {
            crate::udp::spawn_workers(
                bind,
                udp_workers,
                handler.view.clone(),
                Some(handler.rrl.clone()),
            )?;
        }
        tcp_tasks.spawn(crate::tcp::serve(
            tcp,
            handler.view.clone(),
            table.clone(),
            metrics.clone(),
        ));
        tracing::info!(%addr, udp_workers, dual_stack = addr.is_ipv6() && addr.ip().is_unspecified() && !v6_only, "DNS listening (UDP+TCP)");
    }
    tcp_tasks.join_next().await;
    Err(std::io::Error::other("DNS TCP listener ended"))
}

fn bind_udp(bind: UdpBind) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(bind.addr),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if bind.addr.is_ipv6() {
        socket.set_only_v6(bind.v6_only)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&bind.addr.into())?;
    crate::frag::keep_unfragmented(&socket, bind.addr, bind.v6_only);
    UdpSocket::from_std(socket.into())
}
