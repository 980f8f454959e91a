//! What a config change changes, in the terms an operator reviews: regions,
//! PoPs, services and client networks added, removed or changed (with the
//! fields that moved, e.g. `capacity_rps 10000 -> 5000`), and policy knobs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use steer_types::Topology;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiffKind {
    Added,
    Removed,
    Changed,
}

/// One reviewed difference: `pop fra1` changed `capacity_rps 10000 -> 5000`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffItem {
    pub kind: DiffKind,
    /// What it is about: `pop fra1`, `client network 10.1.0.0/16`, `policy`.
    pub subject: String,
    /// The fields that moved, `name old -> new`; empty for additions and
    /// removals.
    pub fields: Vec<String>,
}

impl std::fmt::Display for DiffItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.kind {
            DiffKind::Added => "+",
            DiffKind::Removed => "-",
            DiffKind::Changed => "~",
        };
        write!(f, "{sign} {}", self.subject)?;
        if !self.fields.is_empty() {
            write!(f, ": {}", self.fields.join(", "))?;
        }
        Ok(())
    }
}

/// Regions, PoPs, services, client networks, health and policy settings.
pub fn diff_topology(old: &Topology, new: &Topology) -> Vec<DiffItem> {
    let mut out = Vec::new();
    keyed(&mut out, "region", &old.regions, &new.regions, |r| {
        r.id.to_string()
    });
    keyed(&mut out, "pop", &old.pops, &new.pops, |p| p.id.to_string());
    keyed(&mut out, "service", &old.services, &new.services, |s| {
        s.id.to_string()
    });
    keyed(
        &mut out,
        "client network",
        &old.client_networks,
        &new.client_networks,
        |c| c.prefix.to_string(),
    );
    out.extend(diff_values(
        "health",
        &json(&old.health),
        &json(&new.health),
    ));
    out.extend(diff_values(
        "policy",
        &json(&old.policy),
        &json(&new.policy),
    ));
    out
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// [`diff_values`] of two values of any serializable type (zones, DNS
/// settings, ...).
pub fn diff_serialized<T: Serialize>(subject: &str, old: &T, new: &T) -> Option<DiffItem> {
    diff_values(subject, &json(old), &json(new))
}

/// Items of two lists matched by key.
fn keyed<T: Serialize>(
    out: &mut Vec<DiffItem>,
    what: &str,
    old: &[T],
    new: &[T],
    key: impl Fn(&T) -> String,
) {
    let old: BTreeMap<String, &T> = old.iter().map(|x| (key(x), x)).collect();
    let new: BTreeMap<String, &T> = new.iter().map(|x| (key(x), x)).collect();
    for (k, o) in &old {
        match new.get(k) {
            None => out.push(DiffItem {
                kind: DiffKind::Removed,
                subject: format!("{what} {k}"),
                fields: Vec::new(),
            }),
            Some(n) => out.extend(diff_values(&format!("{what} {k}"), &json(o), &json(n))),
        }
    }
    for k in new.keys().filter(|k| !old.contains_key(*k)) {
        out.push(DiffItem {
            kind: DiffKind::Added,
            subject: format!("{what} {k}"),
            fields: Vec::new(),
        });
    }
}

/// `subject` changed, with every leaf field that differs between `old`
/// and `new` (dotted paths); nothing when they are equal.
pub fn diff_values(subject: &str, old: &Value, new: &Value) -> Option<DiffItem> {
    let mut fields = Vec::new();
    leaves("", old, new, &mut fields);
    (!fields.is_empty()).then(|| DiffItem {
        kind: DiffKind::Changed,
        subject: subject.to_owned(),
        fields,
    })
}

fn leaves(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(
                    &p,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ => {
            let name = if path.is_empty() { "value" } else { path };
            out.push(format!("{name} {} -> {}", short(old), short(new)));
        }
    }
}

/// A value as one short line.
fn short(v: &Value) -> String {
    let s = match v {
        Value::Null => "(none)".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.len() > 120 {
        let mut cut = 117;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use steer_types::{ClientNetwork, Pop, Region};

    use super::*;

    fn topology() -> Topology {
        let pop = |id: &str, region: &str, cap: f64| Pop {
            id: id.into(),
            region: region.into(),
            ipv4: None,
            ipv6: None,
            capacity_rps: cap,
        };
        Topology {
            regions: vec![
                Region {
                    id: "eu".into(),
                    fallback: vec![],
                },
                Region {
                    id: "us".into(),
                    fallback: vec![],
                },
            ],
            pops: vec![pop("fra1", "eu", 10_000.0), pop("iad1", "us", 8_000.0)],
            services: vec![],
            client_networks: vec![ClientNetwork {
                prefix: "10.1.0.0/16".parse().unwrap(),
                region: "eu".into(),
            }],
            health: Default::default(),
            policy: Default::default(),
        }
    }

    #[test]
    fn a_capacity_typo_reads_as_one_changed_field() {
        let old = topology();
        let mut new = old.clone();
        new.pops[0].capacity_rps = 1_000.0;
        let d = diff_topology(&old, &new);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            d[0].to_string(),
            "~ pop fra1: capacity_rps 10000.0 -> 1000.0"
        );
    }

    #[test]
    fn additions_removals_and_moved_networks() {
        let old = topology();
        let mut new = old.clone();
        new.pops.remove(1);
        new.pops.push(Pop {
            id: "ams1".into(),
            region: "eu".into(),
            ipv4: None,
            ipv6: None,
            capacity_rps: 5_000.0,
        });
        new.client_networks[0].region = "us".into();
        new.policy.max_weight_step_per_s += 10;
        let d: Vec<String> = diff_topology(&old, &new)
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert!(d.contains(&"- pop iad1".to_owned()), "{d:?}");
        assert!(d.contains(&"+ pop ams1".to_owned()), "{d:?}");
        assert!(
            d.contains(&"~ client network 10.1.0.0/16: region eu -> us".to_owned()),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|l| l.starts_with("~ policy: max_weight_step_per_s")),
            "{d:?}"
        );
        assert!(diff_topology(&old, &old).is_empty());
    }
}
