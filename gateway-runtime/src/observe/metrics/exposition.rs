//! The scrape: every shard merged into the Prometheus text exposition format
//! (version 0.0.4). Written by hand rather than with prometheus-client, whose metric
//! families are shared maps that every worker would write through; here the workers
//! count in arrays of their own and only this reads them all.
//!
//! Names follow Prometheus's conventions: base units (`_seconds`, `_bytes`), `_total`
//! for counters, real histograms. A counter series at zero is left out; histograms
//! (of every route and upstream, so that a quiet route still shows) and gauges are
//! always written.

use std::fmt::Write as _;

use super::registry::{Merged, Registry};
use crate::observe::series::{
    CLASSES, METHODS, PROTOCOLS, TLS_FAILURES, UNMATCHED, UPSTREAM_FAULTS,
};

/// The content type of what [`render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric, summed over the workers, with the certificates in use (listener,
/// where gateway.toml names the certificate, end of validity in Unix seconds).
pub fn render(registry: &Registry, certificates: &[(&str, &str, u64)]) -> String {
    let catalog = &registry.catalog;
    let shards = &registry.shards;
    let mut out = String::with_capacity(16 * 1024);
    let route_name = |slot: usize| catalog.routes.get(slot).copied().unwrap_or(UNMATCHED);

    family(
        &mut out,
        "gateway_build_info",
        "gauge",
        "The gateway's build: its name, the SHA-256 of its configuration and the compiler's version.",
    );
    let provenance = &catalog.provenance;
    series(
        &mut out,
        "gateway_build_info",
        &[
            ("gateway", catalog.gateway),
            ("config_sha256", provenance.config_sha256),
            ("compiler", provenance.compiler),
        ],
        1,
    );

    family(
        &mut out,
        "gateway_requests_total",
        "counter",
        "Requests answered, by route, method and status class.",
    );
    for slot in 0..=catalog.routes.len() {
        for (m, method) in METHODS.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let count = registry.requests(slot, m, c);
                if count > 0 {
                    let labels = [
                        ("route", route_name(slot)),
                        ("method", method),
                        ("status", class),
                    ];
                    series(&mut out, "gateway_requests_total", &labels, count);
                }
            }
        }
    }

    let name = "gateway_request_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from a request's head to its response's head, upstream time included, by route.",
    );
    for slot in 0..=catalog.routes.len() {
        let merged = registry.route_duration(slot);
        histogram(
            &mut out,
            name,
            ("route", route_name(slot)),
            catalog.buckets,
            &merged,
        );
    }

    for (name, help, sent) in [
        (
            "gateway_request_body_bytes_total",
            "Body bytes read from clients, by route.",
            false,
        ),
        (
            "gateway_response_body_bytes_total",
            "Body bytes written to clients, by route.",
            true,
        ),
    ] {
        family(&mut out, name, "counter", help);
        for slot in 0..=catalog.routes.len() {
            let (received, written) = registry.body_bytes(slot);
            // Shown for a route once it has answered a request, bodies or not.
            if (0..CLASSES.len()).any(|c| registry.requests_of_class(slot, c) > 0) {
                let count = if sent { written } else { received };
                series(&mut out, name, &[("route", route_name(slot))], count);
            }
        }
    }

    let name = "gateway_upstream_request_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from sending a request upstream to its response's head, by upstream.",
    );
    for (id, upstream) in catalog.upstreams.iter().enumerate() {
        let merged = registry.upstream_duration(id);
        histogram(
            &mut out,
            name,
            ("upstream", upstream.name),
            catalog.buckets,
            &merged,
        );
    }

    family(
        &mut out,
        "gateway_upstream_errors_total",
        "counter",
        "Calls to an upstream that failed, by upstream, target and kind.",
    );
    for (target_id, upstream, target) in catalog.targets() {
        for (f, fault) in UPSTREAM_FAULTS.iter().enumerate() {
            let count = registry.upstream_faults(target_id, f);
            if count > 0 {
                let labels = [("upstream", upstream), ("target", target), ("kind", fault)];
                series(&mut out, "gateway_upstream_errors_total", &labels, count);
            }
        }
    }

    family(
        &mut out,
        "gateway_upstream_connections",
        "gauge",
        "Connections open to an upstream target, in use or idle, by upstream and target.",
    );
    family(
        &mut out,
        "gateway_upstream_idle_connections",
        "gauge",
        "Connections idle in the pools of an upstream target, by upstream and target.",
    );
    for (target_id, upstream, target) in catalog.targets() {
        let (open, idle) = registry.pool(target_id);
        let labels = [("upstream", upstream), ("target", target)];
        series(&mut out, "gateway_upstream_connections", &labels, open);
        series(&mut out, "gateway_upstream_idle_connections", &labels, idle);
    }

    family(
        &mut out,
        "gateway_open_connections",
        "gauge",
        "Client connections open now, by listener and protocol.",
    );
    for (l, listener) in catalog.listeners.iter().enumerate() {
        for (p, protocol) in PROTOCOLS.iter().enumerate() {
            let open = registry.open_connections(l, p);
            let labels = [("listener", *listener), ("protocol", protocol)];
            series(&mut out, "gateway_open_connections", &labels, open);
        }
    }

    family(
        &mut out,
        "gateway_tls_handshakes_total",
        "counter",
        "Client TLS handshakes that succeeded, by listener.",
    );
    family(
        &mut out,
        "gateway_tls_handshake_failures_total",
        "counter",
        "Client TLS handshakes that failed, by listener and reason.",
    );
    for (l, listener) in catalog.listeners.iter().enumerate() {
        let done: u64 = shards.iter().map(|s| s.tls_handshakes[l].get()).sum();
        if done > 0 {
            series(
                &mut out,
                "gateway_tls_handshakes_total",
                &[("listener", listener)],
                done,
            );
        }
        for (r, reason) in TLS_FAILURES.iter().enumerate() {
            let i = l * TLS_FAILURES.len() + r;
            let failed: u64 = shards.iter().map(|s| s.tls_failures[i].get()).sum();
            if failed > 0 {
                let labels = [("listener", *listener), ("reason", reason)];
                series(
                    &mut out,
                    "gateway_tls_handshake_failures_total",
                    &labels,
                    failed,
                );
            }
        }
    }

    family(
        &mut out,
        "gateway_tls_certificate_expiry_timestamp_seconds",
        "gauge",
        "When a certificate in use ends its validity, in seconds since the Unix epoch, by listener and where the configuration names it.",
    );
    for (listener, certificate, seconds) in certificates {
        let labels = [("listener", *listener), ("certificate", *certificate)];
        series(
            &mut out,
            "gateway_tls_certificate_expiry_timestamp_seconds",
            &labels,
            seconds,
        );
    }

    family(
        &mut out,
        "gateway_stopped_requests_total",
        "counter",
        "Requests stopped before their target answered (refused by a policy, rate limited, rejected as malformed, failed upstream), by route, who stopped them and why.",
    );
    let mut stops: Vec<(&str, &str, &str, u64)> = Vec::new();
    for shard in shards.iter() {
        let claimed = shard
            .stops
            .iter()
            .map_while(|(key, count)| Some((key.get()?, count.get())));
        for (&(slot, reason), count) in claimed {
            let key = (route_name(slot), reason.by, reason.what);
            match stops.iter_mut().find(|s| (s.0, s.1, s.2) == key) {
                Some(total) => total.3 += count,
                None => stops.push((key.0, key.1, key.2, count)),
            }
        }
    }
    let other: u64 = shards.iter().map(|s| s.other_stops.get()).sum();
    if other > 0 {
        stops.push(("other", "other", "other", other));
    }
    stops.sort_unstable();
    for (route, by, what, count) in stops {
        let labels = [("route", route), ("stopped_by", by), ("reason", what)];
        series(&mut out, "gateway_stopped_requests_total", &labels, count);
    }

    if let Some((exported, queue_full, export_failed)) = registry.spans() {
        family(
            &mut out,
            "gateway_trace_spans_exported_total",
            "counter",
            "Spans the trace collector accepted.",
        );
        series(
            &mut out,
            "gateway_trace_spans_exported_total",
            &[],
            exported,
        );
        family(
            &mut out,
            "gateway_trace_spans_dropped_total",
            "counter",
            "Spans lost, by reason: the exporter's queue was full, or the collector refused or missed their batch.",
        );
        let name = "gateway_trace_spans_dropped_total";
        series(&mut out, name, &[("reason", "queue_full")], queue_full);
        series(
            &mut out,
            name,
            &[("reason", "export_failed")],
            export_failed,
        );
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn series(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    labels_into(out, labels);
    let _ = writeln!(out, " {value}");
}

fn labels_into(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        // The format's escapes: backslash, double quote and line feed.
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// Nanoseconds as seconds, for a label or a JSON number.
pub fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// One histogram series: cumulative buckets, `+Inf`, sum in seconds and count.
fn histogram(out: &mut String, name: &str, label: (&str, &str), bounds: &[u64], merged: &Merged) {
    let mut cumulative = 0;
    for (bound, count) in bounds
        .iter()
        .map(|nanos| seconds(*nanos).to_string())
        .chain(["+Inf".to_owned()])
        .zip(&merged.buckets)
    {
        cumulative += count;
        let _ = write!(out, "{name}_bucket");
        labels_into(out, &[label, ("le", &bound)]);
        let _ = writeln!(out, " {cumulative}");
    }
    let sum = merged.sum_nanos as f64 / 1e9;
    series(out, &format!("{name}_sum"), &[label], sum);
    series(out, &format!("{name}_count"), &[label], cumulative);
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::observe::metrics::registry::STOP_KINDS;
    use crate::observe::metrics::registry::{Catalog, UpstreamNames};
    use crate::observe::series::DEFAULT_BUCKETS;
    use crate::pipeline::StopReason;
    use crate::pipeline::gateway::Provenance;

    fn registry() -> &'static Registry {
        let catalog = Catalog {
            gateway: "g",
            provenance: Provenance {
                config_file: "gateway.toml",
                config_sha256: "ab",
                compiler: "gateway-build 0",
                policies: &[],
            },
            routes: vec!["a \"quoted\\ name\n"],
            upstreams: vec![UpstreamNames {
                name: "u",
                targets: vec!["127.0.0.1:1".into()],
            }],
            listeners: vec!["main"],
            buckets: DEFAULT_BUCKETS,
            served: true,
        };
        Registry::leak(catalog, 2, None)
    }

    #[test]
    fn shards_add_up_and_label_values_are_escaped() {
        let registry = registry();
        registry.shard(0).request(Some(0), 0, 200, 300_000);
        registry.shard(1).request(Some(0), 0, 204, 3_000_000);
        registry.shard(1).request(None, 9, 404, 3_000_000);
        let text = render(registry, &[]);
        assert!(text.contains(
            "gateway_requests_total{route=\"a \\\"quoted\\\\ name\\n\",method=\"GET\",status=\"2xx\"} 2\n"
        ));
        assert!(text.contains(
            "gateway_requests_total{route=\"unmatched\",method=\"other\",status=\"4xx\"} 1\n"
        ));
        assert!(text.contains("le=\"0.0005\"} 1\n"), "{text}");
        assert!(text.contains("le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("gateway_request_duration_seconds_sum{route=\"unmatched\"} 0.003\n"));
    }

    #[test]
    fn stops_past_the_last_slot_are_counted_as_other() {
        let registry = registry();
        let whats: Vec<&'static str> = (0..STOP_KINDS + 3)
            .map(|i| &*Box::leak(format!("why {i}").into_boxed_str()))
            .collect();
        for what in &whats {
            registry
                .shard(0)
                .stopped(Some(0), StopReason { by: "p", what });
        }
        registry.shard(1).stopped(
            Some(0),
            StopReason {
                by: "p",
                what: whats[0],
            },
        );
        let text = render(registry, &[]);
        assert!(
            text.contains("stopped_by=\"p\",reason=\"why 0\"} 2\n"),
            "both shards"
        );
        assert!(text.contains(&format!("reason=\"why {}\"}} 1\n", STOP_KINDS - 1)));
        assert!(!text.contains(&format!("reason=\"why {}\"", STOP_KINDS)));
        assert!(text.contains(
            "gateway_stopped_requests_total{route=\"other\",stopped_by=\"other\",reason=\"other\"} 3\n"
        ));
    }

    /// Every upstream fault is counted under its own kind, and the client's body
    /// faults under none.
    #[test]
    fn each_upstream_fault_has_its_kind() {
        use crate::upstream::UpstreamError;
        let registry = registry();
        let upstream = registry.shard(0).upstream(0);
        let io = || std::io::Error::other("x");
        for error in [
            UpstreamError::Connect(io()),
            UpstreamError::ConnectTimeout,
            UpstreamError::Tls(io()),
            UpstreamError::ResponseTimeout,
            UpstreamError::SendTimeout,
            UpstreamError::Closed(None),
            UpstreamError::InvalidResponse("x"),
            UpstreamError::RequestBody,
        ] {
            upstream.failed(0, &error);
        }
        let counts: Vec<u64> = (0..UPSTREAM_FAULTS.len())
            .map(|fault| registry.upstream_faults(0, fault))
            .collect();
        assert_eq!(counts, vec![1; UPSTREAM_FAULTS.len()]);
    }
}
