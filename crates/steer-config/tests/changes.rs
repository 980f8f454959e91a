//! `[changes]`: the issue's minimal form loads as written; mistakes are
//! reported at their line.

#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use steer_change::{RegionScope, WindowKind, WindowTime};

fn quickstart() -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/quickstart.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

const MINIMAL: &str = r#"
[changes]
approvals = 1

[[changes.stages]]
name = "canary"
regions = ["ap-south"]
bake = "10m"

[[changes.stages]]
name = "all"
regions = ["*"]
bake = "10m"
"#;

#[test]
fn the_minimal_form_loads_as_written() {
    let (path, text) = quickstart();
    let config = steer_config::parse_steerd(&path, &format!("{text}{MINIMAL}")).unwrap();
    let changes = config.changes.unwrap();
    assert_eq!(changes.approvals, 1);
    assert_eq!(changes.stages.len(), 2);
    assert_eq!(changes.stages[0].name, "canary");
    assert_eq!(
        changes.stages[0].regions,
        RegionScope::Only(vec!["ap-south".into()])
    );
    assert_eq!(changes.stages[1].regions, RegionScope::All);
    assert_eq!(changes.stages[1].bake, Duration::from_secs(600));
    assert!(changes.windows.is_empty());
    // Without the table, changes are not governed.
    assert!(
        steer_config::parse_steerd(&path, &text)
            .unwrap()
            .changes
            .is_none()
    );
}

#[test]
fn windows_load_weekly_and_dated() {
    let (path, text) = quickstart();
    let extra = r#"
[[changes.windows]]
name = "weekend"
kind = "block"
weekly = "Fri 16:00 - Mon 08:00"

[[changes.windows]]
name = "year end"
kind = "block"
from = "2026-12-21T00:00:00Z"
until = "2027-01-04T00:00:00Z"
"#;
    let config = steer_config::parse_steerd(&path, &format!("{text}{MINIMAL}{extra}")).unwrap();
    let w = config.changes.unwrap().windows;
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].kind, WindowKind::Block);
    assert_eq!(
        w[0].time,
        WindowTime::Weekly {
            start: 4 * 1440 + 16 * 60,
            end: 8 * 60
        }
    );
    assert!(matches!(w[1].time, WindowTime::Dates { .. }));
    let reviewed = format!("{text}{MINIMAL}reviewed_intents = [\"region-drain\", \"override\"]\n");
    // (after the stages table: TOML puts it under the last stage)
    assert!(steer_config::parse_steerd(&path, &reviewed).is_err());
    let reviewed =
        format!("{text}\n[changes]\nreviewed_intents = [\"region-drain\", \"override\"]\n");
    let c = steer_config::parse_steerd(&path, &reviewed)
        .unwrap()
        .changes
        .unwrap();
    assert!(c.reviews(steer_change::IntentKind::RegionDrain));
    assert!(c.reviews(steer_change::IntentKind::Override));
    assert!(!c.reviews(steer_change::IntentKind::PopDrain));
}

#[test]
fn stages_can_name_the_pops_whose_bgp_moves() {
    let (path, text) = quickstart();
    let extra = r#"
[changes]
[[changes.stages]]
name = "anycast canary"
pops = ["sin1"]
bake = "5m"

[[changes.stages]]
name = "ap-south"
regions = ["ap-south"]
pops = ["sin1", "bom1"]

[[changes.stages]]
name = "one percent"
regions = ["*"]
share = 0.01

[[changes.stages]]
name = "all"
regions = ["*"]
"#;
    let config = steer_config::parse_steerd(&path, &format!("{text}{extra}")).unwrap();
    let s = config.changes.unwrap().stages;
    assert_eq!(s[0].regions, RegionScope::Only(vec![]));
    assert_eq!(s[0].pops, Some(vec!["sin1".into()]));
    assert_eq!(s[0].describe(), "no client region; BGP of sin1");
    assert_eq!(s[1].describe(), "ap-south; BGP of sin1, bom1");
    assert_eq!(s[2].share_ppm, Some(10_000));
    assert_eq!(s[2].describe(), "1% of client subnets of every region");
    assert_eq!(s[3].pops, None);
}

#[test]
fn mistakes_are_reported_at_their_line() {
    let (path, text) = quickstart();
    let base = text.lines().count();
    for (bad, line, says) in [
        (
            "[changes]\napprovals = -1\n",
            2,
            "`approvals` must be 0 to 10",
        ),
        (
            "[changes]\n[[changes.stages]]\nname = \"canary\"\nregions = [\"mars\"]\n",
            4,
            "region \"mars\" is not in [[regions]]",
        ),
        (
            "[changes]\n[[changes.stages]]\nname = \"canary\"\nregions = [\"ap-south\"]\n",
            4,
            "the last stage must cover every region",
        ),
        (
            "[changes]\n[[changes.stages]]\nname = \"all\"\nregions = [\"*\"]\nbake = \"ten minutes\"\n",
            5,
            "bake",
        ),
        (
            "[changes]\n[[changes.windows]]\nname = \"w\"\nkind = \"block\"\nweekly = \"Fry 16:00 - Mon 08:00\"\n",
            5,
            "not a day of the week",
        ),
        (
            "[changes]\n[[changes.windows]]\nname = \"w\"\nkind = \"maybe\"\nweekly = \"Fri 16:00 - Mon 08:00\"\n",
            4,
            "expected \"allow\" or \"block\"",
        ),
        (
            "[changes]\n[[changes.windows]]\nname = \"w\"\nkind = \"block\"\nfrom = \"2026-12-21\"\nuntil = \"2027-01-04T00:00:00Z\"\n",
            5,
            "is not RFC 3339",
        ),
        ("[changes]\napprovers = 2\n", 2, "approvers"),
        (
            "[changes]\n[[changes.stages]]\nname = \"bgp\"\npops = [\"xyz9\"]\n[[changes.stages]]\nname = \"all\"\nregions = [\"*\"]\n",
            4,
            "PoP \"xyz9\" is not in [[pops]]",
        ),
        (
            "[changes]\n[[changes.stages]]\nname = \"all\"\nregions = [\"*\"]\npops = [\"fra1\"]\n",
            5,
            "the last stage must cover every region and PoP",
        ),
        (
            "[changes]\nreviewed_intents = [\"region-drain\", \"region_drain\"]\n",
            2,
            "\"region_drain\" is not an intent kind: expected one of pop-drain, region-drain, service-drain, override",
        ),
        (
            "[changes]\n[[changes.stages]]\nname = \"some\"\nregions = [\"*\"]\nshare = 1.5\n[[changes.stages]]\nname = \"all\"\nregions = [\"*\"]\n",
            5,
            "`share` must be above 0 and below 1",
        ),
        (
            "[changes]\n[[changes.stages]]\nname = \"all\"\nregions = [\"*\"]\nshare = 0.5\n",
            5,
            "the last stage must cover every region and PoP",
        ),
        (
            "[changes]\n[[changes.stages]]\nname = \"nothing\"\nregions = []\n[[changes.stages]]\nname = \"all\"\nregions = [\"*\"]\n",
            4,
            "a stage needs regions",
        ),
    ] {
        let errors = steer_config::parse_steerd(&path, &format!("{text}\n{bad}"))
            .err()
            .unwrap_or_else(|| panic!("{bad:?} loaded"))
            .to_string();
        assert!(errors.contains(says), "{bad:?}: {errors}");
        let at = format!("quickstart.toml:{}:", base + 1 + line);
        assert!(errors.contains(&at), "{bad:?} not at {at}: {errors}");
    }
}
