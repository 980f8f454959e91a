//! BGP anycast: the validated speaker settings (from config) and the status
//! the speaker reports. The speaker itself lives in `steer-bgp`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::PopId;

/// What the speaker does with its routes when steerd stops cleanly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BgpShutdownAction {
    /// Withdraw every route, then close with a Cease NOTIFICATION.
    Withdraw,
    /// Close the TCP session without a NOTIFICATION so peers keep the routes
    /// as stale for the graceful-restart time (RFC 4724).
    GracefulRestart,
}

/// Communities attached to a route in one announcement state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTags {
    /// RFC 1997 communities, `asn:value` packed into a u32.
    pub communities: Vec<u32>,
    /// RFC 8092 large communities: global admin, local 1, local 2.
    pub large_communities: Vec<[u32; 3]>,
}

/// One BGP neighbour at one PoP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BgpPeerConfig {
    pub pop: PopId,
    pub address: IpAddr,
    pub port: u16,
    pub peer_as: u32,
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds (0 = no keepalives).
    pub hold_time: u16,
    /// Wait for the peer to connect instead of connecting out.
    pub passive: bool,
    /// Source address for active connects, listen address when passive.
    pub local_address: Option<IpAddr>,
    pub next_hop_ipv4: Option<Ipv4Addr>,
    pub next_hop_ipv6: Option<Ipv6Addr>,
}

/// The `[bgp]` table, validated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BgpSettings {
    pub peers: Vec<BgpPeerConfig>,
    /// Reconnect backoff: first wait, doubled per failure up to the max,
    /// each wait jittered down by up to half.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Advertise graceful restart (RFC 4724) with this restart time.
    pub graceful_restart: bool,
    pub restart_time: u16,
    pub on_shutdown: BgpShutdownAction,
    /// RFC 8326: re-announce with GRACEFUL_SHUTDOWN for this long before a
    /// planned withdraw (prepend → withdraw). Zero turns it off.
    pub graceful_shutdown: Duration,
    /// After steerd starts, sessions wait this long at most for every PoP
    /// to report before the first table goes out, so a restart under
    /// `unknown_health = "assume-down"` does not withdraw routes that
    /// graceful restart is keeping at the peers. Zero: no wait.
    #[serde(default)]
    pub startup_hold: Duration,
    pub add_path: bool,
    pub announce: RouteTags,
    pub prepend: RouteTags,
}

/// One BGP session as seen by the operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BgpPeerStatus {
    pub pop: PopId,
    /// `address:port`.
    pub peer: String,
    pub peer_as: u32,
    /// `idle`, `connect`, `active`, `open-sent`, `open-confirm`, `established`.
    pub state: String,
    /// Seconds since the session reached Established; `None` when down.
    pub uptime_secs: Option<u64>,
    /// Times an Established session went down.
    pub flaps: u64,
    /// Prefixes currently announced to this peer.
    pub prefixes_sent: usize,
    pub updates_sent: u64,
    pub last_error: Option<String>,
}

/// What the speaker applies for one (PoP, prefix).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BgpRouteStatus {
    pub pop: PopId,
    pub prefix: IpNet,
    /// `announce`, `prepend N`, `graceful-shutdown`, `withdraw`.
    pub state: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BgpStatus {
    /// Version of the last plan the speaker acted on.
    pub plan_version: Option<u64>,
    /// Set while the speaker refuses the newest plan (its own min-announce
    /// rail); it keeps the announcements it had.
    pub refused_plan: Option<String>,
    /// Set while the speaker holds its first table back, waiting for PoPs
    /// that have not reported since steerd started.
    #[serde(default)]
    pub holding: Option<String>,
    pub peers: Vec<BgpPeerStatus>,
    pub routes: Vec<BgpRouteStatus>,
}
