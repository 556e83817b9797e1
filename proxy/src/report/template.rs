//! Filling the notes' template: `{{name}}` placeholders, `{{#if name}}` … `{{/if}}` blocks, and
//! the rule that keeps a missing value out of every sentence. A prose line with a placeholder
//! that has no value is left out whole; in a table row a missing value is an em dash (units sit
//! in the column headers), and a row whose first cell is missing is left out. Then ordered lists
//! are renumbered and headings left with nothing under them are dropped.

use std::collections::BTreeMap;

/// What a table cell shows when the runs do not give its value.
pub const MISSING: &str = "—";

/// The values of a fill: text (escaped for markdown by the caller) by placeholder name.
pub type Values = BTreeMap<String, String>;

/// The template with every placeholder filled from `values` (see the module's rules).
pub fn fill(template: &str, values: &Values) -> String {
    let mut lines: Vec<String> = Vec::new();
    // Each open `if` block: whether it is kept.
    let mut blocks: Vec<bool> = Vec::new();
    let mut in_comment = false;
    for line in template.lines() {
        let t = line.trim();
        if in_comment || t.starts_with("<!--") {
            in_comment = !t.contains("-->");
            continue;
        }
        if let Some(name) = t.strip_prefix("{{#if ").and_then(|r| r.strip_suffix("}}")) {
            blocks.push(values.contains_key(name.trim()));
            continue;
        }
        if t == "{{/if}}" {
            blocks.pop();
            continue;
        }
        if blocks.iter().any(|kept| !kept) {
            continue;
        }
        if let Some(filled) = fill_line(line, values) {
            // A value may be a block of several lines (a list under its own heading).
            lines.extend(filled.split('\n').map(str::to_string));
        }
    }
    tidy(&lines)
}

/// One line filled, or None when it must be left out.
fn fill_line(line: &str, values: &Values) -> Option<String> {
    let table = line.trim_start().starts_with('|');
    let mut out = String::with_capacity(line.len() * 2);
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else { break };
        let before = &rest[..start];
        out.push_str(before);
        let key = rest[start + 2..start + 2 + len].trim();
        match values.get(key) {
            Some(v) => out.push_str(v),
            // The row's subject (its first cell) is missing: the row says nothing.
            None if table && out.matches('|').count() <= 1 => return None,
            None if table => out.push_str(MISSING),
            None => return None,
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// Renumbers ordered lists, drops headings with nothing under them, and keeps at most one blank
/// line in a row.
fn tidy(lines: &[String]) -> String {
    let level = |l: &str| l.starts_with('#').then(|| l.chars().take_while(|c| *c == '#').count());
    let mut kept: Vec<&str> = lines.iter().map(String::as_str).collect();
    // A heading is empty when the next non-blank line is a heading of the same or a higher
    // level (or there is none); dropping one may empty the heading above it.
    loop {
        let empty = (0..kept.len()).find(|&i| {
            level(kept[i]).is_some_and(|h| kept[i + 1..].iter().find(|l| !l.trim().is_empty()).is_none_or(|n| level(n).is_some_and(|nh| nh <= h)))
        });
        match empty {
            Some(i) => {
                kept.remove(i);
            }
            None => break,
        }
    }
    let mut out = String::new();
    let mut number = 0;
    let mut blank = true;
    for line in kept {
        if line.trim().is_empty() {
            if !blank {
                out.push('\n');
            }
            blank = true;
            number = 0;
            continue;
        }
        blank = false;
        let ordered = line.split_once(". ").filter(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        match ordered {
            Some((_, text)) => {
                number += 1;
                out.push_str(&format!("{number}. {text}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.trim_end().to_string() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> Values {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn missing_values_drop_their_sentence_and_show_a_dash_in_tables() {
        let t = "# Title\n\n1. {{a}} holds {{n}} users\n2. {{b}} is fast\n3. static\n\n| X | {{a}} |\n|---|---|\n| {{a}} | {{n}} |\n| {{b}} | {{n}} |\n| p95 (ms) | {{p}} |\n";
        let out = fill(t, &values(&[("a", "RTX"), ("n", "16")]));
        assert_eq!(out, "# Title\n\n1. RTX holds 16 users\n2. static\n\n| X | RTX |\n|---|---|\n| RTX | 16 |\n| p95 (ms) | — |\n");
        assert!(!out.contains("n/a"));
    }

    #[test]
    fn blocks_comments_and_empty_headings_go() {
        assert_eq!(fill("# A\n\n## B\n\n- {{x}}\n", &values(&[])), "\n", "a heading emptied by its empty subsection goes too");
        let t = "<!-- a comment\n over {{two}} lines -->\n# Top\n\n{{#if b}}\n## Only with b\n\ntext {{b}}\n{{/if}}\n\n## Empty\n\n- {{missing}}\n\n## Kept\n\nyes\n";
        assert_eq!(fill(t, &values(&[])), "# Top\n\n## Kept\n\nyes\n");
        assert_eq!(fill(t, &values(&[("b", "B")])), "# Top\n\n## Only with b\n\ntext B\n\n## Kept\n\nyes\n");
    }
}
