//! The UDP fast path: one blocking worker thread per SO_REUSEPORT socket,
//! each answering datagrams with [`respond_udp`]. hickory-proto still parses
//! and encodes every message; what this skips is hickory-server's per-query
//! task, channels and response plumbing. TCP ([`crate::tcp`]) answers with
//! the same [`respond`], with TCP's size limit and no rate limiting.
//!
//! [`respond_udp`] is a pure function of (view, datagram, source) and is the
//! target of the fuzzer (`fuzz/`): it must never panic, and it drops what it
//! cannot answer (responses, runts) rather than reply to it.
//!
//! A socket bound to `[::]` is dual-stack unless `0.0.0.0` on the same port
//! is bound too; IPv4 clients then appear v4-mapped and are made canonical
//! before anything looks at their address. Wildcard sockets ask for the
//! query's destination (IP_PKTINFO / IPV6_RECVPKTINFO) and reply from it.

use std::{
    borrow::Cow,
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
        LowerName, Name, Record, RecordType,
        rdata::opt::{ClientSubnet, EdnsCode},
    },
    serialize::binary::{BinDecodable, BinDecoder, BinEncoder},
};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::warn;

use crate::{
    answer::{Answer, Question, answer},
    edns::{client_info, client_subnet, echo_subnet, extended_error, response_edns, udp_limit},
    metrics::Counts,
    query::QName,
    rrl::{RateLimiter, RrlAction},
    view::DnsView,
    wire::{Opt, write_fast},
};

/// What became of one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpOutcome {
    /// `out` holds the reply.
    Reply,
    /// Nothing to send (a response, a runt, or rate-limited).
    Drop,
}

/// Which transport a message came over: UDP is rate-limited (when a
/// limiter is given) and capped at the client's payload size; TCP neither.
#[derive(Clone, Copy)]
pub(crate) enum Transport<'a> {
    Udp(Option<&'a RateLimiter>),
    Tcp,
}

/// Answers one UDP datagram from `src` into `out`. Never panics.
pub fn respond_udp(
    view: &DnsView,
    packet: &[u8],
    src: IpAddr,
    random: u64,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    let mut counts = Counts::default();
    respond(
        view,
        packet,
        src,
        random,
        Transport::Udp(None),
        &mut counts,
        out,
    )
}

/// Answers one DNS-over-TCP message from `src` into `out` (no length
/// prefix): the same pipeline as [`respond_udp`], up to 65,535 bytes and
/// never rate-limited. Never panics.
pub fn respond_tcp(
    view: &DnsView,
    packet: &[u8],
    src: IpAddr,
    random: u64,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    let mut counts = Counts::default();
    respond(view, packet, src, random, Transport::Tcp, &mut counts, out)
}

/// A source no reply should go to: port 0, the unspecified address, or a
/// broadcast or multicast group (spoofed, and a reply would be reflected
/// to many or to nobody).
pub(crate) fn is_bad_source(src: SocketAddr) -> bool {
    let ip = src.ip().to_canonical();
    src.port() == 0
        || ip.is_unspecified()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(a) if a.is_broadcast())
}

/// The one request pipeline of both transports: parse, rate-limit (UDP),
/// answer, encode. Every reply, errors included, passes through RRL. The
/// query counters are bumped in `counts`, which the caller flushes.
pub(crate) fn respond<'v>(
    view: &'v DnsView,
    packet: &[u8],
    src: IpAddr,
    random: u64,
    transport: Transport<'_>,
    counts: &mut Counts<'v>,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    respond_with(view, packet, src, random, transport, true, counts, out)
}

/// Answers through the general path only (no [`crate::query::plain`]
/// reader), for the property test that holds the two to the same reply.
#[doc(hidden)]
pub fn respond_udp_general(
    view: &DnsView,
    packet: &[u8],
    src: IpAddr,
    random: u64,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    let mut counts = Counts::default();
    let transport = Transport::Udp(None);
    respond_with(
        view,
        packet,
        src,
        random,
        transport,
        false,
        &mut counts,
        out,
    )
}

#[allow(clippy::too_many_arguments)]
fn respond_with<'v>(
    view: &'v DnsView,
    packet: &[u8],
    src: IpAddr,
    random: u64,
    transport: Transport<'_>,
    plain: bool,
    counts: &mut Counts<'v>,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    out.clear();
    let metrics = &view.metrics;
    // The header: twelve bytes, QR clear (read in full where a reply
    // needs more of it).
    let Some(&flags) = packet.get(2).filter(|_| packet.len() >= 12) else {
        metrics.malformed.increment(1);
        return UdpOutcome::Drop;
    };
    if flags & 0x80 != 0 {
        // Never answer answers: that is how reflection loops start.
        return UdpOutcome::Drop;
    }
    // Before any reply is built, FORMERR, BADVERS and NOTIMP included:
    // a spoofed flood of bad queries is as good a reflector as good ones.
    let mut slip = false;
    if let (Transport::Udp(Some(rrl)), Some(settings)) = (transport, &view.rrl)
        && !settings.is_exempt(src)
    {
        match rrl.check(src, settings) {
            RrlAction::Send => {}
            RrlAction::Drop => {
                metrics.rrl_drop.increment(1);
                return UdpOutcome::Drop;
            }
            RrlAction::Slip => {
                metrics.rrl_slip.increment(1);
                slip = true;
            }
        }
    }
    // The query resolvers send: answered without parsing a whole Message.
    let deny = view.unplanned.is_empty();
    // Read once: the fast path answers it, and a malformed Client Subnet
    // in it is refused on either path (hickory's reader refuses some of
    // those outright).
    let read = if slip {
        None
    } else {
        crate::query::plain(packet, &view.zones.names, deny)
    };
    if let Some(q) = read.as_ref().filter(|q| q.bad_subnet) {
        return bad_subnet(view, packet, q.dnssec_ok, out);
    }
    if plain && let Some(q) = read {
        let client = client_info(q.ecs.as_ref(), src, random);
        let ask = |name, known| {
            let question = Question {
                name,
                qtype: q.qtype,
                qclass: q.qclass,
            };
            crate::answer::answer_known(view, &question, &client, known)
        };
        let result = match &q.name {
            _ if transfer_over_udp(q.qtype, transport) => Answer::not_implemented(),
            QName::Known(wire, known) => ask(&known.name, Some((wire, known))),
            QName::Denied(encloser) => crate::answer::denied(view, encloser, q.qclass, q.qtype),
            QName::Other(name) => ask(name, None),
        };
        metrics.record(q.qtype, &result, q.ecs.is_some(), counts);
        let limit = match transport {
            Transport::Udp(_) => udp_limit(q.payload, view.udp_payload),
            Transport::Tcp => usize::from(u16::MAX),
        };
        let mut opt = Opt {
            payload: q.payload.map(|_| view.udp_payload),
            ecs: q.ecs.map(|cs| (cs, result.ecs_scope)),
            dnssec_ok: false,
            ede: result.ede,
        };
        // DO set and a signed zone: the fast writer sends a name's RRset
        // with its signatures; everything else signed (denial, referrals,
        // wildcards, chains) takes the general encoder.
        let signatures = match &q.name {
            _ if !q.dnssec_ok => None,
            QName::Known(wire, known) if is_signed(view, known.zone) => {
                let now = crate::sign::unix_now();
                let sigs =
                    crate::sigcache::for_answer(view, known.zone, wire, q.qtype, &result, now);
                let Some(sigs) = sigs else {
                    return general(view, packet, &result, transport, out);
                };
                Some(sigs)
            }
            QName::Known(..) => None,
            QName::Denied(encloser) if !is_signed(view, encloser.zone) => None,
            QName::Denied(_) | QName::Other(_) => {
                return general(view, packet, &result, transport, out);
            }
        };
        // RFC 3225 3: the DO bit is copied into the response, signed or not.
        opt.dnssec_ok = q.dnssec_ok;
        if let Some(done) = write_fast(packet, &result, &opt, signatures.as_deref(), limit, out) {
            if done.1 {
                metrics.truncated.increment(1);
            }
            return done.0;
        }
        // Records the fast writer cannot copy: the general encoder.
        return general(view, packet, &result, transport, out);
    }
    let Ok(request) = Message::from_vec(packet) else {
        metrics.malformed.increment(1);
        return error_reply(
            &header(packet).metadata,
            &[],
            None,
            ResponseCode::FormErr,
            view,
            out,
        );
    };

    let edns = match response_edns(
        request.edns.as_ref(),
        view.udp_payload,
        view.nsid.as_deref(),
    ) {
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
    if slip {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.truncation = true;
        let empty = SectionRefs::default();
        return encode(&metadata, &request.queries, &empty, edns.as_ref(), out);
    }
    // Other opcodes; a Client Subnet RFC 7871 refuses that the fast read
    // did not see (the message is not of the plain shape).
    let refused = if request.metadata.op_code != OpCode::Query {
        Some(ResponseCode::NotImp)
    } else if request
        .edns
        .as_ref()
        .is_some_and(crate::edns::rejects_subnet)
    {
        metrics.malformed.increment(1);
        Some(ResponseCode::FormErr)
    } else {
        None
    };
    if let Some(rcode) = refused {
        return error_reply(
            &request.metadata,
            &request.queries,
            edns.as_ref(),
            rcode,
            view,
            out,
        );
    }
    let query = match only_question(&request, edns.as_ref(), view, out) {
        Ok(query) => query,
        Err(sent) => return sent,
    };

    let ecs = client_subnet(request.edns.as_ref());
    let client = client_info(ecs.as_ref(), src, random);
    let name = LowerName::new(query.name());
    let question = Question {
        name: &name,
        qtype: query.query_type(),
        qclass: query.query_class(),
    };
    let result = if transfer_over_udp(question.qtype, transport) {
        Answer::not_implemented()
    } else {
        answer(view, &question, &client)
    };
    metrics.record(question.qtype, &result, ecs.is_some(), counts);

    finish(view, packet, &request, edns, ecs, &result, transport, out)
}

/// The reply to a plain query whose answer the fast writer could not
/// send alone, through the general encoder (and the signer, when DO is
/// set): the message parsed after all.
fn general(
    view: &DnsView,
    packet: &[u8],
    result: &Answer<'_>,
    transport: Transport<'_>,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    let Ok(request) = Message::from_vec(packet) else {
        view.metrics.malformed.increment(1);
        let rcode = ResponseCode::FormErr;
        return error_reply(&header(packet).metadata, &[], None, rcode, view, out);
    };
    let edns = response_edns(
        request.edns.as_ref(),
        view.udp_payload,
        view.nsid.as_deref(),
    )
    .ok()
    .flatten();
    let ecs = client_subnet(request.edns.as_ref());
    finish(view, packet, &request, edns, ecs, result, transport, out)
}

/// Encodes `result` as the reply to `request`: signed when DO asks for it
/// and the zone is signed, by the fast writer when it can, else through
/// hickory's encoder; within the transport's size limit.
#[allow(clippy::too_many_arguments)]
fn finish(
    view: &DnsView,
    packet: &[u8],
    request: &Message,
    mut edns: Option<Edns>,
    ecs: Option<ClientSubnet>,
    result: &Answer<'_>,
    transport: Transport<'_>,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    echo_subnet(edns.as_mut(), ecs.as_ref(), result.ecs_scope);
    extended_error(edns.as_mut(), result.ede);
    let query = match only_question(request, edns.as_ref(), view, out) {
        Ok(query) => query,
        Err(sent) => return sent,
    };
    let limit = match transport {
        Transport::Udp(_) => udp_limit(
            request.edns.as_ref().map(Edns::max_payload),
            view.udp_payload,
        ),
        Transport::Tcp => usize::from(u16::MAX),
    };
    // DO set and a signed zone: RRSIGs and compact denial, through
    // hickory's encoder (the fast writer sends a name's signed RRset).
    let signed = crate::sign::sign_if_asked(
        view,
        request.edns.as_ref(),
        query.name(),
        query.query_type(),
        result,
    );
    if let Some(signed) = &signed {
        if let Some(e) = edns.as_mut() {
            e.set_dnssec_ok(true);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = result.authoritative;
        metadata.response_code = signed.rcode;
        return encode_within(
            &mut metadata,
            &request.queries,
            &|additional| signed.refs(additional),
            edns.as_ref(),
            limit,
            view,
            out,
        );
    }
    let opt = Opt {
        payload: edns.as_ref().map(Edns::max_payload),
        ecs: ecs.map(|cs| (cs, result.ecs_scope)),
        dnssec_ok: edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        ede: result.ede,
    };
    // The fast writer sends no option but those two: an NSID goes through
    // hickory's encoder.
    let nsid = edns
        .as_ref()
        .is_some_and(|e| e.option(EdnsCode::NSID).is_some());
    if let Some(done) = (!nsid)
        .then(|| write_fast(packet, result, &opt, None, limit, out))
        .flatten()
    {
        if done.1 {
            view.metrics.truncated.increment(1);
        }
        return done.0;
    }
    encode_general(view, request, edns.as_ref(), result, limit, out)
}

/// FORMERR for a plain query whose Client Subnet RFC 7871 has servers
/// reject (7.2.1): the question, and an OPT with our payload size and the
/// DO bit, as gdnsd answers; no subnet echoed.
fn bad_subnet(view: &DnsView, packet: &[u8], dnssec_ok: bool, out: &mut Vec<u8>) -> UdpOutcome {
    view.metrics.malformed.increment(1);
    view.metrics.rcode(ResponseCode::FormErr).increment(1);
    let opt = Opt {
        payload: Some(view.udp_payload),
        ecs: None,
        dnssec_ok,
        ede: None,
    };
    let result = Answer::error(ResponseCode::FormErr);
    match write_fast(packet, &result, &opt, None, 512, out) {
        Some((outcome, _)) => outcome,
        None => UdpOutcome::Drop,
    }
}

/// AXFR over UDP: not implemented, as NSD and Knot answer (RFC 5936 4.2
/// defines zone transfers over TCP only).
fn transfer_over_udp(qtype: RecordType, transport: Transport<'_>) -> bool {
    qtype == RecordType::AXFR && matches!(transport, Transport::Udp(_))
}

/// The header of a message of at least twelve bytes (a blank one for a
/// shorter, which the pipeline drops before this is asked).
fn header(packet: &[u8]) -> Header {
    Header::read(&mut BinDecoder::new(packet)).unwrap_or_else(|_| Header {
        metadata: Metadata::new(0, MessageType::Query, OpCode::Query),
        counts: Default::default(),
    })
}

/// Whether zone `zone` of the view is signed.
fn is_signed(view: &DnsView, zone: usize) -> bool {
    view.zones.get(zone).is_some_and(|z| z.signer.is_some())
}

/// The reply to `request` carrying `result`, through hickory's encoder.
fn encode_general(
    view: &DnsView,
    request: &Message,
    edns: Option<&Edns>,
    result: &Answer<'_>,
    limit: usize,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    let query = match only_question(request, edns, view, out) {
        Ok(query) => query,
        Err(sent) => return sent,
    };
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.authoritative = result.authoritative;
    metadata.response_code = result.rcode;
    let sections = Sections::of(result, query.name());
    encode_within(
        &mut metadata,
        &request.queries,
        &|additional| sections.borrow(additional),
        edns,
        limit,
        view,
        out,
    )
}

/// Encodes the reply within `limit`: whole, else without the additional
/// section, else TC with no records, so the client retries over TCP and
/// never caches a partial RRset (RFC 2181 9).
fn encode_within<'s>(
    metadata: &mut Metadata,
    queries: &[Query],
    sections: &dyn Fn(bool) -> SectionRefs<'s>,
    edns: Option<&Edns>,
    limit: usize,
    view: &DnsView,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    for additional in [true, false] {
        let sent = encode(metadata, queries, &sections(additional), edns, out);
        if sent != UdpOutcome::Reply || out.len() <= limit {
            return sent;
        }
    }
    view.metrics.truncated.increment(1);
    metadata.truncation = true;
    let empty = SectionRefs::default();
    encode(metadata, queries, &empty, edns, out)
}

/// An answer's records as hickory records, with the owners they are sent
/// with, for hickory's encoder (the paths that are not pre-encoded).
pub(crate) struct Sections<'v> {
    answers: Vec<Cow<'v, Record>>,
    authority: Vec<&'v Record>,
    additional: Vec<&'v Record>,
}

#[derive(Default)]
pub(crate) struct SectionRefs<'a> {
    pub(crate) answers: Vec<&'a Record>,
    pub(crate) authority: Vec<&'a Record>,
    pub(crate) additional: Vec<&'a Record>,
}

impl<'v> Sections<'v> {
    pub(crate) fn of<'r: 'v>(result: &'v Answer<'r>, qname: &Name) -> Self {
        let authority = result.soa.map_or(result.referral, std::slice::from_ref);
        Self {
            answers: result.records(qname).collect(),
            authority: authority.iter().map(|r| &r.record).collect(),
            additional: result.additional.iter().map(|r| &r.record).collect(),
        }
    }

    pub(crate) fn borrow(&self, additional: bool) -> SectionRefs<'_> {
        SectionRefs {
            answers: self.answers.iter().map(|r| &**r).collect(),
            authority: self.authority.clone(),
            additional: if additional {
                self.additional.clone()
            } else {
                Vec::new()
            },
        }
    }
}

/// The request's one question; a request with none or several is
/// answered FORMERR (the reply is in `out`, its outcome the error).
fn only_question<'r>(
    request: &'r Message,
    edns: Option<&Edns>,
    view: &DnsView,
    out: &mut Vec<u8>,
) -> Result<&'r Query, UdpOutcome> {
    match request.queries.as_slice() {
        [query] => Ok(query),
        _ => {
            let rcode = ResponseCode::FormErr;
            Err(error_reply(
                &request.metadata,
                &request.queries,
                edns,
                rcode,
                view,
                out,
            ))
        }
    }
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
    encode(&metadata, queries, &SectionRefs::default(), edns, out)
}

pub(crate) fn encode(
    metadata: &Metadata,
    queries: &[Query],
    sections: &SectionRefs<'_>,
    edns: Option<&Edns>,
    out: &mut Vec<u8>,
) -> UdpOutcome {
    out.clear();
    let mut encoder = BinEncoder::new(out);
    let emitted = emit_message_parts(
        metadata,
        &mut queries.iter(),
        &mut sections.answers.iter().copied(),
        &mut sections.authority.iter().copied(),
        &mut sections.additional.iter().copied(),
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

/// How a UDP listener binds: `v6_only` when `0.0.0.0` on the same port is
/// bound too (else `[::]` is dual-stack); wildcard sockets reply from the
/// address each query arrived on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UdpBind {
    pub(crate) addr: SocketAddr,
    pub(crate) v6_only: bool,
}

impl UdpBind {
    fn pktinfo(&self) -> bool {
        self.addr.ip().is_unspecified()
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
    let bind = UdpBind {
        addr,
        v6_only: false,
    };
    spawn_workers(bind, workers, view, rrl)
}

pub(crate) fn spawn_workers(
    bind: UdpBind,
    workers: usize,
    view: Arc<ArcSwap<DnsView>>,
    rrl: Option<Arc<RateLimiter>>,
) -> std::io::Result<SocketAddr> {
    let first = bind_reuseport(bind)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers.max(1) {
        sockets.push(bind_reuseport(UdpBind {
            addr: bound,
            ..bind
        })?);
    }
    for (i, socket) in sockets.into_iter().enumerate() {
        let view = view.clone();
        let rrl = rrl.clone();
        let pktinfo = bind.pktinfo();
        std::thread::Builder::new()
            .name(format!("dns-udp-{}-{i}", bound.port()))
            .spawn(move || {
                #[cfg(target_os = "linux")]
                crate::batched::serve(&socket, &view, rrl.as_deref(), pktinfo);
                let _ = pktinfo;
                serve_socket(&socket, &view, rrl.as_deref());
            })?;
    }
    Ok(bound)
}

fn bind_reuseport(bind: UdpBind) -> std::io::Result<UdpSocket> {
    let addr = bind.addr;
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(bind.v6_only)?;
    }
    // Room for bursts while a worker is busy.
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    crate::frag::keep_unfragmented(&socket, addr, bind.v6_only);
    let socket: UdpSocket = socket.into();
    #[cfg(target_os = "linux")]
    if bind.pktinfo() {
        crate::batched::enable_pktinfo(&socket, addr.is_ipv6())?;
    }
    Ok(socket)
}

/// One datagram from `src` through the pipeline, for the socket loops
/// that answer one at a time. `None` (counted) when the source cannot be
/// answered; `Reply` leaves the reply in `out`.
pub(crate) fn datagram(
    view: &DnsView,
    packet: &[u8],
    src: SocketAddr,
    random: &mut u64,
    rrl: Option<&RateLimiter>,
    out: &mut Vec<u8>,
) -> Option<UdpOutcome> {
    if is_bad_source(src) {
        view.metrics.bad_source.increment(1);
        return None;
    }
    *random = crate::select::mix(*random);
    let client = src.ip().to_canonical();
    let mut counts = Counts::default();
    let transport = Transport::Udp(rrl);
    Some(respond(
        view,
        packet,
        client,
        *random,
        transport,
        &mut counts,
        out,
    ))
}

fn serve_socket(socket: &UdpSocket, view: &ArcSwap<DnsView>, rrl: Option<&RateLimiter>) {
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(4096);
    // A reply too big for the interface, truncated (see `frag`).
    let mut spare = Vec::new();
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
        let packet = buf.get(..len).unwrap_or_default();
        let Some(outcome) = datagram(&view, packet, src, &mut random, rrl, &mut out) else {
            continue;
        };
        if outcome == UdpOutcome::Reply
            && let Err(e) = socket.send_to(&out, src)
        {
            let mut sent = false;
            if crate::frag::too_big(&e) && crate::frag::truncated(&out, &mut spare) {
                view.metrics.truncated.increment(1);
                sent = socket.send_to(&spare, src).is_ok();
            }
            if !sent {
                view.metrics.send_failed.increment(1);
                tracing::debug!(error = %e, "UDP send failed");
            }
        }
        view.metrics.latency.record(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sources_no_reply_should_go_to_are_bad() {
        for bad in [
            "192.0.2.1:0",
            "0.0.0.0:53",
            "255.255.255.255:53",
            "224.0.0.1:53",
            "[::]:53",
            "[ff02::1]:53",
            "[::ffff:255.255.255.255]:53",
            "[::ffff:0.0.0.0]:53",
            "[2001:db8::1]:0",
        ] {
            assert!(is_bad_source(bad.parse().unwrap()), "{bad}");
        }
        for good in ["192.0.2.1:53", "127.0.0.1:40000", "[2001:db8::1]:1024"] {
            assert!(!is_bad_source(good.parse().unwrap()), "{good}");
        }
    }
}
