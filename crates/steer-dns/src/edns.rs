//! EDNS(0) and Client Subnet handling of the one request pipeline.

use std::net::IpAddr;

use hickory_server::proto::{
    op::Edns,
    rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption, NSIDPayload},
};

use crate::answer::ClientInfo;

/// The OPT record to answer with: version 0, our own payload size (RFC
/// 6891 6.2.3: what we accept, not an echo of the client's), the client's
/// DO bit (RFC 3225 3), and the NSID
/// when the client asked for it and one is configured. `Err` carries it
/// for a BADVERS reply when the client asked for a version above 0.
pub(crate) fn response_edns(
    request: Option<&Edns>,
    udp_payload: u16,
    nsid: Option<&[u8]>,
) -> Result<Option<Edns>, Edns> {
    let Some(req) = request else { return Ok(None) };
    let mut e = Edns::new();
    e.set_max_payload(udp_payload);
    e.set_version(0);
    // RFC 3225 3: the DO bit is copied into the response.
    e.set_dnssec_ok(req.flags().dnssec_ok);
    if let Some(id) = nsid
        && req.option(EdnsCode::NSID).is_some()
        && let Ok(payload) = NSIDPayload::new(id)
    {
        e.options_mut().insert(EdnsOption::NSID(payload));
    }
    if req.version() > 0 {
        Err(e)
    } else {
        Ok(Some(e))
    }
}

/// The largest UDP reply to a client that sent `payload` (its OPT's
/// size, if it sent EDNS): clamped to [512, `udp_payload`], or 512
/// without EDNS (RFC 6891 6.2.5).
pub(crate) fn udp_limit(payload: Option<u16>, udp_payload: u16) -> usize {
    usize::from(payload.map_or(512, |p| p.clamp(512, udp_payload)))
}

/// Adds an Extended DNS Error (RFC 8914) with `code` and no text.
pub(crate) fn extended_error(edns: Option<&mut Edns>, code: Option<u16>) {
    if let (Some(e), Some(code)) = (edns, code) {
        let option = EdnsOption::Unknown(EXTENDED_ERROR, code.to_be_bytes().to_vec());
        e.options_mut().insert(option);
    }
}

/// The Extended DNS Error option's code (RFC 8914 2).
pub(crate) const EXTENDED_ERROR: u16 = 15;

/// The request's Client Subnet option (RFC 7871), if any. Asked once
/// [`rejects_subnet`] passed it: no address bit is set past its prefix.
pub(crate) fn client_subnet(request: Option<&Edns>) -> Option<ClientSubnet> {
    match request?.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(cs)) => Some(*cs),
        _ => None,
    }
}

/// Whether the request's Client Subnet is one RFC 7871 has servers
/// reject with FORMERR (6, 7.2.1), as hickory read it: a scope in the
/// query, or address bits past the source prefix. (What hickory cannot
/// read fails the whole message.)
pub(crate) fn rejects_subnet(request: &Edns) -> bool {
    match request.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(cs)) => cs.scope_prefix() != 0 || masked(cs).addr() != cs.addr(),
        _ => false,
    }
}

/// The subnet with address bits past its source prefix cleared (RFC 7871
/// 6 has senders truncate them): a subnet that differs from it is refused.
fn masked(cs: &ClientSubnet) -> ClientSubnet {
    let prefix = u32::from(cs.source_prefix());
    let addr = match cs.addr() {
        IpAddr::V4(a) => {
            let keep = u32::MAX
                .checked_shl(32u32.saturating_sub(prefix))
                .unwrap_or(0);
            IpAddr::V4((u32::from(a) & keep).into())
        }
        IpAddr::V6(a) => {
            let keep = u128::MAX
                .checked_shl(128u32.saturating_sub(prefix))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & keep).into())
        }
    };
    ClientSubnet::new(addr, cs.source_prefix(), cs.scope_prefix())
}

/// Who the answer is for: the ECS subnet when given, else the resolver.
pub(crate) fn client_info(ecs: Option<&ClientSubnet>, resolver: IpAddr, random: u64) -> ClientInfo {
    match ecs {
        Some(cs) => ClientInfo {
            addr: cs.addr(),
            source_prefix: cs.source_prefix(),
            from_ecs: true,
            random,
        },
        None => ClientInfo {
            random,
            ..ClientInfo::resolver(resolver)
        },
    }
}

/// Echoes the client's subnet with the scope the answer depended on.
pub(crate) fn echo_subnet(edns: Option<&mut Edns>, ecs: Option<&ClientSubnet>, scope: u8) {
    if let (Some(cs), Some(e)) = (ecs, edns) {
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            cs.addr(),
            cs.source_prefix(),
            scope,
        )));
    }
}
