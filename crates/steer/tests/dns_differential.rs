//! Differential test: one zone file, served by steerd, NSD and Knot DNS,
//! asked the same questions over UDP without EDNS, UDP with EDNS and TCP.
//! Responses are compared on rcode, AA, TC and the answer, authority and
//! additional sections as sets of records (TTL included).
//!
//! Steer matches Knot DNS and NSD but where they differ from each other
//! by design; there Steer follows Knot, except as noted:
//! - NSD adds the zone's NS set (and its addresses) to the authority and
//!   additional sections of positive answers; Knot and Steer answer
//!   minimally. NSD is checked with that set taken out, and its additional
//!   section must hold Steer's.
//! - NSD follows CNAME chains much further; Knot (and Steer) stop after 5
//!   CNAMEs. Chains longer than that are compared with Knot only.
//! - NSD follows a CNAME into another zone it serves; Knot stops at the
//!   zone's edge. Steer follows through all its zones (a static name in one
//!   zone aliasing a steered name in another is the common GSLB setup), as
//!   NSD: such chains are compared with NSD only.
//! - When a referral's glue does not all fit, NSD puts the A records of
//!   every target first and never sets TC; Knot (and Steer) go target by
//!   target, skip what does not fit, and set TC when glue below the cut is
//!   missing (RFC 9471).
//! - A DNAME substitution longer than a name may be is YXDOMAIN with the
//!   DNAME (RFC 6672 2.2), as NSD answers; Knot answers NXDOMAIN with the
//!   SOA. Compared with NSD only.
//! - For ANY at a name with several RRsets (RFC 8482 minimal answers) NSD
//!   picks the SOA, Knot and Steer the first type in type order.
//!
//! steerd's UDP on the runtime (`[dns] udp_workers = 0`) is held to the
//! fast path's answers as well.
//!
//! The reference servers are Debian's `nsd` and `knot` (`scripts/test`
//! installs them). A missing one fails the test: it never passes silently.

#![allow(clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    str::FromStr,
    time::Duration,
};

use common::*;
use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query},
    rr::{Name, Record, RecordType},
};

const ORIGIN: &str = "diff.test.";

/// Every case the zone semantics cover, with the queries that probe it.
const ZONE: &str = r#"$ORIGIN diff.test.
$TTL 300
@           IN SOA ns1 hostmaster 1 3600 600 604800 120
@           NS    ns1
@           NS    ns2.elsewhere.example.
@           MX    10 mail
@           MX    20 mx.elsewhere.example.
ns1         A     192.0.2.1
ns1         AAAA  2001:db8::1
mail        A     192.0.2.2
mail        AAAA  2001:db8::2
www         A     192.0.2.3
txt         TXT   "hello"
; SRV targets in and out of the zone
_sip._udp   SRV   10 5 5060 www
_sip._tcp   SRV   10 5 5060 sip.elsewhere.example.
; wildcards: synthesis, NODATA, an existing name and an empty
; non-terminal that block it, a wildcard CNAME, one that loops
*.wild      A     192.0.2.10
*.wild      MX    10 mail
sub.wild    TXT   "exists"
host.ent.wild A   192.0.2.11
*.cn        CNAME www
*.wl        CNAME x.wl
a.b.c.ent2  A     192.0.2.12
; CNAME chains: to a wildcard, through one, a long one, loops,
; out of the zone, to NXDOMAIN, to NODATA, into a delegation
towild      CNAME something.wild
tocn        CNAME bar.cn
c1          CNAME c2
c2          CNAME c3
c3          CNAME www
l1          CNAME l2
l2          CNAME l3
l3          CNAME l4
l4          CNAME l5
l5          CNAME l6
l6          CNAME l7
l7          CNAME www
loop1       CNAME loop2
loop2       CNAME loop1
self        CNAME self
out         CNAME www.elsewhere.example.
dangling    CNAME nothere
tonodata    CNAME txt
todeleg     CNAME www.deleg
tomx        CNAME diff.test.
; a delegation with glue below the cut and an in-zone NS outside it; a
; wildcard below the cut (occluded); one with only an external NS
deleg       NS    ns1.deleg
deleg       NS    ns2.deleg
deleg       NS    ns.elsewhere.example.
deleg       NS    ns1
ns1.deleg   A     192.0.2.20
ns2.deleg   AAAA  2001:db8::20
*.deleg     A     192.0.2.99
ext         NS    ns.elsewhere.example.
nsglue      NS    ns1.deleg
; additional data from a wildcard, and more than fits without EDNS
mxw         MX    10 host.wild
manymx      MX    1 m1
manymx      MX    2 m2
manymx      MX    3 m3
manymx      MX    4 m4
manymx      MX    5 m5
manymx      MX    6 m6
m1 A 192.0.2.101
m1 AAAA 2001:db8::101
m2 A 192.0.2.102
m2 AAAA 2001:db8::102
m3 A 192.0.2.103
m3 AAAA 2001:db8::103
m4 A 192.0.2.104
m4 AAAA 2001:db8::104
m5 A 192.0.2.105
m5 AAAA 2001:db8::105
m6 A 192.0.2.106
m6 AAAA 2001:db8::106
; types hickory's zone parser does not read, a TXT over two lines, and
; the RFC 3597 generic form, for an unknown type and a known one
loc         LOC   52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m
rp          RP    hostmaster.diff.test. txt
uri         URI   10 1 "https://diff.test/"
spf         SPF   "v=spf1 -all"
generic     TYPE65280 \# 4 0a000001
generic     A     \# 4 c000020d
multi       TXT   ( "line one"
                    "line two" ) ; and a comment
deleg       DS    12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
; DNAME (RFC 6672): a subtree redirected inside the zone, out of it,
; to another DNAME, in a loop, one whose substitution is too long, and
; a CNAME to a name below one
dn          DNAME dtarget
dtarget     A     192.0.2.70
www.dtarget A     192.0.2.71
dnout       DNAME elsewhere.example.
dn2         DNAME dn.diff.test.
dnl1        DNAME dnl2
dnl2        DNAME dnl1
dnlong      DNAME a123456789012345678901234567890123456789012345678901234567890.b123456789012345678901234567890123456789012345678901234567890.c123456789012345678901234567890123456789012345678901234567890.diff.test.
todn        CNAME www.dn
; an answer too big for 512 bytes
big TXT "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
big TXT "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
big TXT "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
big TXT "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
"#;

/// A second zone: a wildcard at the apex, a wildcard that is an empty
/// non-terminal, a delegation whose NS is also the apex's, NS targets that
/// only a wildcard answers, a CNAME into the first zone.
const ZONE2: &str = r#"$ORIGIN d2.test.
$TTL 300
@           IN SOA ns1.d2.test. hostmaster 1 3600 600 604800 3600
@           NS    ns1
@           NS    ns.sub
ns1         A     192.0.2.50
sub         NS    ns.sub
ns.sub      A     192.0.2.51
sub         TXT   "occluded"
*.d2.test.  A     192.0.2.52
a.*.w       A     192.0.2.53
tocross     CNAME www.diff.test.
mxc         MX    10 cn
cn          CNAME ns1
both        MX    10 ns1
both        SRV   0 0 1 ns1
toent       CNAME w
nswild      NS    host.any
*.many      TXT   "one"
*.many      TXT   "two"
; referrals whose glue does not all fit in 512 bytes: below the cut
; (RFC 9471: TC) and a sibling's (no TC)
middeleg    NS    ns-with-a-longish-name-1.middeleg
ns-with-a-longish-name-1.middeleg A 192.0.2.101
ns-with-a-longish-name-1.middeleg AAAA 2001:db8::101
mid2        NS    ns-with-a-longish-name-1.middeleg
middeleg    NS    ns-with-a-longish-name-2.middeleg
ns-with-a-longish-name-2.middeleg A 192.0.2.102
ns-with-a-longish-name-2.middeleg AAAA 2001:db8::102
mid2        NS    ns-with-a-longish-name-2.middeleg
middeleg    NS    ns-with-a-longish-name-3.middeleg
ns-with-a-longish-name-3.middeleg A 192.0.2.103
ns-with-a-longish-name-3.middeleg AAAA 2001:db8::103
mid2        NS    ns-with-a-longish-name-3.middeleg
middeleg    NS    ns-with-a-longish-name-4.middeleg
ns-with-a-longish-name-4.middeleg A 192.0.2.104
ns-with-a-longish-name-4.middeleg AAAA 2001:db8::104
mid2        NS    ns-with-a-longish-name-4.middeleg
middeleg    NS    ns-with-a-longish-name-5.middeleg
ns-with-a-longish-name-5.middeleg A 192.0.2.105
ns-with-a-longish-name-5.middeleg AAAA 2001:db8::105
mid2        NS    ns-with-a-longish-name-5.middeleg
middeleg    NS    ns-with-a-longish-name-6.middeleg
ns-with-a-longish-name-6.middeleg A 192.0.2.106
ns-with-a-longish-name-6.middeleg AAAA 2001:db8::106
mid2        NS    ns-with-a-longish-name-6.middeleg
middeleg    NS    ns-with-a-longish-name-7.middeleg
ns-with-a-longish-name-7.middeleg A 192.0.2.107
ns-with-a-longish-name-7.middeleg AAAA 2001:db8::107
mid2        NS    ns-with-a-longish-name-7.middeleg
middeleg    NS    ns-with-a-longish-name-8.middeleg
ns-with-a-longish-name-8.middeleg A 192.0.2.108
ns-with-a-longish-name-8.middeleg AAAA 2001:db8::108
mid2        NS    ns-with-a-longish-name-8.middeleg
"#;

/// A child zone of the second, served by the same servers: DS at its apex
/// is the parent's to answer.
const ZONE3: &str = r#"$ORIGIN sub.d2.test.
$TTL 300
@           IN SOA ns.sub.d2.test. hostmaster 7 3600 600 604800 60
@           NS    ns
ns          A     192.0.2.51
www         A     192.0.2.60
"#;

/// A zone file without `$TTL` (records get 3600 until one, as NSD and
/// Knot give them) and with `@` for the origin in RDATA.
const ZONE4: &str = r#"$ORIGIN nottl.test.
@           IN SOA ns1 hostmaster 1 3600 600 604800 60
            NS    ns1
ns1         A     192.0.2.1
short 120   A     192.0.2.2
after       A     192.0.2.3
rel         CNAME @
mx          MX    10 @
$TTL 777
late        A     192.0.2.4
"#;

/// Which reference servers a query is compared with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peers {
    Both,
    /// NSD differs by design (see the module comment).
    Knot,
    /// Knot differs by design (see the module comment).
    Nsd,
}

use Peers::{Both, Knot, Nsd};

/// (name, type, reference servers compared with).
const QUERIES: &[(&str, &str, Peers)] = &[
    // apex, plain names, NODATA, NXDOMAIN, additional for NS/MX/SRV
    ("diff.test", "SOA", Both),
    ("diff.test", "NS", Both),
    ("diff.test", "MX", Both),
    ("diff.test", "A", Both),
    ("diff.test", "DS", Both),
    ("diff.test", "ANY", Knot),
    ("www.diff.test", "A", Both),
    ("www.diff.test", "AAAA", Both),
    ("www.diff.test", "ANY", Both),
    ("WWW.Diff.TEST", "A", Both),
    ("mail.diff.test", "A", Both),
    ("_sip._udp.diff.test", "SRV", Both),
    ("_sip._tcp.diff.test", "SRV", Both),
    ("nope.diff.test", "A", Both),
    ("other.example", "A", Both),
    // wildcards
    ("foo.wild.diff.test", "A", Both),
    ("Foo.Wild.diff.test", "A", Both),
    ("foo.wild.diff.test", "AAAA", Both),
    ("foo.wild.diff.test", "MX", Both),
    ("a.b.wild.diff.test", "A", Both),
    ("*.wild.diff.test", "A", Both),
    ("wild.diff.test", "A", Both),
    ("sub.wild.diff.test", "A", Both),
    ("sub.wild.diff.test", "TXT", Both),
    ("x.sub.wild.diff.test", "A", Both),
    ("ent.wild.diff.test", "A", Both),
    ("y.ent.wild.diff.test", "A", Both),
    ("ent2.diff.test", "A", Both),
    ("c.ent2.diff.test", "A", Both),
    ("x.ent2.diff.test", "A", Both),
    ("foo.cn.diff.test", "A", Both),
    ("foo.cn.diff.test", "CNAME", Both),
    ("a.wl.diff.test", "A", Both),
    ("x.wl.diff.test", "A", Both),
    // CNAME chains
    ("towild.diff.test", "A", Both),
    ("towild.diff.test", "AAAA", Both),
    ("tocn.diff.test", "A", Both),
    ("c1.diff.test", "A", Both),
    ("c1.diff.test", "CNAME", Both),
    ("c2.diff.test", "AAAA", Both),
    ("l1.diff.test", "A", Knot),
    ("l2.diff.test", "A", Knot),
    ("l3.diff.test", "A", Both),
    ("loop1.diff.test", "A", Both),
    ("self.diff.test", "A", Both),
    ("out.diff.test", "A", Both),
    ("dangling.diff.test", "A", Both),
    ("tonodata.diff.test", "A", Both),
    ("todeleg.diff.test", "A", Both),
    ("tomx.diff.test", "MX", Both),
    // DNAME
    ("www.dn.diff.test", "A", Both),
    ("WWW.Dn.diff.test", "A", Both),
    ("a.b.dn.diff.test", "A", Both),
    ("nope.dn.diff.test", "A", Both),
    ("nope.dn.diff.test", "TXT", Both),
    ("dn.diff.test", "TYPE39", Both),
    ("dn.diff.test", "A", Both),
    ("www.dn.diff.test", "CNAME", Both),
    ("www.dn.diff.test", "TYPE39", Both),
    ("x.dnout.diff.test", "A", Both),
    ("www.dn2.diff.test", "A", Both),
    ("x.dnl1.diff.test", "A", Both),
    (
        "x12345678901234567890123456789012345678901234567890123456789012.dnlong.diff.test",
        "A",
        Nsd,
    ),
    ("todn.diff.test", "A", Both),
    // delegations
    ("deleg.diff.test", "NS", Both),
    ("deleg.diff.test", "A", Both),
    ("deleg.diff.test", "DS", Both),
    ("deleg.diff.test", "SOA", Both),
    ("www.deleg.diff.test", "A", Both),
    ("ns1.deleg.diff.test", "A", Both),
    ("ns2.deleg.diff.test", "AAAA", Both),
    ("x.y.deleg.diff.test", "DS", Both),
    ("ext.diff.test", "A", Both),
    ("ext.diff.test", "DS", Both),
    ("foo.ext.diff.test", "A", Both),
    ("nsglue.diff.test", "A", Both),
    // types read by Steer's own zone text reader
    ("loc.diff.test", "TYPE29", Both),
    ("rp.diff.test", "TYPE17", Both),
    ("uri.diff.test", "TYPE256", Both),
    ("spf.diff.test", "TYPE99", Both),
    ("generic.diff.test", "TYPE65280", Both),
    ("generic.diff.test", "A", Both),
    ("multi.diff.test", "TXT", Both),
    // additional data and size limits
    ("mxw.diff.test", "MX", Knot),
    ("manymx.diff.test", "MX", Knot),
    ("big.diff.test", "TXT", Both),
    // the second zone
    ("d2.test", "NS", Both),
    ("nope.d2.test", "A", Both),
    ("nope.d2.test", "TXT", Both),
    ("x.y.d2.test", "A", Both),
    ("w.d2.test", "A", Both),
    ("x.w.d2.test", "A", Both),
    ("*.w.d2.test", "A", Both),
    ("a.*.w.d2.test", "A", Both),
    ("tocross.d2.test", "A", Nsd),
    ("mxc.d2.test", "MX", Both),
    ("both.d2.test", "MX", Knot),
    ("both.d2.test", "SRV", Knot),
    ("toent.d2.test", "A", Both),
    ("sub.d2.test", "TXT", Both),
    ("ns.sub.d2.test", "A", Both),
    ("nswild.d2.test", "A", Both),
    ("foo.many.d2.test", "TXT", Both),
    ("d2.test", "RRSIG", Both),
    // NSD sends these without TC, A records first; Knot as Steer.
    ("x.middeleg.d2.test", "A", Knot),
    ("x.mid2.d2.test", "A", Knot),
    // the child zone
    ("sub.d2.test", "DS", Both),
    ("sub.d2.test", "NS", Both),
    ("sub.d2.test", "SOA", Both),
    ("sub.d2.test", "TXT", Both),
    ("www.sub.d2.test", "A", Both),
    ("www.sub.d2.test", "DS", Both),
    ("nope.sub.d2.test", "A", Both),
    // the zone without $TTL
    ("nottl.test", "SOA", Both),
    ("nottl.test", "NS", Both),
    ("short.nottl.test", "A", Both),
    ("after.nottl.test", "A", Both),
    ("rel.nottl.test", "A", Both),
    ("mx.nottl.test", "MX", Both),
    ("late.nottl.test", "A", Both),
];

#[derive(Clone, Copy, Debug)]
enum Transport {
    Udp,
    UdpEdns,
    Tcp,
}

/// What is compared of a response.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    rcode: String,
    aa: bool,
    tc: bool,
    answer: BTreeSet<String>,
    authority: BTreeSet<String>,
    additional: BTreeSet<String>,
}

fn show(r: &Record) -> String {
    format!(
        "{} {} {} {}",
        r.name.to_lowercase(),
        r.ttl,
        r.record_type(),
        r.data
    )
}

fn ask(port: u16, name: &str, qtype: &str, transport: Transport, id: u16) -> Summary {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    let qname = Name::from_str(&format!("{name}.")).unwrap();
    let rtype = match qtype.strip_prefix("TYPE") {
        Some(code) => RecordType::from(code.parse::<u16>().unwrap()),
        None => RecordType::from_str(qtype).unwrap(),
    };
    msg.add_query(Query::query(qname, rtype));
    if matches!(transport, Transport::UdpEdns) {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        msg.set_edns(edns);
    }
    let wire = msg.to_vec().unwrap();
    let reply = match transport {
        Transport::Udp | Transport::UdpEdns => {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = vec![0u8; 65_535];
            let mut got = None;
            for _ in 0..3 {
                sock.send_to(&wire, ("127.0.0.1", port)).unwrap();
                if let Ok(n) = sock.recv(&mut buf) {
                    got = Some(buf[..n].to_vec());
                    break;
                }
            }
            got.unwrap_or_else(|| panic!("no UDP reply from port {port} to {name} {qtype}"))
        }
        Transport::Tcp => {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut framed = u16::try_from(wire.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&wire);
            s.write_all(&framed).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut buf).unwrap();
            buf
        }
    };
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(m.metadata.id, id);
    Summary {
        rcode: m.metadata.response_code.to_string(),
        aa: m.metadata.authoritative,
        tc: m.metadata.truncation,
        answer: m.answers.iter().map(show).collect(),
        authority: m.authorities.iter().map(show).collect(),
        additional: m.additionals.iter().map(show).collect(),
    }
}

/// A reference server: stopped with SIGTERM (NSD forks helpers that a
/// SIGKILL of the main process would leave behind), then SIGKILL.
struct Reference {
    proc: Proc,
    port: u16,
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.proc.child.id().to_string()])
            .status();
        let stopped = poll(Duration::from_secs(5), || {
            matches!(self.proc.child.try_wait(), Ok(Some(_))).then_some(())
        });
        if stopped.is_none() {
            self.proc.kill();
        }
    }
}

/// The path of a reference server's binary; panics, saying what to
/// install, when it is missing.
fn binary(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "{name} is not installed: the DNS differential test needs the Debian package \
         `{package}` (scripts/test installs it: apt-get install {package})"
    );
}

fn wait_ready(server: &Reference, what: &str) {
    let ready = poll(Duration::from_secs(20), || {
        let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .ok()?;
        let mut msg = Message::new(1, MessageType::Query, OpCode::Query);
        msg.add_query(Query::query(Name::from_str(ORIGIN).ok()?, RecordType::SOA));
        sock.send_to(&msg.to_vec().ok()?, ("127.0.0.1", server.port))
            .ok()?;
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).ok()?;
        let m = Message::from_vec(&buf[..n]).ok()?;
        (!m.answers.is_empty()).then_some(())
    });
    assert!(
        ready.is_some(),
        "{what} did not serve {ORIGIN}:\n{}",
        server.proc.log_text()
    );
}

fn start_nsd(dir: &Path, zones: &[(&str, PathBuf)]) -> Reference {
    let nsd = binary("nsd", "nsd");
    let dir = dir.join("nsd");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  \
         chroot: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  pidfile: \"{d}/nsd.pid\"\n  \
         xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  \
         xfrdir: \"{d}\"\n  server-count: 1\n  verbosity: 1\n\
         remote-control:\n  control-enable: no\n{}",
        zones
            .iter()
            .map(|(origin, file)| format!(
                "zone:\n  name: {origin}\n  zonefile: \"{}\"\n",
                file.display()
            ))
            .collect::<String>()
    );
    std::fs::write(dir.join("nsd.conf"), conf).unwrap();
    let proc = Proc::spawn(
        Command::new(nsd)
            .arg("-d")
            .arg("-c")
            .arg(dir.join("nsd.conf")),
        dir.join("nsd.log"),
    );
    let server = Reference { proc, port };
    wait_ready(&server, "nsd");
    server
}

fn start_knot(dir: &Path, zones: &[(&str, PathBuf)]) -> Reference {
    let knotd = binary("knotd", "knot");
    let dir = dir.join("knot");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "server:\n  rundir: \"{d}\"\n  listen: 127.0.0.1@{port}\n  pidfile: \"{d}/knot.pid\"\n\
         database:\n  storage: \"{d}\"\nzone:\n{}",
        zones
            .iter()
            .map(|(origin, file)| format!(
                "  - domain: {origin}\n    file: \"{}\"\n    storage: \"{d}\"\n",
                file.display()
            ))
            .collect::<String>()
    );
    std::fs::write(dir.join("knot.conf"), conf).unwrap();
    let proc = Proc::spawn(
        Command::new(knotd).arg("-c").arg(dir.join("knot.conf")),
        dir.join("knot.log"),
    );
    let server = Reference { proc, port };
    wait_ready(&server, "knotd");
    server
}

/// NSD's response with what it adds to positive answers (the zone's NS
/// set in authority, by default) taken out; `None` when Steer's
/// additional section is not within NSD's.
fn nsd_minimal(mut nsd: Summary, steer: &Summary) -> Option<Summary> {
    let positive =
        nsd.aa && !nsd.answer.is_empty() && nsd.authority.iter().all(|r| !r.contains(" SOA "));
    if positive {
        let at_an_apex = |r: &String| {
            [ORIGIN, "d2.test.", "sub.d2.test.", "nottl.test."]
                .iter()
                .any(|apex| r.starts_with(&format!("{apex} ")))
        };
        nsd.authority
            .retain(|r| !(at_an_apex(r) && r.contains(" NS ")));
        if !steer.additional.is_subset(&nsd.additional) {
            return None;
        }
        nsd.additional.clone_from(&steer.additional);
    }
    Some(nsd)
}

#[test]
fn zone_semantics_match_nsd_and_knot() {
    let dir = temp_dir("dns-differential");
    let zones = [
        (ORIGIN, dir.join("diff.test.zone")),
        ("d2.test.", dir.join("d2.test.zone")),
        ("sub.d2.test.", dir.join("sub.d2.test.zone")),
        ("nottl.test.", dir.join("nottl.test.zone")),
    ];
    std::fs::write(&zones[0].1, ZONE).unwrap();
    std::fs::write(&zones[1].1, ZONE2).unwrap();
    std::fs::write(&zones[2].1, ZONE3).unwrap();
    std::fs::write(&zones[3].1, ZONE4).unwrap();
    let nsd = start_nsd(&dir, &zones);
    let knot = start_knot(&dir, &zones);

    let mut text = std::fs::read_to_string(quickstart()).unwrap();
    let listed: String = zones
        .iter()
        .map(|(origin, file)| {
            format!(
                "[[zones]]\norigin = \"{origin}\"\nfile = \"{}\"\n\n",
                file.display()
            )
        })
        .collect();
    text = text.replace(
        "# Client networks map",
        &format!("{listed}# Client networks map"),
    );
    let config = dir.join("steerd.toml");
    std::fs::write(&config, &text).unwrap();
    let steer = Steerd::start_with(config, dir.join("state"));
    // UDP on the runtime (`udp_workers = 0`) takes the same pipeline from
    // another socket loop: it must agree too.
    let config = dir.join("steerd-hickory.toml");
    std::fs::write(&config, text + "\n[dns]\nudp_workers = 0\n").unwrap();
    let hickory = Steerd::start_with(config, dir.join("state-hickory"));

    let mut compared = 0;
    let mut mismatches = Vec::new();
    let mut id = 0u16;
    for transport in [Transport::Udp, Transport::UdpEdns, Transport::Tcp] {
        for &(name, qtype, peers) in QUERIES {
            id = id.wrapping_add(1);
            let ours = ask(steer.dns, name, qtype, transport, id);
            if peers != Nsd {
                let k = ask(knot.port, name, qtype, transport, id);
                compared += 1;
                if ours != k {
                    mismatches.push(format!(
                        "{name} {qtype} over {transport:?}: Knot\n  {k:?}\nSteer\n  {ours:?}"
                    ));
                }
            }
            // hickory's encoder drops the whole additional section when it
            // does not fit, where the fast path keeps the RRsets that do.
            let partial_additional = name.contains("mid");
            if !matches!(transport, Transport::Tcp) && !partial_additional {
                let h = ask(hickory.dns, name, qtype, transport, id);
                compared += 1;
                if h != ours {
                    mismatches.push(format!(
                        "{name} {qtype} over {transport:?}: UDP on the runtime\n  {h:?}\nSteer\n  {ours:?}"
                    ));
                }
            }
            if peers != Knot {
                let n = ask(nsd.port, name, qtype, transport, id);
                compared += 1;
                match nsd_minimal(n, &ours) {
                    Some(n) if n == ours => {}
                    n => mismatches.push(format!(
                        "{name} {qtype} over {transport:?}: NSD (minimal)\n  {n:?}\nSteer\n  {ours:?}"
                    )),
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} responses differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    eprintln!("{compared} responses compared with Knot, NSD and hickory's loop: all match");
}
