//! Replies are never fragmented (RFC 9715): IPv4 replies carry DF and no
//! IPv6 reply gets a fragment header. The interface MTU bounds a reply,
//! not a path MTU that an ICMP message claims (`IP_PMTUDISC_PROBE`), so a
//! spoofed "fragmentation needed" cannot shrink replies or steer them into
//! fragments. A reply too big for the interface (only possible when
//! `udp_payload` is configured above the MTU) is refused by the kernel
//! with EMSGSIZE and goes out as [`truncated`] instead: the client retries
//! over TCP, as for any reply over its payload size.
//!
//! With DF set the kernel also skips the IP ID hash it computes for every
//! datagram it may fragment: one per reply.

use std::{net::SocketAddr, os::fd::AsFd};

use hickory_server::proto::op::Message;
use tracing::warn;

use crate::udp::{SectionRefs, UdpOutcome, encode};

/// Sets the socket's replies to DF and no fragmentation (see the module
/// doc). A dual-stack socket gets it for both families. An error is
/// returned for the caller to report; the socket works without it.
#[cfg(target_os = "linux")]
pub(crate) fn no_fragments(socket: &impl AsFd, ipv6: bool, v6_only: bool) -> std::io::Result<()> {
    use rustix::net::sockopt::{
        Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery, set_ip_mtu_discover, set_ipv6_mtu_discover,
    };
    if ipv6 {
        set_ipv6_mtu_discover(socket, Ipv6PathMtuDiscovery::PROBE)?;
    }
    if !ipv6 || !v6_only {
        // On a dual-stack socket, IPv4 replies follow the IPv4 option.
        set_ip_mtu_discover(socket, Ipv4PathMtuDiscovery::PROBE)?;
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn no_fragments(_: &impl AsFd, _: bool, _: bool) -> std::io::Result<()> {
    Ok(())
}

/// [`no_fragments`] for a listener bound on `addr`, a failure logged: the
/// socket serves without it.
pub(crate) fn keep_unfragmented(socket: &impl AsFd, addr: SocketAddr, v6_only: bool) {
    if let Err(e) = no_fragments(socket, addr.is_ipv6(), v6_only) {
        warn!(error = %e, %addr, "cannot keep UDP replies unfragmented (IP_MTU_DISCOVER)");
    }
}

/// Whether a send failed because the datagram is bigger than the
/// interface lets out unfragmented.
pub(crate) fn too_big(e: &std::io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        e.raw_os_error() == Some(rustix::io::Errno::MSGSIZE.raw_os_error())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = e;
        false
    }
}

/// `reply` with TC set and only its question and OPT record (EDNS, with
/// its options, is kept): what a client that cannot take the whole
/// reply over UDP gets (RFC 2181 9: never a partial RRset). False when
/// `reply` is not a message (then nothing is sent).
pub(crate) fn truncated(reply: &[u8], out: &mut Vec<u8>) -> bool {
    let Ok(message) = Message::from_vec(reply) else {
        return false;
    };
    let mut metadata = message.metadata;
    metadata.truncation = true;
    let empty = SectionRefs::default();
    encode(
        &metadata,
        &message.queries,
        &empty,
        message.edns.as_ref(),
        out,
    ) == UdpOutcome::Reply
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::str::FromStr;

    use hickory_server::proto::{
        op::{Edns, Query},
        rr::{
            DNSClass, Name, RData, Record, RecordType,
            rdata::{
                A,
                opt::{ClientSubnet, EdnsCode, EdnsOption},
            },
        },
    };

    use super::*;

    #[test]
    fn a_truncated_reply_keeps_the_question_and_edns_and_drops_every_record() {
        let name = Name::from_str("app.example.test.").unwrap();
        let mut reply = Message::response(0x1234, hickory_server::proto::op::OpCode::Query);
        reply.metadata.authoritative = true;
        reply.metadata.recursion_desired = true;
        reply.add_query(Query::query(name.clone(), RecordType::A));
        for i in 0..40u8 {
            let a = RData::A(A::new(192, 0, 2, i));
            reply.add_answer(Record::from_rdata(name.clone(), 30, a));
        }
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        edns.set_dnssec_ok(true);
        let cs = ClientSubnet::from_str("10.1.2.0/24").unwrap();
        edns.options_mut().insert(EdnsOption::Subnet(cs));
        reply.set_edns(edns);
        let bytes = reply.to_vec().unwrap();

        let mut out = Vec::new();
        assert!(truncated(&bytes, &mut out));
        assert!(out.len() < bytes.len());
        let got = Message::from_vec(&out).unwrap();
        assert!(got.metadata.truncation);
        assert!(got.metadata.authoritative && got.metadata.recursion_desired);
        assert_eq!(got.metadata.id, 0x1234);
        assert_eq!(got.queries.len(), 1);
        assert_eq!(got.queries[0].name(), &name);
        assert_eq!(got.queries[0].query_class(), DNSClass::IN);
        assert!(got.answers.is_empty() && got.authorities.is_empty());
        assert!(got.additionals.is_empty());
        let edns = got.edns.unwrap();
        assert_eq!(edns.max_payload(), 4096);
        assert!(edns.flags().dnssec_ok);
        assert!(matches!(
            edns.options().get(EdnsCode::Subnet),
            Some(EdnsOption::Subnet(_))
        ));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sockets_send_unfragmented_replies_in_each_family_they_serve() {
        use rustix::net::sockopt::{
            Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery, ip_mtu_discover, ipv6_mtu_discover,
        };
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        no_fragments(&v4, false, false).unwrap();
        assert_eq!(ip_mtu_discover(&v4).unwrap(), Ipv4PathMtuDiscovery::PROBE);
        let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 on this host
        };
        // std binds IPv6 sockets dual-stack unless the sysctl says not.
        no_fragments(&v6, true, false).unwrap();
        assert_eq!(ipv6_mtu_discover(&v6).unwrap(), Ipv6PathMtuDiscovery::PROBE);
        assert_eq!(ip_mtu_discover(&v6).unwrap(), Ipv4PathMtuDiscovery::PROBE);
    }

    #[test]
    fn what_is_not_a_message_is_not_sent() {
        let mut out = Vec::new();
        assert!(!truncated(b"\x12\x34", &mut out));
    }
}
