//! New certificates without a restart. On SIGHUP every TLS listener builds its
//! configuration again; between signals the files its settings name are polled
//! every `POLL_INTERVAL` (modification time, size and inode: cheap, and it sees
//! the symlink swap Kubernetes uses for mounted secrets, which file-change
//! notifications on the old path miss), and a listener whose files changed reloads.
//!
//! A reload is all or nothing: a certificate that does not parse, has expired or does
//! not match its key leaves the configuration in use in place; the error is logged
//! and counted, and `/readyz` on the admin listener reports it. Connections already
//! open are not touched; new handshakes use the new configuration.
//!
//! Certificates that expire within a listener's `expiry_warning_days` are logged at
//! start-up, after each reload and once a day.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;

use crate::settings::{Part, Setting, parse_template};
use crate::tls::ListenerTlsSpec;
use crate::tls::certificate::LoadedCertificate;
use crate::tls::listener::ListenerTls;

/// How often certificate files are looked at.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
const DAY: Duration = Duration::from_secs(86_400);

/// What `/readyz` says about reloads, and `/metrics` about the certificates in use.
#[derive(Debug, Default)]
pub(crate) struct ReloadStatus {
    pub failures: AtomicU64,
    pub last_error: ArcSwapOption<String>,
    /// Every listener's certificates in use: listener, origin (where gateway.toml
    /// names it) and the end of its validity in seconds since the epoch.
    pub certificates: ArcSwapOption<Vec<(&'static str, &'static str, u64)>>,
}

impl ReloadStatus {
    /// Records the certificates `watched` are using now.
    fn publish(&self, watched: &[Watched]) {
        let certificates = watched
            .iter()
            .flat_map(|w| {
                w.expiry.iter().map(|(origin, not_after)| {
                    let seconds = not_after
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    (w.tls.listener, *origin, seconds)
                })
            })
            .collect();
        self.certificates.store(Some(Arc::new(certificates)));
    }
}

/// One TLS listener as the reloader watches it.
pub(crate) struct Watched {
    tls: Arc<ListenerTls>,
    files: Files,
    /// Origin and end of validity of the certificates in use.
    expiry: Vec<(&'static str, SystemTime)>,
}

/// The files a listener's TLS settings read, as they were when last loaded.
pub(crate) struct Files(Vec<(String, Option<FileStamp>)>);

impl Files {
    /// Looks at the files of `spec`: before they are loaded, so that a change made
    /// while they load is seen as one.
    pub(crate) fn of(spec: &ListenerTlsSpec) -> Self {
        Files(
            paths(spec)
                .into_iter()
                .map(|path| {
                    let stamp = stamp(&path);
                    (path, stamp)
                })
                .collect(),
        )
    }
}

impl Watched {
    pub(crate) fn new(tls: Arc<ListenerTls>, files: Files, loaded: &[LoadedCertificate]) -> Self {
        Watched {
            tls,
            files,
            expiry: expiry_of(loaded),
        }
    }
}

/// What tells a changed file from the one read last.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &str) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// The files a listener's TLS settings read.
fn paths(spec: &ListenerTlsSpec) -> Vec<String> {
    let certificates = spec
        .default_certificate
        .iter()
        .chain(spec.sni.iter().map(|s| &s.certificate));
    let settings: Vec<&Setting> = certificates
        .flat_map(|c| [&c.cert, &c.key])
        .chain(spec.client_auth.iter().map(|a| &a.ca))
        .collect();
    let mut paths = Vec::new();
    for setting in settings {
        for part in parse_template(setting.raw).unwrap_or_default() {
            if let Part::File { path } = part
                && !paths.iter().any(|p| p == path)
            {
                paths.push(path.to_owned());
            }
        }
    }
    paths
}

/// Logs the certificates of `listener` that expire within `warning_days`.
fn warn_of_expiry(listener: &str, warning_days: u32, expiry: &[(&'static str, SystemTime)]) {
    let now = SystemTime::now();
    for (origin, not_after) in expiry {
        let days = match not_after.duration_since(now) {
            Ok(left) => (left.as_secs() / 86_400) as i64,
            Err(_) => -1,
        };
        if days < 0 {
            tracing::error!(listener, certificate = origin, "certificate has expired");
        } else if days <= i64::from(warning_days) {
            tracing::warn!(
                listener,
                certificate = origin,
                days_left = days,
                "certificate expires soon"
            );
        }
    }
}

fn expiry_of(loaded: &[LoadedCertificate]) -> Vec<(&'static str, SystemTime)> {
    loaded.iter().map(|c| (c.origin, c.not_after)).collect()
}

/// Watches the listeners until the process ends.
pub(crate) async fn run(mut watched: Vec<Watched>, status: Arc<ReloadStatus>) {
    if watched.is_empty() {
        return;
    }
    for w in &watched {
        warn_of_expiry(w.tls.listener, w.tls.spec.expiry_warning_days, &w.expiry);
    }
    status.publish(&watched);
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; certificate files are still polled");
            None
        }
    };
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    let mut daily = tokio::time::interval_at(tokio::time::Instant::now() + DAY, DAY);
    loop {
        let everything = tokio::select! {
            _ = async { match &mut hangup { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            _ = poll.tick() => false,
            _ = daily.tick() => {
                for w in &watched {
                    warn_of_expiry(w.tls.listener, w.tls.spec.expiry_warning_days, &w.expiry);
                }
                continue;
            }
        };
        let mut reloaded = false;
        for w in &mut watched {
            let mut changed = everything;
            for (path, last) in &mut w.files.0 {
                let now = stamp(path);
                if now != *last {
                    *last = now;
                    changed = true;
                }
            }
            if changed {
                reload(w, &status);
                reloaded = true;
            }
        }
        if reloaded {
            status.publish(&watched);
        }
    }
}

fn reload(w: &mut Watched, status: &ReloadStatus) {
    let listener = w.tls.listener;
    match w.tls.reload() {
        Ok(loaded) => {
            w.expiry = expiry_of(&loaded);
            tracing::info!(
                listener,
                certificates = loaded.len(),
                "TLS configuration reloaded"
            );
            warn_of_expiry(listener, w.tls.spec.expiry_warning_days, &w.expiry);
        }
        Err(errors) => {
            status.failures.fetch_add(1, Ordering::Relaxed);
            let text = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            tracing::error!(listener, errors = %text, "TLS reload refused; the previous certificates stay in use");
            status.last_error.store(Some(Arc::new(text)));
        }
    }
}
