//! Load and capacity figures: from the config, optionally refreshed by a
//! command (`load_command`) that prints `key=value` pairs. A failing or
//! garbled command is logged and the last good figures are kept.
//!
//! `region_load.<region>=<rps>` pairs attribute the load to client regions
//! (an edge proxy knows its clients' addresses; the command maps them to
//! steerd's client networks): each run's output replaces the last run's
//! attribution, and an output without any leaves none.
//!
//! `requests_total`, `errors_total` and `slow_total` are a service's SLI
//! counters, cumulative as the proxy counts them (instead of an `[[sli]]`
//! source): bare for an agent that probes one service, else suffixed
//! with the service (`requests_total.app=...`). Like region loads, each
//! output replaces the last one's: no counters printed, no SLI sent (no
//! data is never good data).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use steer_config::{AgentConfig, LoadCommand};

use crate::exec;
use tracing::warn;

/// Most client regions one output may attribute load to.
const MAX_REGIONS: usize = 1024;

/// What the agent reports about load and capacity.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LoadNow {
    pub(crate) capacity_rps: f64,
    pub(crate) load_rps: f64,
    pub(crate) bandwidth_bps: f64,
    pub(crate) error_ratio: f64,
    pub(crate) latency_p50_ms: f64,
    pub(crate) latency_p99_ms: f64,
    /// `load_rps` by client region, as the command attributes it.
    pub(crate) region_load: BTreeMap<String, f64>,
    /// SLI counters per service, as the command prints them.
    pub(crate) sli: BTreeMap<String, CommandSli>,
}

/// One service's request counters from `load_command`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CommandSli {
    pub(crate) total: u64,
    pub(crate) failed: u64,
    pub(crate) slow: Option<u64>,
}

/// The services an agent probes, for the bare SLI counter keys.
fn probed_services(config: &AgentConfig) -> Vec<String> {
    let mut out: Vec<String> = config.probes.iter().map(|p| p.service.clone()).collect();
    out.sort();
    out.dedup();
    out
}

pub(crate) type SharedLoad = Arc<Mutex<LoadNow>>;

pub(crate) fn start(config: &AgentConfig) -> SharedLoad {
    let shared = Arc::new(Mutex::new(LoadNow {
        capacity_rps: config.capacity_rps,
        load_rps: config.load_rps,
        ..LoadNow::default()
    }));
    if let Some(cmd) = &config.load_command {
        tokio::spawn(run(cmd.clone(), probed_services(config), shared.clone()));
    }
    shared
}

pub(crate) fn current(shared: &SharedLoad) -> LoadNow {
    shared.lock().map(|l| l.clone()).unwrap_or_default()
}

async fn run(cmd: LoadCommand, services: Vec<String>, shared: SharedLoad) {
    let mut ticker = tokio::time::interval(cmd.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match once(&cmd.command, cmd.interval.max(Duration::from_secs(1))).await {
            Ok(text) => {
                let mut next = current(&shared);
                match parse(&text, &services, &mut next) {
                    Ok(()) => {
                        if let Ok(mut l) = shared.lock() {
                            *l = next;
                        }
                    }
                    Err(e) => {
                        warn!(command = ?cmd.command, error = %e, "load_command output ignored")
                    }
                }
            }
            Err(e) => warn!(command = ?cmd.command, error = %e, "load_command failed"),
        }
    }
}

/// One run: its output if it exited 0 within `timeout` and printed at most
/// [`exec::OUTPUT_CAP`] bytes.
async fn once(command: &[String], timeout: Duration) -> Result<String, String> {
    let (status, out) = exec::run(command, timeout, true)
        .await
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(status.to_string());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `key=value` pairs, whitespace separated; all-or-nothing. `services`
/// are those the agent probes (SLI counters name one of them).
fn parse(text: &str, services: &[String], into: &mut LoadNow) -> Result<(), String> {
    let mut next = into.clone();
    next.region_load.clear();
    // Per service: requests_total, errors_total, slow_total as printed.
    let mut counters: BTreeMap<String, [Option<u64>; 3]> = BTreeMap::new();
    for pair in text.split_whitespace() {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        let v: f64 = value
            .parse()
            .map_err(|_| format!("{key}: {value:?} is not a number"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("{key}: must be a finite, non-negative number"));
        }
        if let Some(region) = key.strip_prefix("region_load.") {
            let valid = !region.is_empty()
                && region.len() <= 128
                && region
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !valid {
                return Err(format!("{key}: {region:?} is not a region id"));
            }
            if next.region_load.insert(region.to_owned(), v).is_some() {
                return Err(format!("{key} appears twice"));
            }
            if next.region_load.len() > MAX_REGIONS {
                return Err(format!("more than {MAX_REGIONS} region_load pairs"));
            }
            continue;
        }
        let (name, service) = key.split_once('.').unwrap_or((key, ""));
        if let Some(i) = ["requests_total", "errors_total", "slow_total"]
            .iter()
            .position(|k| *k == name)
        {
            let service = match (service, services) {
                ("", [only]) => only.clone(),
                ("", _) => {
                    return Err(format!(
                        "{key}: name the service ({name}.<service>): this agent probes {}",
                        if services.is_empty() {
                            "none".to_owned()
                        } else {
                            services.join(", ")
                        }
                    ));
                }
                (s, _) if services.iter().any(|x| x == s) => s.to_owned(),
                (s, _) => return Err(format!("{key}: this agent probes no service {s:?}")),
            };
            // Counters: whole numbers a double holds exactly.
            if v.fract() != 0.0 || v > 9_007_199_254_740_992.0 {
                return Err(format!("{key}: {value:?} is not a whole count"));
            }
            let slot = &mut counters.entry(service).or_default()[i];
            if slot.replace(v as u64).is_some() {
                return Err(format!("{key} appears twice"));
            }
            continue;
        }
        let slot = match key {
            "load_rps" => &mut next.load_rps,
            "capacity_rps" => &mut next.capacity_rps,
            "bandwidth_bps" => &mut next.bandwidth_bps,
            "error_ratio" if v <= 1.0 => &mut next.error_ratio,
            "error_ratio" => return Err("error_ratio must be between 0 and 1".into()),
            "latency_p50_ms" => &mut next.latency_p50_ms,
            "latency_p99_ms" => &mut next.latency_p99_ms,
            other => return Err(format!("unknown key {other:?}")),
        };
        *slot = v;
    }
    next.sli.clear();
    for (service, [total, failed, slow]) in counters {
        let Some(total) = total else {
            return Err(format!(
                "{service}: errors_total or slow_total without requests_total"
            ));
        };
        let failed = failed.unwrap_or(0);
        if failed > total || slow.is_some_and(|s| s > total) {
            return Err(format!(
                "{service}: errors_total and slow_total cannot exceed requests_total"
            ));
        }
        next.sli.insert(
            service,
            CommandSli {
                total,
                failed,
                slow,
            },
        );
    }
    *into = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_all_or_nothing() {
        let mut l = LoadNow::default();
        parse(
            "load_rps=120.5\ncapacity_rps=9000 error_ratio=0.01",
            &[],
            &mut l,
        )
        .ok();
        assert!((l.load_rps - 120.5).abs() < 1e-9);
        assert!((l.capacity_rps - 9000.0).abs() < 1e-9);
        let before = l.clone();
        assert!(parse("load_rps=1 bogus=2", &[], &mut l).is_err());
        assert_eq!(l, before);
        assert!(parse("error_ratio=2", &[], &mut l).is_err());
    }

    #[test]
    fn region_loads_are_replaced_by_each_output() {
        let mut l = LoadNow::default();
        parse(
            "load_rps=300 region_load.eu-west=200 region_load.us-east=90",
            &[],
            &mut l,
        )
        .ok();
        assert_eq!(l.region_load.len(), 2);
        assert!((l.region_load["eu-west"] - 200.0).abs() < 1e-9);
        parse("load_rps=100", &[], &mut l).ok();
        assert!(
            l.region_load.is_empty(),
            "an output without any leaves none"
        );
        let before = l.clone();
        for bad in [
            "region_load.=1",
            "region_load.eu west=1",
            "region_load.a=1 region_load.a=2",
            "region_load.a=-1",
        ] {
            assert!(parse(bad, &[], &mut l).is_err(), "{bad}");
            assert_eq!(l, before, "{bad}");
        }
    }

    #[test]
    fn sli_counters_name_a_probed_service_and_are_replaced_by_each_output() {
        let one = ["app".to_owned()];
        let mut l = LoadNow::default();
        assert!(
            parse(
                "load_rps=10 requests_total=1000 errors_total=7",
                &one,
                &mut l,
            )
            .is_ok()
        );
        assert_eq!(
            l.sli["app"],
            CommandSli {
                total: 1000,
                failed: 7,
                slow: None
            }
        );
        let two = ["app".to_owned(), "web".to_owned()];
        assert!(
            parse(
                "requests_total.app=5 requests_total.web=9 errors_total.web=1 slow_total.web=2",
                &two,
                &mut l,
            )
            .is_ok()
        );
        assert_eq!(l.sli["app"].total, 5);
        assert_eq!(l.sli["web"].slow, Some(2));
        assert!(parse("load_rps=10", &two, &mut l).is_ok());
        assert!(l.sli.is_empty(), "no counters printed, none sent");
        let before = l.clone();
        for bad in [
            "requests_total=5",
            "requests_total.db=5",
            "requests_total.app=5.5",
            "requests_total.app=5 requests_total.app=6",
            "errors_total.app=1",
            "requests_total.app=5 errors_total.app=6",
        ] {
            assert!(parse(bad, &two, &mut l).is_err(), "{bad}");
            assert_eq!(l, before, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_load_command_printing_forever_is_cut_off() {
        let started = std::time::Instant::now();
        let err = once(&["yes".to_owned()], Duration::from_secs(20))
            .await
            .err();
        assert!(
            err.as_deref().is_some_and(|e| e.contains("64 KiB")),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
