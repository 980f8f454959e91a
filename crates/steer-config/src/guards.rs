//! `[health.damping]` and `[health.correlated_failure]`: the aggregator's
//! guards against flapping PoPs and broken health signals.

use std::time::Duration;

use serde::Deserialize;
use steer_types::health_guard::{CorrelationGuardSettings, DampingSettings, HealthGuards};
use toml::Spanned;

use crate::{duration::parse_duration, error::Reporter};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDamping {
    enabled: Option<bool>,
    penalty: Option<Spanned<f64>>,
    half_life: Option<Spanned<String>>,
    suppress: Option<Spanned<f64>>,
    reuse: Option<Spanned<f64>>,
    max_penalty: Option<Spanned<f64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCorrelation {
    enabled: Option<bool>,
    max_down_share: Option<Spanned<f64>>,
    window: Option<Spanned<String>>,
}

fn positive(r: &mut Reporter<'_>, v: &Option<Spanned<f64>>, into: &mut f64) {
    if let Some(v) = v {
        if v.get_ref().is_finite() && *v.get_ref() > 0.0 {
            *into = *v.get_ref();
        } else {
            r.at(v.span(), "must be a number greater than zero");
        }
    }
}

fn duration(r: &mut Reporter<'_>, v: &Option<Spanned<String>>, into: &mut Duration) {
    if let Some(v) = v {
        match parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => *into = d,
            Ok(_) => r.at(v.span(), "must be greater than zero"),
            Err(e) => r.at(v.span(), e),
        }
    }
}

pub(crate) fn health_guards(
    r: &mut Reporter<'_>,
    damping: Option<&RawDamping>,
    correlation: Option<&RawCorrelation>,
) -> HealthGuards {
    let mut d = DampingSettings::default();
    if let Some(raw) = damping {
        d.enabled = raw.enabled.unwrap_or(true);
        positive(r, &raw.penalty, &mut d.penalty);
        duration(r, &raw.half_life, &mut d.half_life);
        positive(r, &raw.suppress, &mut d.suppress);
        positive(r, &raw.reuse, &mut d.reuse);
        positive(r, &raw.max_penalty, &mut d.max_penalty);
        if d.reuse >= d.suppress
            && let Some(v) = raw.reuse.as_ref().or(raw.suppress.as_ref())
        {
            r.at(v.span(), "reuse must be below suppress");
        }
        if d.max_penalty <= d.suppress
            && let Some(v) = raw.max_penalty.as_ref().or(raw.suppress.as_ref())
        {
            r.at(
                v.span(),
                "max_penalty must be above suppress, or nothing is ever suppressed",
            );
        }
    }
    let mut c = CorrelationGuardSettings::default();
    if let Some(raw) = correlation {
        c.enabled = raw.enabled.unwrap_or(true);
        if let Some(v) = &raw.max_down_share {
            if (0.0..1.0).contains(v.get_ref()) {
                c.max_down_share = *v.get_ref();
            } else {
                r.at(v.span(), "must be at least 0 and below 1");
            }
        }
        duration(r, &raw.window, &mut c.window);
    }
    HealthGuards {
        damping: d,
        correlation: c,
    }
}
