//! `[[notify.webhooks]]`: timeline events posted to HTTP endpoints (a chat
//! relay, a Slack incoming webhook, an incident tool), as generic JSON or a
//! Slack-compatible payload.

use std::{collections::HashSet, path::PathBuf, time::Duration};

use serde::Deserialize;
use steer_types::timeline::EventKind;
use toml::Spanned;

use crate::{duration::parse_duration, error::Reporter};

/// Most webhooks one steerd posts to.
const MAX_WEBHOOKS: usize = 16;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    #[serde(default)]
    webhooks: Vec<Spanned<RawWebhook>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    kinds: Vec<Spanned<String>>,
    scope: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    queue: Option<Spanned<i64>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// `{"source": "steerd", "events": [...]}`, several events per post.
    Json,
    /// `{"text": "..."}`, one event per post (Slack, Mattermost, ...).
    Slack,
}

/// Where an http(s) URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, `/` at least.
    pub path: String,
}

impl WebhookUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("must start with http:// or https://".into());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported (put them in the path or query, as Slack does)".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            // `[::1]:8080` or `host:8080`.
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("port {p:?} is not a number"))?,
            ),
            _ => (authority, if https { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err("needs a host".into());
        }
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err("the path must not hold spaces or control characters".into());
        }
        Ok(Self {
            https,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookSettings {
    /// `[a-z0-9-]`: names it in logs and metrics (the URL may hold a
    /// secret and is never logged).
    pub name: String,
    pub url: WebhookUrl,
    /// Only these kinds (empty: all but `plan`, which every drain and
    /// health change also causes).
    pub kinds: Vec<EventKind>,
    /// Only events about this id.
    pub scope: Option<String>,
    pub format: WebhookFormat,
    /// CA certificates for https (default: the system's).
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// Events waiting at most; past it the oldest are dropped (counted).
    pub queue: usize,
}

impl WebhookSettings {
    pub fn wants(&self, e: &steer_types::timeline::TimelineEvent) -> bool {
        let kind = if self.kinds.is_empty() {
            e.kind != EventKind::Plan
        } else {
            self.kinds.contains(&e.kind)
        };
        kind && self.scope.as_deref().is_none_or(|s| e.concerns(s))
    }
}

pub(crate) fn notify(
    r: &mut Reporter<'_>,
    config_dir: &std::path::Path,
    raw: &Spanned<RawNotify>,
) -> Vec<WebhookSettings> {
    let hooks = &raw.get_ref().webhooks;
    if hooks.len() > MAX_WEBHOOKS {
        r.at(raw.span(), format!("at most {MAX_WEBHOOKS} webhooks"));
    }
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for h in hooks {
        let w = h.get_ref();
        let name = w.name.get_ref();
        if name.is_empty()
            || name.len() > 32
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            r.at(w.name.span(), "a webhook name is 1-32 of [a-z0-9-]");
        } else if !names.insert(name.clone()) {
            r.at(w.name.span(), format!("webhook {name:?} is defined twice"));
        }
        let url = match WebhookUrl::parse(w.url.get_ref()) {
            Ok(u) => Some(u),
            Err(e) => {
                r.at(w.url.span(), format!("`url` {e}"));
                None
            }
        };
        let mut kinds = Vec::new();
        for k in &w.kinds {
            match EventKind::parse(k.get_ref()) {
                Some(kind) => kinds.push(kind),
                None => r.at(
                    k.span(),
                    format!(
                        "{:?} is not an event kind: expected one of {}",
                        k.get_ref(),
                        EventKind::ALL.map(EventKind::as_str).join(", ")
                    ),
                ),
            }
        }
        let format = match w.format.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("json") => WebhookFormat::Json,
            Some("slack") => WebhookFormat::Slack,
            Some(other) => {
                if let Some(f) = &w.format {
                    r.at(
                        f.span(),
                        format!("format {other:?}: expected \"json\" or \"slack\""),
                    );
                }
                WebhookFormat::Json
            }
        };
        let timeout = match &w.timeout {
            None => Duration::from_secs(5),
            Some(t) => match parse_duration(t.get_ref()) {
                Ok(d) if (Duration::from_millis(100)..=Duration::from_secs(60)).contains(&d) => d,
                Ok(_) => {
                    r.at(t.span(), "`timeout` must be between 100ms and 60s");
                    Duration::from_secs(5)
                }
                Err(e) => {
                    r.at(t.span(), e);
                    Duration::from_secs(5)
                }
            },
        };
        let queue = match &w.queue {
            None => 1_000,
            Some(q) => match usize::try_from(*q.get_ref()) {
                Ok(n) if (1..=10_000).contains(&n) => n,
                _ => {
                    r.at(q.span(), "`queue` must be 1 to 10000 events");
                    1_000
                }
            },
        };
        let ca_file = w.ca_file.as_ref().map(|f| config_dir.join(f.get_ref()));
        if let (Some(f), Some(path)) = (&w.ca_file, &ca_file)
            && !path.is_file()
        {
            r.at(
                f.span(),
                format!("{} is not a readable file", path.display()),
            );
        }
        if let Some(url) = url {
            out.push(WebhookSettings {
                name: name.clone(),
                url,
                kinds,
                scope: w.scope.as_ref().map(|s| s.get_ref().clone()),
                format,
                ca_file,
                timeout,
                queue,
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_ports_and_refuse_credentials() {
        let u = WebhookUrl::parse("https://hooks.example.net/services/T0/B0/x?y=1").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "hooks.example.net", 443, "/services/T0/B0/x?y=1")
        );
        let u = WebhookUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.port, u.path.as_str()), (8080, "/"));
        let u = WebhookUrl::parse("http://[::1]:9000/hook").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert!(WebhookUrl::parse("ftp://x").is_err());
        assert!(WebhookUrl::parse("https://user:pw@x/").is_err());
        assert!(WebhookUrl::parse("http://x:99999/").is_err());
        assert!(WebhookUrl::parse("http:///path").is_err());
        assert!(WebhookUrl::parse("http://x/a b").is_err());
    }
}
