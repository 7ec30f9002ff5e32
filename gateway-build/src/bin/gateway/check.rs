//! `gateway check`: diagnostics as rustc-style text, JSON lines or GitHub annotations.

use std::io::IsTerminal;

use gateway_build::{Diagnostic, Diagnostics, Severity};

use crate::{EXIT_ERRORS, EXIT_USAGE, USAGE};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Human,
    Json,
    Github,
}

pub fn run(args: &[String]) -> Result<u8, String> {
    let mut format = Format::Human;
    let mut deny_warnings = false;
    let mut files = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--deny-warnings" => deny_warnings = true,
            "--format" => {
                format = match args.next().map(String::as_str) {
                    Some("human") => Format::Human,
                    Some("json") => Format::Json,
                    Some("github") => Format::Github,
                    other => {
                        return Err(format!(
                            "unknown format {other:?}: use human, json or github"
                        ));
                    }
                }
            }
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option `{flag}`\n{USAGE}"));
            }
            file => files.push(file.to_owned()),
        }
    }
    if files.is_empty() {
        files.push("gateway.toml".to_owned());
    }
    let mut status = 0;
    for file in &files {
        let (name, source) = match crate::read(file) {
            Ok(read) => read,
            Err(message) => {
                eprintln!("error: {message}");
                status = EXIT_USAGE;
                continue;
            }
        };
        let (diagnostics, summary) = match gateway_build::analyze_with(
            &name,
            &source,
            &crate::includes(file),
        ) {
            Ok(analysis) => {
                let plan = &analysis.plan;
                let summary = format!(
                    "{name}: ok ({} routes, {} upstreams, {} listeners; at most {} metric series)",
                    plan.routes.len(),
                    plan.upstreams.len(),
                    plan.listeners.len(),
                    plan.metrics_shape().most_series()
                );
                (analysis.warnings, Some(summary))
            }
            Err(diagnostics) => (diagnostics, None),
        };
        print(format, &diagnostics);
        let warned = diagnostics
            .items
            .iter()
            .any(|d| d.severity == Severity::Warning);
        if summary.is_none() || (deny_warnings && warned) {
            status = status.max(EXIT_ERRORS);
        }
        if let (Some(summary), Format::Human) = (summary, format) {
            eprintln!("{summary}");
        }
    }
    Ok(status)
}

fn print(format: Format, diagnostics: &Diagnostics) {
    match format {
        Format::Human => {
            if !diagnostics.items.is_empty() {
                eprint!("{}", diagnostics.render(std::io::stderr().is_terminal()));
            }
        }
        Format::Json => {
            for d in &diagnostics.items {
                println!("{}", json(diagnostics, d));
            }
        }
        Format::Github => {
            for d in &diagnostics.items {
                println!("{}", github(diagnostics, d));
            }
        }
    }
}

fn severity(d: &Diagnostic) -> &'static str {
    match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Allow => "allow",
    }
}

/// One JSON object per diagnostic, on one line.
fn json(all: &Diagnostics, d: &Diagnostic) -> String {
    let (file, line, column) = all.locate(d.span.start);
    let (end_line, end_column) = all.line_col(d.span.end);
    let related: Vec<String> = d
        .related
        .iter()
        .map(|(span, label)| {
            let (file, line, column) = all.locate(span.start);
            format!(
                r#"{{"file":{},"line":{line},"column":{column},"label":{}}}"#,
                gateway_runtime::message::json::quote(file),
                gateway_runtime::message::json::quote(label)
            )
        })
        .collect();
    format!(
        r#"{{"severity":"{}","code":"{}","message":{},"file":{},"line":{line},"column":{column},"end_line":{end_line},"end_column":{end_column},"help":{},"related":[{}]}}"#,
        severity(d),
        d.code.id,
        gateway_runtime::message::json::quote(&d.message),
        gateway_runtime::message::json::quote(file),
        d.help
            .as_deref()
            .map_or("null".to_owned(), gateway_runtime::message::json::quote),
        related.join(",")
    )
}

/// A GitHub Actions workflow command, which the runner turns into an annotation.
fn github(all: &Diagnostics, d: &Diagnostic) -> String {
    let (file, line, column) = all.locate(d.span.start);
    let (end_line, end_column) = all.line_col(d.span.end);
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message = format!("{message}\nhelp: {help}");
    }
    format!(
        "::{} file={},line={line},col={column},endLine={end_line},endColumn={end_column},title={}::{}",
        if d.severity == Severity::Error {
            "error"
        } else {
            "warning"
        },
        escape_property(file),
        d.code.id,
        escape_data(&message)
    )
}

fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}
