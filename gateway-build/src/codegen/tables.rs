//! The compiled tables: listeners, upstreams and routes as the runtime's spec types,
//! with every start-up value as a `Setting` that names where gateway.toml set it.

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use gateway_runtime::settings::SettingKind;

use crate::plan::{CertificatePlan, ListenerTlsPlan, Plan, SettingPlan};
use crate::syntax::{LogFormat, PathParameters, RequestIdMode, TlsVersion, Underscores};

pub(super) fn setting(s: &SettingPlan) -> TokenStream {
    let origin = &s.origin;
    let raw = &s.raw;
    quote!(rt::Setting::new(#origin, #raw))
}

fn optional(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

/// `const LISTENERS`, `UPSTREAMS` and `ROUTES` and the process settings, as items of
/// the `rt::Gateway` impl.
pub(super) fn constants(plan: &Plan) -> TokenStream {
    let workers = optional(plan.workers.as_ref().map(setting));
    let shutdown_timeout = setting(&plan.shutdown_timeout);
    let admin = optional(plan.admin.as_ref().map(|admin| {
        let bind = setting(&admin.bind);
        let expose = admin.expose;
        let buckets = optional(admin.buckets.as_ref().map(|bounds| {
            let bounds = bounds.iter().map(|b| Literal::u64_unsuffixed(*b));
            quote!(&[#(#bounds),*])
        }));
        quote!(rt::AdminSpec { bind: #bind, expose: #expose, buckets: #buckets })
    }));
    let log_format = match plan.access_log.format {
        LogFormat::Text => quote!(rt::LogFormat::Text),
        LogFormat::Json => quote!(rt::LogFormat::Json),
    };
    let log_path = optional(plan.access_log.path.as_ref().map(setting));
    let request_id = optional(plan.request_id.map(|mode| match mode {
        RequestIdMode::Generate => quote!(rt::RequestIdMode::Generate),
        RequestIdMode::Trust => quote!(rt::RequestIdMode::Trust),
    }));
    let tracing = optional(plan.tracing.as_ref().map(|t| {
        let endpoint = setting(&t.endpoint);
        let ratio = setting(&t.sample_ratio);
        let service_name = optional(t.service_name.as_ref().map(|n| quote!(#n)));
        quote! {
            rt::TracingSpec {
                endpoint: #endpoint,
                sample_ratio: #ratio,
                service_name: #service_name,
            }
        }
    }));
    let listeners = plan.listeners.iter().map(|l| {
        let name = &l.name;
        let bind = setting(&l.bind);
        let header_read = setting(&l.header_read_timeout);
        let body = setting(&l.body_timeout);
        let send = setting(&l.send_timeout);
        let max_concurrent_streams = Literal::u32_unsuffixed(l.max_concurrent_streams);
        let max_body = optional(l.max_body.as_ref().map(setting));
        let max_header_size = setting(&l.max_header_size);
        let max_headers = Literal::usize_unsuffixed(l.max_headers);
        let underscores = match l.underscores {
            Underscores::Drop => quote!(rt::Underscores::Drop),
            Underscores::Reject => quote!(rt::Underscores::Reject),
            Underscores::Allow => quote!(rt::Underscores::Allow),
        };
        let path_parameters = match l.path_parameters {
            PathParameters::Reject => quote!(rt::PathParameters::Reject),
            PathParameters::Keep => quote!(rt::PathParameters::Keep),
        };
        let tls = optional(l.tls.as_ref().map(listener_tls));
        let https_redirect = optional(l.https_redirect.map(|p| {
            let p = Literal::u16_unsuffixed(p);
            quote!(#p)
        }));
        quote! {
            rt::ListenerSpec {
                name: #name,
                bind: #bind,
                header_read_timeout: #header_read,
                body_timeout: #body,
                send_timeout: #send,
                max_body: #max_body,
                max_header_size: #max_header_size,
                max_headers: #max_headers,
                max_concurrent_streams: #max_concurrent_streams,
                underscores: #underscores,
                path_parameters: #path_parameters,
                tls: #tls,
                https_redirect: #https_redirect,
            }
        }
    });
    let upstreams = plan.upstreams.iter().map(|u| {
        let name = &u.name;
        let targets = u.targets.iter().map(setting);
        let connect = setting(&u.connect_timeout);
        let response = setting(&u.response_timeout);
        let idle = setting(&u.idle_timeout);
        let body = setting(&u.body_timeout);
        let tls = optional(u.tls.as_ref().map(|tls| {
            let ca = optional(tls.ca.as_ref().map(setting));
            let client = optional(tls.client_certificate.as_ref().map(certificate));
            let server_name = optional(tls.server_name.as_ref().map(|n| quote!(#n)));
            quote! {
                rt::UpstreamTlsSpec {
                    ca: #ca,
                    client_certificate: #client,
                    server_name: #server_name,
                }
            }
        }));
        quote! {
            rt::UpstreamSpec {
                name: #name,
                targets: &[#(#targets),*],
                connect_timeout: #connect,
                response_timeout: #response,
                idle_timeout: #idle,
                body_timeout: #body,
                tls: #tls,
            }
        }
    });
    let routes = plan.routes.iter().map(|r| {
        let name = &r.name;
        let host = optional(r.host.as_ref().map(|h| quote!(#h)));
        let path = &r.canonical_path;
        let methods = Literal::u16_unsuffixed(r.methods.bits());
        let listeners = Literal::u64_unsuffixed(r.listeners);
        let target = r.target.name(plan);
        quote! {
            rt::RouteSpec {
                name: #name,
                host: #host,
                path: #path,
                methods: rt::MethodSet::from_bits(#methods),
                listeners: #listeners,
                target: #target,
            }
        }
    });
    let route_info = plan.routes.iter().map(|r| {
        let template = &r.path;
        // Every policy any of the route's chains runs, in the order they run.
        let mut policies: Vec<&str> = Vec::new();
        for step in r.chains.iter().flat_map(|chain| &chain.steps) {
            let name = plan.policies[step.policy()].name.as_str();
            if !policies.contains(&name) {
                policies.push(name);
            }
        }
        quote!(rt::RouteInfo { template: #template, policies: &[#(#policies),*] })
    });
    let settings = plan.settings.iter().map(|(value, kind)| {
        let value = setting(value);
        let kind = match kind {
            SettingKind::Duration => quote!(Duration),
            SettingKind::Bind => quote!(Bind),
            SettingKind::Target => quote!(Target),
            SettingKind::Workers => quote!(Workers),
            SettingKind::Size => quote!(Size),
            SettingKind::HeaderSize => quote!(HeaderSize),
            SettingKind::Url => quote!(Url),
            SettingKind::Pem => quote!(Pem),
            SettingKind::File => quote!(File),
            SettingKind::Ratio => quote!(Ratio),
        };
        quote!((#value, rt::SettingKind::#kind))
    });
    quote! {
        const SETTINGS: &'static [(rt::Setting, rt::SettingKind)] = &[#(#settings),*];
        const WORKERS: ::core::option::Option<rt::Setting> = #workers;
        const SHUTDOWN_TIMEOUT: rt::Setting = #shutdown_timeout;
        const ADMIN: ::core::option::Option<rt::AdminSpec> = #admin;
        const ACCESS_LOG: rt::AccessLogSpec = rt::AccessLogSpec {
            format: #log_format,
            path: #log_path,
        };
        const REQUEST_ID: ::core::option::Option<rt::RequestIdMode> = #request_id;
        const TRACING: ::core::option::Option<rt::TracingSpec> = #tracing;
        const LISTENERS: &'static [rt::ListenerSpec] = &[#(#listeners),*];
        const UPSTREAMS: &'static [rt::UpstreamSpec] = &[#(#upstreams),*];
        const ROUTES: &'static [rt::RouteSpec<'static>] = &[#(#routes),*];
        const ROUTE_INFO: &'static [rt::RouteInfo] = &[#(#route_info),*];
    }
}

fn certificate(c: &CertificatePlan) -> TokenStream {
    let cert = setting(&c.cert);
    let key = setting(&c.key);
    quote!(rt::CertificateSpec { cert: #cert, key: #key })
}

fn listener_tls(tls: &ListenerTlsPlan) -> TokenStream {
    let default = optional(tls.default_certificate.as_ref().map(certificate));
    let sni = tls.sni.iter().map(|(names, c)| {
        let c = certificate(c);
        quote!(rt::SniCertificateSpec { names: &[#(#names),*], certificate: #c })
    });
    let min_version = match tls.min_version {
        TlsVersion::Tls12 => quote!(rt::TlsVersion::Tls12),
        TlsVersion::Tls13 => quote!(rt::TlsVersion::Tls13),
    };
    let client_auth = optional(tls.client_auth.as_ref().map(|auth| {
        let ca = setting(&auth.ca);
        let required = auth.required;
        let name = |h: &Option<String>| optional(h.as_ref().map(|h| quote!(#h)));
        let subject = name(&auth.subject_header);
        let san = name(&auth.san_header);
        let fingerprint = name(&auth.fingerprint_header);
        quote! {
            rt::ClientAuthSpec {
                ca: #ca,
                required: #required,
                headers: rt::IdentityHeaders {
                    subject: #subject,
                    san: #san,
                    fingerprint: #fingerprint,
                },
            }
        }
    }));
    let hsts = optional(tls.hsts.as_ref().map(|h| quote!(#h)));
    let days = Literal::u32_unsuffixed(tls.expiry_warning_days);
    quote! {
        rt::ListenerTlsSpec {
            default_certificate: #default,
            sni: &[#(#sni),*],
            min_version: #min_version,
            client_auth: #client_auth,
            hsts: #hsts,
            expiry_warning_days: #days,
        }
    }
}

/// `const ROUTE_N: usize`, one per route, documented with where it is declared.
pub(super) fn route_ids(plan: &Plan) -> TokenStream {
    let ids = plan.routes.iter().enumerate().map(|(id, r)| {
        let ident = route_id(id);
        let doc = format!(" `{}`, {}", r.name, r.place);
        let id = Literal::usize_unsuffixed(id);
        quote! {
            #[doc = #doc]
            const #ident: usize = #id;
        }
    });
    quote!(#(#ids)*)
}

pub(super) fn route_id(id: usize) -> proc_macro2::Ident {
    format_ident!("ROUTE_{}", id)
}

/// Field names for the upstreams: the TOML key with anything not valid in an
/// identifier replaced by `_`, and the index added where two keys would clash.
pub(super) fn upstream_fields(plan: &Plan) -> Vec<proc_macro2::Ident> {
    identifiers("upstream", plan.upstreams.iter().map(|u| u.name.as_str()))
}

/// Identifiers for names from gateway.toml, unique and valid whatever the names.
pub(super) fn identifiers<'n>(
    prefix: &str,
    names: impl Iterator<Item = &'n str>,
) -> Vec<proc_macro2::Ident> {
    let cleaned: Vec<String> = names
        .map(|name| {
            name.chars()
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
                format_ident!("{}_{}_{}", prefix, name, i)
            } else {
                format_ident!("{}_{}", prefix, name)
            }
        })
        .collect()
}
