//! The quickstart: starts three demo backends on loopback, then the gateway compiled
//! from `gateway.toml` in front of them.

mod demo_backends;

include!(concat!(env!("OUT_DIR"), "/gateway.rs"));

fn main() -> std::process::ExitCode {
    demo_backends::start();
    println!(
        "quickstart: demo backends on 127.0.0.1:18001-18003; try\n  \
         curl -i http://127.0.0.1:8080/api/users/42   # X-Served-By; the backend got X-User-Id\n  \
         curl -i http://127.0.0.1:8080/v2/users/42\n  \
         curl -i http://127.0.0.1:8080/api/orders/7\n  \
         curl -i -X POST -d '{{\"item\":1}}' http://127.0.0.1:8080/api/orders\n  \
         curl -i -X DELETE http://127.0.0.1:8080/api/users/42   # 405\n  \
         curl -i http://127.0.0.1:9901/readyz\n  \
         curl -s http://127.0.0.1:9901/metrics   # Prometheus; the dashboard is http://127.0.0.1:9901/"
    );
    gateway::main()
}
