//! Errors and warnings about a gateway.toml, located by byte span and rendered either
//! as one `file:line:col: message` line (for `cargo::error=` and `compile_error!`) or
//! in the full rustc style with the source line and a caret (for humans).

use std::fmt::Write as _;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};

use crate::codes::Code;

/// How much a diagnostic matters; `Allow` ones are dropped before anyone sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Allow,
    Warning,
    Error,
}

/// One finding about the configuration.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub code: &'static Code,
    pub severity: Severity,
    pub message: String,
    /// Byte range in the source that the message is about.
    pub span: Range<usize>,
    /// Other places the message refers to, such as the first of two duplicates.
    pub related: Vec<(Range<usize>, String)>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic of kind `code`, at its default severity.
    pub fn new(code: &'static Code, span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: code.severity,
            message: message.into(),
            span,
            related: Vec::new(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_related(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
}

/// The files of one configuration, the main one first, as one range of offsets:
/// each file's spans are offsets into that range, so a `Diagnostic` names its file
/// by where it points.
#[derive(Debug, Clone)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

#[derive(Debug, Clone)]
struct SourceFile {
    /// The name as the user should see it, such as `common.toml`.
    name: String,
    text: String,
    /// Where the file's offsets start.
    base: usize,
    /// Byte offset of the start of each line, for `line_col` in O(log n).
    line_starts: Vec<usize>,
}

impl SourceMap {
    pub fn new(name: &str, text: &str) -> Self {
        let mut map = SourceMap { files: Vec::new() };
        map.add(name, text);
        map
    }

    /// Adds a file after the others; returns where its offsets start.
    pub fn add(&mut self, name: &str, text: &str) -> usize {
        let base = self.files.last().map_or(0, |f| f.base + f.text.len() + 1);
        self.files.push(SourceFile {
            name: name.to_owned(),
            text: text.to_owned(),
            base,
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        });
        base
    }

    fn file_at(&self, offset: usize) -> &SourceFile {
        let index = self.files.partition_point(|f| f.base <= offset);
        &self.files[index.saturating_sub(1)]
    }
}

/// Every finding about one configuration, in source order.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    /// The main file's name as the user should see it, such as `gateway.toml`.
    pub file: String,
    sources: SourceMap,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn new(file: &str, source: &str, items: Vec<Diagnostic>) -> Self {
        Self::of(SourceMap::new(file, source), items)
    }

    pub(crate) fn of(sources: SourceMap, mut items: Vec<Diagnostic>) -> Self {
        items.sort_by_key(|d| (d.span.start, d.span.end));
        Self {
            file: sources.files[0].name.clone(),
            sources,
            items,
        }
    }

    /// Adds findings, keeping source order.
    pub(crate) fn extend(&mut self, items: Vec<Diagnostic>) {
        self.items.extend(items);
        self.items.sort_by_key(|d| (d.span.start, d.span.end));
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// 1-based line and column (in characters) of an offset, in its own file.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let (_, line, column) = self.locate(offset);
        (line, column)
    }

    /// The file an offset is in, and its 1-based line and column there.
    pub fn locate(&self, offset: usize) -> (&str, usize, usize) {
        let file = self.sources.file_at(offset);
        let offset = (offset - file.base).min(file.text.len());
        let line = file.line_starts.partition_point(|&start| start <= offset);
        let line_start = file.line_starts[line - 1];
        let column = file
            .text
            .get(line_start..offset)
            .map_or(1, |text| text.chars().count() + 1);
        (&file.name, line, column)
    }

    /// The file an offset is in and its line there, `FILE:LINE`.
    pub fn place(&self, offset: usize) -> String {
        let (file, line, _) = self.locate(offset);
        format!("{file}:{line}")
    }

    fn location(&self, offset: usize) -> String {
        let (file, line, col) = self.locate(offset);
        format!("{file}:{line}:{col}")
    }

    /// One line per diagnostic of `severity`, such as
    /// `gateway.toml:14:12: unknown upstream `user` (did you mean `users`?)`, with
    /// related places and help folded into the same line: the form for
    /// `cargo::error=`, `cargo::warning=` and `compile_error!`, which show one line.
    pub fn short_lines(&self, severity: Severity) -> Vec<String> {
        self.items
            .iter()
            .filter(|d| d.severity == severity)
            .map(|d| {
                let mut line = format!(
                    "{}: {}[{}]: {}",
                    self.location(d.span.start),
                    severity_word(d.severity),
                    d.code.id,
                    d.message
                );
                for (span, label) in &d.related {
                    let _ = write!(line, "; {label} at {}", self.location(span.start));
                }
                if let Some(help) = &d.help {
                    let _ = write!(line, "; help: {help}");
                }
                line
            })
            .collect()
    }

    /// The rustc-style rendering: header, source excerpt with carets, help.
    pub fn render(&self, color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let mut out = String::new();
        for d in &self.items {
            let level = match d.severity {
                Severity::Error => Level::ERROR,
                Severity::Warning => Level::WARNING,
                Severity::Allow => continue,
            };
            // A related place in another file gets a snippet of its own.
            let in_file = |span: &Range<usize>| {
                let file = self.sources.file_at(span.start);
                let local = span.start - file.base..(span.end - file.base).min(file.text.len());
                (file, local)
            };
            let (file, local) = in_file(&d.span);
            let mut snippet = Snippet::source(file.text.as_str())
                .path(file.name.as_str())
                .annotation(AnnotationKind::Primary.span(local));
            let mut elsewhere = Vec::new();
            for (span, label) in &d.related {
                let (other, local) = in_file(span);
                let annotation = AnnotationKind::Context.span(local).label(label);
                if other.base == file.base {
                    snippet = snippet.annotation(annotation);
                } else {
                    elsewhere.push(
                        Snippet::source(other.text.as_str())
                            .path(other.name.as_str())
                            .annotation(annotation),
                    );
                }
            }
            let mut group = level
                .primary_title(d.message.as_str())
                .id(d.code.id)
                .element(snippet);
            for snippet in elsewhere {
                group = group.element(snippet);
            }
            if let Some(help) = &d.help {
                group = group.element(Level::HELP.message(help.as_str()));
            }
            out.push_str(&renderer.render(&[group]));
            out.push_str("\n\n");
        }
        let errors = self
            .items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        if errors > 0 {
            let _ = writeln!(
                out,
                "error: {} has {errors} error{}",
                self.file,
                if errors == 1 { "" } else { "s" }
            );
        }
        out
    }
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Allow => "allow",
    }
}

/// The candidate closest to `name` by edit distance, when it is close enough to be a typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|&(d, c)| d <= (c.chars().count().max(name.chars().count()) / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `" (did you mean `x`?)"` or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(name, candidates).map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Typos find their nearest candidate; unrelated names find none.
    #[test]
    fn suggestions() {
        assert_eq!(suggest("user", ["users", "orders"]), Some("users"));
        assert_eq!(
            suggest("rate_limt", ["rate_limit", "jwt"]),
            Some("rate_limit")
        );
        assert_eq!(suggest("payments", ["users", "orders"]), None);
    }

    /// Lines and columns are 1-based and count characters, not bytes.
    #[test]
    fn locations() {
        let d = Diagnostics::new("g.toml", "a = 1\nbé = 2\n", vec![]);
        assert_eq!(d.line_col(0), (1, 1));
        assert_eq!(d.line_col(6), (2, 1));
        assert_eq!(d.line_col(9), (2, 3));
    }
}
