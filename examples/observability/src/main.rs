//! The observability example: the quickstart's demo backends, and a gateway that
//! serves Prometheus metrics, exports OpenTelemetry traces and writes JSON access logs.

#[path = "../../quickstart/src/demo_backends.rs"]
mod demo_backends;

include!(concat!(env!("OUT_DIR"), "/gateway.rs"));

fn main() -> std::process::ExitCode {
    demo_backends::start();
    println!(
        "observability: demo backends on 127.0.0.1:18001-18003; try\n  \
         curl -i http://127.0.0.1:8080/api/users/42   # X-Request-Id; a JSON log line on stderr\n  \
         curl -s http://127.0.0.1:9901/metrics        # Prometheus (prometheus.yml scrapes it)\n  \
         open http://127.0.0.1:9901/                  # the dashboard\n\
         traces go to $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (default http://127.0.0.1:4318/v1/traces)"
    );
    gateway::main()
}
