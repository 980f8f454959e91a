//! BGP sessions on the incident timeline: the speaker keeps its sessions'
//! state in its status; a watcher notes each session that comes up or
//! goes down (with the last error), once a second at most.

use std::{collections::BTreeMap, time::Duration};

use steer_control::{Clock, SystemClock};
use steer_types::{
    bgp::BgpPeerStatus,
    timeline::{EventKind, TimelineHandle},
};

/// How often the watcher reads the speaker's status.
const EVERY: Duration = Duration::from_secs(1);

fn established(p: &BgpPeerStatus) -> bool {
    p.state == "established"
}

/// The timeline line for a session that changed, if it did.
fn session_event(before: Option<bool>, p: &BgpPeerStatus) -> Option<(String, String)> {
    let up = established(p);
    // First sight: note only sessions that are up (the start of the feed
    // says which came up; down ones retry quietly until they do).
    if before == Some(up) || (before.is_none() && !up) {
        return None;
    }
    let summary = if up {
        format!(
            "BGP session {} of {} ({}) established",
            p.peer, p.pop, p.peer_as
        )
    } else {
        format!(
            "BGP session {} of {} ({}) down: {}",
            p.peer, p.pop, p.peer_as, p.state
        )
    };
    let detail = match (&p.last_error, up) {
        (Some(e), false) => format!("last error: {e}; flaps {}", p.flaps),
        _ => format!("flaps {}", p.flaps),
    };
    Some((summary, detail))
}

pub(crate) async fn watch_bgp(status: steer_api::BgpStatusSource, timeline: TimelineHandle) {
    let mut seen: BTreeMap<String, bool> = BTreeMap::new();
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let snapshot = status();
        for p in &snapshot.peers {
            let key = format!("{}/{}", p.pop, p.peer);
            let before = seen.insert(key, established(p));
            let Some((summary, detail)) = session_event(before, p) else {
                continue;
            };
            if let Ok(mut t) = timeline.lock() {
                t.push(
                    SystemClock.wall(),
                    EventKind::Bgp,
                    vec![p.pop.to_string()],
                    None,
                    summary,
                    detail,
                );
            }
            metrics::counter!("steer_timeline_events_total", "kind" => "bgp").increment(1);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn peer(state: &str) -> BgpPeerStatus {
        BgpPeerStatus {
            pop: "fra1".into(),
            peer: "127.0.0.2:1179".into(),
            peer_as: 65001,
            state: state.into(),
            uptime_secs: None,
            flaps: 1,
            prefixes_sent: 0,
            updates_sent: 0,
            last_error: Some("hold timer expired".into()),
        }
    }

    #[test]
    fn sessions_are_noted_when_they_come_up_or_go_down() {
        assert!(session_event(None, &peer("active")).is_none());
        let (up, _) = session_event(None, &peer("established")).unwrap();
        assert!(up.contains("established"), "{up}");
        assert!(session_event(Some(true), &peer("established")).is_none());
        let (down, detail) = session_event(Some(true), &peer("active")).unwrap();
        assert!(down.contains("down: active"), "{down}");
        assert!(detail.contains("hold timer expired"), "{detail}");
        assert!(session_event(Some(false), &peer("connect")).is_none());
    }
}
