//! `include = ["common.toml"]`: files whose sections join the including file's, so
//! that gateways built for different clients (a web and a mobile BFF) share their
//! upstreams, policies and consumers.
//!
//! An included file is parsed on its own, with its offsets placed after the files
//! before it (`SourceMap`), so every diagnostic about it names it: `common.toml:3:9`.
//! Its sections are appended to the including file's; a name two files define is an
//! error, never an override. An included file includes nothing and has no
//! `[gateway]`, `[admin]`, `[access_log]`, `[tracing]` or `[lints]`: those belong to the
//! one gateway it is built into.

use std::path::Path;

use toml::Spanned;

use crate::codes;
use crate::diagnostic::{Diagnostic, SourceMap};
use crate::syntax::{self, Config};

/// How an included file is read: its name as written, to its text or why not.
pub type Read<'a> = dyn Fn(&str) -> Result<String, String> + 'a;

/// The reader of the pure entry points, which read no files.
pub fn nothing(_: &str) -> Result<String, String> {
    Err("this entry point reads no files: use `analyze_with` or a build script".to_owned())
}

/// Reads the included file `name` relative to `dir`, the including file's folder.
pub fn read_in(dir: &Path, name: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(name)).map_err(|e| format!("cannot be read: {e}"))
}

/// The configuration's files, once its includes are resolved.
pub struct Included {
    pub sources: SourceMap,
    /// Every file's text, for the configuration's digest: the main file's alone when
    /// it includes nothing.
    pub fingerprint: String,
    /// Whether an included file is not TOML: nothing more can be checked.
    pub syntax_errors: bool,
}

/// Reads and parses `config`'s includes and appends their sections to it.
pub fn resolve(
    config: &mut Config,
    file: &str,
    source: &str,
    read: &Read<'_>,
    found: &mut Vec<Diagnostic>,
) -> Included {
    let mut included = Included {
        sources: SourceMap::new(file, source),
        fingerprint: source.to_owned(),
        syntax_errors: false,
    };
    let mut seen: Vec<&Spanned<String>> = Vec::new();
    let names = std::mem::take(&mut config.include);
    for name in &names {
        if let Some(first) = seen.iter().find(|s| s.get_ref() == name.get_ref()) {
            found.push(
                invalid(name, format!("`{}` is included twice", name.get_ref()))
                    .with_related(first.span(), "the first"),
            );
            continue;
        }
        seen.push(name);
        let text = match read(name.get_ref()) {
            Ok(text) => text,
            Err(why) => {
                found.push(invalid(name, format!("`{}`: {why}", name.get_ref())));
                config.incomplete = true;
                continue;
            }
        };
        let base = included.sources.add(name.get_ref(), &text);
        included.fingerprint.push('\0');
        included.fingerprint.push_str(name.get_ref());
        included.fingerprint.push('\0');
        included.fingerprint.push_str(&text);
        // Newlines before the text put its offsets where the source map has it.
        let padded = "\n".repeat(base) + &text;
        match syntax::parse(&padded) {
            Ok((other, shape_errors)) => {
                found.extend(shape_errors);
                merge(config, other, name.get_ref(), found);
            }
            Err(syntax_errors) => {
                found.extend(syntax_errors);
                included.syntax_errors = true;
            }
        }
    }
    included
}

fn invalid(at: &Spanned<String>, message: String) -> Diagnostic {
    Diagnostic::new(&codes::INVALID_INCLUDE, at.span(), message)
        .with_help(codes::INVALID_INCLUDE.fix)
}

/// Appends `other`'s sections (from the included `file`) to `config`.
fn merge(config: &mut Config, other: Config, file: &str, found: &mut Vec<Diagnostic>) {
    let own = [
        (other.include.first().map(|i| i.span()), "include"),
        (other.gateway.as_ref().map(|g| g.span()), "[gateway]"),
        (other.admin.as_ref().map(|a| a.span()), "[admin]"),
        (other.access_log.as_ref().map(|a| a.span()), "[access_log]"),
        (other.tracing.as_ref().map(|t| t.span()), "[tracing]"),
        (other.lints.first().map(|(name, _)| name.span()), "[lints]"),
    ];
    for (span, what) in own {
        if let Some(span) = span {
            found.push(
                Diagnostic::new(
                    &codes::INVALID_INCLUDE,
                    span,
                    format!(
                        "`{file}` is included: its `{what}` belongs in the file that includes it"
                    ),
                )
                .with_help(codes::INVALID_INCLUDE.fix),
            );
        }
    }
    named(&mut config.listeners, other.listeners, "listeners", found);
    named(&mut config.upstreams, other.upstreams, "upstreams", found);
    named(&mut config.policies, other.policies, "policies", found);
    named(&mut config.groups, other.groups, "groups", found);
    named(&mut config.consumers, other.consumers, "consumers", found);
    config.routes.extend(other.routes);
    config.tests.extend(other.tests);
    config.broken_names.extend(other.broken_names);
    config.incomplete |= other.incomplete;
}

/// Appends named sections, each name once.
fn named<T>(
    into: &mut Vec<(Spanned<String>, Spanned<T>)>,
    from: Vec<(Spanned<String>, Spanned<T>)>,
    section: &str,
    found: &mut Vec<Diagnostic>,
) {
    for (name, item) in from {
        match into.iter().find(|(n, _)| n.get_ref() == name.get_ref()) {
            Some((first, _)) => found.push(
                invalid(
                    &name,
                    format!("`[{section}.{}]` is defined twice", name.get_ref()),
                )
                .with_related(first.span(), "the first"),
            ),
            None => into.push((name, item)),
        }
    }
}
