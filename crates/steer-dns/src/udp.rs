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
    rr::{
        LowerName, Record,
        rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
    },
    serialize::binary::{BinDecodable, BinDecoder, BinEncoder},
};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::warn;

use crate::{
    answer::{ClientInfo, Question, answer},
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

    let mut edns = None;
    if let Some(req) = &request.edns {
        let mut e = Edns::new();
        e.set_max_payload(req.max_payload().clamp(512, view.udp_payload));
        e.set_version(0);
        if req.version() > 0 {
            return error_reply(
                &request.metadata,
                &request.queries,
                Some(&e),
                ResponseCode::BADVERS,
                view,
                out,
            );
        }
        edns = Some(e);
    }
    if let Some(rrl) = rrl {
        match rrl.check(src) {
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

    let ecs = request
        .edns
        .as_ref()
        .and_then(|e| match e.option(EdnsCode::Subnet) {
            Some(EdnsOption::Subnet(cs)) => Some(*cs),
            _ => None,
        });
    let client = match &ecs {
        Some(cs) => ClientInfo {
            addr: cs.addr(),
            source_prefix: cs.source_prefix(),
            from_ecs: true,
            random,
        },
        None => ClientInfo {
            random,
            ..ClientInfo::resolver(src)
        },
    };
    let name = LowerName::new(query.name());
    let question = Question {
        name: &name,
        qtype: query.query_type(),
        qclass: query.query_class(),
    };
    let result = answer(view, &question, &client);
    if let (Some(cs), Some(e)) = (&ecs, edns.as_mut()) {
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            cs.addr(),
            cs.source_prefix(),
            result.ecs_scope,
        )));
    }
    metrics.record(&question, &result, ecs.is_some());

    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = result.authoritative;
    metadata.response_code = result.rcode;
    let limit = usize::from(edns.as_ref().map_or(512, Edns::max_payload));
    let soa: &[&Record] = match &result.soa {
        Some(soa) => std::slice::from_ref(soa),
        None => &[],
    };
    let sent = encode(
        &metadata,
        &request.queries,
        &result.answers,
        soa.first().copied(),
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
            .spawn(move || serve_socket(&socket, &view, rrl.as_deref()))?;
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
