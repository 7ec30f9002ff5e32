//! Policy instances: IP rules as constants (their blocks are known at build time),
//! header rules as static specs resolved once at start-up into the `Shared` state
//! (their values may read `${env:…}`), and the connection phase of each listener.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use super::tables::{identifiers, setting};
use crate::plan::{HeaderOpPlan, Plan, PolicyKind, ValuePlan};

/// How generated code names each policy.
pub(super) struct PolicyNames {
    /// `POLICY_OFFICE`: the constant or static holding the compiled policy.
    pub item: Vec<Ident>,
    /// `policy_office`: the field of `Shared` for policies resolved at start-up.
    pub field: Vec<Ident>,
}

impl PolicyNames {
    pub(super) fn new(plan: &Plan) -> Self {
        let field = identifiers("policy", plan.policies.iter().map(|p| p.name.as_str()));
        let item = field
            .iter()
            .map(|f| format_ident!("{}", f.to_string().to_uppercase()))
            .collect();
        Self { item, field }
    }
}

/// The policy constants and statics, at module level.
pub(super) fn items(plan: &Plan, names: &PolicyNames) -> TokenStream {
    let items = plan.policies.iter().enumerate().map(|(i, policy)| {
        let item = &names.item[i];
        let name = &policy.name;
        let doc = format!(" `[policies.{name}]`, {}:{}", plan.file, policy.line);
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
    quote!(#(#items)*)
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
    matches!(kind, PolicyKind::Headers(headers) if !headers.is_static())
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
        quote! {
            #[doc = #doc]
            #field: rt::HeaderRules
        }
    });
    let structure = quote! {
        /// What every worker shares: policies resolved once at start-up.
        pub struct Shared {
            #(#fields,)*
        }
    };
    let built = shared.iter().map(|&i| {
        let field = &names.field[i];
        let item = &names.item[i];
        quote! {
            let #field = rt::HeaderRules::new(&#item).map_err(|e| errors.extend(e)).ok();
        }
    });
    let fields: Vec<&Ident> = shared.iter().map(|&i| &names.field[i]).collect();
    let build = if fields.is_empty() {
        quote! {
            fn shared() -> ::core::result::Result<Shared, ::std::vec::Vec<rt::SettingError>> {
                ::core::result::Result::Ok(Shared {})
            }
        }
    } else {
        quote! {
            fn shared() -> ::core::result::Result<Shared, ::std::vec::Vec<rt::SettingError>> {
                let mut errors = ::std::vec::Vec::new();
                #(#built)*
                match (#(#fields,)*) {
                    (#(::core::option::Option::Some(#fields),)*) => {
                        ::core::result::Result::Ok(Shared { #(#fields,)* })
                    }
                    _ => ::core::result::Result::Err(errors),
                }
            }
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
