//! Config errors that point at the exact place to fix.

use std::{fmt, ops::Range};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem is not tied to a place (unreadable file).
    pub line: usize,
    pub column: usize,
    /// Dotted key path such as `pops[2].region`; empty when unknown.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors against one source text, turning byte spans into
/// line:column and a dotted key path.
pub(crate) struct Reporter<'a> {
    file: String,
    src: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(file: String, src: &'a str) -> Self {
        Self {
            file,
            src,
            errors: Vec::new(),
        }
    }

    /// The file being checked, to resolve relative paths in it.
    pub(crate) fn path(&self) -> &std::path::Path {
        std::path::Path::new(&self.file)
    }

    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.src, span.start);
        let key = key_path(self.src, span.start);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key,
            message: message.into(),
        });
    }

    /// Adds an error found in another file (a zone file).
    pub(crate) fn push(&mut self, error: ConfigError) {
        self.errors.push(error);
    }

    pub(crate) fn toml_error(&mut self, err: &toml::de::Error) {
        let span = err.span().unwrap_or(0..0);
        self.at(span, err.message().trim().to_owned());
    }

    /// Deserializes the whole file into `T`. A syntax or type error stops
    /// there, as serde must; an unknown key does not: it is reported, taken
    /// out of the document and the rest read again, so every unknown key is
    /// reported at once, each at its line (README: all errors at once).
    /// `None` when anything was reported.
    pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        let mut root = match toml::de::DeTable::parse(self.src) {
            Ok(root) => root,
            Err(e) => {
                self.toml_error(&e);
                return None;
            }
        };
        let mut unknown_keys = false;
        for _ in 0..MAX_UNKNOWN_KEYS {
            match T::deserialize(toml::de::Deserializer::from(root.clone())) {
                Ok(value) => return (!unknown_keys).then_some(value),
                Err(e) => {
                    self.toml_error(&e);
                    let removed = e.message().starts_with("unknown field")
                        && e.span().is_some_and(|key| remove_key(root.get_mut(), &key));
                    if !removed {
                        return None;
                    }
                    unknown_keys = true;
                }
            }
        }
        None
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.into_errors())
        }
    }

    pub(crate) fn into_errors(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors(self.errors)
    }
}

/// Unknown keys reported from one file before the rest is left unread.
const MAX_UNKNOWN_KEYS: usize = 64;

/// Removes the key whose name sits at `span`, wherever it is nested
/// (tables, arrays of tables, inline tables). Returns whether one was found.
fn remove_key(table: &mut toml::de::DeTable<'_>, span: &Range<usize>) -> bool {
    let found = table.keys().find(|k| k.span() == *span).cloned();
    if let Some(key) = found {
        return table.remove(&key).is_some();
    }
    table
        .iter_mut()
        .any(|(_, value)| remove_key_in(value.get_mut(), span))
}

fn remove_key_in(value: &mut toml::de::DeValue<'_>, span: &Range<usize>) -> bool {
    match value {
        toml::de::DeValue::Table(t) => remove_key(t, span),
        toml::de::DeValue::Array(items) => items
            .iter_mut()
            .any(|item| remove_key_in(item.get_mut(), span)),
        _ => false,
    }
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

/// Best-effort dotted key for the place at `offset`: the enclosing table
/// header (with the array index for `[[tables]]`) plus the key on that line.
fn key_path(src: &str, offset: usize) -> String {
    let offset = offset.min(src.len());
    let line_start = src
        .get(..offset)
        .and_then(|s| s.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = src
        .get(offset..)
        .and_then(|s| s.find('\n'))
        .map_or(src.len(), |i| offset + i);
    let line = src.get(line_start..line_end).unwrap_or("").trim();

    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut header_here = None;
    for l in src.get(..line_end).unwrap_or("").lines() {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let mut name = name.trim().to_owned();
            // An array nested in an array element, e.g. [[slos.alerts]]
            // under [[slos]]: counted per parent element.
            if let Some((parent, child)) = name.split_once('.')
                && let Some(pn) = counts.get(parent)
            {
                name = format!("{parent}[{}].{child}", pn.saturating_sub(1));
            }
            let n = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
            header_here = Some(t.to_owned());
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            let name = name.trim();
            // A sub-table of an array element, e.g. [zones.soa] under [[zones]].
            table = match name.split_once('.') {
                Some((parent, child)) if counts.contains_key(parent) => {
                    format!("{parent}[{}].{child}", counts[parent].saturating_sub(1))
                }
                _ => name.to_owned(),
            };
            header_here = Some(t.to_owned());
        } else {
            header_here = None;
        }
    }
    if header_here.is_some() || line.starts_with('[') {
        return table;
    }
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .unwrap_or_default();
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths() {
        let src = "a = 1\n[server]\nport = 5\n[[pops]]\nid = \"x\"\n[[pops]]\nid = \"y\"\n";
        let off = src.find("\"y\"").unwrap_or(0);
        assert_eq!(key_path(src, off), "pops[1].id");
        assert_eq!(key_path(src, src.find("port").unwrap_or(0)), "server.port");
        assert_eq!(key_path(src, 0), "a");
        assert_eq!(line_col(src, off), (7, 6));
        let nested = "[[slos]]\nn = 1\n[[slos.alerts]]\na = 1\n[[slos]]\nn = 2\n[[slos.alerts]]\na = 2\n[[slos.alerts]]\na = 3\n";
        let at = |needle: &str| key_path(nested, nested.find(needle).unwrap_or(0));
        assert_eq!(at("a = 1"), "slos[0].alerts[0].a");
        assert_eq!(at("a = 2"), "slos[1].alerts[0].a");
        assert_eq!(at("a = 3"), "slos[1].alerts[1].a");
    }
}
