//! Rust source from a `Plan`: one struct with a field per upstream, one `match` over
//! route ids with each route's steps written out, and the route table as constants.
//! Everything reaches the runtime through `::gateway_runtime::__private`.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use crate::plan::{PathChange, Plan, RewriteSegment, SettingPlan, Target};

/// The generated module as tokens.
pub fn tokens(plan: &Plan) -> TokenStream {
    let name = &plan.name;
    let doc = format!(" The gateway `{name}`, compiled from `{}`.", plan.file);
    let workers = match &plan.workers {
        Some(workers) => {
            let workers = setting(workers);
            quote!(::core::option::Option::Some(#workers))
        }
        None => quote!(::core::option::Option::None),
    };
    let shutdown_timeout = setting(&plan.shutdown_timeout);
    let file = &plan.file;
    let sha = &plan.config_sha256;
    let compiler = concat!("gateway-build ", env!("CARGO_PKG_VERSION"));
    let admin = match &plan.admin {
        Some(bind) => {
            let bind = setting(bind);
            quote!(::core::option::Option::Some(#bind))
        }
        None => quote!(::core::option::Option::None),
    };
    let listeners = plan.listeners.iter().map(|l| {
        let name = &l.name;
        let bind = setting(&l.bind);
        let header_read = setting(&l.header_read_timeout);
        let max_body = match &l.max_body {
            Some(size) => {
                let size = setting(size);
                quote!(::core::option::Option::Some(#size))
            }
            None => quote!(::core::option::Option::None),
        };
        let max_header_size = setting(&l.max_header_size);
        let max_headers = Literal::usize_unsuffixed(l.max_headers);
        quote! {
            rt::ListenerSpec {
                name: #name,
                bind: #bind,
                header_read_timeout: #header_read,
                max_body: #max_body,
                max_header_size: #max_header_size,
                max_headers: #max_headers,
            }
        }
    });
    let field_names = upstream_fields(plan);
    let fields = plan.upstreams.iter().zip(&field_names).map(|(u, field)| {
        let doc = format!(" `[upstreams.{}]`, {}:{}", u.name, plan.file, u.line);
        quote! {
            #[doc = #doc]
            #field: rt::Upstream
        }
    });
    let upstream_specs = plan.upstreams.iter().map(|u| {
        let name = &u.name;
        let targets = u.targets.iter().map(setting);
        let connect = setting(&u.connect_timeout);
        let response = setting(&u.response_timeout);
        let idle = setting(&u.idle_timeout);
        quote! {
            rt::UpstreamSpec {
                name: #name,
                targets: &[#(#targets),*],
                connect_timeout: #connect,
                response_timeout: #response,
                idle_timeout: #idle,
            }
        }
    });
    let constructors = field_names.iter().enumerate().map(|(i, field)| {
        let i = Literal::usize_unsuffixed(i);
        quote!(#field: rt::Upstream::new(&Self::UPSTREAMS[#i])?)
    });
    let route_specs = plan.routes.iter().map(|r| {
        let name = &r.name;
        let host = match &r.host {
            Some(h) => quote!(::core::option::Option::Some(#h)),
            None => quote!(::core::option::Option::None),
        };
        let path = &r.canonical_path;
        let methods = Literal::u16_unsuffixed(r.methods.bits());
        let listeners = Literal::u64_unsuffixed(r.listeners);
        let Target::Upstream { upstream, .. } = &r.target;
        let upstream = &plan.upstreams[*upstream].name;
        quote! {
            rt::RouteSpec {
                name: #name,
                host: #host,
                path: #path,
                methods: rt::MethodSet::from_bits(#methods),
                listeners: #listeners,
                target: #upstream,
            }
        }
    });
    let route_ids = plan.routes.iter().enumerate().map(|(id, r)| {
        let ident = format_ident!("ROUTE_{}", id);
        let doc = format!(" `{}`, {}:{}", r.name, plan.file, r.line);
        let id = Literal::usize_unsuffixed(id);
        quote! {
            #[doc = #doc]
            const #ident: usize = #id;
        }
    });
    let arms = plan.routes.iter().enumerate().map(|(id, r)| {
        let Target::Upstream { upstream, path } = &r.target;
        let field = &field_names[*upstream];
        let ident = format_ident!("ROUTE_{}", id);
        let new_path = match path {
            PathChange::Keep => quote!(::core::option::Option::None),
            PathChange::StripPrefix(prefix) => quote!(rt::strip_prefix(&req.uri, #prefix)),
            PathChange::Rewrite(segments) => {
                let segments = segments.iter().map(|s| match s {
                    RewriteSegment::Literal(text) => quote!(rt::RewriteSegment::Literal(#text)),
                    RewriteSegment::Param(i) => {
                        let i = Literal::usize_unsuffixed(*i);
                        quote!(rt::RewriteSegment::Param(#i))
                    }
                    RewriteSegment::QueryParam(i) => {
                        let i = Literal::usize_unsuffixed(*i);
                        quote!(rt::RewriteSegment::QueryParam(#i))
                    }
                });
                quote!(rt::rewrite(&req.uri, &[#(#segments),*], params))
            }
        };
        quote! {
            #ident => (&self.#field, #new_path),
        }
    });
    let dispatch = if plan.routes.is_empty() {
        quote! {
            let _ = (route, params, req, cx);
            rt::no_route()
        }
    } else {
        quote! {
            let _ = params;
            // The arms only choose; the one `await` below keeps this future as large
            // as one forward, however many routes there are.
            let (upstream, path) = match route {
                #(#arms)*
                _ => return rt::no_route(),
            };
            upstream.forward(req, path, cx).await
        }
    };
    quote! {
        #[doc = #doc]
        #[allow(
            clippy::all,
            reason = "generated code: readable first, lint-clean in the crate it is included into is not its job"
        )]
        pub mod gateway {
            use ::gateway_runtime::__private as rt;

            /// Runs the gateway until SIGTERM or SIGINT, then drains in-flight requests.
            pub fn main() -> ::std::process::ExitCode {
                rt::main::<Gateway>()
            }

            #(#route_ids)*

            /// One field per upstream; one instance per worker thread.
            pub struct Gateway {
                #(#fields,)*
            }

            impl rt::Gateway for Gateway {
                const NAME: &'static str = #name;
                const PROVENANCE: rt::Provenance = rt::Provenance {
                    config_file: #file,
                    config_sha256: #sha,
                    compiler: #compiler,
                    policies: &[],
                };
                const WORKERS: ::core::option::Option<rt::Setting> = #workers;
                const SHUTDOWN_TIMEOUT: rt::Setting = #shutdown_timeout;
                const ADMIN: ::core::option::Option<rt::Setting> = #admin;
                const LISTENERS: &'static [rt::ListenerSpec] = &[#(#listeners),*];
                const UPSTREAMS: &'static [rt::UpstreamSpec] = &[#(#upstream_specs),*];
                const ROUTES: &'static [rt::RouteSpec<'static>] = &[#(#route_specs),*];

                fn new() -> ::core::result::Result<Self, rt::SettingError> {
                    ::core::result::Result::Ok(Self { #(#constructors,)* })
                }

                async fn handle(
                    &self,
                    route: usize,
                    params: &rt::Params<'_, '_>,
                    req: rt::Request,
                    cx: &rt::RequestContext,
                ) -> rt::Response {
                    #dispatch
                }
            }
        }
    }
}

fn setting(s: &SettingPlan) -> TokenStream {
    let origin = &s.origin;
    let raw = &s.raw;
    quote!(rt::Setting::new(#origin, #raw))
}

/// Field names for the upstreams: the TOML key with anything not valid in an
/// identifier replaced by `_`, and the index added where two keys would clash.
fn upstream_fields(plan: &Plan) -> Vec<proc_macro2::Ident> {
    let cleaned: Vec<String> = plan
        .upstreams
        .iter()
        .map(|u| {
            u.name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .collect();
    cleaned
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if cleaned.iter().filter(|other| *other == name).count() > 1 {
                format_ident!("upstream_{}_{}", name, i)
            } else {
                format_ident!("upstream_{}", name)
            }
        })
        .collect()
}
