//! Policy instances: IP rules as constants (their blocks are known at build time),
//! header rules as static specs resolved once at start-up into the `Shared` state
//! (their values may read `${env:…}`), and the connection phase of each listener.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use super::tables::{identifiers, setting};
use crate::check::limits::KeySource;
use crate::plan::{
    AuthorizePlan, ConcurrencyPlan, ExtAuthzPlan, HeaderOpPlan, JwtKeyPlan, JwtPlan, Plan,
    PolicyKind, RateLimitPlan, RedisStorePlan, SourcePlan, ValuePlan,
};

/// How generated code names each policy.
pub(super) struct PolicyNames {
    /// `POLICY_OFFICE`: the constant or static holding the compiled policy.
    pub item: Vec<Ident>,
    /// `policy_office`: the field of `Shared` for policies resolved at start-up.
    pub field: Vec<Ident>,
    /// `cache_office`: a worker's cache of the credentials a policy verified.
    pub cache: Vec<Ident>,
}

impl PolicyNames {
    pub(super) fn new(plan: &Plan) -> Self {
        let field = identifiers("policy", plan.policies.iter().map(|p| p.name.as_str()));
        let item = field
            .iter()
            .map(|f| format_ident!("{}", f.to_string().to_uppercase()))
            .collect();
        let cache = identifiers("cache", plan.policies.iter().map(|p| p.name.as_str()));
        Self { item, field, cache }
    }
}

/// The policy constants and statics, at module level.
pub(super) fn items(plan: &Plan, names: &PolicyNames) -> TokenStream {
    let items = plan.policies.iter().enumerate().map(|(i, policy)| {
        let item = &names.item[i];
        let name = &policy.name;
        let doc = format!(" `[policies.{name}]`, {}", policy.place);
        match &policy.kind {
            PolicyKind::Ip {
                allow,
                deny,
                trusted_proxies,
            } => {
                let [allow, deny, trusted] = [allow, deny, trusted_proxies].map(|list| {
                    let blocks = list.iter().map(cidr);
                    quote!(&[#(#blocks),*])
                });
                quote! {
                    #[doc = #doc]
                    const #item: rt::IpRule = rt::IpRule {
                        name: #name,
                        allow: #allow,
                        deny: #deny,
                        trusted_proxies: #trusted,
                    };
                }
            }
            PolicyKind::ClientCert { san } => quote! {
                #[doc = #doc]
                const #item: rt::ClientCertRule = rt::ClientCertRule {
                    name: #name,
                    san: &[#(#san),*],
                };
            },
            PolicyKind::Concurrency(limit) => concurrency_spec(item, &doc, name, limit),
            PolicyKind::RateLimit(limit) => {
                let spec = rate_limit_spec(name, limit);
                let store = limit.store.as_ref().map(|redis| {
                    let store = format_ident!("{}_STORE", item);
                    let spec = redis_spec(redis);
                    quote! {
                        #[doc = #doc]
                        static #store: rt::RedisSpec = #spec;
                    }
                });
                quote! {
                    #[doc = #doc]
                    static #item: rt::RateLimitSpec = #spec;
                    #store
                }
            }
            PolicyKind::Quota(quota) => {
                let key = limit_key(&quota.key, &quota.trusted_proxies);
                let limit = quota.limit;
                let period = if quota.month {
                    quote!(rt::QuotaPeriod::Month)
                } else {
                    quote!(rt::QuotaPeriod::Day)
                };
                let window = match &quota.time_zone {
                    Some(zone) => quote!(rt::QuotaWindow::Calendar { time_zone: #zone }),
                    None => quote!(rt::QuotaWindow::Rolling),
                };
                let store = format_ident!("{}_STORE", item);
                let store_spec = redis_spec(&quota.store);
                quote! {
                    #[doc = #doc]
                    static #item: rt::QuotaSpec = rt::QuotaSpec {
                        name: #name,
                        limit: #limit,
                        period: #period,
                        window: #window,
                        key: #key,
                    };
                    #[doc = #doc]
                    static #store: rt::RedisSpec = #store_spec;
                }
            }
            PolicyKind::Jwt(jwt) => {
                let spec = jwt_spec(name, jwt);
                quote! {
                    #[doc = #doc]
                    static #item: rt::JwtSpec = #spec;
                }
            }
            PolicyKind::ApiKey { source } => {
                let source = credential_source(source);
                quote! {
                    #[doc = #doc]
                    static #item: rt::ApiKeySpec = rt::ApiKeySpec {
                        name: #name,
                        source: #source,
                        consumers: &CONSUMERS,
                    };
                }
            }
            PolicyKind::Authorize(rule) => {
                let AuthorizePlan {
                    scopes,
                    roles,
                    roles_claim,
                    claims,
                    groups,
                } = rule;
                let claims = claims.iter().map(|(claim, values)| {
                    quote!(rt::ClaimRule { claim: #claim, any_of: &[#(#values),*] })
                });
                quote! {
                    #[doc = #doc]
                    const #item: rt::AuthorizeRule = rt::AuthorizeRule {
                        name: #name,
                        scopes: &[#(#scopes),*],
                        roles: &[#(#roles),*],
                        roles_claim: #roles_claim,
                        claims: &[#(#claims),*],
                        groups: &[#(#groups),*],
                    };
                }
            }
            PolicyKind::Introspection(i) => {
                let path = &i.path;
                let id = setting(&i.client_id);
                let secret = setting(&i.client_secret);
                let [timeout, ttl, negative] = [i.timeout, i.cache_ttl, i.negative_ttl]
                    .map(|millis| quote!(::core::time::Duration::from_millis(#millis)));
                let cache_size = Literal::usize_unsuffixed(i.cache_size);
                let forward_token = i.forward_token;
                let claims = i.forward_claims.iter().map(
                    |(claim, header)| quote!(rt::ClaimHeader { claim: #claim, header: #header }),
                );
                quote! {
                    #[doc = #doc]
                    static #item: rt::IntrospectionSpec = rt::IntrospectionSpec {
                        name: #name,
                        path: #path,
                        client_id: #id,
                        client_secret: #secret,
                        timeout: #timeout,
                        cache_ttl: #ttl,
                        negative_ttl: #negative,
                        cache_size: #cache_size,
                        forward_token: #forward_token,
                        forward_claims: &[#(#claims),*],
                    };
                }
            }
            // Compiled into the routes' functions: each member, in order.
            PolicyKind::AnyOf(_) => quote!(),
            PolicyKind::ExtAuthz(authz) => {
                let ExtAuthzPlan {
                    path,
                    request_headers,
                    response_headers,
                    timeout_ms,
                    fail_open,
                    ..
                } = authz;
                quote! {
                    #[doc = #doc]
                    static #item: rt::ExtAuthzSpec = rt::ExtAuthzSpec {
                        name: #name,
                        path: #path,
                        request_headers: &[#(#request_headers),*],
                        response_headers: &[#(#response_headers),*],
                        timeout: ::core::time::Duration::from_millis(#timeout_ms),
                        fail_open: #fail_open,
                    };
                }
            }
            // Compiled into the routes' functions as direct operations.
            PolicyKind::Headers(headers) if headers.is_static() => quote!(),
            PolicyKind::Headers(headers) => {
                let request = headers.request.iter().map(header_op);
                let response = headers.response.iter().map(header_op);
                quote! {
                    #[doc = #doc]
                    static #item: rt::HeaderRulesSpec = rt::HeaderRulesSpec {
                        name: #name,
                        request: &[#(#request),*],
                        response: &[#(#response),*],
                    };
                }
            }
        }
    });
    let consumers = consumers(plan);
    quote!(#(#items)* #consumers)
}

/// `CONSUMERS`, which every API-key policy reads; only when one exists.
fn consumers(plan: &Plan) -> TokenStream {
    if !plan
        .policies
        .iter()
        .any(|p| matches!(p.kind, PolicyKind::ApiKey { .. }))
    {
        return quote!();
    }
    let count = Literal::usize_unsuffixed(plan.consumers.len());
    let consumers = plan.consumers.iter().map(|consumer| {
        let name = &consumer.name;
        let keys = consumer.keys.iter().map(setting);
        let groups = &consumer.groups;
        quote! {
            rt::ConsumerSpec {
                name: #name,
                keys: &[#(#keys),*],
                groups: &[#(#groups),*],
            }
        }
    });
    quote! {
        /// `[consumers.NAME]`: the clients of the API-key policies.
        static CONSUMERS: [rt::ConsumerSpec; #count] = [#(#consumers),*];
    }
}

fn jwt_spec(name: &str, jwt: &JwtPlan) -> TokenStream {
    let key = match &jwt.key {
        JwtKeyPlan::Secret(secret) => {
            let secret = setting(secret);
            quote!(rt::JwtKeySpec::Secret(#secret))
        }
        JwtKeyPlan::PublicKey(key) => {
            let key = setting(key);
            quote!(rt::JwtKeySpec::PublicKey(#key))
        }
        JwtKeyPlan::Jwks(jwks) => {
            let url = setting(&jwks.url);
            let ca = match &jwks.ca {
                Some(ca) => {
                    let ca = setting(ca);
                    quote!(::core::option::Option::Some(#ca))
                }
                None => quote!(::core::option::Option::None),
            };
            let duration = |millis: u64| quote!(::core::time::Duration::from_millis(#millis));
            let refresh = duration(jwks.refresh);
            let min_refresh = duration(jwks.min_refresh);
            let max_refresh = duration(jwks.max_refresh);
            let refetch = duration(jwks.unknown_kid_refetch);
            let timeout = duration(jwks.timeout);
            let degraded = jwks.start_degraded;
            quote! {
                rt::JwtKeySpec::Jwks(rt::JwksSpec {
                    url: #url,
                    tls: rt::UpstreamTlsSpec {
                        ca: #ca,
                        client_certificate: ::core::option::Option::None,
                        server_name: ::core::option::Option::None,
                    },
                    refresh: #refresh,
                    min_refresh: #min_refresh,
                    max_refresh: #max_refresh,
                    unknown_kid_refetch: #refetch,
                    timeout: #timeout,
                    start_degraded: #degraded,
                })
            }
        }
    };
    let algorithms = &jwt.algorithms;
    let issuer = match &jwt.issuer {
        Some(issuer) => quote!(::core::option::Option::Some(#issuer)),
        None => quote!(::core::option::Option::None),
    };
    let audiences = &jwt.audiences;
    let leeway = jwt.leeway_seconds;
    let required = &jwt.required_claims;
    let source = credential_source(&jwt.source);
    let max = Literal::usize_unsuffixed(jwt.max_token_size as usize);
    let forward_token = jwt.forward_token;
    let claims = jwt
        .forward_claims
        .iter()
        .map(|(claim, header)| quote!(rt::ClaimHeader { claim: #claim, header: #header }));
    let claims_read = &jwt.claims_read;
    let cache_size = Literal::usize_unsuffixed(jwt.cache_size);
    quote! {
        rt::JwtSpec {
            name: #name,
            key: #key,
            algorithms: &[#(#algorithms),*],
            issuer: #issuer,
            audiences: &[#(#audiences),*],
            leeway_seconds: #leeway,
            required_claims: &[#(#required),*],
            source: #source,
            max_token_size: #max,
            forward_token: #forward_token,
            forward_claims: &[#(#claims),*],
            claims_read: &[#(#claims_read),*],
            cache_size: #cache_size,
        }
    }
}

/// The static spec of a concurrency limit: a policy's, or an upstream's.
fn concurrency_spec(item: &Ident, doc: &str, name: &str, limit: &ConcurrencyPlan) -> TokenStream {
    let max = Literal::usize_unsuffixed(limit.max);
    let queue = Literal::usize_unsuffixed(limit.queue);
    let timeout = limit.queue_timeout;
    quote! {
        #[doc = #doc]
        static #item: rt::ConcurrencySpec = rt::ConcurrencySpec {
            name: #name,
            max: #max,
            queue: #queue,
            queue_timeout: ::core::time::Duration::from_millis(#timeout),
        };
    }
}

/// A rate limit's Redis store.
fn redis_spec(redis: &RedisStorePlan) -> TokenStream {
    let url = setting(&redis.url);
    let RedisStorePlan {
        cluster,
        timeout,
        fail_open,
        batch,
        ..
    } = redis;
    quote! {
        rt::RedisSpec {
            url: #url,
            cluster: #cluster,
            timeout: ::core::time::Duration::from_millis(#timeout),
            fail_open: #fail_open,
            batch: #batch,
        }
    }
}

/// Where a limit's or quota's key comes from.
fn limit_key(
    key: &KeySource,
    trusted_proxies: &[gateway_runtime::policy::ip::Cidr],
) -> TokenStream {
    let blocks = trusted_proxies.iter().map(cidr);
    let trusted = quote!(&[#(#blocks),*]);
    match key {
        KeySource::ClientIp => quote!(rt::LimitKey::ClientIp { trusted_proxies: #trusted }),
        KeySource::Route => quote!(rt::LimitKey::Route),
        KeySource::Consumer => quote!(rt::LimitKey::Consumer { trusted_proxies: #trusted }),
        KeySource::Claim(path) => {
            quote!(rt::LimitKey::Claim { path: #path, trusted_proxies: #trusted })
        }
        KeySource::Header(header) => {
            quote!(rt::LimitKey::Header { name: #header, trusted_proxies: #trusted })
        }
        KeySource::Param(_) => quote!(rt::LimitKey::Param { trusted_proxies: #trusted }),
    }
}

fn rate_limit_spec(name: &str, limit: &RateLimitPlan) -> TokenStream {
    let key = limit_key(&limit.key, &limit.trusted_proxies);
    let RateLimitPlan {
        count,
        period_seconds,
        burst,
        headers,
        ..
    } = limit;
    let max_keys = Literal::usize_unsuffixed(limit.max_keys);
    quote! {
        rt::RateLimitSpec {
            name: #name,
            count: #count,
            period_seconds: #period_seconds,
            burst: #burst,
            key: #key,
            max_keys: #max_keys,
            headers: #headers,
        }
    }
}

fn credential_source(source: &SourcePlan) -> TokenStream {
    match source {
        SourcePlan::Bearer => quote!(rt::CredentialSource::Bearer),
        SourcePlan::Header(name) => quote!(rt::CredentialSource::Header(#name)),
        SourcePlan::Cookie(name) => quote!(rt::CredentialSource::Cookie(#name)),
        SourcePlan::Query(name) => quote!(rt::CredentialSource::Query(#name)),
    }
}

fn cidr(block: &gateway_runtime::policy::ip::Cidr) -> TokenStream {
    let prefix = Literal::u8_unsuffixed(block.prefix());
    match block.address() {
        std::net::IpAddr::V4(v4) => {
            let octets = v4.octets().map(Literal::u8_unsuffixed);
            quote!(rt::Cidr::v4([#(#octets),*], #prefix))
        }
        std::net::IpAddr::V6(v6) => {
            let segments = v6.segments().map(Literal::u16_unsuffixed);
            quote!(rt::Cidr::v6([#(#segments),*], #prefix))
        }
    }
}

fn header_op(op: &HeaderOpPlan) -> TokenStream {
    let value = |parts: &[ValuePlan]| {
        let parts = parts.iter().map(|part| match part {
            ValuePlan::Text(text) => {
                let text = setting(text);
                quote!(rt::ValuePart::Text(#text))
            }
            ValuePlan::Param(slot) => {
                let slot = Literal::usize_unsuffixed(*slot);
                quote!(rt::ValuePart::Param(#slot))
            }
            ValuePlan::ClientIp => quote!(rt::ValuePart::ClientIp),
            ValuePlan::Header(name) => quote!(rt::ValuePart::Header(#name)),
        });
        quote!(&[#(#parts),*])
    };
    match op {
        HeaderOpPlan::Remove(name) => quote!(rt::HeaderOp::Remove(#name)),
        HeaderOpPlan::Rename { from, to } => quote!(rt::HeaderOp::Rename { from: #from, to: #to }),
        HeaderOpPlan::Set { name, value: parts } => {
            let value = value(parts);
            quote!(rt::HeaderOp::Set { name: #name, value: #value })
        }
        HeaderOpPlan::Add { name, value: parts } => {
            let value = value(parts);
            quote!(rt::HeaderOp::Add { name: #name, value: #value })
        }
    }
}

/// Whether a policy lives in `Shared` (resolved at start-up) rather than in a constant
/// or in the routes' code.
pub(super) fn is_shared(kind: &PolicyKind) -> bool {
    match kind {
        PolicyKind::Headers(headers) => !headers.is_static(),
        PolicyKind::Jwt(_) | PolicyKind::ApiKey { .. } | PolicyKind::Introspection(_) => true,
        PolicyKind::Ip { .. }
        | PolicyKind::ClientCert { .. }
        | PolicyKind::Authorize(_)
        | PolicyKind::AnyOf(_)
        | PolicyKind::ExtAuthz(_)
        // Their state lives in `Shared`, one per scope (`limit_buckets`).
        | PolicyKind::RateLimit(_)
        | PolicyKind::Quota(_)
        | PolicyKind::Concurrency(_) => false,
    }
}

/// The runtime type a shared policy becomes.
fn shared_type(kind: &PolicyKind) -> TokenStream {
    match kind {
        PolicyKind::Jwt(_) => quote!(rt::Jwt),
        PolicyKind::ApiKey { .. } => quote!(rt::ApiKeys),
        PolicyKind::Introspection(_) => quote!(rt::Introspection),
        _ => quote!(rt::HeaderRules),
    }
}

/// Static header rules as statements on `fields`, in their order. Values are trimmed
/// here, as the runtime trims what it resolves at start-up.
pub(super) fn static_header_ops(ops: &[HeaderOpPlan], fields: TokenStream) -> TokenStream {
    let literal = |name: &str| Literal::byte_string(name.as_bytes());
    let value = |parts: &[ValuePlan]| -> String {
        let text: String = parts
            .iter()
            .map(|part| match part {
                ValuePlan::Text(text) => text.raw.replace("$${", "${"),
                _ => String::new(),
            })
            .collect();
        text.trim_matches([' ', '\t']).to_owned()
    };
    let statements = ops.iter().map(|op| match op {
        HeaderOpPlan::Remove(name) => {
            let name = literal(name);
            quote!(#fields.remove(#name);)
        }
        HeaderOpPlan::Rename { from, to } => {
            let (from, to) = (literal(from), literal(to));
            quote!(#fields.rename(#from, #to);)
        }
        HeaderOpPlan::Set { name, value: parts } => {
            let (name, value) = (literal(name), value(parts));
            if value.is_empty() {
                quote!(#fields.remove(#name);)
            } else {
                let value = literal(&value);
                quote!(#fields.set(#name, #value);)
            }
        }
        HeaderOpPlan::Add { name, value: parts } => {
            let (name, value) = (literal(name), value(parts));
            if value.is_empty() {
                quote!()
            } else {
                let value = literal(&value);
                quote!(#fields.append(#name, #value);)
            }
        }
    });
    quote!(#(#statements)*)
}

/// The `Shared` struct and the trait items that build it.
pub(super) fn shared(plan: &Plan, names: &PolicyNames) -> (TokenStream, TokenStream) {
    let shared: Vec<usize> = (0..plan.policies.len())
        .filter(|&i| is_shared(&plan.policies[i].kind))
        .collect();
    let fields = shared.iter().map(|&i| {
        let field = &names.field[i];
        let doc = format!(" `[policies.{}]`", plan.policies[i].name);
        let ty = shared_type(&plan.policies[i].kind);
        quote! {
            #[doc = #doc]
            #field: #ty
        }
    });
    let limit_fields: Vec<Ident> = (0..plan.limit_buckets.len())
        .map(|i| format_ident!("limit_{}", i))
        .collect();
    let limit_types: Vec<TokenStream> = plan
        .limit_buckets
        .iter()
        .map(|b| match &plan.policies[b.policy].kind {
            PolicyKind::Concurrency(_) => quote!(rt::ConcurrencyLimiter),
            PolicyKind::RateLimit(limit) if limit.store.is_some() => {
                quote!(rt::SharedRateLimiter)
            }
            PolicyKind::Quota(_) => quote!(rt::Quota),
            _ => quote!(rt::RateLimiter),
        })
        .collect();
    let limit_docs = plan.limit_buckets.iter().map(|bucket| {
        format!(
            " The buckets of `[policies.{}]`, {}",
            plan.policies[bucket.policy].name,
            bucket.describe(plan)
        )
    });
    // Upstreams' concurrency limits: a spec each, and its places in `Shared`.
    let limited: Vec<usize> = (0..plan.upstreams.len())
        .filter(|&u| plan.upstreams[u].concurrency.is_some())
        .collect();
    let upstream_fields: Vec<Ident> = limited
        .iter()
        .map(|u| format_ident!("upstream_limit_{}", u))
        .collect();
    let upstream_specs: Vec<Ident> = limited
        .iter()
        .map(|u| format_ident!("UPSTREAM_LIMIT_{}", u))
        .collect();
    let upstream_statics = limited
        .iter()
        .zip(&upstream_specs)
        .filter_map(|(&u, item)| {
            let upstream = &plan.upstreams[u];
            let name = &upstream.name;
            let doc = format!(" `[upstreams.{name}] concurrency`");
            let limit = upstream.concurrency.as_ref()?;
            Some(concurrency_spec(item, &doc, name, limit))
        });
    let structure = quote! {
        #(#upstream_statics)*

        /// What every worker shares: policies resolved once at start-up.
        pub struct Shared {
            #(#fields,)*
            #(#[doc = #limit_docs] #limit_fields: #limit_types,)*
            #(#upstream_fields: rt::ConcurrencyLimiter,)*
            /// The published key sets of the JWT policies.
            key_sets: rt::KeySets,
        }
    };
    // In-process limits are made as they are; a Redis store's URL is read at
    // start-up, so shared limits are made with the policies that can fail.
    let (mut rate_built, mut rate_fields, mut in_process) = (Vec::new(), Vec::new(), Vec::new());
    for (i, bucket) in plan.limit_buckets.iter().enumerate() {
        let (field, spec) = (&limit_fields[i], &names.item[bucket.policy]);
        match &plan.policies[bucket.policy].kind {
            PolicyKind::Concurrency(_) => {
                in_process.push(quote!(#field: rt::ConcurrencyLimiter::new(&#spec),));
            }
            PolicyKind::Quota(_) => {
                let store = format_ident!("{}_STORE", spec);
                let scope = bucket.key(plan);
                rate_built.push(quote! {
                    let #field = rt::Quota::new(&#spec, &#store, #scope)
                        .map_err(|e| errors.extend(e))
                        .ok();
                });
                rate_fields.push(field.clone());
            }
            PolicyKind::RateLimit(limit) if limit.store.is_some() => {
                let store = format_ident!("{}_STORE", spec);
                let scope = bucket.key(plan);
                rate_built.push(quote! {
                    let #field = rt::SharedRateLimiter::new(&#spec, &#store, #scope)
                        .map_err(|e| errors.extend(e))
                        .ok();
                });
                rate_fields.push(field.clone());
            }
            _ => in_process.push(quote!(#field: rt::RateLimiter::new(&#spec),)),
        }
    }
    let limits = quote! {
        #(#in_process)*
        #(#upstream_fields: rt::ConcurrencyLimiter::new(&#upstream_specs),)*
    };
    let built = shared.iter().map(|&i| {
        let field = &names.field[i];
        let item = &names.item[i];
        let ty = shared_type(&plan.policies[i].kind);
        let key_sets =
            matches!(plan.policies[i].kind, PolicyKind::Jwt(_)).then(|| quote!(, &mut key_sets));
        quote! {
            let #field = #ty::new(&#item #key_sets).map_err(|e| errors.extend(e)).ok();
        }
    });
    let fields: Vec<&Ident> = shared
        .iter()
        .map(|&i| &names.field[i])
        .chain(&rate_fields)
        .collect();
    let built = built.chain(rate_built);
    let uses_key_sets = plan
        .policies
        .iter()
        .any(|p| matches!(p.kind, PolicyKind::Jwt(_)));
    let mutable = uses_key_sets.then(|| quote!(mut));
    let build = if fields.is_empty() {
        quote! {
            fn shared() -> ::core::result::Result<Shared, ::std::vec::Vec<rt::SettingError>> {
                ::core::result::Result::Ok(Shared { #limits key_sets: rt::KeySets::default() })
            }
        }
    } else {
        quote! {
            fn shared() -> ::core::result::Result<Shared, ::std::vec::Vec<rt::SettingError>> {
                let mut errors = ::std::vec::Vec::new();
                let #mutable key_sets = rt::KeySets::default();
                #(#built)*
                match (#(#fields,)*) {
                    (#(::core::option::Option::Some(#fields),)*) => {
                        ::core::result::Result::Ok(Shared { #(#fields,)* #limits key_sets })
                    }
                    _ => ::core::result::Result::Err(errors),
                }
            }
        }
    };
    let build = quote! {
        #build

        fn key_sets(shared: &Shared) -> &rt::KeySets {
            &shared.key_sets
        }
    };
    (structure, build)
}

/// `Gateway::connection`: each listener's connection-phase IP rules on the peer.
pub(super) fn connection(plan: &Plan, names: &PolicyNames) -> TokenStream {
    let arms: Vec<TokenStream> =
        plan.listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.connection_policies.is_empty())
            .map(|(index, listener)| {
                let index = Literal::usize_unsuffixed(index);
                let checks = listener.connection_policies.iter().enumerate().map(|(bit, c)| {
                let item = &names.item[c.policy];
                let name = &plan.policies[c.policy].name;
                if c.refuses_connection {
                    quote! {
                        if !#item.admits(peer) {
                            return ::core::result::Result::Err(rt::Refusal::forbidden(#name));
                        }
                    }
                } else {
                    let bit = Literal::u32_unsuffixed(bit as u32);
                    quote! {
                        if !#item.admits(peer) {
                            admission.refused |= 1 << #bit;
                        }
                    }
                }
            });
                let mutable = listener
                    .connection_policies
                    .iter()
                    .any(|c| !c.refuses_connection)
                    .then(|| quote!(mut));
                quote! {
                    #index => {
                        let #mutable admission = rt::Admission::default();
                        #(#checks)*
                        ::core::result::Result::Ok(admission)
                    }
                }
            })
            .collect();
    let body = if arms.is_empty() {
        quote! {
            let _ = (listener, peer);
            ::core::result::Result::Ok(rt::Admission::default())
        }
    } else {
        quote! {
            match listener {
                #(#arms)*
                _ => ::core::result::Result::Ok(rt::Admission::default()),
            }
        }
    };
    quote! {
        fn connection(
            &self,
            listener: usize,
            peer: ::std::net::IpAddr,
        ) -> ::core::result::Result<rt::Admission, rt::Refusal> {
            #body
        }
    }
}
