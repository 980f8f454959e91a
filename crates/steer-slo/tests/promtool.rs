//! The generated Prometheus rules are valid (`promtool check rules`) and
//! alert as Steer's own evaluation does (`promtool test rules` on a burst
//! of errors). Needs Debian's `prometheus` (scripts/test installs it).

use std::{path::PathBuf, process::Command};

use steer_slo::{Objective, SloSpec, rules::prometheus_rules};

fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    });
    found.expect("promtool is not installed: `apt-get install prometheus` (scripts/test does)")
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steer-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn run(args: &[&str], dir: &PathBuf) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn generated_rules_check_and_fire_on_an_error_burst() {
    let dir = temp_dir();
    let mut slo = SloSpec::new(
        "app-availability",
        "app",
        Objective::Availability { target: 0.999 },
    );
    slo.runbook = Some("https://runbooks.example/app".into());
    std::fs::write(dir.join("rules.yml"), prometheus_rules(&[slo])).expect("write rules");
    run(&["check", "rules", "rules.yml"], &dir);

    let summary = |burn: &str, long: &str, short: &str| {
        format!(
            "SLO app-availability burning its error budget at over {burn}x ({long} and {short})"
        )
    };
    let alert = |severity: &str, burn: &str, long: &str, short: &str| {
        format!(
            "          - exp_labels:\n              slo: app-availability\n              service: app\n              severity: {severity}\n              long_window: {long}\n            exp_annotations:\n              summary: \"{}\"\n              runbook_url: https://runbooks.example/app\n",
            summary(burn, long, short)
        )
    };
    // 100 rps for two hours; from the hour on, 20% of them fail.
    let test = format!(
        "rule_files:\n  - rules.yml\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'steer_slo_events_total{{slo=\"app-availability\",kind=\"total\"}}'\n        values: '0+6000x120'\n      - series: 'steer_slo_events_total{{slo=\"app-availability\",kind=\"bad\"}}'\n        values: '0x60 1200+1200x59'\n    alert_rule_test:\n      - eval_time: 50m\n        alertname: SteerSloBurn\n        exp_alerts: []\n      - eval_time: 80m\n        alertname: SteerSloBurn\n        exp_alerts:\n{}{}{}",
        alert("page", "14.4", "1h", "5m"),
        alert("page", "6", "6h", "30m"),
        alert("ticket", "1", "3d", "6h"),
    );
    std::fs::write(dir.join("test.yml"), test).expect("write test");
    run(&["test", "rules", "test.yml"], &dir);
    let _ = std::fs::remove_dir_all(&dir);
}
