//! The UDP fast path: one blocking worker thread per SO_REUSEPORT socket,
//! each answering datagrams with [`respond_udp`]. hickory-proto still parses
//! and encodes every message; what this skips is hickory-server's per-query
//! task, channels and response plumbing. TCP stays on hickory-server.
//!
//! [`respond_udp`] is a pure function of (view, datagram, source) and is the
//! target of the fuzzer (`fuzz/`): it must never panic, and it drops what it
//! cannot answer (responses, runts) rather than reply to it.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::Arc,
    time::Instant,
};

use arc_swap::ArcSwap;
use hickory_server::proto::{
    op::{
        Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
        emit_message_parts,
    },
    rr::{LowerName, Record, rdata::opt::ClientSubnet},
    serialize::binary::{BinDecodable, BinDecoder, BinEncoder},
};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::warn;

use crate::{
    answer::{Answer, Question, answer},
    edns::{client_info, client_subnet, echo_subnet, response_edns},
    rrl::{RateLimiter, RrlAction},
    view::DnsView,
};

/// What became of one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpOutcome {
    /// `out` holds the reply.
    Reply,
    /// Nothing to send (a response, a runt, or rate-limited).
    Drop,
}

/// Answers one UDP datagram from `src` into `out`. Never panics.
pub fn respond_udp(
    view: &DnsView,
    packet: &[u8],
    src: IpAddr,
    random: u64,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    respond(view, packet, src, random, None, out)
}

fn respond(
    view: &DnsView,
    packet: &[u8],
    src: IpAddr,
    random: u64,
    rrl: Option<&RateLimiter>,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    out.clear();
    let metrics = &view.metrics;
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
        metrics.malformed.increment(1);
        return UdpOutcome::Drop;
    };
    if header.metadata.message_type == MessageType::Response {
        // Never answer answers: that is how reflection loops start.
        return UdpOutcome::Drop;
    }
    let Ok(request) = Message::from_vec(packet) else {
        metrics.malformed.increment(1);
        return error_reply(
            &header.metadata,
            &[],
            None,
            ResponseCode::FormErr,
            view,
            out,
        );
    };

    let mut edns = match response_edns(request.edns.as_ref(), view.udp_payload) {
        Ok(e) => e,
        Err(e) => {
            return error_reply(
                &request.metadata,
                &request.queries,
                Some(&e),
                ResponseCode::BADVERS,
                view,
                out,
            );
        }
    };
    if let (Some(rrl), Some(settings)) = (rrl, &view.rrl) {
        match rrl.check(src, settings) {
            RrlAction::Send => {}
            RrlAction::Drop => {
                metrics.rrl_drop.increment(1);
                return UdpOutcome::Drop;
            }
            RrlAction::Slip => {
                metrics.rrl_slip.increment(1);
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.truncation = true;
                return encode(&metadata, &request.queries, &[], None, edns.as_ref(), out);
            }
        }
    }
    if request.metadata.op_code != OpCode::Query {
        let rcode = ResponseCode::NotImp;
        return error_reply(
            &request.metadata,
            &request.queries,
            edns.as_ref(),
            rcode,
            view,
            out,
        );
    }
    let [query] = request.queries.as_slice() else {
        let rcode = ResponseCode::FormErr;
        return error_reply(
            &request.metadata,
            &request.queries,
            edns.as_ref(),
            rcode,
            view,
            out,
        );
    };

    let ecs = client_subnet(request.edns.as_ref());
    let client = client_info(ecs.as_ref(), src, random);
    let name = LowerName::new(query.name());
    let question = Question {
        name: &name,
        qtype: query.query_type(),
        qclass: query.query_class(),
    };
    let result = answer(view, &question, &client);
    echo_subnet(edns.as_mut(), ecs.as_ref(), result.ecs_scope);
    metrics.record(&question, &result, ecs.is_some());

    let limit = usize::from(edns.as_ref().map_or(512, Edns::max_payload));
    let ecs_echo = ecs.map(|cs| (cs, result.ecs_scope));
    let payload = edns.as_ref().map(Edns::max_payload);
    if let Some(done) = write_fast(packet, &result, payload, ecs_echo, limit, out) {
        if done.1 {
            metrics.truncated.increment(1);
        }
        return done.0;
    }

    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = result.authoritative;
    metadata.response_code = result.rcode;
    let answers: Vec<&Record> = result.answers.iter().map(|r| &r.record).collect();
    let sent = encode(
        &metadata,
        &request.queries,
        &answers,
        result.soa.map(|r| &r.record),
        edns.as_ref(),
        out,
    );
    if sent == UdpOutcome::Reply && out.len() > limit {
        // Too big: TC and no records, so the client retries over TCP and
        // never caches a partial RRset (RFC 2181 9).
        metrics.truncated.increment(1);
        metadata.truncation = true;
        return encode(&metadata, &request.queries, &[], None, edns.as_ref(), out);
    }
    sent
}

/// Writes the reply from pre-encoded records: header, the question copied
/// byte for byte (case kept), answers whose owner points at it, the SOA,
/// and the OPT record. `None` when something is not pre-encoded; the
/// caller then uses hickory's encoder. The bool says it was truncated.
fn write_fast(
    packet: &[u8],
    result: &Answer<'_>,
    payload: Option<u16>,
    ecs: Option<(ClientSubnet, u8)>,
    limit: usize,
    out: &mut Vec<u8>,
) -> Option<(UdpOutcome, bool)> {
    let rcode = u16::from(result.rcode);
    if rcode > 0xf {
        return None;
    }
    // The question ends after its name (labels, or a pointer) and 4 bytes.
    let mut i = 12;
    loop {
        let len = *packet.get(i)?;
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 == 0xc0 {
            i += 2;
            break;
        }
        i += 1 + usize::from(len);
    }
    let question = packet.get(12..i + 4)?;
    let soa = match result.soa {
        Some(rr) => Some(rr.wire()?),
        None => None,
    };
    let mut records = 0;
    for rr in &result.answers {
        records += rr.wire()?.len();
    }
    let mut opt = [0u8; 11 + 4 + 4 + 16];
    let opt_len = match payload {
        None => 0,
        Some(size) => {
            opt[..3].copy_from_slice(&[0, 0, 41]);
            opt[3..5].copy_from_slice(&size.to_be_bytes());
            // ext-rcode 0, version 0, flags 0 (bytes 5..9), RDLENGTH.
            let mut n = 11;
            if let Some((cs, scope)) = ecs {
                let (family, octets): (u16, [u8; 16]) = match cs.addr() {
                    IpAddr::V4(a) => {
                        let mut o = [0; 16];
                        o[..4].copy_from_slice(&a.octets());
                        (1, o)
                    }
                    IpAddr::V6(a) => (2, a.octets()),
                };
                let bytes = usize::from(cs.source_prefix()).div_ceil(8).min(16);
                let len = (4 + bytes) as u16;
                opt[11..13].copy_from_slice(&8u16.to_be_bytes());
                opt[13..15].copy_from_slice(&len.to_be_bytes());
                opt[15..17].copy_from_slice(&family.to_be_bytes());
                opt[17] = cs.source_prefix();
                opt[18] = scope;
                opt[19..19 + bytes].copy_from_slice(&octets[..bytes]);
                n = 19 + bytes;
            }
            opt[9..11].copy_from_slice(&((n - 11) as u16).to_be_bytes());
            n
        }
    };
    let full = 12 + question.len() + records + soa.map_or(0, <[u8]>::len) + opt_len;
    let truncated = full > limit;

    out.clear();
    out.extend_from_slice(packet.get(..2)?);
    let req2 = *packet.get(2)?;
    let req3 = *packet.get(3)?;
    let aa = if result.authoritative { 0x04 } else { 0 };
    let tc = if truncated { 0x02 } else { 0 };
    // QR, the request's opcode and RD; RA and AD clear; CD copied.
    out.push(0x80 | (req2 & 0x78) | aa | tc | (req2 & 0x01));
    out.push((req3 & 0x10) | rcode as u8);
    let (an, ns) = if truncated {
        (0, 0)
    } else {
        (result.answers.len() as u16, u16::from(soa.is_some()))
    };
    for count in [1, an, ns, u16::from(opt_len > 0)] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(question);
    if !truncated {
        for rr in &result.answers {
            out.extend_from_slice(rr.wire()?);
        }
        if let Some(soa) = soa {
            out.extend_from_slice(soa);
        }
    }
    out.extend_from_slice(&opt[..opt_len]);
    Some((UdpOutcome::Reply, truncated))
}

fn error_reply(
    request: &Metadata,
    queries: &[Query],
    edns: Option<&Edns>,
    rcode: ResponseCode,
    view: &DnsView,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    view.metrics.rcode(rcode).increment(1);
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = rcode;
    encode(&metadata, queries, &[], None, edns, out)
}

fn encode(
    metadata: &Metadata,
    queries: &[Query],
    answers: &[&Record],
    soa: Option<&Record>,
    edns: Option<&Edns>,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    out.clear();
    let mut encoder = BinEncoder::new(out);
    let emitted = emit_message_parts(
        metadata,
        &mut queries.iter(),
        &mut answers.iter().copied(),
        &mut soa.into_iter(),
        &mut std::iter::empty::<&Record>(),
        edns,
        None,
        &mut encoder,
    );
    match emitted {
        Ok(_) => UdpOutcome::Reply,
        Err(e) => {
            warn!(error = %e, "cannot encode a UDP response");
            out.clear();
            UdpOutcome::Drop
        }
    }
}

/// Binds `workers` SO_REUSEPORT UDP sockets on `addr` and answers on each
/// from its own thread until the process ends. Returns the bound address
/// (its port when `addr` asked for port 0).
pub fn spawn_udp_workers(
    addr: SocketAddr,
    workers: usize,
    view: Arc<ArcSwap<DnsView>>,
    rrl: Option<Arc<RateLimiter>>,
) -> std::io::Result<SocketAddr> {
    let first = bind_reuseport(addr)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind_reuseport(bound)?);
    }
    for (i, socket) in sockets.into_iter().enumerate() {
        let view = view.clone();
        let rrl = rrl.clone();
        std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || {
                #[cfg(target_os = "linux")]
                batched::serve(&socket, &view, rrl.as_deref());
                serve_socket(&socket, &view, rrl.as_deref());
            })?;
    }
    Ok(bound)
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Room for bursts while a worker is busy.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn serve_socket(socket: &UdpSocket, view: &ArcSwap<DnsView>, rrl: Option<&RateLimiter>) {
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    let mut random = crate::handler::next_random();
    loop {
        let (len, src) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let started = Instant::now();
        // One load per query; the guard pins this view until the reply is
        // sent, and a plan swap never waits for it.
        let view = view.load();
        random = crate::select::mix(random);
        let packet = buf.get(..len).unwrap_or_default();
        if respond(&view, packet, src.ip(), random, rrl, &mut out) == UdpOutcome::Reply
            && let Err(e) = socket.send_to(&out, src)
        {
            tracing::debug!(error = %e, "UDP send failed");
        }
        view.metrics.latency.record(started.elapsed().as_secs_f64());
    }
}

/// Linux: up to `BATCH` datagrams per `recvmmsg` and their replies in one
/// `sendmmsg`, so a busy worker pays two system calls per batch instead of
/// two per query. Returns only if the calls are unavailable; the caller then
/// falls back to one datagram at a time.
#[cfg(target_os = "linux")]
mod batched {
    use std::{
        io::{IoSlice, IoSliceMut},
        net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
        os::fd::AsRawFd,
        time::Instant,
    };

    use arc_swap::ArcSwap;
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
    use tracing::{debug, warn};

    use super::{UdpOutcome, respond};
    use crate::{rrl::RateLimiter, view::DnsView};

    const BATCH: usize = 32;
    /// Larger requests are not queries anyone needs answered; the kernel
    /// truncates them and they are dropped.
    const MAX_REQUEST: usize = 4096;

    fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
        }
        a.as_sockaddr_in6()
            .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
    }

    pub(super) fn serve(socket: &UdpSocket, view: &ArcSwap<DnsView>, rrl: Option<&RateLimiter>) {
        let fd = socket.as_raw_fd();
        let mut bufs = vec![[0u8; MAX_REQUEST]; BATCH];
        let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
        let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut lens = [0usize; BATCH];
        let mut srcs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
        let mut random = crate::handler::next_random();
        loop {
            let received = {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                    bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                match recvmmsg(
                    fd,
                    &mut recv_headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(results) => {
                        let mut n = 0;
                        for (i, r) in results.enumerate() {
                            let whole = !r.flags.contains(MsgFlags::MSG_TRUNC);
                            lens[i] = if whole { r.bytes } else { 0 };
                            srcs[i] = r.address;
                            n = i + 1;
                        }
                        n
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e @ (nix::errno::Errno::ENOSYS | nix::errno::Errno::EOPNOTSUPP)) => {
                        warn!(error = %e, "recvmmsg unavailable; one datagram per call");
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "recvmmsg failed");
                        continue;
                    }
                }
            };
            let started = Instant::now();
            let view = view.load();
            let mut send_addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(received);
            let mut replies: Vec<[IoSlice<'_>; 1]> = Vec::with_capacity(received);
            for (i, out) in outs.iter_mut().enumerate().take(received) {
                let Some(src) = srcs[i].as_ref().and_then(std_addr) else {
                    continue;
                };
                let len = lens[i];
                if len == 0 {
                    continue;
                }
                random = crate::select::mix(random);
                let packet = bufs[i].get(..len).unwrap_or_default();
                if respond(&view, packet, src.ip(), random, rrl, out) == UdpOutcome::Reply {
                    send_addrs.push(srcs[i]);
                    replies.push([IoSlice::new(out)]);
                }
            }
            if !replies.is_empty() {
                let sent = sendmmsg(
                    fd,
                    &mut send_headers,
                    replies.iter(),
                    &send_addrs,
                    [],
                    MsgFlags::empty(),
                );
                if let Err(e) = sent {
                    debug!(error = %e, "sendmmsg failed");
                }
            }
            let per_query = started.elapsed().as_secs_f64() / received.max(1) as f64;
            view.metrics.latency.record(per_query);
        }
    }
}
