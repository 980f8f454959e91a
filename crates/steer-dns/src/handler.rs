//! The hickory-server glue: request parsing, EDNS, ECS, and sending.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use hickory_server::{
    Server,
    net::runtime::Time,
    proto::{
        op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode},
        rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption},
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, warn};

use crate::{
    answer::{ClientInfo, Question, answer},
    view::DnsView,
};

/// Answers queries from whatever view is current. Cloning shares the view.
#[derive(Clone)]
pub struct DnsHandler {
    view: Arc<ArcSwap<DnsView>>,
}

impl DnsHandler {
    pub fn new(view: Arc<ArcSwap<DnsView>>) -> Self {
        Self { view }
    }
}

fn rcode_label(rcode: ResponseCode) -> &'static str {
    match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    rcode: ResponseCode,
    edns: Option<&Edns>,
    mut response_handle: R,
) -> ResponseInfo {
    metrics::counter!("steer_dns_responses_total", "rcode" => rcode_label(rcode)).increment(1);
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

        let mut resp_edns = None;
        if let Some(req_edns) = &request.edns {
            let mut e = Edns::new();
            e.set_max_payload(req_edns.max_payload().clamp(512, view.udp_payload));
            e.set_version(0);
            if req_edns.version() > 0 {
                return send_error(request, ResponseCode::BADVERS, Some(&e), response_handle).await;
            }
            resp_edns = Some(e);
        }

        if request.metadata.message_type != MessageType::Query {
            return send_error(
                request,
                ResponseCode::FormErr,
                resp_edns.as_ref(),
                response_handle,
            )
            .await;
        }
        if request.metadata.op_code != OpCode::Query {
            return send_error(
                request,
                ResponseCode::NotImp,
                resp_edns.as_ref(),
                response_handle,
            )
            .await;
        }
        let Ok(info) = request.request_info() else {
            return send_error(
                request,
                ResponseCode::FormErr,
                resp_edns.as_ref(),
                response_handle,
            )
            .await;
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
            },
            None => ClientInfo::resolver(request.src().ip()),
        };
        let question = Question {
            name: info.query.name(),
            qtype: info.query.query_type(),
            qclass: info.query.query_class(),
        };
        let result = answer(&view, &question, &client);

        if let (Some(cs), Some(e)) = (&ecs, resp_edns.as_mut()) {
            let scope = result.ecs_scope;
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                cs.addr(),
                cs.source_prefix(),
                scope,
            )));
        }

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = result.authoritative;
        metadata.response_code = result.rcode;
        metrics::counter!("steer_dns_responses_total", "rcode" => rcode_label(result.rcode))
            .increment(1);
        if result.region.is_some() || !result.answers.is_empty() && result.soa.is_none() {
            debug!(name = %question.name, region = ?result.region, "answered");
        }

        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &resp_edns {
            builder.edns(e);
        }
        let response = builder.build(
            metadata,
            result.answers.iter().copied(),
            std::iter::empty(),
            result.soa,
            std::iter::empty(),
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

/// Binds UDP and TCP on `addr` and serves until the process ends.
pub async fn serve(addr: SocketAddr, handler: DnsHandler) -> std::io::Result<()> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(addr).await?;
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 64);
    tracing::info!(%addr, "DNS listening (UDP+TCP)");
    server
        .block_until_done()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
}
