//! Tracing end to end: the gateway of `gateways/aggregate.toml` exports its spans over
//! OTLP/HTTP to a real HTTP server on loopback, which the test decodes with the
//! official OpenTelemetry protobuf definitions; the backends show the `traceparent`
//! they were sent.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use prost::Message;
use serde_json::json;
use support::Reply;
use support::json::{AggregateGateway as Setup, Answer, Asked, JsonBackend, MOBILE_KEY};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A test OTLP/HTTP receiver: a real HTTP server that takes every export, decoded.
struct Collector {
    server: JsonBackend,
}

impl Collector {
    async fn start() -> Collector {
        let server = JsonBackend::start().await;
        let accepted = Answer {
            status: 200,
            content_type: "application/x-protobuf",
            body: String::new(),
            delay: Duration::ZERO,
            fields: Vec::new(),
        };
        server.on("/v1/traces", accepted);
        Collector { server }
    }

    fn url(&self) -> String {
        format!("{}/v1/traces", self.server.url())
    }

    /// Every span received so far, with the service that sent it; each export checked
    /// to be an OTLP/HTTP protobuf POST.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut spans = Vec::new();
        for export in self.server.asked() {
            assert_eq!(export.method, http::Method::POST);
            assert_eq!(export.target, "/v1/traces");
            assert_eq!(
                export.headers["content-type"], "application/x-protobuf",
                "OTLP/HTTP protobuf"
            );
            let request = ExportTraceServiceRequest::decode(export.body.as_ref())
                .expect("an OTLP trace export");
            for resource in request.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
                    .unwrap_or_default();
                for scope in resource.scope_spans {
                    for span in scope.spans {
                        spans.push((service.clone(), span));
                    }
                }
            }
        }
        spans
    }

    /// The spans of trace `trace_id`, once `count` have arrived (within 10 s).
    async fn trace(&self, trace_id: &[u8], count: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans: Vec<Span> = self
                .spans()
                .into_iter()
                .map(|(_, span)| span)
                .filter(|span| span.trace_id == trace_id)
                .collect();
            if spans.len() >= count || Instant::now() > deadline {
                assert_eq!(spans.len(), count, "spans of the trace: {spans:#?}");
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// A span's attributes, as text.
fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(n) => n.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The `traceparent` a backend was sent, as (trace id, parent id, flags).
fn traceparent(asked: &Asked) -> (String, String, String) {
    let values: Vec<_> = asked.headers.get_all("traceparent").iter().collect();
    assert_eq!(values.len(), 1, "one traceparent: {:?}", asked.headers);
    let value = values[0].to_str().expect("ASCII");
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// The aggregate gateway exporting its spans to `endpoint` (it and its admin listener
/// up), its backends answering `/dashboard/7`'s calls and `/accounts/7`.
async fn start(endpoint: String) -> Setup {
    let setup = Setup::start(&[("OTLP_ENDPOINT", endpoint)], 2).await;
    setup.users.on(
        "/users/7",
        Answer::json(json!({"id": 7, "name": "Ada", "address": {"city": "London"}})),
    );
    setup.orders.on(
        "/orders",
        Answer::json(json!({"items": [{"id": 1}], "total": 7})),
    );
    setup
        .recs
        .on("/recs/7", Answer::json(json!([{"sku": "a"}])));
    setup
}

/// `/dashboard/7` with `headers` and the API key, answered 200.
async fn dashboard(setup: &Setup, headers: &[(&str, &str)]) -> Reply {
    let mut headers = headers.to_vec();
    headers.push(("x-api-key", MOBILE_KEY));
    let reply = setup.get("/dashboard/7", &headers).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
}

/// A client's sampled trace is continued: one server span whose parent is the
/// client's, one client span per backend call whose parent is the server span, and
/// each backend sent a `traceparent` naming its client span, with the `tracestate`.
#[tokio::test]
async fn an_aggregate_joins_the_client_trace() {
    let collector = Collector::start().await;
    let setup = start(collector.url()).await;
    let parent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    dashboard(
        &setup,
        &[("traceparent", &parent), ("tracestate", "vendor=abc")],
    )
    .await;
    let spans = collector.trace(&unhex(TRACE_ID), 4).await;

    let server: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(server.len(), 1, "{spans:#?}");
    let server = server[0];
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(
        server.name, "GET /dashboard/{user_id}",
        "named by the route, not the path"
    );
    let attrs = attributes(server);
    assert_eq!(attrs["http.request.method"], "GET");
    assert_eq!(attrs["http.route"], "/dashboard/{user_id}");
    assert_eq!(attrs["url.path"], "/dashboard/7");
    assert_eq!(attrs["url.scheme"], "http");
    assert_eq!(attrs["http.response.status_code"], "200");
    assert_eq!(attrs["client.address"], "127.0.0.1");
    assert_eq!(attrs["server.address"], "127.0.0.1");
    assert_eq!(attrs["network.protocol.version"], "1.1");
    assert!(!attrs.contains_key("error.type"));
    assert!(
        server
            .status
            .as_ref()
            .is_none_or(|s| s.code == StatusCode::Unset as i32)
    );
    assert!(
        server.start_time_unix_nano > 0 && server.end_time_unix_nano >= server.start_time_unix_nano
    );

    let calls: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(calls.len(), 3, "one client span per backend call");
    for call in &calls {
        assert_eq!(call.parent_span_id, server.span_id);
        assert_eq!(call.name, "GET");
        assert!(call.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(call.end_time_unix_nano <= server.end_time_unix_nano);
        let attrs = attributes(call);
        assert_eq!(attrs["http.response.status_code"], "200");
        assert_eq!(attrs["server.address"], "127.0.0.1");
        assert!(
            attrs["url.full"].starts_with("http://127.0.0.1:"),
            "{attrs:?}"
        );
        assert!(!attrs["url.full"].contains('?'), "no query: {attrs:?}");
    }
    let mut upstreams: Vec<String> = calls
        .iter()
        .map(|c| attributes(c)["gateway.upstream"].clone())
        .collect();
    upstreams.sort();
    assert_eq!(upstreams, ["orders", "recs", "users"]);

    let call_ids: Vec<String> = calls.iter().map(|c| hex(&c.span_id)).collect();
    for backend in [&setup.users, &setup.orders, &setup.recs] {
        let asked = backend.asked();
        let (trace, parent, flags) = traceparent(&asked[0]);
        assert_eq!(trace, TRACE_ID);
        assert!(
            call_ids.contains(&parent),
            "{parent} is one of {call_ids:?}"
        );
        assert_eq!(flags, "01");
        assert_eq!(asked[0].headers["tracestate"], "vendor=abc");
    }
    let (services, _): (Vec<String>, Vec<Span>) = collector.spans().into_iter().unzip();
    assert!(
        services.iter().all(|s| s == "aggregate-gateway"),
        "{services:?}"
    );
    // The access log carries the trace id.
    let logged = setup.gateway.logs().into_iter().any(|line| {
        line.contains("gateway::access") && line.contains(&format!("trace_id={TRACE_ID}"))
    });
    assert!(logged, "{:#?}", setup.gateway.logs());
}

/// A malformed `traceparent` starts a new trace: the upstream gets a valid one with
/// another trace id and no `tracestate`, and the server span has no parent.
#[tokio::test]
async fn a_malformed_traceparent_is_replaced() {
    let collector = Collector::start().await;
    let setup = start(collector.url()).await;
    let bad = format!("00-{}-{CLIENT_SPAN}-01", TRACE_ID.to_uppercase());
    let reply = setup
        .get(
            "/accounts/7",
            &[("traceparent", bad.as_str()), ("tracestate", "vendor=abc")],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let asked = setup.users.asked();
    let (trace, parent, flags) = traceparent(&asked[0]);
    assert_ne!(trace.to_uppercase(), TRACE_ID.to_uppercase());
    assert_ne!(trace, "0".repeat(32));
    assert_ne!(parent, CLIENT_SPAN);
    assert_eq!(flags, "01", "sampled at the configured ratio of 1");
    assert!(
        asked[0].headers.get("tracestate").is_none(),
        "the bad parent's state is dropped"
    );

    let spans = collector.trace(&unhex(&trace), 2).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    assert!(
        server.parent_span_id.is_empty(),
        "a new trace has no parent"
    );
    assert_eq!(server.name, "GET /accounts/{user_id}");
    let client = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("client span");
    assert_eq!(hex(&client.span_id), parent);
    assert_eq!(
        attributes(client)["url.full"],
        format!("{}/users/7", setup.users.url())
    );
}

/// A parent that is not sampled is continued, flag and all, and nothing is recorded.
#[tokio::test]
async fn an_unsampled_parent_is_followed() {
    let collector = Collector::start().await;
    let setup = start(collector.url()).await;
    let unsampled = format!("00-{TRACE_ID}-{CLIENT_SPAN}-00");
    setup
        .get("/accounts/7", &[("traceparent", &unsampled)])
        .await;
    let (trace, parent, flags) = traceparent(&setup.users.asked()[0]);
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE_ID, "00"));
    assert_ne!(parent, CLIENT_SPAN, "the gateway's own span id");
    // A sampled request after it: once its spans are in, the first one's would be too.
    let other = "0af7651916cd43dd8448eb211c80319c";
    let sampled = format!("00-{other}-{CLIENT_SPAN}-01");
    setup.get("/accounts/7", &[("traceparent", &sampled)]).await;
    collector.trace(&unhex(other), 2).await;
    collector.trace(&unhex(TRACE_ID), 0).await;
}

/// Failures are error spans: a backend's 500 on the client span, and the gateway's
/// 502 on the server span.
#[tokio::test]
async fn failures_are_error_spans() {
    let collector = Collector::start().await;
    let setup = start(collector.url()).await;
    let broken = Answer {
        status: 500,
        content_type: "application/json",
        body: "{}".into(),
        delay: Duration::ZERO,
        fields: Vec::new(),
    };
    setup.orders.on("/broken/7", broken);
    let parent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let reply = setup
        .get(
            "/strict/7",
            &[("traceparent", &parent), ("x-api-key", MOBILE_KEY)],
        )
        .await;
    assert_eq!(reply.status, 502, "{}", reply.body);
    let spans = collector.trace(&unhex(TRACE_ID), 3).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    assert_eq!(
        server.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    assert_eq!(attributes(server)["error.type"], "502");
    let failed: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.status
                .as_ref()
                .is_some_and(|s| s.code == StatusCode::Error as i32)
        })
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(failed.len(), 1, "{spans:#?}");
    let attrs = attributes(failed[0]);
    assert_eq!(attrs["http.response.status_code"], "500");
    assert_eq!(attrs["error.type"], "500");
}

/// A collector that never takes the connection holds up no request: every one is
/// answered promptly, and the spans it misses are counted as dropped.
#[tokio::test]
async fn a_stalled_collector_loses_no_requests() {
    let (addr, _held, _socket) = support::stalled_listener();
    let setup = start(format!("http://{addr}/v1/traces")).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..600 {
        let asked = Instant::now();
        dashboard(&setup, &[]).await;
        slowest = slowest.max(asked.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest request {slowest:?}"
    );
    // The first batch fails when its connection attempt times out.
    let scrape = format!("http://{}/metrics", setup.gateway.addr("admin"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let count = |body: &str, series: &str| -> u64 {
        body.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in {body}"))
            .parse()
            .expect("a count")
    };
    loop {
        let metrics = support::get(&setup.client, &scrape).await.body;
        let failed = count(
            &metrics,
            "gateway_trace_spans_dropped_total{reason=\"export_failed\"}",
        );
        assert_eq!(count(&metrics, "gateway_trace_spans_exported_total"), 0);
        if failed > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed export counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let logged = setup
        .gateway
        .logs()
        .iter()
        .any(|line| line.contains("trace export failed"));
    assert!(logged, "{:#?}", setup.gateway.logs());
}
