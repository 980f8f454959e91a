//! The hickory-server glue: request parsing, EDNS, ECS, and sending.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
};

use arc_swap::ArcSwap;
use hickory_server::{
    Server,
    net::runtime::Time,
    net::xfer::Protocol,
    proto::{
        op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
        rr::{Record, RecordType},
        serialize::binary::BinEncoder,
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use steer_types::TcpLimits;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use crate::{
    answer::{Answer, Question, answer},
    edns::{client_info, client_subnet, echo_subnet, response_edns},
    rrl::{RateLimiter, RrlAction},
    tcp::{Connections, TcpMetrics},
    udp::{SectionRefs, Sections, UdpBind, is_bad_source},
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

async fn send_error<R: ResponseHandler>(
    view: &DnsView,
    request: &Request,
    rcode: ResponseCode,
    edns: Option<&Edns>,
    mut response_handle: R,
) -> ResponseInfo {
    view.metrics.rcode(rcode).increment(1);
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(edns) = edns {
        builder.edns(edns);
    }
    let response = builder.error_msg(&request.metadata, rcode);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            warn!(error = %e, "failed to send DNS error response");
            failed(request)
        }
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let view = self.view.load_full();
        let udp = request.protocol() == Protocol::Udp;
        if udp && is_bad_source(request.src()) {
            view.metrics.bad_source.increment(1);
            return failed(request);
        }
        let client = request.src().ip().to_canonical();

        // Before any reply, errors included (as on the fast path).
        let mut slip = false;
        if let Some(settings) = &view.rrl
            && udp
            && !settings.is_exempt(client)
        {
            match self.rrl.check(client, settings) {
                RrlAction::Send => {}
                RrlAction::Drop => {
                    view.metrics.rrl_drop.increment(1);
                    return failed(request);
                }
                RrlAction::Slip => {
                    view.metrics.rrl_slip.increment(1);
                    slip = true;
                }
            }
        }

        let mut resp_edns = match response_edns(request.edns.as_ref(), view.udp_payload) {
            Ok(e) => e,
            Err(e) => {
                return send_error(
                    &view,
                    request,
                    ResponseCode::BADVERS,
                    Some(&e),
                    response_handle,
                )
                .await;
            }
        };

        if slip {
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.truncation = true;
            let mut builder = MessageResponseBuilder::from_message_request(request);
            if let Some(e) = &resp_edns {
                builder.edns(e);
            }
            let response = builder.build_no_records(metadata);
            return match response_handle.send_response(response).await {
                Ok(info) => info,
                Err(_) => failed(request),
            };
        }

        if request.metadata.message_type != MessageType::Query {
            return send_error(
                &view,
                request,
                ResponseCode::FormErr,
                resp_edns.as_ref(),
                response_handle,
            )
            .await;
        }
        if request.metadata.op_code != OpCode::Query {
            return send_error(
                &view,
                request,
                ResponseCode::NotImp,
                resp_edns.as_ref(),
                response_handle,
            )
            .await;
        }
        let Ok(info) = request.request_info() else {
            return send_error(
                &view,
                request,
                ResponseCode::FormErr,
                resp_edns.as_ref(),
                response_handle,
            )
            .await;
        };

        let ecs = client_subnet(request.edns.as_ref());
        let client = client_info(ecs.as_ref(), client, next_random());
        let question = Question {
            name: info.query.name(),
            qtype: info.query.query_type(),
            qclass: info.query.query_class(),
        };
        let result = answer(&view, &question, &client);
        echo_subnet(resp_edns.as_mut(), ecs.as_ref(), result.ecs_scope);

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = result.authoritative;
        metadata.response_code = result.rcode;
        view.metrics.record(&question, &result, ecs.is_some());
        if result.region.is_some() || !result.answers.is_empty() && result.soa.is_none() {
            debug!(name = %question.name, region = ?result.region, "answered");
        }

        // Over UDP a response that does not fit loses its additional
        // section, and then is sent as TC with no records, so the client
        // retries over TCP and never caches a partial RRset (RFC 2181 9).
        // hickory's own record-by-record truncation is never reached.
        let limit = match request.protocol() {
            Protocol::Udp => Some(usize::from(
                resp_edns.as_ref().map_or(512, Edns::max_payload),
            )),
            _ => None,
        };
        // DO set and a signed zone: RRSIGs and compact denial (as the
        // fast path and TCP answer, through the same function).
        let signed = crate::sign::sign_if_asked(
            &view,
            request.edns.as_ref(),
            info.query.name(),
            question.qtype,
            &result,
        );
        if let Some(signed) = &signed {
            metadata.response_code = signed.rcode;
            if let Some(e) = resp_edns.as_mut() {
                e.set_dnssec_ok(true);
            }
        }
        let sections = Sections::of(&result, info.query.name());
        let borrow = |additional: bool| match &signed {
            Some(signed) => signed.refs(additional),
            None => sections.borrow(additional),
        };
        let fits = |additional: bool| {
            limit.is_none_or(|limit| {
                signed.is_none()
                    && wire_bound(question.name.len(), &result, additional, resp_edns.as_ref())
                        <= limit
                    || exact_len(request, metadata, &borrow(additional), resp_edns.as_ref())
                        <= limit
            })
        };
        let refs = if fits(true) {
            borrow(true)
        } else if fits(false) {
            borrow(false)
        } else {
            metadata.truncation = true;
            view.metrics.truncated.increment(1);
            SectionRefs::default()
        };
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &resp_edns {
            builder.edns(e);
        }
        let response = builder.build(
            metadata,
            refs.answers.iter().copied(),
            refs.authority.iter().copied(),
            std::iter::empty(),
            refs.additional.iter().copied(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                warn!(error = %e, "failed to send DNS response");
                failed(request)
            }
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

/// A cheap upper bound of the encoded response size: names uncompressed,
/// exact for A/AAAA. Only answers that might not fit pay for an exact size.
fn wire_bound(
    qname_len: usize,
    result: &Answer<'_>,
    additional: bool,
    edns: Option<&Edns>,
) -> usize {
    let record = |r: &Record| {
        let rdata = match r.record_type() {
            RecordType::A => 4,
            RecordType::AAAA => 16,
            // Names in SOA/NS/MX/CNAME are at most 255 bytes each; TXT and
            // the rest are measured exactly below when this is too big.
            _ => 1024,
        };
        // Owners of CNAME targets and synthesized names: at most 255.
        r.name.len().max(qname_len) + 1 + 10 + rdata
    };
    let additional = if additional { result.additional } else { &[] };
    12 + qname_len
        + 1
        + 4
        + result.answers.iter().map(|r| record(r)).sum::<usize>()
        + result.soa.map_or(0, |r| record(r))
        + result.referral.iter().map(|r| record(r)).sum::<usize>()
        + additional.iter().map(|r| record(r)).sum::<usize>()
        + edns.map_or(0, |e| 11 + e.options().as_ref().len() * 24)
}

/// The exact encoded size of a response with these sections.
fn exact_len(
    request: &Request,
    metadata: Metadata,
    sections: &SectionRefs<'_>,
    edns: Option<&Edns>,
) -> usize {
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(e) = edns {
        builder.edns(e);
    }
    let response = builder.build(
        metadata,
        sections.answers.iter().copied(),
        sections.authority.iter().copied(),
        std::iter::empty(),
        sections.additional.iter().copied(),
    );
    let mut bytes = Vec::with_capacity(1024);
    let mut encoder = BinEncoder::new(&mut bytes);
    match response.destructive_emit(&mut encoder) {
        Ok(_) => bytes.len(),
        Err(_) => usize::MAX,
    }
}

/// Binds UDP and TCP on every address of `addrs` and serves until the
/// process ends. UDP is answered by `udp_workers` fast-path threads per
/// address (one SO_REUSEPORT socket each), or by hickory-server when
/// `udp_workers` is 0; TCP by our own listener under `tcp_limits`.
/// `[::]` serves IPv4 too, unless `0.0.0.0` on the same port is listed.
pub async fn serve(
    addrs: Vec<SocketAddr>,
    handler: DnsHandler,
    udp_workers: usize,
    tcp_limits: TcpLimits,
) -> std::io::Result<()> {
    let metrics = Arc::new(TcpMetrics::register());
    let table = Connections::new(tcp_limits);
    let mut server = Server::new(handler.clone());
    let mut tcp_tasks = tokio::task::JoinSet::new();
    for &addr in &addrs {
        let v6_only = addr.is_ipv6()
            && addrs.contains(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port())));
        let tcp = crate::tcp::bind(addr, v6_only)?;
        let bind = UdpBind { addr, v6_only };
        if udp_workers == 0 {
            server.register_socket(bind_udp(bind)?);
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
    if udp_workers == 0 {
        tokio::select! {
            r = server.block_until_done() => r.map_err(|e| std::io::Error::other(e.to_string())),
            _ = tcp_tasks.join_next() => Err(std::io::Error::other("DNS TCP listener ended")),
        }
    } else {
        tcp_tasks.join_next().await;
        Err(std::io::Error::other("DNS TCP listener ended"))
    }
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
    UdpSocket::from_std(socket.into())
}
