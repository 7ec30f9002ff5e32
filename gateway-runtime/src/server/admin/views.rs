//! The admin listener's JSON: `/routes` (the compiled route table with each route's
//! policy chain), `/config` (the provenance) and `/status` (live counts, which the
//! dashboard turns into rates and quantiles from one poll to the next).

use std::time::Instant;

use serde_json::{Value, json};

use crate::observe::metrics::{Registry, exposition};
use crate::observe::series::{CLASSES, PROTOCOLS, UNMATCHED, UPSTREAM_FAULTS};
use crate::pipeline::gateway::{ListenerSpec, RouteInfo};
use crate::route::router::RouteSpec;

/// What the admin listener describes: the gateway's compiled tables and its metrics.
#[derive(Debug, Clone, Copy)]
pub struct Views {
    pub registry: &'static Registry,
    pub routes: &'static [RouteSpec<'static>],
    pub info: &'static [RouteInfo],
    pub listeners: &'static [ListenerSpec],
    pub started: Instant,
}

impl Views {
    /// `/routes`: one object per route, in route id order.
    pub fn routes(&self) -> Value {
        let routes: Vec<Value> = self
            .routes
            .iter()
            .zip(self.info)
            .map(|(route, info)| {
                let methods: Vec<&str> = if route.methods.is_any() {
                    vec!["*"]
                } else {
                    route.methods.names().collect()
                };
                let listeners: Vec<&str> = self
                    .listeners
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| route.listeners & (1 << i) != 0)
                    .map(|(_, listener)| listener.name)
                    .collect();
                json!({
                    "name": route.name,
                    "methods": methods,
                    "host": route.host,
                    "path": info.template,
                    "listeners": listeners,
                    "target": route.target,
                    "policies": info.policies,
                })
            })
            .collect();
        Value::Array(routes)
    }

    /// `/config`: what the binary was built from.
    pub fn config(&self) -> Value {
        let catalog = self.registry.catalog();
        let provenance = &catalog.provenance;
        json!({
            "gateway": catalog.gateway,
            "config_file": provenance.config_file,
            "config_sha256": provenance.config_sha256,
            "compiler": provenance.compiler,
            "policies": provenance.policies,
        })
    }

    /// `/status`: counts since start, summed over the workers.
    pub fn status(&self) -> Value {
        let registry = self.registry;
        let catalog = registry.catalog();
        // 5xx, the last class.
        let server_errors = CLASSES.len() - 1;
        let route = |slot: usize, name: &str| {
            let duration = registry.route_duration(slot);
            json!({
                "name": name,
                "requests": duration.count(),
                "server_errors": registry.requests_of_class(slot, server_errors),
                "buckets": duration.buckets,
                "sum_seconds": duration.sum_nanos as f64 / 1e9,
            })
        };
        let mut routes: Vec<Value> = catalog
            .routes
            .iter()
            .enumerate()
            .map(|(slot, name)| route(slot, name))
            .collect();
        routes.push(route(catalog.routes.len(), UNMATCHED));
        let upstreams: Vec<Value> = catalog
            .upstreams
            .iter()
            .enumerate()
            .map(|(id, upstream)| {
                let targets: Vec<Value> = catalog
                    .targets()
                    .filter(|(_, name, _)| *name == upstream.name)
                    .map(|(target_id, _, target)| {
                        let errors: u64 = (0..UPSTREAM_FAULTS.len())
                            .map(|fault| registry.upstream_faults(target_id, fault))
                            .sum();
                        let (open, idle) = registry.pool(target_id);
                        json!({ "target": target, "errors": errors, "open": open, "idle": idle })
                    })
                    .collect();
                json!({
                    "name": upstream.name,
                    "answered": registry.upstream_duration(id).count(),
                    "targets": targets,
                })
            })
            .collect();
        let connections: Vec<Value> = catalog
            .listeners
            .iter()
            .enumerate()
            .map(|(l, listener)| {
                let mut open = serde_json::Map::new();
                open.insert("listener".into(), json!(listener));
                for (p, protocol) in PROTOCOLS.iter().enumerate() {
                    open.insert((*protocol).into(), json!(registry.open_connections(l, p)));
                }
                Value::Object(open)
            })
            .collect();
        json!({
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "buckets": catalog.buckets.iter().map(|nanos| exposition::seconds(*nanos)).collect::<Vec<_>>(),
            "routes": routes,
            "upstreams": upstreams,
            "connections": connections,
        })
    }
}
