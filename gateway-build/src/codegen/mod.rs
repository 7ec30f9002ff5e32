//! Rust source from a `Plan`: one struct with a field per upstream and the shared
//! state, one function per route running its chain (`routes`), the policies as
//! constants and start-up specs (`policies`), and the route table and settings as
//! constants (`tables`). Everything reaches the runtime through
//! `::gateway_runtime::__private`.

mod policies;
mod routes;
mod tables;

use proc_macro2::TokenStream;
use quote::quote;

use crate::plan::{Plan, PolicyKind};

/// Every field an identity step sets, lower case, sorted: the driver removes them from
/// every client request.
pub(super) fn identity_headers(plan: &Plan) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for policy in &plan.policies {
        match &policy.kind {
            PolicyKind::Jwt(jwt) => names.extend(jwt.forward_claims.iter().map(|(_, h)| h.clone())),
            PolicyKind::ApiKey { .. } => {
                names.push(gateway_runtime::auth::CONSUMER_HEADER.to_owned())
            }
            PolicyKind::ExtAuthz(authz) => names.extend(authz.response_headers.iter().cloned()),
            PolicyKind::Introspection(i) => {
                names.extend(i.forward_claims.iter().map(|(_, h)| h.clone()))
            }
            _ => {}
        }
    }
    for listener in &plan.listeners {
        if let Some(auth) = listener.tls.as_ref().and_then(|t| t.client_auth.as_ref()) {
            names.extend(
                [
                    &auth.subject_header,
                    &auth.san_header,
                    &auth.fingerprint_header,
                ]
                .into_iter()
                .flatten()
                .cloned(),
            );
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The generated module as tokens.
pub fn tokens(plan: &Plan) -> TokenStream {
    let name = &plan.name;
    let doc = format!(" The gateway `{name}`, compiled from `{}`.", plan.file);
    let file = &plan.file;
    let sha = &plan.config_sha256;
    let compiler = concat!("gateway-build ", env!("CARGO_PKG_VERSION"));
    let mut kinds: Vec<&str> = plan.policies.iter().map(|p| p.kind.name()).collect();
    kinds.sort_unstable();
    kinds.dedup();

    let upstreams = tables::upstream_fields(plan);
    let upstream_fields = plan.upstreams.iter().zip(&upstreams).map(|(u, field)| {
        let doc = format!(" `[upstreams.{}]`, {}", u.name, u.place);
        quote! {
            #[doc = #doc]
            #field: rt::Upstream
        }
    });
    let constructors = upstreams.iter().enumerate().map(|(i, field)| {
        let i = proc_macro2::Literal::usize_unsuffixed(i);
        quote!(#field: rt::Upstream::new(&Self::UPSTREAMS[#i], metrics.upstream(#i))?)
    });
    // Only upstreams count in the worker's shard from here.
    let drop_metrics = upstreams.is_empty().then(|| quote!(let _ = metrics;));
    let names = policies::PolicyNames::new(plan);
    // Per-worker caches of verified credentials: (policy, cache type, size).
    let caches: Vec<(usize, TokenStream, usize)> = plan
        .policies
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.kind {
            PolicyKind::Jwt(jwt) => Some((i, quote!(rt::TokenCache), jwt.cache_size)),
            PolicyKind::Introspection(intro) => {
                Some((i, quote!(rt::IntrospectionCache), intro.cache_size))
            }
            _ => None,
        })
        .collect();
    let cache_fields = caches.iter().map(|(i, ty, _)| {
        let cache = &names.cache[*i];
        let doc = format!(
            " This worker's verified credentials of `[policies.{}]`.",
            plan.policies[*i].name
        );
        quote! {
            #[doc = #doc]
            #cache: #ty
        }
    });
    let cache_constructors = caches.iter().map(|(i, ty, size)| {
        let cache = &names.cache[*i];
        let size = proc_macro2::Literal::usize_unsuffixed(*size);
        quote!(#cache: #ty::new(#size))
    });
    let identity_headers = identity_headers(plan);
    // Policies resolved at start-up, and limits' state, live in `Shared`.
    let has_shared = plan.policies.iter().any(|p| policies::is_shared(&p.kind))
        || !plan.limit_buckets.is_empty()
        || plan.upstreams.iter().any(|u| u.concurrency.is_some());
    let (shared_field, keep_shared) = if has_shared {
        (quote!(shared: ::std::sync::Arc<Shared>,), quote!(shared,))
    } else {
        (quote!(), quote!())
    };
    let drop_shared = (!has_shared).then(|| quote!(let _ = shared;));
    let route_ids = tables::route_ids(plan);
    let constants = tables::constants(plan);
    let policy_items = policies::items(plan, &names);
    let (shared_struct, build_shared) = policies::shared(plan, &names);
    let connection = policies::connection(plan, &names);
    let route_functions = routes::functions(plan, &names, &upstreams);
    let handle = routes::handle(plan);
    let route_future = routes::route_future(plan);
    let refuse_method = routes::refuse_method(plan, &names);
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

            #route_ids

            #policy_items

            #shared_struct

            /// One field per upstream and per credential cache; one instance per worker
            /// thread.
            pub struct Gateway {
                #shared_field
                #(#upstream_fields,)*
                #(#cache_fields,)*
            }

            impl Gateway {
                #route_functions
            }

            #route_future

            impl rt::Gateway for Gateway {
                const NAME: &'static str = #name;
                const PROVENANCE: rt::Provenance = rt::Provenance {
                    config_file: #file,
                    config_sha256: #sha,
                    compiler: #compiler,
                    policies: &[#(#kinds),*],
                };
                #constants
                const IDENTITY_HEADERS: &'static [&'static str] = &[#(#identity_headers),*];

                type Shared = Shared;

                #build_shared

                fn new(
                    shared: ::std::sync::Arc<Shared>,
                    metrics: &'static rt::MetricsShard,
                ) -> ::core::result::Result<Self, rt::SettingError> {
                    #drop_shared
                    #drop_metrics
                    ::core::result::Result::Ok(Self {
                        #keep_shared
                        #(#constructors,)*
                        #(#cache_constructors,)*
                    })
                }

                #connection

                #handle

                #refuse_method
            }
        }
    }
}
