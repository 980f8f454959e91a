//! Plain-text tables that never cut what an operator wrote: every column
//! is as wide as its widest cell, and the last one (a reason, an error) is
//! printed whole, wrapped at word boundaries onto lines of its own column
//! so a row stays within [`WIDTH`] columns where the others leave room.

use std::fmt::Write as _;

/// Terminal width the last column wraps to.
const WIDTH: usize = 100;
/// The last column gets at least this much, however wide the others are.
const MIN_LAST: usize = 30;

/// `text` in lines of at most `width` characters, split at spaces; a word
/// longer than `width` stands alone on its line, whole.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

pub(crate) struct Table {
    headers: Vec<&'static str>,
    /// Columns right-aligned (numbers).
    right: Vec<bool>,
    /// Cells, and a note printed under the row (may be empty).
    rows: Vec<(Vec<String>, String)>,
}

impl Table {
    /// Headers; a header starting with `>` is right-aligned (the `>` is
    /// not printed).
    pub(crate) fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers
                .iter()
                .map(|h| h.strip_prefix('>').unwrap_or(h))
                .collect(),
            right: headers.iter().map(|h| h.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push((cells, String::new()));
    }

    /// A row with a note on indented lines of its own below it (wrapped,
    /// never cut): what steerd added to an operator's reason.
    pub(crate) fn row_with_note(&mut self, cells: Vec<String>, note: String) {
        self.rows.push((cells, note));
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for (row, _) in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        // Where the last column starts, and how wide it may be.
        let indent: usize = widths
            .iter()
            .take(columns.saturating_sub(1))
            .map(|w| w + 2)
            .sum();
        let last_width = WIDTH.saturating_sub(indent).max(MIN_LAST);
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        let header = (headers, String::new());
        for (row, note) in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            let mut continued = Vec::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let last = i + 1 == row.len();
                let pad = widths
                    .get(i)
                    .map_or(0, |w| w.saturating_sub(cell.chars().count()));
                if last {
                    let mut parts = wrap(cell, last_width).into_iter();
                    line.push_str(&parts.next().unwrap_or_default());
                    continued.extend(parts);
                } else if self.right.get(i).copied().unwrap_or(false) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
            for part in continued {
                let _ = writeln!(out, "{}{part}", " ".repeat(indent));
            }
            if !note.is_empty() {
                for part in wrap(note, WIDTH - 4) {
                    let _ = writeln!(out, "    {part}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Issue 18, item 3: the tables cut who and why to fit fixed widths
    /// ("drained by drain-5 (anonymous@127.0.0.1…").
    #[test]
    fn cells_are_never_cut_and_columns_line_up() {
        let mut t = Table::new(&["WHO", ">PLAN", "REASON"]);
        let who = "anonymous@127.0.0.1:54321";
        let why = "drained by drain-5 (anonymous@127.0.0.1:54321): disk swap in hall 3";
        t.row(vec![who.into(), "12".into(), why.into()]);
        t.row(vec!["alice".into(), "7".into(), "short".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].contains(who) && lines[1].ends_with(why), "{text}");
        assert!(!text.contains('…'), "{text}");
        let reason_at = lines[0].find("REASON").unwrap();
        assert_eq!(lines[1].find("drained"), Some(reason_at), "{text}");
        assert_eq!(lines[2].find("short"), Some(reason_at), "{text}");
        assert_eq!(lines[2].find("7"), Some(reason_at - 3), "{text}");
    }

    #[test]
    fn a_long_last_cell_wraps_under_its_column_and_keeps_every_word() {
        let mut t = Table::new(&["POP", "REASON"]);
        let why: Vec<String> = (0..60).map(|i| format!("word{i}")).collect();
        let why = why.join(" ");
        t.row(vec!["fra1".into(), why.clone()]);
        let text = t.render();
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        let at = text.lines().next().unwrap().find("REASON").unwrap();
        let rest: Vec<&str> = text.lines().skip(1).map(|l| &l[at..]).collect();
        assert!(rest.len() > 1, "{text}");
        assert_eq!(rest.join(" "), why, "{text}");
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            ["averyveryverylongword", "x"]
        );
    }
}
