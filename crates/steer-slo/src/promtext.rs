//! Reading request counters from a Prometheus text exposition (what an
//! edge proxy's `/metrics` serves), with PromQL-style selectors:
//! `haproxy_backend_http_responses_total{proxy="app",code=~"5.."}`.
//!
//! Only what an SLI needs: samples of one metric name whose labels match
//! every matcher, summed. Regex matchers are anchored, as in PromQL.

use regex::Regex;

#[derive(Clone, Debug)]
enum Op {
    Eq(String),
    Ne(String),
    Re(Regex),
    NotRe(Regex),
}

#[derive(Clone, Debug)]
struct Matcher {
    label: String,
    op: Op,
}

impl Matcher {
    fn matches(&self, value: &str) -> bool {
        match &self.op {
            Op::Eq(v) => value == v,
            Op::Ne(v) => value != v,
            Op::Re(r) => r.is_match(value),
            Op::NotRe(r) => !r.is_match(value),
        }
    }
}

/// A metric name and label matchers.
#[derive(Clone, Debug)]
pub struct Selector {
    pub name: String,
    matchers: Vec<Matcher>,
    text: String,
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A double-quoted string with Prometheus escapes (`\\`, `\"`, `\n`);
/// returns it and the rest after the closing quote.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let body = s
        .strip_prefix('"')
        .ok_or_else(|| format!("expected a quoted value at {s:?}"))?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(format!("unterminated quoted value in {s:?}"))
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (name, rest) = match text.find('{') {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        let name = name.trim();
        if !valid_name(name) {
            return Err(format!("{name:?} is not a metric name"));
        }
        let mut matchers = Vec::new();
        if let Some(mut rest) = rest {
            loop {
                rest = rest.trim_start();
                if let Some(after) = rest.strip_prefix('}') {
                    if !after.trim().is_empty() {
                        return Err(format!("unexpected {:?} after the labels", after.trim()));
                    }
                    break;
                }
                let end = rest
                    .find(['=', '!'])
                    .ok_or_else(|| format!("expected a matcher (=, !=, =~ or !~) at {rest:?}"))?;
                let label = rest[..end].trim();
                if !valid_name(label) || label.contains(':') {
                    return Err(format!("{label:?} is not a label name"));
                }
                let after = &rest[end..];
                let (op_text, after) = ["=~", "!~", "!=", "="]
                    .iter()
                    .find_map(|op| after.strip_prefix(op).map(|a| (*op, a)))
                    .ok_or_else(|| format!("expected =, !=, =~ or !~ at {after:?}"))?;
                let (value, after) = quoted(after.trim_start())?;
                let regex = |v: &str| {
                    Regex::new(&format!("^(?:{v})$"))
                        .map_err(|e| format!("bad regex {v:?} for {label}: {e}"))
                };
                let op = match op_text {
                    "=" => Op::Eq(value),
                    "!=" => Op::Ne(value),
                    "=~" => Op::Re(regex(&value)?),
                    _ => Op::NotRe(regex(&value)?),
                };
                matchers.push(Matcher {
                    label: label.to_owned(),
                    op,
                });
                rest = after.trim_start();
                if let Some(a) = rest.strip_prefix(',') {
                    rest = a;
                } else if !rest.starts_with('}') {
                    return Err(format!("expected ',' or '}}' at {rest:?}"));
                }
            }
        }
        Ok(Self {
            name: name.to_owned(),
            matchers,
            text: text.to_owned(),
        })
    }

    /// The same matchers on another metric name (a histogram's `_count`).
    pub fn with_name(&self, name: &str) -> Self {
        let mut s = self.clone();
        s.text = s.text.replacen(&s.name, name, 1);
        s.name = name.to_owned();
        s
    }

    /// Adds `label="value"` (a histogram bucket's `le`).
    pub fn with_label(&self, label: &str, value: &str) -> Self {
        let mut s = self.clone();
        s.matchers.push(Matcher {
            label: label.to_owned(),
            op: Op::Eq(value.to_owned()),
        });
        s.text = format!("{s}+{{{label}=\"{value}\"}}");
        s
    }

    fn matches(&self, name: &str, labels: &[(String, String)]) -> bool {
        name == self.name
            && self.matchers.iter().all(|m| {
                let value = labels
                    .iter()
                    .find(|(k, _)| *k == m.label)
                    .map_or("", |(_, v)| v.as_str());
                m.matches(value)
            })
    }
}

type Labels = Vec<(String, String)>;

/// One sample line: name, labels, value.
fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            r = r.trim_start();
            if let Some(a) = r.strip_prefix('}') {
                rest = a;
                break;
            }
            let eq = r.find('=')?;
            let label = r[..eq].trim().to_owned();
            let (value, a) = quoted(r[eq + 1..].trim_start()).ok()?;
            labels.push((label, value));
            r = a.trim_start();
            if let Some(a) = r.strip_prefix(',') {
                r = a;
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// Sum of the samples `selector` matches in `text`; `None` when none
/// matches (no data is not zero).
pub fn sum(text: &str, selector: &Selector) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        if let Some((name, labels, value)) = sample(line)
            && selector.matches(name, &labels)
            && value.is_finite()
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HAPROXY: &str = r#"# HELP haproxy_backend_http_responses_total Total number of HTTP responses.
# TYPE haproxy_backend_http_responses_total counter
haproxy_backend_http_responses_total{proxy="app",code="1xx"} 0
haproxy_backend_http_responses_total{proxy="app",code="2xx"} 9500
haproxy_backend_http_responses_total{proxy="app",code="3xx"} 10
haproxy_backend_http_responses_total{proxy="app",code="4xx"} 40
haproxy_backend_http_responses_total{proxy="app",code="5xx"} 50
haproxy_backend_http_responses_total{proxy="other",code="5xx"} 7
http_request_duration_seconds_bucket{job="x",le="0.1"} 80
http_request_duration_seconds_bucket{job="x",le="0.3"} 95
http_request_duration_seconds_bucket{job="x",le="+Inf"} 100
http_request_duration_seconds_count{job="x"} 100 1700000000000
weird{path="a \"quoted\" \\ value, with }"} 3
"#;

    #[test]
    fn sums_what_the_selector_matches() {
        let all = Selector::parse(r#"haproxy_backend_http_responses_total{proxy="app"}"#).unwrap();
        assert_eq!(sum(HAPROXY, &all), Some(9600.0));
        let bad =
            Selector::parse(r#"haproxy_backend_http_responses_total{proxy="app",code=~"5.."}"#)
                .unwrap();
        assert_eq!(sum(HAPROXY, &bad), Some(50.0));
        // Anchored: "5" alone matches nothing.
        let anchored =
            Selector::parse(r#"haproxy_backend_http_responses_total{code=~"5"}"#).unwrap();
        assert_eq!(sum(HAPROXY, &anchored), None);
        let not_app = Selector::parse(
            r#"haproxy_backend_http_responses_total{proxy!="app", code!~"[1-4]xx"}"#,
        )
        .unwrap();
        assert_eq!(sum(HAPROXY, &not_app), Some(7.0));
        let quoted = Selector::parse(r#"weird{path="a \"quoted\" \\ value, with }"}"#).unwrap();
        assert_eq!(sum(HAPROXY, &quoted), Some(3.0));
    }

    #[test]
    fn histogram_buckets_and_counts() {
        let base = Selector::parse(r#"http_request_duration_seconds{job="x"}"#).unwrap();
        let count = base.with_name("http_request_duration_seconds_count");
        let fast = base
            .with_name("http_request_duration_seconds_bucket")
            .with_label("le", "0.3");
        assert_eq!(sum(HAPROXY, &count), Some(100.0));
        assert_eq!(sum(HAPROXY, &fast), Some(95.0));
    }

    #[test]
    fn bad_selectors_say_why() {
        for (text, why) in [
            ("", "metric name"),
            ("1abc", "metric name"),
            ("m{code~\"5\"}", "=, !=, =~ or !~"),
            ("m{code=\"5", "unterminated"),
            ("m{code=\"5\"", "expected ','"),
            ("m{code=~\"(\"}", "bad regex"),
            ("m{code=\"5\"} x", "after the labels"),
            ("m{code=5}", "quoted"),
        ] {
            let err = Selector::parse(text).unwrap_err();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn garbage_lines_are_skipped_not_fatal() {
        let text = "m 1\nm{a=\"b\"} notanumber\nm{ 5\n{}\nm{a=\"b\"} 2\n";
        let s = Selector::parse("m").unwrap();
        assert_eq!(sum(text, &s), Some(3.0));
    }
}
