//! Just enough of PromQL to say which series an expression reads: metric
//! names and their equality matchers. Label names (in matchers and in
//! `by`/`on`/... clauses), strings, durations, numbers, Grafana variables,
//! functions and keywords are skipped. An unknown function is an error, so a
//! misspelt one is not mistaken for a metric.

/// A metric an expression selects, with its `label="value"` and
/// `label!="value"` matchers (regex matchers are not checked).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Selector {
    pub(crate) name: String,
    pub(crate) equal: Vec<(String, String)>,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "count_values",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
];

const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "day_of_week",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "sum_over_time",
    "time",
    "timestamp",
    "vector",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2"];

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// Index just past the string literal opening at `i`.
fn skip_string(b: &[u8], i: usize) -> usize {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != quote {
        if b[j] == b'\\' && quote != b'`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// Index just past the bracket closing the one at `i` (strings inside are
/// skipped whole).
fn skip_group(b: &[u8], i: usize, open: u8, close: u8) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' | b'\'' | b'`' => {
                j = skip_string(b, j);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn unquote(s: &str) -> String {
    s[1..s.len() - 1].replace("\\\"", "\"")
}

/// The `=` and `!=` matchers in `{...}`.
fn equal_matchers(body: &str) -> Result<Vec<(String, String)>, String> {
    let b = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        i = skip_space(b, i);
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let label = &body[start..i];
        i = skip_space(b, i);
        let op_start = i;
        while i < b.len() && matches!(b[i], b'=' | b'!' | b'~') {
            i += 1;
        }
        let op = &body[op_start..i];
        i = skip_space(b, i);
        if label.is_empty() || i >= b.len() || !matches!(b[i], b'"' | b'\'' | b'`') {
            return Err(format!("cannot read the matchers {{{body}}}"));
        }
        let end = skip_string(b, i);
        if matches!(op, "=" | "!=") {
            out.push((label.to_owned(), unquote(&body[i..end])));
        }
        i = end;
    }
}

/// The selectors `expr` reads, in order.
pub(crate) fn selectors(expr: &str) -> Result<Vec<Selector>, String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'[' {
            i = skip_group(b, i, b'[', b']');
        } else if c == b'{' {
            return Err(format!("a selector without a metric name in {expr:?}"));
        } else if c == b'$' {
            // A Grafana variable: $name or ${name}.
            i += 1;
            if i < b.len() && b[i] == b'{' {
                i = skip_group(b, i, b'{', b'}');
            } else {
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || c == b'.' {
            // Numbers, durations (5m), exponents (1e-9).
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
                if matches!(b[i - 1], b'e' | b'E') && i < b.len() && matches!(b[i], b'+' | b'-') {
                    i += 1;
                }
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let next = skip_space(b, i);
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&word) {
                if next < b.len() && b[next] == b'(' {
                    i = skip_group(b, next, b'(', b')');
                }
            } else if KEYWORDS.contains(&word)
                || AGGREGATIONS.contains(&word)
                || lower == "inf"
                || lower == "nan"
            {
            } else if next < b.len() && b[next] == b'(' {
                if !FUNCTIONS.contains(&word) {
                    return Err(format!("unknown function {word}() in {expr:?}"));
                }
            } else {
                let mut equal = Vec::new();
                if next < b.len() && b[next] == b'{' {
                    let end = skip_group(b, next, b'{', b'}');
                    equal = equal_matchers(&expr[next + 1..end - 1])?;
                    i = end;
                }
                out.push(Selector {
                    name: word.to_owned(),
                    equal,
                });
            }
        } else {
            i += 1;
        }
    }
    Ok(out)
}

/// The selector of a Grafana `label_values(selector, label)` variable query.
pub(crate) fn label_values_selector(query: &str) -> Option<&str> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let b = inner.as_bytes();
    let mut comma = None;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            b'{' => {
                i = skip_group(b, i, b'{', b'}');
                continue;
            }
            b',' => comma = Some(i),
            _ => {}
        }
        i += 1;
    }
    Some(inner[..comma?].trim())
}

#[test]
fn names_labels_and_everything_else() {
    let expr = r#"sum by (job, instance) (rate(steer_dns_responses_total{rcode="SERVFAIL", instance=~"$instance"}[$__rate_interval]))
  / on (job) group_left clamp_min(instance:steer_dns_responses:rate5m offset 5m, 1e-9) > bool 0.5
  or histogram_quantile(0.99, sum(rate(steer_dns_latency_seconds_bucket[5m])) without (pop))
  unless absent(up{job="steerd"}) and label_replace(vector(1), "a", "$1", "b", "(.*)") > Inf"#;
    let got: Vec<(String, Vec<(String, String)>)> = selectors(expr)
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.equal))
        .collect();
    let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(
        got,
        [
            (
                "steer_dns_responses_total".to_owned(),
                vec![pair("rcode", "SERVFAIL")]
            ),
            ("instance:steer_dns_responses:rate5m".to_owned(), vec![]),
            ("steer_dns_latency_seconds_bucket".to_owned(), vec![]),
            ("up".to_owned(), vec![pair("job", "steerd")]),
        ]
    );
    assert!(selectors("rat(steer_x[5m])").is_err());
    assert_eq!(
        label_values_selector(r#"label_values(steer_pop_usable{job="$job", a=","}, pop)"#),
        Some(r#"steer_pop_usable{job="$job", a=","}"#)
    );
}
