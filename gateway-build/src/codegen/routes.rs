//! One function per route, running its chain as straight-line code: request-phase
//! steps in chain order, the target, then the response-phase steps in reverse order.
//! `handle` only picks the function; `refuse_method` runs a route's admission steps
//! (IP rules) before a 405.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use super::policies::{PolicyNames, static_header_ops};
use super::tables::route_id;
use crate::check::aggregate::PathStep;
use crate::plan::{
    AggregatePlan, BodyPlan, CallPiece, CallPlan, CallValue, Chain, HeadersPlan, PathChange, Plan,
    PolicyKind, RewriteSegment, RoutePlan, RulesPlan, Step, Target,
};

/// The route functions, as items of `impl Gateway`.
pub(super) fn functions(plan: &Plan, names: &PolicyNames, upstreams: &[Ident]) -> TokenStream {
    let functions = plan.routes.iter().enumerate().map(|(id, route)| {
        let function = format_ident!("route_{}", id);
        let doc = format!(
            " `{}`, {}: request phase, target, response phase.",
            route.name, route.place
        );
        let body = per_listener(route, |chain| {
            chain_body(plan, names, upstreams, route, chain)
        });
        let mutable = mutates_request(plan, route).then(|| quote!(mut));
        let params = if reads_params(plan, route) {
            quote!()
        } else {
            quote!(let _ = params;)
        };
        // Every target reads the trail; a route that no listener serves has none.
        let trail = if route.chains.is_empty() {
            quote!(let _ = trail;)
        } else {
            quote!()
        };
        quote! {
            #[doc = #doc]
            fn #function<'a>(
                &'a self,
                params: &'a rt::Params<'_, '_>,
                #mutable req: rt::Request,
                cx: &'a rt::RequestContext,
                trail: &'a mut rt::Trail,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<rt::Response, rt::Stop>,
            > + 'a {
                async move {
                    #params
                    #trail
                    #body
                }
            }
        }
    });
    quote!(#(#functions)*)
}

/// The route's body for each distinct chain, chosen by listener when they differ.
fn per_listener(route: &RoutePlan, body: impl Fn(&Chain) -> TokenStream) -> TokenStream {
    match route.chains.as_slice() {
        [] => quote!(::core::result::Result::Err(rt::Stop::no_route())),
        [only] => body(only),
        [first @ .., last] => {
            let arms = first.iter().map(|chain| {
                let listeners = (0..64)
                    .filter(|i| chain.listeners & (1u64 << i) != 0)
                    .map(Literal::usize_unsuffixed);
                let body = body(chain);
                quote!(#(#listeners)|* => { #body })
            });
            let last = body(last);
            quote! {
                match cx.listener_id {
                    #(#arms)*
                    _ => { #last }
                }
            }
        }
    }
}

fn chain_body(
    plan: &Plan,
    names: &PolicyNames,
    upstreams: &[Ident],
    route: &RoutePlan,
    chain: &Chain,
) -> TokenStream {
    let mut request = Vec::new();
    let mut response = Vec::new();
    for (i, step) in chain.steps.iter().enumerate() {
        // Whether a later step reads the identity: an authorization rule, or a
        // limit keyed by a consumer or a claim.
        let authorized_later = chain.steps[i + 1..].iter().any(|s| match s {
            Step::Authorize { .. } => true,
            Step::RateLimit { policy, .. } => limit_reads_identity(plan, *policy),
            _ => false,
        });
        let policy = step.policy();
        let item = &names.item[policy];
        let field = &names.field[policy];
        let name = &plan.policies[policy].name;
        match step {
            Step::Admission { bit, .. } => {
                let bit = Literal::u32_unsuffixed(*bit);
                request.push(quote!(cx.admission.check(#bit, #name)?;));
            }
            Step::Ip { .. } => request.push(quote!(#item.check(&req, cx)?;)),
            Step::ClientCert { .. } => request.push(quote!(#item.check(cx)?;)),
            Step::Authenticate { .. } => {
                let identity = match &plan.policies[policy].kind {
                    PolicyKind::AnyOf(members) => {
                        let tries = members.iter().map(|&member| {
                            let field = &names.field[member];
                            let identity = identity_of(plan, names, upstreams, member);
                            quote!(if self.shared.#field.presents(&req) { #identity } else)
                        });
                        let challenge = members
                            .iter()
                            .map(|&m| match plan.policies[m].kind {
                                PolicyKind::Jwt(_) | PolicyKind::Introspection(_) => "Bearer",
                                _ => "ApiKey",
                            })
                            .fold(Vec::new(), |mut schemes, scheme| {
                                if !schemes.contains(&scheme) {
                                    schemes.push(scheme);
                                }
                                schemes
                            })
                            .join(", ");
                        quote! {
                            #(#tries)* {
                                return ::core::result::Result::Err(rt::no_credentials(#name, #challenge));
                            }
                        }
                    }
                    _ => identity_of(plan, names, upstreams, policy),
                };
                // Noted for the log; borrowed back by an authorization step after it.
                request.push(if authorized_later {
                    quote!(let identity: &rt::Identity = trail.identity.insert(#identity);)
                } else {
                    quote!(trail.identity = ::core::option::Option::Some(#identity);)
                });
            }
            Step::Authorize { .. } => request.push(quote!(#item.check(identity)?;)),
            Step::Concurrency { bucket, .. } => {
                let limiter = format_ident!("limit_{}", bucket);
                let place = format_ident!("place_{}", i);
                request.push(quote!(let #place = self.shared.#limiter.acquire().await?;));
                response.push(quote!(response.hold(#place);));
            }
            Step::RateLimit { bucket, param, .. } => {
                // A quota always checks in Redis, and always writes its fields.
                let (shared, headers) = match &plan.policies[policy].kind {
                    PolicyKind::RateLimit(limit) => (limit.store.is_some(), limit.headers),
                    PolicyKind::Quota(_) => (true, true),
                    _ => continue,
                };
                let limiter = format_ident!("limit_{}", bucket);
                let param = match param {
                    Some(p) => {
                        let key = format!("p{p}");
                        quote!(params.get(#key))
                    }
                    None => quote!(::core::option::Option::None),
                };
                let identity = if limit_reads_identity(plan, policy) {
                    quote!(::core::option::Option::Some(identity))
                } else {
                    quote!(::core::option::Option::None)
                };
                let key = quote!(#item.key.of(&req, cx, #param, #identity));
                let check = if shared {
                    quote!(self.shared.#limiter.check(#key).await?)
                } else {
                    quote!(self.shared.#limiter.check(#key)?)
                };
                if headers {
                    let admission = format_ident!("admission_{}", i);
                    request.push(quote!(let #admission = #check;));
                    response.push(quote!(self.shared.#limiter.respond(#admission, &mut response);));
                } else {
                    request.push(quote!(#check;));
                }
            }
            Step::ExtAuthz { .. } => {
                let PolicyKind::ExtAuthz(authz) = &plan.policies[policy].kind else {
                    continue;
                };
                let service = &upstreams[authz.upstream];
                request
                    .push(quote!(#item.check(&self.#service, &mut req, cx, trail.trace).await?;));
            }
            Step::Headers { params, .. } => {
                let PolicyKind::Headers(rules) = &plan.policies[policy].kind else {
                    continue;
                };
                if rules.is_static() {
                    if !rules.request.is_empty() {
                        request.push(static_header_ops(&rules.request, quote!(req.fields)));
                    }
                    if !rules.response.is_empty() {
                        let fields = quote!(response.fields_mut());
                        response.push(static_header_ops(&rules.response, fields));
                    }
                    continue;
                }
                // Router keys of the parameters the values read (`p0`, …).
                let keys = params.iter().map(|p| format!("p{p}"));
                let call = quote!(self.shared.#field.request(&mut req, params, &[#(#keys),*], cx));
                if rules.response.is_empty() {
                    request.push(quote!(#call;));
                } else {
                    let token = format_ident!("token_{}", i);
                    request.push(quote!(let #token = #call;));
                    response.push(quote!(self.shared.#field.respond(#token, &mut response);));
                }
            }
        }
    }
    response.reverse();
    // Body rules: the request's after every request step (which may refuse it before
    // its body is read), the response's before the response steps.
    if let Some(body) = &route.request_body {
        let rules = body_rules(&format_ident!("REQUEST_BODY"), route, body);
        request.push(quote! {
            #rules
            rt::shape_request(&mut req, &REQUEST_BODY).await?;
        });
    }
    let target = target(plan, upstreams, route, chain);
    let target = match &route.response_body {
        Some(body) => {
            let rules = body_rules(&format_ident!("RESPONSE_BODY"), route, body);
            // The target takes the request: what the rule needs of it is read first,
            // and the upstream is asked for an answer the rule can read.
            request.push(quote! {
                let head_request = req.method == rt::Method::HEAD;
                rt::ask_uncoded(&mut req);
            });
            quote! {{
                #rules
                rt::shape_response(#target, &RESPONSE_BODY, head_request).await?
            }}
        }
        None => target,
    };
    let mutable = (!response.is_empty()).then(|| quote!(mut));
    quote! {
        #(#request)*
        let #mutable response = #target;
        #(#response)*
        ::core::result::Result::Ok(response)
    }
}

/// Whether a rate limit's or quota's key reads the identity an authentication step
/// established.
fn limit_reads_identity(plan: &Plan, policy: usize) -> bool {
    match &plan.policies[policy].kind {
        PolicyKind::RateLimit(limit) => limit.key.needs_identity(),
        PolicyKind::Quota(quota) => quota.key.needs_identity(),
        _ => false,
    }
}

/// The identity an authentication policy establishes on `req`, or its stop.
fn identity_of(
    plan: &Plan,
    names: &PolicyNames,
    upstreams: &[Ident],
    policy: usize,
) -> TokenStream {
    let field = &names.field[policy];
    match &plan.policies[policy].kind {
        PolicyKind::Jwt(_) => {
            let cache = &names.cache[policy];
            quote!(rt::Identity::Token(self.shared.#field.authenticate(&mut req, &self.#cache)?))
        }
        PolicyKind::Introspection(i) => {
            let cache = &names.cache[policy];
            let server = &upstreams[i.upstream];
            quote! {
                rt::Identity::Introspected(
                    self.shared.#field.authenticate(&mut req, &self.#cache, &self.#server, cx, trail.trace).await?,
                )
            }
        }
        _ => quote!(rt::Identity::Consumer(self.shared.#field.authenticate(&mut req)?)),
    }
}

/// The target phase: the one place that matches on what a route's target is.
fn target(plan: &Plan, upstreams: &[Ident], route: &RoutePlan, chain: &Chain) -> TokenStream {
    match &route.target {
        Target::Upstream { upstream, path } => {
            let field = &upstreams[*upstream];
            let name = &plan.upstreams[*upstream].name;
            let path = path_change(path);
            let max_body = match route.max_body {
                Some(limit) => quote!(cx.max_body.min(#limit)),
                None => quote!(cx.max_body),
            };
            let forward = quote! {
                self.#field
                    .forward(req, path, cx, #max_body, trail)
                    .await
                    .map_err(|error| rt::Stop::upstream(#name, error))?
            };
            // An upstream's concurrency limit: a place before the call, held by the
            // response until it has been sent.
            if plan.upstreams[*upstream].concurrency.is_some() {
                let limiter = format_ident!("upstream_limit_{}", upstream);
                quote! {{
                    let path = #path;
                    let place = self.shared.#limiter.acquire().await?;
                    let mut response = #forward;
                    response.hold(place);
                    response
                }}
            } else {
                quote! {{
                    let path = #path;
                    #forward
                }}
            }
        }
        Target::Aggregate(spec) => aggregate(plan, upstreams, route, chain, spec),
    }
}

/// An aggregate target: its calls as statics of the block, their futures joined (a
/// fixed number, each concrete), the answers merged.
fn aggregate(
    plan: &Plan,
    upstreams: &[Ident],
    route: &RoutePlan,
    chain: &Chain,
    spec: &AggregatePlan,
) -> TokenStream {
    let identity = super::identity_headers(plan);
    let calls = spec.calls.iter().map(|call| {
        let CallPlan {
            key,
            method,
            timeout,
            required,
            fallback,
            ..
        } = call;
        let upstream = &plan.upstreams[call.upstream].name;
        let path = pieces(&call.path, call);
        let body = match &call.body {
            Some(body) => {
                let body = pieces(body, call);
                quote!(::core::option::Option::Some(&[#(#body),*]))
            }
            None => quote!(::core::option::Option::None),
        };
        let mut forward: Vec<&str> = call.headers.iter().map(String::as_str).collect();
        forward.extend(identity.iter().map(String::as_str));
        forward.sort_unstable();
        forward.dedup();
        let max_body = Literal::usize_unsuffixed(call.max_body as usize);
        let rules = field_rules(&call.rules);
        quote! {
            rt::CallSpec {
                key: #key,
                upstream: #upstream,
                method: #method,
                path: &[#(#path),*],
                body: #body,
                forward: &[#(#forward),*],
                timeout: ::core::time::Duration::from_millis(#timeout),
                max_body: #max_body,
                required: #required,
                fallback: #fallback,
                rules: #rules,
            }
        }
    });
    let count = Literal::usize_unsuffixed(spec.calls.len());
    let answers: Vec<Ident> = (0..spec.calls.len())
        .map(|i| format_ident!("answer_{}", i))
        .collect();
    // Each stage's calls are joined; a later stage borrows the answers it needs.
    // `join!` keeps its futures in locals, so the answers a call needs are bound
    // before it, not borrowed from a temporary.
    let stages = spec.stages.iter().map(|stage| {
        let needs = stage
            .iter()
            .filter(|&&i| !spec.calls[i].needs.is_empty())
            .map(|&i| {
                let slots = spec.calls[i].needs.iter().map(|&n| &answers[n]);
                let name = format_ident!("needs_{}", i);
                quote!(let #name = [#(&#slots),*];)
            });
        let futures = stage.iter().map(|&i| {
            let call = &spec.calls[i];
            let upstream = &upstreams[call.upstream];
            let needs = if call.needs.is_empty() {
                quote!(&[])
            } else {
                let name = format_ident!("needs_{}", i);
                quote!(&#name)
            };
            let i = Literal::usize_unsuffixed(i);
            quote!(rt::aggregate_call(&self.#upstream, &CALLS[#i], &req, params, #needs, cx, trail.trace))
        });
        let bound = stage.iter().map(|&i| &answers[i]);
        quote! {
            #(#needs)*
            let (#(#bound,)*) = rt::join!(#(#futures),*);
        }
    });
    let merge = if spec.flat {
        quote!(rt::Merge::Flat)
    } else {
        quote!(rt::Merge::Nested)
    };
    let (private, vary) = whose(plan, chain, spec);
    let query_in_paths = query_in_paths(spec);
    let vary = match vary {
        Some(vary) => quote!(::core::option::Option::Some(#vary)),
        None => quote!(::core::option::Option::None),
    };
    let name = &route.name;
    quote! {{
        static CALLS: [rt::CallSpec; #count] = [#(#calls),*];
        static AGGREGATE: rt::AggregateSpec = rt::AggregateSpec {
            route: #name,
            merge: #merge,
            calls: &CALLS,
            private: #private,
            vary: #vary,
            query_in_paths: &[#(#query_in_paths),*],
        };
        rt::aggregate_admit(&AGGREGATE, &mut req)?;
        #(#stages)*
        rt::aggregate_respond(&AGGREGATE, [#(#answers),*])?
    }}
}

/// Whether an aggregate's response is the client's own (no shared cache may store
/// it), and its `Vary`. It is the client's own when the chain establishes who the
/// client is, its listener verifies client certificates (whose identity fields every
/// call gets), or a call passes on the client's credentials; it varies with every
/// client field a call passes on.
fn whose(plan: &Plan, chain: &Chain, spec: &AggregatePlan) -> (bool, Option<String>) {
    let mut passed: Vec<&str> = spec
        .calls
        .iter()
        .flat_map(|call| &call.headers)
        .map(String::as_str)
        .collect();
    passed.sort_unstable();
    passed.dedup();
    let authenticates = chain.steps.iter().any(|step| {
        matches!(
            step,
            Step::Authenticate { .. } | Step::ExtAuthz { .. } | Step::ClientCert { .. }
        )
    });
    let client_certificates = plan.listeners.iter().enumerate().any(|(i, listener)| {
        chain.listeners & (1u64 << i) != 0
            && listener
                .tls
                .as_ref()
                .is_some_and(|tls| tls.client_auth.is_some())
    });
    let credentials = passed
        .iter()
        .any(|&name| name == "authorization" || name == "cookie");
    let vary = (!passed.is_empty()).then(|| passed.join(", "));
    (authenticates || client_certificates || credentials, vary)
}

/// The query parameters some call puts before the `?` of its target, which a request
/// must give as one whole path segment each (`rt::aggregate_admit`).
fn query_in_paths(spec: &AggregatePlan) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for call in &spec.calls {
        for piece in &call.path {
            match piece {
                CallPiece::Text(text) if text.contains('?') => break,
                CallPiece::Value(CallValue::Query(name)) => names.push(name),
                _ => {}
            }
        }
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// Field rules, as the runtime's.
fn field_rules(rules: &RulesPlan) -> TokenStream {
    let [fields, deny] = [&rules.fields, &rules.deny].map(|paths| {
        let paths = paths.iter().map(|steps| field_path(steps));
        quote!(&[#(#paths),*])
    });
    let target = field_path(&rules.target);
    let renames = rules.rename.iter().map(|(path, to)| {
        let path = field_path(path);
        quote!((#path, #to))
    });
    let flatten = rules.flatten;
    let group = match &rules.group {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };
    quote! {
        rt::FieldRules {
            target: #target,
            fields: #fields,
            deny: #deny,
            rename: &[#(#renames),*],
            flatten: #flatten,
            group: #group,
        }
    }
}

/// A route's rules on one direction's body, as a static of the route's block.
fn body_rules(name: &Ident, route: &RoutePlan, body: &BodyPlan) -> TokenStream {
    let rules = field_rules(&body.rules);
    let max_body = Literal::usize_unsuffixed(body.max_body as usize);
    let route = &route.name;
    quote! {
        static #name: rt::BodyRules = rt::BodyRules {
            route: #route,
            rules: #rules,
            max_body: #max_body,
        };
    }
}

/// A field path, as the runtime's steps.
fn field_path(steps: &[PathStep]) -> TokenStream {
    let steps = steps.iter().map(|step| match step {
        PathStep::Key(key) => quote!(rt::FieldStep::Key(#key)),
        PathStep::Each => quote!(rt::FieldStep::Each),
        PathStep::Index(i) => {
            let i = Literal::usize_unsuffixed(*i);
            quote!(rt::FieldStep::Index(#i))
        }
    });
    quote!(&[#(#steps),*])
}

/// A rewrite template's segments, as the runtime's `RewriteSegment`s.
fn segments(segments: &[RewriteSegment]) -> Vec<TokenStream> {
    segments
        .iter()
        .map(|s| match s {
            RewriteSegment::Literal(text) => quote!(rt::RewriteSegment::Literal(#text)),
            RewriteSegment::Param(i) => {
                let i = Literal::usize_unsuffixed(*i);
                quote!(rt::RewriteSegment::Param(#i))
            }
            RewriteSegment::QueryParam(i) => {
                let i = Literal::usize_unsuffixed(*i);
                quote!(rt::RewriteSegment::QueryParam(#i))
            }
        })
        .collect()
}

/// A call template's pieces, as the runtime's; an answer's slot is its place in
/// the call's `needs`.
fn pieces(pieces: &[CallPiece], call: &CallPlan) -> Vec<TokenStream> {
    let source = |value: &CallValue| match value {
        CallValue::Param(i) => {
            let i = Literal::usize_unsuffixed(*i);
            quote!(rt::CallSource::Param(#i))
        }
        CallValue::Query(name) => quote!(rt::CallSource::Query(#name)),
        CallValue::Answer {
            call: from,
            path,
            text,
        } => {
            let slot = call.needs.iter().position(|n| n == from).unwrap_or(0);
            let slot = Literal::usize_unsuffixed(slot);
            let key = text.split('.').next().unwrap_or(text);
            let path = field_path(path);
            quote!(rt::CallSource::Answer { slot: #slot, key: #key, path: #path, text: #text })
        }
    };
    pieces
        .iter()
        .map(|piece| match piece {
            CallPiece::Text(text) => quote!(rt::CallPiece::Text(#text)),
            CallPiece::Value(value) => {
                let value = source(value);
                quote!(rt::CallPiece::Value(#value))
            }
            CallPiece::Json(value) => {
                let value = source(value);
                quote!(rt::CallPiece::Json(#value))
            }
        })
        .collect()
}

fn path_change(path: &PathChange) -> TokenStream {
    match path {
        PathChange::Keep => quote!(::core::option::Option::None),
        PathChange::StripPrefix(prefix) => changed(quote!(rt::strip_prefix(&req.uri, #prefix))),
        PathChange::Rewrite(template) => {
            let segments = segments(template);
            changed(quote!(rt::rewrite(&req.uri, &[#(#segments),*], params)))
        }
    }
}

/// A changed path that is not a valid request target fails closed (`rt::changed_path`),
/// never falling back to the path as received.
fn changed(path: TokenStream) -> TokenStream {
    quote!(rt::changed_path(#path)?)
}

/// The header rules of the policies a route runs.
fn header_rules<'p>(plan: &'p Plan, route: &'p RoutePlan) -> impl Iterator<Item = &'p HeadersPlan> {
    route.chains.iter().flat_map(|c| &c.steps).filter_map(|s| {
        match &plan.policies[s.policy()].kind {
            PolicyKind::Headers(rules) => Some(rules),
            _ => None,
        }
    })
}

/// Whether the route's code changes the request (so it binds it `mut`).
fn mutates_request(plan: &Plan, route: &RoutePlan) -> bool {
    header_rules(plan, route).any(|rules| !rules.is_static() || !rules.request.is_empty())
        || route
            .chains
            .iter()
            .flat_map(|c| &c.steps)
            .any(|s| matches!(s, Step::Authenticate { .. } | Step::ExtAuthz { .. }))
        || route.request_body.is_some()
        || matches!(route.target, Target::Aggregate(_))
}

/// Whether the route's code reads the route parameters.
fn reads_params(plan: &Plan, route: &RoutePlan) -> bool {
    matches!(route.target.path_change(), Some(PathChange::Rewrite(_)))
        || matches!(route.target, Target::Aggregate(_))
        || header_rules(plan, route).any(|rules| !rules.is_static())
}

/// `RouteFuture`: one variant per route holding that route's future, so that
/// `handle` picks a route without an `async` block of its own. Such a block would keep
/// the request it passes on as a captured value beside the route's future, which holds
/// it again: one more copy of the request in every request's future.
pub(super) fn route_future(plan: &Plan) -> TokenStream {
    if plan.routes.is_empty() {
        return quote!();
    }
    let params: Vec<Ident> = (0..plan.routes.len())
        .map(|id| format_ident!("F{}", id))
        .collect();
    let variants: Vec<Ident> = (0..plan.routes.len())
        .map(|id| format_ident!("Route{}", id))
        .collect();
    quote! {
        rt::pin_project! {
            /// The future of the route `handle` picked.
            #[project = RouteFutureProjection]
            pub enum RouteFuture<#(#params),*> {
                #(#variants { #[pin] future: #params },)*
                NoRoute,
            }
        }

        impl<#(#params),*> ::core::future::Future for RouteFuture<#(#params),*>
        where
            #(#params: ::core::future::Future<
                Output = ::core::result::Result<rt::Response, rt::Stop>,
            >,)*
        {
            type Output = ::core::result::Result<rt::Response, rt::Stop>;

            fn poll(
                self: ::core::pin::Pin<&mut Self>,
                context: &mut ::core::task::Context<'_>,
            ) -> ::core::task::Poll<Self::Output> {
                match self.project() {
                    #(RouteFutureProjection::#variants { future } => future.poll(context),)*
                    RouteFutureProjection::NoRoute => {
                        ::core::task::Poll::Ready(::core::result::Result::Err(rt::Stop::no_route()))
                    }
                }
            }
        }
    }
}

/// `Gateway::handle`: the route's function, by id.
pub(super) fn handle(plan: &Plan) -> TokenStream {
    let body = if plan.routes.is_empty() {
        quote! {
            let _ = (route, params, req, cx, trail);
            ::core::future::ready(::core::result::Result::Err(rt::Stop::no_route()))
        }
    } else {
        let arms = (0..plan.routes.len()).map(|id| {
            let ident = route_id(id);
            let function = format_ident!("route_{}", id);
            let variant = format_ident!("Route{}", id);
            quote!(#ident => RouteFuture::#variant { future: self.#function(params, req, cx, trail) },)
        });
        quote! {
            match route {
                #(#arms)*
                _ => RouteFuture::NoRoute,
            }
        }
    };
    quote! {
        fn handle<'a>(
            &'a self,
            route: usize,
            params: &'a rt::Params<'_, '_>,
            req: rt::Request,
            cx: &'a rt::RequestContext,
            trail: &'a mut rt::Trail,
        ) -> impl ::core::future::Future<
            Output = ::core::result::Result<rt::Response, rt::Stop>,
        > + 'a {
            #body
        }
    }
}

/// `Gateway::refuse_method`: a route's IP rules, then 405.
pub(super) fn refuse_method(plan: &Plan, names: &PolicyNames) -> TokenStream {
    let arms: Vec<TokenStream> = plan
        .routes
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.chains.iter().flat_map(|c| &c.steps).any(|s| {
                matches!(
                    s,
                    Step::Admission { .. } | Step::Ip { .. } | Step::ClientCert { .. }
                )
            })
        })
        .map(|(id, route)| {
            let ident = route_id(id);
            let body = per_listener(route, |chain| {
                let checks = chain.steps.iter().filter_map(|step| {
                    let name = &plan.policies[step.policy()].name;
                    let item = &names.item[step.policy()];
                    match step {
                        Step::Admission { bit, .. } => {
                            let bit = Literal::u32_unsuffixed(*bit);
                            Some(quote! {
                                if let ::core::result::Result::Err(stop) = cx.admission.check(#bit, #name) {
                                    return stop;
                                }
                            })
                        }
                        Step::Ip { .. } => Some(quote! {
                            if let ::core::result::Result::Err(stop) = #item.check(req, cx) {
                                return stop;
                            }
                        }),
                        Step::ClientCert { .. } => Some(quote! {
                            if let ::core::result::Result::Err(stop) = #item.check(cx) {
                                return stop;
                            }
                        }),
                        // Credentials are checked only on requests a route takes.
                        Step::Headers { .. }
                        | Step::Authenticate { .. }
                        | Step::Authorize { .. }
                        | Step::ExtAuthz { .. }
                        | Step::RateLimit { .. }
                        | Step::Concurrency { .. } => None,
                    }
                });
                quote!(#(#checks)*)
            });
            quote!(#ident => { #body })
        })
        .collect();
    let body = if arms.is_empty() {
        quote!(let _ = (route, req, cx);)
    } else {
        // Client-certificate rules read only the connection.
        quote! {
            let _ = req;
            match route {
                #(#arms)*
                _ => {}
            }
        }
    };
    quote! {
        fn refuse_method(
            &self,
            route: usize,
            req: &rt::Request,
            cx: &rt::RequestContext,
            allowed: rt::MethodSet,
        ) -> rt::Stop {
            #body
            rt::Stop::MethodNotAllowed(allowed)
        }
    }
}

#[cfg(test)]
mod tests {
    /// The generated aggregate of a configuration with one aggregate route, `route`
    /// (its keys after `path`), on `listener`.
    fn aggregate(listener: &str, route: &str, headers: &str) -> String {
        let source = format!(
            r#"
[listeners.public]
bind = "127.0.0.1:8080"
{listener}

[upstreams.users]
targets = ["http://127.0.0.1:9000"]

[policies.keys]
api_key = {{ header = "X-API-Key" }}

[consumers.app]
keys = ["${{env:KEY}}"]

[[routes]]
path = "/d/{{id}}"
{route}

[[routes.aggregate]]
key = "user"
upstream = "users"
path = "/users/{{id}}"
headers = {headers}
"#
        );
        let output = crate::generate("gateway.toml", &source)
            .unwrap_or_else(|d| panic!("{}", d.render(false)));
        let at = output.source.find("private:").expect("an aggregate");
        let fields = &output.source[at..];
        let end = fields
            .find("vary:")
            .and_then(|v| fields[v..].find(',').map(|c| v + c + 1));
        fields[..end.expect("a vary field")]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// An aggregate response is the client's own where the chain knows who the client
    /// is, its listener verifies client certificates, or a call passes on the client's
    /// credentials; it varies with the client fields the calls pass on.
    #[test]
    fn aggregate_responses_say_whose_they_are() {
        let tls = "[listeners.public.tls]\ncert = \"${file:c.pem}\"\nkey = \"${file:k.pem}\"";
        let mtls = format!("{tls}\nclient_auth = {{ ca = \"${{file:ca.pem}}\" }}");
        let none = "::core::option::Option::None";
        let language = "::core::option::Option::Some(\"accept-language\")";
        for (listener, route, headers, private, vary) in [
            ("", "public = true", "[]", false, none),
            (
                "",
                "public = true",
                "[\"Accept-Language\"]",
                false,
                language,
            ),
            (tls, "public = true", "[]", false, none),
            (&mtls, "public = true", "[]", true, none),
            ("", "policies = [\"keys\"]", "[]", true, none),
            (
                "",
                "public = true",
                "[\"Cookie\"]",
                true,
                "::core::option::Option::Some(\"cookie\")",
            ),
        ] {
            assert_eq!(
                aggregate(listener, route, headers),
                format!("private: {private}, vary: {vary},"),
                "{listener} {route} {headers}"
            );
        }
    }
}
