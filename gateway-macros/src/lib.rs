//! `gateway!("gateway.toml")`: the gateway compiler as a proc macro, for crates that
//! prefer no build script. Same front end and code generator as `gateway-build`;
//! errors become one `compile_error!` per diagnostic, each naming `file:line:col`.

use std::cell::RefCell;
use std::path::Path;

use proc_macro::TokenStream;
use quote::quote;

/// Expands to the `gateway` module compiled from the named file, relative to the
/// crate's `Cargo.toml`.
#[proc_macro]
pub fn gateway(input: TokenStream) -> TokenStream {
    let path = syn::parse_macro_input!(input as syn::LitStr);
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let full_path = std::path::Path::new(&manifest_dir).join(path.value());
    let full_path_str = full_path.display().to_string();
    // Makes Cargo rebuild the crate when the file changes.
    let track = quote!(
        const _: &[u8] = include_bytes!(#full_path_str);
    );
    let source = match std::fs::read_to_string(&full_path) {
        Ok(source) => source,
        Err(e) => {
            let message = format!("cannot read {full_path_str}: {e}");
            return quote_spanned_error(&path, &[message]).into();
        }
    };
    // Each included file is tracked like the main one.
    let dir = full_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let included = RefCell::new(Vec::new());
    let read = |name: &str| {
        let text = gateway_build::include::read_in(&dir, name)?;
        included
            .borrow_mut()
            .push(dir.join(name).display().to_string());
        Ok(text)
    };
    let generated = gateway_build::generate_with(&path.value(), &source, &read);
    let included = included.into_inner();
    let track = quote!(#track #(const _: &[u8] = include_bytes!(#included);)*);
    match generated {
        Ok(output) => {
            let tokens = output.tokens;
            quote!(#track #tokens).into()
        }
        Err(diagnostics) => {
            // Proc macros cannot emit warnings on stable Rust: only errors are shown.
            let errors = quote_spanned_error(
                &path,
                &diagnostics.short_lines(gateway_build::Severity::Error),
            );
            quote!(#track #errors).into()
        }
    }
}

fn quote_spanned_error(at: &syn::LitStr, messages: &[String]) -> proc_macro2::TokenStream {
    let errors = messages
        .iter()
        .map(|m| syn::Error::new(at.span(), m).to_compile_error());
    quote!(#(#errors)*)
}
