//! Fixtures shared by the benches: the quickstart config path and a synthetic
//! topology large enough to show how `policy::compute` scales.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use ipnet::{IpNet, Ipv4Net};
use steer_types::{ClientNetwork, Pop, PopId, Region, RegionId, Service, ServiceId, Topology};

/// `configs/quickstart.toml` in this workspace.
pub fn quickstart_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/quickstart.toml")
}

/// Gives every service a demand estimate of `rps` per region, so `compute`
/// water-fills instead of taking the capacity-only path.
pub fn with_demand(mut topology: Topology, rps: f64) -> Topology {
    let ids: Vec<String> = topology.regions.iter().map(|r| r.id.to_string()).collect();
    for s in &mut topology.services {
        s.demand_estimate = ids.iter().map(|id| (id.clone(), rps)).collect();
    }
    topology
}

/// `regions` regions of `pops_per_region` PoPs each, every PoP dual-stack, and
/// `services` services that each span every PoP and announce one anycast
/// /24. Each region falls back to the next two regions and owns one IPv4 /24
/// of client networks. Health and policy settings come from `template` (the
/// quickstart: `assume-up`, so an empty `HealthSnapshot` leaves every PoP in
/// the answer sets, the most work `compute` can be given).
pub fn synthetic_topology(
    template: &Topology,
    regions: usize,
    pops_per_region: usize,
    services: usize,
) -> Topology {
    let region_id = |r: usize| RegionId::new(format!("region-{r:02}"));
    let region_list = (0..regions)
        .map(|r| Region {
            id: region_id(r),
            fallback: (1..=2.min(regions.saturating_sub(1)))
                .map(|k| region_id((r + k) % regions))
                .collect(),
        })
        .collect();
    let mut pops = Vec::with_capacity(regions * pops_per_region);
    for r in 0..regions {
        for p in 0..pops_per_region {
            let n = r * pops_per_region + p;
            let n16 = u16::try_from(n).expect("at most 65536 synthetic PoPs");
            let [hi, lo] = n16.to_be_bytes();
            pops.push(Pop {
                id: PopId::new(format!("pop{n:03}")),
                region: region_id(r),
                ipv4: Some(Ipv4Addr::new(198, 18, hi, lo)),
                ipv6: Some(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n16)),
                capacity_rps: 10_000.0,
            });
        }
    }
    let service_list = (0..services)
        .map(|s| Service {
            id: ServiceId::new(format!("svc{s}")),
            fqdn: format!("svc{s}.example.test."),
            ttl: 30,
            max_records: 2,
            pops: pops.iter().map(|p| p.id.clone()).collect(),
            anycast: vec![anycast_prefix(s)],
            priority: 0,
            demand_estimate: Default::default(),
        })
        .collect();
    let client_networks = (0..regions)
        .map(|r| {
            let r16 = u16::try_from(r).expect("at most 65536 synthetic regions");
            let [hi, lo] = r16.to_be_bytes();
            let prefix = Ipv4Net::new(Ipv4Addr::new(10, hi, lo, 0), 24)
                .expect("/24 is a valid IPv4 prefix length");
            ClientNetwork {
                prefix: IpNet::V4(prefix),
                region: region_id(r),
            }
        })
        .collect();
    Topology {
        regions: region_list,
        pops,
        services: service_list,
        client_networks,
        ..template.clone()
    }
}

fn anycast_prefix(service: usize) -> IpNet {
    let octet = u8::try_from(service).expect("at most 256 synthetic services");
    let prefix = Ipv4Net::new(Ipv4Addr::new(100, 64, octet, 0), 24)
        .expect("/24 is a valid IPv4 prefix length");
    IpNet::V4(prefix)
}
