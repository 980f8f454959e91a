//! Response rate limiting per client prefix (RRL, as in BIND and Knot),
//! for UDP only: TCP sources cannot be spoofed, and a limited client is
//! pushed there by the occasional truncated "slip" reply.
//!
//! The table is a fixed array of atomics indexed by a hash of the client
//! prefix; each slot packs (window number, responses in that window). No
//! locks and no allocation per query; two prefixes that share a slot share
//! a budget, which errs on the side of limiting. The settings come with
//! each query's DNS view, so a reload turns RRL on, off or retunes it
//! without a restart; the table itself lives as long as the server.

use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use steer_types::RrlSettings;

use crate::select::mix;

const SLOTS: usize = 1 << 16;

/// What to do with one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RrlAction {
    Send,
    /// Send an empty truncated reply so a real client retries over TCP.
    Slip,
    Drop,
}

pub struct RateLimiter {
    start: Instant,
    slots: Box<[AtomicU64]>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Accounts one response to `client` now, under `settings`.
    pub fn check(&self, client: IpAddr, settings: &RrlSettings) -> RrlAction {
        let window_ns = settings.window.as_nanos().max(1);
        let window = (self.start.elapsed().as_nanos() / window_ns) as u64 & 0xffff_ffff;
        self.check_at(client, window, settings)
    }

    /// As [`Self::check`], in accounting window number `window` (tests).
    pub fn check_at(&self, client: IpAddr, window: u64, settings: &RrlSettings) -> RrlAction {
        let slot = &self.slots[(key(client, settings) as usize) % SLOTS];
        let mut cur = slot.load(Ordering::Relaxed);
        let count = loop {
            let (w, n) = (cur >> 32, cur & 0xffff_ffff);
            let next = if w == window {
                (window << 32) | (n + 1).min(0xffff_ffff)
            } else {
                (window << 32) | 1
            };
            match slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break next & 0xffff_ffff,
                Err(actual) => cur = actual,
            }
        };
        let limit = u64::from(settings.responses_per_second);
        if count <= limit {
            return RrlAction::Send;
        }
        let slip = u64::from(settings.slip);
        if slip > 0 && (count - limit) % slip == 0 {
            RrlAction::Slip
        } else {
            RrlAction::Drop
        }
    }
}

fn key(client: IpAddr, settings: &RrlSettings) -> u64 {
    match client {
        IpAddr::V4(a) => {
            let len = u32::from(settings.ipv4_prefix.min(32));
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            mix(u64::from(u32::from(a) & mask) ^ 0x4444)
        }
        IpAddr::V6(a) => {
            let len = u32::from(settings.ipv6_prefix.min(128));
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            let m = u128::from(a) & mask;
            mix((m >> 64) as u64 ^ mix(m as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_prefix_with_slip() {
        let rrl = RateLimiter::new();
        let s = RrlSettings {
            responses_per_second: 5,
            slip: 2,
            ..RrlSettings::default()
        };
        let a: IpAddr = [10, 0, 0, 1].into();
        let same_24: IpAddr = [10, 0, 0, 200].into();
        let other: IpAddr = [10, 0, 1, 1].into();
        let actions: Vec<RrlAction> = (0..10)
            .map(|i| rrl.check_at(if i % 2 == 0 { a } else { same_24 }, 7, &s))
            .collect();
        assert!(actions[..5].iter().all(|&x| x == RrlAction::Send));
        assert_eq!(actions[5], RrlAction::Drop);
        assert_eq!(actions[6], RrlAction::Slip);
        assert_eq!(rrl.check_at(other, 7, &s), RrlAction::Send);
        // A new window starts afresh.
        assert_eq!(rrl.check_at(a, 8, &s), RrlAction::Send);
    }
}
