//! `#[queue]`: registers a `static` queue declaration, so every process of the application
//! knows the queue and dispatches it.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{ItemStatic, StaticMutability};

/// Expands `#[queue]` on `static NAME: Queue = …;`: the item unchanged, plus its registration.
/// A misuse hands the item back with the error.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    match parse(args, item.clone()) {
        Ok(item) => {
            let name = &item.ident;
            let reg = quote_spanned! {item.ty.span()=>
                ::dbos_runtime::__private::inventory::submit! {
                    ::dbos_runtime::__private::Entry::queue(&#name)
                }
            };
            quote! { #item #reg }
        }
        Err(err) => {
            let err = err.to_compile_error();
            quote! { #item #err }
        }
    }
}

fn parse(args: TokenStream, item: TokenStream) -> syn::Result<ItemStatic> {
    if !args.is_empty() {
        return Err(syn::Error::new(
            args.span(),
            "#[queue] takes no options: set the queue's limits on the declaration, as in \
             `Queue::new(\"emails\").concurrency(10)`",
        ));
    }
    let item: ItemStatic = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let target = syn::parse2::<syn::Item>(item.clone())
                .map(|i| i.into_token_stream())
                .unwrap_or(item);
            return Err(syn::Error::new_spanned(
                target,
                "#[queue] goes on a `static`, as in `#[queue] static EMAILS: Queue = Queue::new(\"emails\");`",
            ));
        }
    };
    if let StaticMutability::Mut(m) = &item.mutability {
        return Err(syn::Error::new(
            m.span(),
            "a queue is declared once and never changes: remove `mut`",
        ));
    }
    Ok(item)
}
