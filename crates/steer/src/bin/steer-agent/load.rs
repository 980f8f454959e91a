//! Load and capacity figures: from the config, optionally refreshed by a
//! command (`load_command`) that prints `key=value` pairs. A failing or
//! garbled command is logged and the last good figures are kept.
//!
//! `region_load.<region>=<rps>` pairs attribute the load to client regions
//! (an edge proxy knows its clients' addresses; the command maps them to
//! steerd's client networks): each run's output replaces the last run's
//! attribution, and an output without any leaves none.

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
}

pub(crate) type SharedLoad = Arc<Mutex<LoadNow>>;

pub(crate) fn start(config: &AgentConfig) -> SharedLoad {
    let shared = Arc::new(Mutex::new(LoadNow {
        capacity_rps: config.capacity_rps,
        load_rps: config.load_rps,
        ..LoadNow::default()
    }));
    if let Some(cmd) = &config.load_command {
        tokio::spawn(run(cmd.clone(), shared.clone()));
    }
    shared
}

pub(crate) fn current(shared: &SharedLoad) -> LoadNow {
    shared.lock().map(|l| l.clone()).unwrap_or_default()
}

async fn run(cmd: LoadCommand, shared: SharedLoad) {
    let mut ticker = tokio::time::interval(cmd.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match once(&cmd.command, cmd.interval.max(Duration::from_secs(1))).await {
            Ok(text) => {
                let mut next = current(&shared);
                match parse(&text, &mut next) {
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

/// `key=value` pairs, whitespace separated; all-or-nothing.
fn parse(text: &str, into: &mut LoadNow) -> Result<(), String> {
    let mut next = into.clone();
    next.region_load.clear();
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
    *into = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_all_or_nothing() {
        let mut l = LoadNow::default();
        parse("load_rps=120.5\ncapacity_rps=9000 error_ratio=0.01", &mut l).ok();
        assert!((l.load_rps - 120.5).abs() < 1e-9);
        assert!((l.capacity_rps - 9000.0).abs() < 1e-9);
        let before = l.clone();
        assert!(parse("load_rps=1 bogus=2", &mut l).is_err());
        assert_eq!(l, before);
        assert!(parse("error_ratio=2", &mut l).is_err());
    }

    #[test]
    fn region_loads_are_replaced_by_each_output() {
        let mut l = LoadNow::default();
        parse(
            "load_rps=300 region_load.eu-west=200 region_load.us-east=90",
            &mut l,
        )
        .ok();
        assert_eq!(l.region_load.len(), 2);
        assert!((l.region_load["eu-west"] - 200.0).abs() < 1e-9);
        parse("load_rps=100", &mut l).ok();
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
            assert!(parse(bad, &mut l).is_err(), "{bad}");
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
