//! Linux: up to `BATCH` datagrams per `recvmmsg` and their replies in one
//! `sendmmsg`, so a busy worker pays two system calls per batch instead of
//! two per query. [`serve`] returns only if the calls are unavailable; the
//! caller then falls back to one datagram at a time.
//!
//! Invariants: a reply the kernel refuses (a bad destination) costs only
//! itself, never the rest of the batch; on a wildcard socket every reply
//! leaves from the address its query arrived on, or not at all.

use std::{
    io::{IoSlice, IoSliceMut},
    net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, RawFd},
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use nix::{
    cmsg_space,
    errno::Errno,
    libc,
    sys::socket::{
        ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, SockaddrIn6,
        SockaddrLike, recvmmsg, sendmmsg, setsockopt, sockopt,
    },
};
use tracing::{debug, warn};

use crate::{
    metrics::Counts,
    rrl::RateLimiter,
    udp::{Transport, UdpOutcome, is_bad_source, respond},
    view::DnsView,
};

const BATCH: usize = 32;
/// The latency histogram times one batch in this many: two clock reads
/// and a histogram entry per batch showed in the query path's profile,
/// and a sample of batches describes them as well.
const TIME_EVERY: u32 = 8;
/// Larger requests are not queries anyone needs answered; the kernel
/// truncates them and they are dropped.
const MAX_REQUEST: usize = 4096;

/// Asks the kernel for each datagram's destination address.
pub(crate) fn enable_pktinfo(socket: &UdpSocket, ipv6: bool) -> std::io::Result<()> {
    let set = if ipv6 {
        // On a dual-stack socket IPv4 queries come with a v4-mapped
        // IPV6_PKTINFO too.
        setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)
    } else {
        setsockopt(socket, sockopt::Ipv4PacketInfo, &true)
    };
    set.map_err(std::io::Error::from)
}

/// A peer's address as the kernel gives it: `SockaddrIn` on an IPv4
/// socket, `SockaddrIn6` on an IPv6 one (IPv4 peers v4-mapped). A worker
/// copies each query's address a few times on its way to the reply; the
/// family's own type is 16 or 28 bytes where a `SockaddrStorage` is 128.
pub(crate) trait Peer: SockaddrLike + Copy + Into<SocketAddr> {}

impl Peer for SockaddrIn {}
impl Peer for SockaddrIn6 {}

fn recv_headers<S: Peer>(pktinfo: bool, ipv6: bool) -> MultiHeaders<S> {
    let cmsg = match (pktinfo, ipv6) {
        (false, _) => None,
        (true, false) => Some(cmsg_space!(libc::in_pktinfo)),
        (true, true) => Some(cmsg_space!(libc::in6_pktinfo)),
    };
    MultiHeaders::preallocate(BATCH, cmsg)
}

/// The destination of a received datagram, from its PKTINFO.
fn local_addr<S: Peer>(msg: &nix::sys::socket::RecvMsg<'_, '_, S>) -> Option<IpAddr> {
    for cmsg in msg.cmsgs().ok()? {
        match cmsg {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                // ipi_spec_dst: the local address to answer from (for a
                // broadcast destination, the interface's own address).
                return Some(IpAddr::from(
                    u32::from_be(info.ipi_spec_dst.s_addr).to_be_bytes(),
                ));
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                return Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    None
}

pub(crate) fn serve(
    socket: &UdpSocket,
    view: &ArcSwap<DnsView>,
    rrl: Option<&RateLimiter>,
    pktinfo: bool,
) {
    if socket.local_addr().is_ok_and(|a| a.is_ipv6()) {
        serve_family::<SockaddrIn6>(socket, view, rrl, pktinfo, true);
    } else {
        serve_family::<SockaddrIn>(socket, view, rrl, pktinfo, false);
    }
}

fn serve_family<S: Peer>(
    socket: &UdpSocket,
    view: &ArcSwap<DnsView>,
    rrl: Option<&RateLimiter>,
    pktinfo: bool,
    ipv6: bool,
) {
    let fd = socket.as_raw_fd();
    let mut bufs: Box<[[u8; MAX_REQUEST]; BATCH]> = Box::new([[0u8; MAX_REQUEST]; BATCH]);
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    let mut recv = recv_headers::<S>(pktinfo, ipv6);
    let mut sender = Sender::<S>::new(ipv6);
    let mut meta = Meta {
        lens: [0; BATCH],
        srcs: [None; BATCH],
        locals: [None; BATCH],
    };
    let mut random = crate::handler::next_random();
    // The replies' vector, kept between batches (see `recycle`).
    let mut spare_replies: Vec<Outgoing<'static, S>> = Vec::with_capacity(BATCH);
    let mut batches = 0u32;
    // A batch received after the view changed, answered from the new one.
    let mut carried = None;
    // Whether the last batch was small (see `SMALL_BATCH`).
    let mut small = false;
    // Whether the socket's receive timeout is set (see `FLUSH_AFTER`).
    let mut timed = false;
    // Whether the view changed: one atomic load while it has not (a
    // guard's load costs a compare-and-swap).
    let mut current = arc_swap::Cache::new(view);
    loop {
        // The view answering, held while it is current: the counts below
        // borrow from it across batches.
        let held = Arc::clone(current.load());
        let mut pending = Pending::default();
        loop {
            let received = match carried.take() {
                Some(n) => n,
                None => match receive(fd, &mut recv, &mut bufs, pktinfo, ipv6, &mut meta, small) {
                    Received::Batch(n) => {
                        small = n < SMALL_BATCH;
                        n
                    }
                    Received::Nothing => continue,
                    Received::Idle => {
                        // Nothing came for FLUSH_AFTER: apply what was
                        // counted, then wait without a timeout.
                        pending.flush();
                        timed = !clear_timeout(socket);
                        continue;
                    }
                    Received::Unavailable => {
                        // The one-at-a-time loop waits without a timeout.
                        clear_timeout(socket);
                        return;
                    }
                },
            };
            if !Arc::ptr_eq(current.load(), &held) {
                carried = Some(received);
                break;
            }
            // The first batch is timed, so the histogram has data at once.
            let started = batches.is_multiple_of(TIME_EVERY).then(Instant::now);
            batches = batches.wrapping_add(1);
            let mut replies: Vec<Outgoing<'_, S>> = recycle(std::mem::take(&mut spare_replies));
            for (i, out) in outs.iter_mut().enumerate().take(received) {
                let Some(peer) = meta.srcs[i] else {
                    continue;
                };
                let src: SocketAddr = peer.into();
                if is_bad_source(src) {
                    held.metrics.bad_source.increment(1);
                    continue;
                }
                // A wildcard socket that cannot tell where the query went
                // must not answer from a guess: resolvers drop such replies.
                if pktinfo && meta.locals[i].is_none() {
                    continue;
                }
                let len = meta.lens[i];
                if len == 0 {
                    continue;
                }
                random = crate::select::mix(random);
                let packet = bufs[i].get(..len).unwrap_or_default();
                let client = src.ip().to_canonical();
                let transport = Transport::Udp(rrl);
                if respond(
                    &held,
                    packet,
                    client,
                    random,
                    transport,
                    &mut pending.counts,
                    out,
                ) == UdpOutcome::Reply
                {
                    replies.push(Outgoing {
                        payload: out,
                        to: peer,
                        from: meta.locals[i],
                    });
                }
            }
            let sent = sender.send_all(fd, &replies);
            if sent.failed > 0 {
                held.metrics.send_failed.increment(sent.failed as u64);
            }
            if sent.truncated > 0 {
                held.metrics.truncated.increment(sent.truncated as u64);
            }
            spare_replies = recycle(replies);
            if pending.add(received, started) && !timed {
                timed = set_timeout(socket);
            }
            if let Some(started) = started {
                let per_query = started.elapsed().as_secs_f64() / received.max(1) as f64;
                held.metrics.latency.record(per_query);
            }
        }
    }
}

/// How long a worker's counts may wait to be applied to the metrics (and
/// to the tallies and samples the control loop reads). Applying them costs
/// atomic operations and calls per counter; a worker answering a few
/// queries per batch spent a tenth of its own time on that when it
/// applied them after every batch. A worker that falls idle applies them
/// when its receive times out after this long.
const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// Counts are applied at least every this many queries.
const FLUSH_QUERIES: usize = 64;

/// Counts gathered over batches answered from one view (applied when
/// dropped, as the view changes).
#[derive(Default)]
struct Pending<'v> {
    counts: Counts<'v>,
    queries: usize,
    /// When the oldest count not yet applied was known to be there.
    since: Option<Instant>,
}

impl Pending<'_> {
    /// Notes a batch of `received` queries, whose clock reading (taken for
    /// one batch in `TIME_EVERY`) is `now`, and applies the counts when
    /// they are due. Returns whether counts are left pending.
    fn add(&mut self, received: usize, now: Option<Instant>) -> bool {
        self.queries += received;
        let due = self.queries >= FLUSH_QUERIES
            || matches!((self.since, now), (Some(s), Some(n)) if n.duration_since(s) >= FLUSH_AFTER);
        if due {
            self.flush();
        } else if self.since.is_none() {
            self.since = now.or_else(|| Some(Instant::now()));
        }
        self.queries > 0
    }

    fn flush(&mut self) {
        self.counts.flush();
        self.queries = 0;
        self.since = None;
    }
}

/// A receive timeout, so an idle worker wakes to apply its counts. False
/// if it could not be set (the counts then wait for the next query).
fn set_timeout(socket: &UdpSocket) -> bool {
    socket.set_read_timeout(Some(FLUSH_AFTER)).is_ok()
}

/// No receive timeout: an idle worker sleeps until a query comes. False
/// if the timeout is still set.
fn clear_timeout(socket: &UdpSocket) -> bool {
    socket.set_read_timeout(None).is_ok()
}

/// What each received datagram came with.
struct Meta<S> {
    lens: [usize; BATCH],
    srcs: [Option<S>; BATCH],
    locals: [Option<IpAddr>; BATCH],
}

enum Received {
    /// This many datagrams, their lengths (0: truncated) and addresses in
    /// `Meta`.
    Batch(usize),
    /// Interrupted, or a failure worth another try.
    Nothing,
    /// The receive timeout passed with nothing received.
    Idle,
    /// `recvmmsg` is not available.
    Unavailable,
}

/// Datagrams asked for while the socket's queue holds few: a batch that
/// came back smaller than this asks for this many next, not [`BATCH`].
/// The headers of every slot asked for are written before each call, so a
/// worker answering a query or two per call spent more on slots it did
/// not fill than on the call (one that fills these asks for all again).
const SMALL_BATCH: usize = 8;

fn receive<S: Peer>(
    fd: RawFd,
    recv: &mut MultiHeaders<S>,
    bufs: &mut [[u8; MAX_REQUEST]; BATCH],
    pktinfo: bool,
    ipv6: bool,
    meta: &mut Meta<S>,
    small: bool,
) -> Received {
    let (received, lost_pktinfo) = if small {
        receive_n::<S, SMALL_BATCH>(fd, recv, bufs, pktinfo, meta)
    } else {
        receive_n::<S, BATCH>(fd, recv, bufs, pktinfo, meta)
    };
    if lost_pktinfo {
        // The kernel shrinks each header's control length to what it
        // filled; start again from full-size buffers.
        *recv = recv_headers(pktinfo, ipv6);
    }
    received
}

/// One `recvmmsg` into the first `N` buffers; whether a datagram came
/// without its PKTINFO.
fn receive_n<S: Peer, const N: usize>(
    fd: RawFd,
    recv: &mut MultiHeaders<S>,
    bufs: &mut [[u8; MAX_REQUEST]; BATCH],
    pktinfo: bool,
    meta: &mut Meta<S>,
) -> (Received, bool) {
    let mut lost_pktinfo = false;
    let Some((bufs, _)) = bufs.split_first_chunk_mut::<N>() else {
        return (Received::Nothing, false);
    };
    let received = {
        // On the stack: allocating them showed in the worker's profile.
        let mut iovs: [[IoSliceMut<'_>; 1]; N] = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        match recvmmsg(fd, recv, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
            Ok(results) => {
                let mut n = 0;
                for (i, r) in results.enumerate() {
                    let whole = !r.flags.contains(MsgFlags::MSG_TRUNC);
                    meta.lens[i] = if whole { r.bytes } else { 0 };
                    meta.srcs[i] = r.address;
                    meta.locals[i] = if pktinfo { local_addr(&r) } else { None };
                    lost_pktinfo |= pktinfo && meta.locals[i].is_none();
                    n = i + 1;
                }
                Received::Batch(n)
            }
            Err(Errno::EINTR) => Received::Nothing,
            Err(Errno::EAGAIN) => Received::Idle,
            Err(e @ (Errno::ENOSYS | Errno::EOPNOTSUPP)) => {
                warn!(error = %e, "recvmmsg unavailable; one datagram per call");
                Received::Unavailable
            }
            Err(e) => {
                warn!(error = %e, "recvmmsg failed");
                Received::Nothing
            }
        }
    };
    (received, lost_pktinfo)
}

/// An empty vector in `v`'s allocation, for values of another lifetime:
/// the batch loop's vectors borrow each batch's buffers, and allocating
/// them anew for every batch showed in its profile. (A collect from
/// a vector's own iterator reuses its allocation when the element layout
/// is the same, as it is for one type under two lifetimes.)
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// One reply to send: `payload` to `to`, from `from` on a wildcard socket.
pub(crate) struct Outgoing<'a, S> {
    pub(crate) payload: &'a [u8],
    pub(crate) to: S,
    pub(crate) from: Option<IpAddr>,
}

/// `sendmmsg` with per-reply source addresses and per-reply failures.
pub(crate) struct Sender<S> {
    ipv6: bool,
    plain: MultiHeaders<S>,
    /// Headers with room for one PKTINFO; kept apart from `plain`, whose
    /// messages must carry no control data at all.
    with_source: MultiHeaders<S>,
    /// A run's vectors, kept between runs (see `recycle`).
    spare_slices: Vec<[IoSlice<'static>; 1]>,
    spare_addrs: Vec<Option<S>>,
    /// A reply too big for the interface, truncated (see `frag`).
    spare_reply: Vec<u8>,
}

/// What became of a batch's replies besides those sent whole.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Refused by the kernel, not sent.
    pub(crate) failed: usize,
    /// Too big for the interface: sent truncated instead.
    pub(crate) truncated: usize,
}

impl<S: Peer> Sender<S> {
    pub(crate) fn new(ipv6: bool) -> Self {
        let cmsg = if ipv6 {
            cmsg_space!(libc::in6_pktinfo)
        } else {
            cmsg_space!(libc::in_pktinfo)
        };
        Self {
            ipv6,
            plain: MultiHeaders::preallocate(BATCH, None),
            with_source: MultiHeaders::preallocate(BATCH, Some(cmsg)),
            spare_slices: Vec::with_capacity(BATCH),
            spare_addrs: Vec::with_capacity(BATCH),
            spare_reply: Vec::new(),
        }
    }

    /// Sends every reply it can. `sendmmsg` stops at the first failure
    /// and reports only how many went before it, so the rest is sent
    /// again from there: the failed one is retried once (the error may
    /// have been transient) and, if it fails again, skipped; if it was too
    /// big for the interface, it goes out truncated instead.
    pub(crate) fn send_all(&mut self, fd: RawFd, replies: &[Outgoing<'_, S>]) -> Sent {
        let mut sent = Sent::default();
        let mut start = 0;
        while start < replies.len() {
            // A run of replies from one source shares its control message.
            let from = replies[start].from;
            let run_len = replies[start..]
                .iter()
                .take(BATCH)
                .take_while(|r| r.from == from)
                .count();
            let run = &replies[start..start + run_len];
            let mut i = 0;
            while i < run.len() {
                match self.send_run(fd, &run[i..], from) {
                    Ok(n) if n > 0 => i += n,
                    Err(Errno::EINTR) => {}
                    Err(Errno::EMSGSIZE) if self.send_truncated(fd, &run[i]) => {
                        sent.truncated += 1;
                        i += 1;
                    }
                    Ok(_) | Err(_) => {
                        // The first of run[i..] failed again: skip it.
                        sent.failed += 1;
                        i += 1;
                    }
                }
            }
            start += run_len;
        }
        sent
    }

    /// Sends `reply` truncated (see [`crate::frag::truncated`]).
    fn send_truncated(&mut self, fd: RawFd, reply: &Outgoing<'_, S>) -> bool {
        let mut buf = std::mem::take(&mut self.spare_reply);
        let sent = crate::frag::truncated(reply.payload, &mut buf) && {
            let small = Outgoing {
                payload: &buf,
                to: reply.to,
                from: reply.from,
            };
            matches!(
                self.send_run(fd, std::slice::from_ref(&small), reply.from),
                Ok(1)
            )
        };
        self.spare_reply = buf;
        sent
    }

    fn send_run(
        &mut self,
        fd: RawFd,
        run: &[Outgoing<'_, S>],
        from: Option<IpAddr>,
    ) -> nix::Result<usize> {
        let mut slices: Vec<[IoSlice<'_>; 1]> = recycle(std::mem::take(&mut self.spare_slices));
        slices.extend(run.iter().map(|r| [IoSlice::new(r.payload)]));
        let mut addrs = std::mem::take(&mut self.spare_addrs);
        addrs.clear();
        addrs.extend(run.iter().map(|r| Some(r.to)));
        let sent = match from {
            None => sendmmsg(
                fd,
                &mut self.plain,
                slices.iter(),
                &addrs,
                [],
                MsgFlags::empty(),
            )?
            .count(),
            Some(ip) if self.ipv6 => {
                let v6 = match ip {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: v6.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                let cmsgs = [ControlMessage::Ipv6PacketInfo(&info)];
                sendmmsg(
                    fd,
                    &mut self.with_source,
                    slices.iter(),
                    &addrs,
                    cmsgs,
                    MsgFlags::empty(),
                )?
                .count()
            }
            Some(ip) => {
                let IpAddr::V4(v4) = ip.to_canonical() else {
                    // An IPv6 destination on an IPv4 socket cannot happen.
                    return Err(Errno::EAFNOSUPPORT);
                };
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(v4).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let cmsgs = [ControlMessage::Ipv4PacketInfo(&info)];
                sendmmsg(
                    fd,
                    &mut self.with_source,
                    slices.iter(),
                    &addrs,
                    cmsgs,
                    MsgFlags::empty(),
                )?
                .count()
            }
        };
        self.spare_slices = recycle(slices);
        self.spare_addrs = addrs;
        if sent < run.len() {
            debug!(sent, of = run.len(), "sendmmsg stopped at a failed reply");
        }
        Ok(sent)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::{net::UdpSocket, time::Duration};

    use super::*;

    fn storage(a: SocketAddr) -> SockaddrIn {
        let SocketAddr::V4(a) = a else {
            panic!("an IPv4 address: {a}")
        };
        SockaddrIn::from(a)
    }

    #[test]
    fn counts_wait_for_enough_queries_or_enough_time() {
        let mut p = Pending::default();
        let t0 = Instant::now();
        assert!(p.add(10, Some(t0)), "a few queries wait");
        assert!(p.add(10, None));
        assert!(p.add(10, Some(t0 + FLUSH_AFTER / 2)));
        assert!(
            !p.add(10, Some(t0 + FLUSH_AFTER)),
            "applied once old enough"
        );
        assert_eq!((p.queries, p.since), (0, None));
        assert!(p.add(FLUSH_QUERIES - 1, None));
        assert!(p.since.is_some(), "the wait starts with the first count");
        assert!(!p.add(1, None), "applied at FLUSH_QUERIES");
    }

    #[test]
    fn a_recycled_vector_keeps_its_allocation() {
        let buf = [1u8; 4];
        let mut v: Vec<IoSlice<'_>> = Vec::with_capacity(BATCH);
        v.push(IoSlice::new(&buf));
        let at = v.as_ptr() as usize;
        let w: Vec<IoSlice<'static>> = recycle(v);
        assert_eq!((w.as_ptr() as usize, w.capacity(), w.len()), (at, BATCH, 0));
    }

    #[test]
    fn a_reply_the_kernel_refuses_does_not_drop_the_rest_of_the_batch() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for r in [&a, &b] {
            r.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        }
        let port_zero: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let replies = [
            Outgoing {
                payload: b"one",
                to: storage(a.local_addr().unwrap()),
                from: None,
            },
            // sendmmsg stops here: a destination port of 0 is refused.
            Outgoing {
                payload: b"bad",
                to: storage(port_zero),
                from: None,
            },
            Outgoing {
                payload: b"two",
                to: storage(b.local_addr().unwrap()),
                from: None,
            },
            Outgoing {
                payload: b"three",
                to: storage(a.local_addr().unwrap()),
                from: None,
            },
        ];
        let sent = Sender::new(false).send_all(socket.as_raw_fd(), &replies);
        assert_eq!(
            sent,
            Sent {
                failed: 1,
                truncated: 0
            }
        );
        let mut buf = [0u8; 16];
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"one");
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"two");
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"three");
    }

    /// A reply of at least `len` bytes (a few hundred or more): a question
    /// and TXT records, with EDNS.
    fn reply_of(len: usize) -> Vec<u8> {
        use std::str::FromStr;

        use hickory_server::proto::{
            op::{Edns, Message, OpCode, Query},
            rr::{Name, RData, Record, RecordType, rdata::TXT},
        };
        let name = Name::from_str("big.example.test.").unwrap();
        let mut m = Message::response(7, OpCode::Query);
        m.add_query(Query::query(name.clone(), RecordType::TXT));
        m.set_edns(Edns::new());
        let mut bytes = m.to_vec().unwrap();
        while bytes.len() < len {
            // A TXT record of one string adds 13 bytes and its length.
            let text = "x".repeat((len - bytes.len()).saturating_sub(13).clamp(1, 255));
            let rdata = RData::TXT(TXT::new(vec![text]));
            m.add_answer(Record::from_rdata(name.clone(), 30, rdata));
            bytes = m.to_vec().unwrap();
        }
        bytes
    }

    #[test]
    fn a_reply_too_big_to_leave_unfragmented_goes_out_truncated() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::frag::no_fragments(&socket, false, false).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // Over the 65,507 bytes an IPv4 datagram carries: the kernel
        // refuses it with EMSGSIZE, as it refuses one over the interface
        // MTU with DF set.
        let big = reply_of(65_510);
        assert!(big.len() > 65_507 && big.len() <= 65_535, "{}", big.len());
        let parsed = hickory_server::proto::op::Message::from_vec(&big).unwrap();
        assert!(parsed.edns.is_some());
        let small = reply_of(300);
        let to = storage(client.local_addr().unwrap());
        let replies = [
            Outgoing {
                payload: &big,
                to,
                from: None,
            },
            Outgoing {
                payload: &small,
                to,
                from: None,
            },
        ];
        let sent = Sender::new(false).send_all(socket.as_raw_fd(), &replies);
        assert_eq!(
            sent,
            Sent {
                failed: 0,
                truncated: 1
            }
        );
        let mut buf = vec![0u8; 70_000];
        let n = client.recv(&mut buf).unwrap();
        let got = hickory_server::proto::op::Message::from_vec(&buf[..n]).unwrap();
        assert!(got.metadata.truncation);
        assert_eq!(got.metadata.id, 7);
        assert!(got.answers.is_empty());
        assert!(got.edns.is_some());
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &small[..]);
    }

    #[test]
    fn replies_leave_from_the_address_they_are_given() {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let to = storage(client.local_addr().unwrap());
        let replies = [
            Outgoing {
                payload: b"x",
                to,
                from: Some("127.0.0.2".parse().unwrap()),
            },
            Outgoing {
                payload: b"y",
                to,
                from: Some("127.0.0.3".parse().unwrap()),
            },
        ];
        let sent = Sender::new(false).send_all(socket.as_raw_fd(), &replies);
        assert_eq!(sent, Sent::default());
        let mut buf = [0u8; 4];
        let (_, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 2], port)));
        let (_, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 3], port)));
    }
}
