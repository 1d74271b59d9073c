//! [`ConfigError`] and the context that turns a byte span of the text into a line number and
//! names the table a serde error falls in.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

/// A config error naming the source, the line, the object and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name or other label of the text (e.g. `host.toml`).
    pub source_name: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Object and field, e.g. `port "tap-vm1": mac` (may be empty).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source_name)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The text being read and its label, for errors.
pub(super) struct Ctx<'a> {
    pub text: &'a str,
    pub source: &'a str,
    /// Whether spans point into `text`: false for a config built in code, whose errors
    /// have no line.
    pub has_lines: bool,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub fn err(&self, span: Option<Range<usize>>, path: String, message: String) -> ConfigError {
        ConfigError {
            source_name: self.source.to_string(),
            line: span
                .filter(|_| self.has_lines)
                .map(|s| self.line_of(s.start)),
            path,
            message,
        }
    }

    /// The `[[table]]` header a byte offset falls under, for naming the object of a serde error.
    pub fn table_at(&self, offset: usize) -> String {
        let end = offset.min(self.text.len());
        let before = &self.text[..end];
        let mut found: Option<&str> = None;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for line in before.lines() {
            let t = line.trim();
            if t.starts_with('[') {
                let name = t.split('#').next().unwrap_or("").trim();
                *counts.entry(name).or_default() += 1;
                found = Some(name);
            }
        }
        match found {
            Some(h) if h.starts_with("[[") => format!("{h} #{}", counts[h]),
            Some(h) => h.to_string(),
            None => String::new(),
        }
    }
}
