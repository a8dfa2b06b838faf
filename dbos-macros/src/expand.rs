//! Emit tokens for a validated [`Model`]; nothing here decides whether the input is valid.
//!
//! Generated code names only `::dbos_runtime::__private::…`, a few public `::dbos_runtime::…`
//! items, `::core::…` and `::std::boxed::Box`. Its locals are `__dbos_…` identifiers with
//! mixed-site hygiene, so they never collide with the user's names.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PatIdent, PatType, Signature,
    Type, Visibility,
};

use crate::model::{without_schedule, Isolation, Kind, Model, Param, Serialization, Stacked};

/// Expands one attribute on one item. On a misuse, hands the item back with the error, so the
/// rest of the crate still type-checks against the function and IDEs keep working.
pub(crate) fn durable(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(err) => {
            let err = match syn::parse2::<syn::Item>(item.clone()) {
                Ok(other) => syn::Error::new_spanned(
                    other,
                    format_args!("{} goes on an `async fn`", kind.attr()),
                ),
                Err(_) => err,
            };
            return with_error(item, err);
        }
    };
    if kind == Kind::Scheduled {
        return match Stacked::parse(args, &func) {
            Ok(stacked) => stacked.func.into_token_stream(),
            Err(err) => with_error(func.into_token_stream(), err),
        };
    }
    match Model::parse(kind, args, &func).and_then(Model::validated) {
        Ok(model) => emit(&model),
        Err(err) => {
            let mut func = without_schedule(func);
            crate::model::strip_markers(&mut func.block);
            with_error(func.into_token_stream(), err)
        }
    }
}

fn with_error(mut item: TokenStream, err: syn::Error) -> TokenStream {
    item.extend(err.into_compile_error());
    item
}

fn emit(model: &Model) -> TokenStream {
    match model.kind {
        Kind::Step => step(model),
        Kind::Transaction => transaction(model),
        // `Model::parse` is never called for `Scheduled`.
        Kind::Workflow | Kind::Scheduled => workflow(model),
    }
}

/// Where errors about `-> R` are reported: at the user's return type, marked as generated code.
/// Every use shares this span, so rustc merges identical errors from different checks.
fn output_span(model: &Model) -> Span {
    Span::call_site().located_at(model.output.span())
}

/// `ident`, resolved as before but reported at `at`.
fn relocated(ident: &Ident, at: Span) -> Ident {
    let mut ident = ident.clone();
    ident.set_span(ident.span().located_at(at));
    ident
}

/// A generated identifier: `__dbos_<name>`, invisible to the user's code, reported at `at`.
fn local(name: &str, at: Span) -> Ident {
    format_ident!("__dbos_{}", name, span = Span::mixed_site().located_at(at))
}

fn workflow(model: &Model) -> TokenStream {
    let Model {
        attrs,
        vis,
        sig,
        output,
        params,
        ..
    } = model;
    let fn_token = &sig.fn_token;
    let ident = &sig.ident;
    let name = registered_name(model);
    let body = local("body", ident.span());
    let args = local("args", Span::call_site());
    let body_fn = body_fn(model, &body);

    let ret = workflow_call_type(output);
    let format = format(model);
    let inputs = params.iter().map(|Param { ident, arg }| {
        let ty = &arg.ty;
        quote!(#ident: #ty)
    });
    let arg_asserts = params.iter().map(|Param { arg, .. }| {
        let ty = &arg.ty;
        quote_spanned!(ty.span()=> ::dbos_runtime::__private::assert_workflow_arg::<#ty>();)
    });
    let output_asserts = output_asserts(model);
    let mutability = (!params.is_empty()).then(|| quote!(mut));
    let pushes = params.iter().map(|Param { ident, arg }| {
        let ident = relocated(ident, arg.ty.span());
        quote_spanned!(arg.ty.span()=> #args.push(&#ident);)
    });
    let idents = params.iter().map(|param| &param.ident);
    let registration = workflow_registration(model, &name);
    // The body's future is reported at the fn's name (`Send` errors), the call at `-> R`.
    let body_call =
        quote_spanned!(Span::call_site().located_at(ident.span())=> #body(#(#idents),*));
    let call = quote_spanned! {output_span(model)=>
        ::dbos_runtime::__private::workflow_call(#name, #args, #body_call)
    };

    quote! {
        #(#attrs)*
        #vis #fn_token #ident(#(#inputs),*) -> #ret {
            #(#arg_asserts)*
            #output_asserts
            #body_fn
            let #mutability #args = ::dbos_runtime::__private::ArgsEncoder::with_format(#format);
            #(#pushes)*
            #call
        }
        #registration
    }
}

/// `WorkflowCall<T, E>` for `-> R`: read off `Result<T, E>` as written, so signatures (and
/// rustdoc) stay readable; projected through `IsResult` for an alias such as `io::Result<T>`.
fn workflow_call_type(output: &Type) -> TokenStream {
    // Located at `R` for errors, but marked as generated so lints such as
    // `clippy::type_complexity` judge the user's type, not the wrapper's.
    let at = Span::call_site().located_at(output.span());
    match result_args(output) {
        Some((ok, err)) => quote_spanned!(at=> ::dbos_runtime::WorkflowCall<#ok, #err>),
        None => quote_spanned! {at=>
            ::dbos_runtime::WorkflowCall<
                <#output as ::dbos_runtime::__private::IsResult>::Ok,
                <#output as ::dbos_runtime::__private::IsResult>::Err,
            >
        },
    }
}

/// `T` and `E` of a return type written `Result<T, E>` (any path ending in `Result`).
fn result_args(output: &Type) -> Option<(&Type, &Type)> {
    let Type::Path(path) = output else {
        return None;
    };
    let last = path.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match (
        last.ident == "Result",
        args.args.iter().collect::<Vec<_>>().as_slice(),
    ) {
        (true, [GenericArgument::Type(ok), GenericArgument::Type(err)]) => Some((ok, err)),
        _ => None,
    }
}

/// The resume function and the registry entries of a workflow.
fn workflow_registration(model: &Model, name: &TokenStream) -> TokenStream {
    let ident = &model.sig.ident;
    let resume = local("resume", Span::call_site());
    let inputs = local("inputs", Span::call_site());
    let mutability = (!model.params.is_empty()).then(|| quote!(mut));
    let values = values(&model.params);
    let decode = decode(&model.params, &values, &inputs);
    let checks = schedule_checks(model);
    let entry = entry(ident.span(), name, &resume);
    let schedule = model.schedule.as_ref().map(|schedule| {
        let cron = &schedule.cron;
        quote! {
            ::dbos_runtime::__private::inventory::submit! {
                ::dbos_runtime::__private::Entry::schedule(#name, #cron)
            }
        }
    });
    let cfgs = cfgs(&model.attrs);
    let resumed =
        quote_spanned!(output_span(model)=> ::dbos_runtime::__private::erase(#ident(#(#values),*)));
    quote! {
        #(#cfgs)*
        const _: () = {
            fn #resume(
                #mutability #inputs: ::dbos_runtime::__private::Inputs,
            ) -> ::core::result::Result<::dbos_runtime::__private::ErasedCall, ::dbos_runtime::Error> {
                #checks
                #(#decode)*
                #inputs.finish()?;
                ::core::result::Result::Ok(#resumed)
            }
            #entry
            #schedule
        };
    }
}

fn step(model: &Model) -> TokenStream {
    let Model {
        attrs, vis, params, ..
    } = model;
    let sig = wrapper_sig(model);
    let name = registered_name(model);
    let body = local("body", model.sig.ident.span());
    let body_fn = body_fn(model, &body);
    let output_asserts = output_asserts(model);
    let clone_asserts = if model.step.retries() {
        clone_asserts(model)
    } else {
        Vec::new()
    };
    let format = format(model);
    let call = if model.step.retries() {
        let clones = clones(params);
        let max_attempts = model.step.max_attempts;
        let interval_secs = model.step.interval_secs;
        let backoff = model.step.backoff;
        quote_spanned! {output_span(model)=>
            ::dbos_runtime::__private::run_step(
                #name,
                ::dbos_runtime::__private::StepOptions {
                    max_attempts: #max_attempts,
                    interval_secs: #interval_secs,
                    backoff: #backoff,
                    format: #format,
                },
                move || #body(#(#clones),*),
            )
            .await
        }
    } else {
        let idents = params.iter().map(|param| &param.ident);
        quote_spanned! {output_span(model)=>
            ::dbos_runtime::__private::run_step_once(#name, #format, #body(#(#idents),*)).await
        }
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #output_asserts
            #(#clone_asserts)*
            #body_fn
            #call
        }
    }
}

fn transaction(model: &Model) -> TokenStream {
    let Model {
        attrs,
        vis,
        params,
        tx,
        ..
    } = model;
    let sig = wrapper_sig(model);
    let name = registered_name(model);
    let body = local("body", model.sig.ident.span());
    let body_fn = body_fn(model, &body);
    let output_asserts = output_asserts(model);
    let clone_asserts = clone_asserts(model);
    let clones = clones(params);
    // Validation guarantees the parameter; its type is checked by rustc when the body is called.
    let tx_at = tx.as_ref().map_or_else(Span::call_site, |tx| tx.ty.span());
    let tx = local("tx", tx_at);
    let isolation = match model.tx_options.isolation {
        None => quote!(::core::option::Option::None),
        Some(level) => {
            let level = match level {
                Isolation::Serializable => quote!(Serializable),
                Isolation::RepeatableRead => quote!(RepeatableRead),
                Isolation::ReadCommitted => quote!(ReadCommitted),
            };
            quote!(::core::option::Option::Some(::dbos_runtime::__private::Isolation::#level))
        }
    };
    let read_only = model.tx_options.read_only;
    let format = format(model);
    let call = quote_spanned! {output_span(model)=>
        ::dbos_runtime::__private::run_transaction(
            #name,
            ::dbos_runtime::__private::TxOptions {
                isolation: #isolation,
                read_only: #read_only,
                format: #format,
            },
            move |#tx| ::std::boxed::Box::pin(#body(#tx, #(#clones),*)),
        )
        .await
    };
    let registration = scheduled_transaction(model);
    quote! {
        #(#attrs)*
        #vis #sig {
            #output_asserts
            #(#clone_asserts)*
            #body_fn
            #call
        }
        #registration
    }
}

/// A scheduled transaction runs as a temporary workflow, `<temp>.<name>`, one per tick.
fn scheduled_transaction(model: &Model) -> Option<TokenStream> {
    let schedule = model.schedule.as_ref()?;
    let cron = &schedule.cron;
    let ident = &model.sig.ident;
    let temp = match &model.name {
        Some(name) => quote!(::core::concat!("<temp>.", #name)),
        None => {
            let fn_name = fn_name(ident);
            quote!(::core::concat!("<temp>.", ::core::module_path!(), "::", #fn_name))
        }
    };
    let resume = local("resume", Span::call_site());
    let inputs = local("inputs", Span::call_site());
    let args = local("args", Span::call_site());
    let values = values(&model.params);
    let decode = decode(&model.params, &values, &inputs);
    let checks = schedule_checks(model);
    let entry = entry(ident.span(), &temp, &resume);
    let cfgs = cfgs(&model.attrs);
    let resumed = quote_spanned! {output_span(model)=>
        ::dbos_runtime::__private::erase(
            ::dbos_runtime::__private::workflow_call(#temp, #args, #ident(#(#values),*)),
        )
    };
    Some(quote! {
        #(#cfgs)*
        const _: () = {
            fn #resume(
                mut #inputs: ::dbos_runtime::__private::Inputs,
            ) -> ::core::result::Result<::dbos_runtime::__private::ErasedCall, ::dbos_runtime::Error> {
                #checks
                #(#decode)*
                #inputs.finish()?;
                let mut #args = ::dbos_runtime::__private::ArgsEncoder::new();
                #(#args.push(&#values);)*
                ::core::result::Result::Ok(#resumed)
            }
            #entry
            ::dbos_runtime::__private::inventory::submit! {
                ::dbos_runtime::__private::Entry::schedule(#temp, #cron)
            }
        };
    })
}

/// The `Format` the function's values are stored in. Bincode is checked against the runtime's
/// `bincode` feature, with an error at the user's `"bincode"` when it is off.
fn format(model: &Model) -> TokenStream {
    match &model.serialization {
        Serialization::Json => quote!(::dbos_runtime::__private::Format::Json),
        Serialization::Bincode(lit) => {
            quote_spanned!(lit.span()=> ::dbos_runtime::__private::bincode::<()>())
        }
    }
}

/// `"<name>"`, or `concat!(module_path!(), "::", "<fn>")` by default.
fn registered_name(model: &Model) -> TokenStream {
    match &model.name {
        Some(name) => name.to_token_stream(),
        None => {
            let fn_name = fn_name(&model.sig.ident);
            quote!(::core::concat!(::core::module_path!(), "::", #fn_name))
        }
    }
}

fn fn_name(ident: &Ident) -> LitStr {
    LitStr::new(&ident.unraw().to_string(), ident.span())
}

/// `inventory::submit!` of the entry that lets recovery resume the workflow `name`.
fn entry(at: Span, name: &TokenStream, resume: &Ident) -> TokenStream {
    let location = quote_spanned!(at=> ::core::file!(), ::core::line!());
    quote! {
        ::dbos_runtime::__private::inventory::submit! {
            ::dbos_runtime::__private::Entry::workflow(#name, #resume, #location)
        }
    }
}

/// The user's function, renamed: it keeps the patterns, spans and inner attributes, so `?` and
/// `return` in the body behave as written and type errors point at the user's lines.
fn body_fn(model: &Model, ident: &Ident) -> ItemFn {
    let sig = Signature {
        ident: ident.clone(),
        ..model.sig.clone()
    };
    ItemFn {
        attrs: model.inner_attrs.clone(),
        vis: Visibility::Inherited,
        sig,
        block: model.block.clone(),
    }
}

/// The signature callers see: the caller-visible parameters, each bound to a plain identifier.
fn wrapper_sig(model: &Model) -> Signature {
    let inputs = model.params.iter().map(|param| {
        FnArg::Typed(PatType {
            attrs: Vec::new(),
            pat: Box::new(Pat::Ident(PatIdent {
                attrs: Vec::new(),
                by_ref: None,
                mutability: None,
                ident: param.ident.clone(),
                subpat: None,
            })),
            colon_token: param.arg.colon_token,
            ty: param.arg.ty.clone(),
        })
    });
    Signature {
        inputs: inputs.collect(),
        ..model.sig.clone()
    }
}

/// `R` must be `Result<T, E>` with a recordable `T` and `E`; reported at `-> R`.
fn output_asserts(model: &Model) -> Option<TokenStream> {
    let output = &model.output;
    model.is_concrete(output).then(|| {
        quote_spanned! {output_span(model)=>
            ::dbos_runtime::__private::assert_output::<
                <#output as ::dbos_runtime::__private::IsResult>::Ok,
            >();
            ::dbos_runtime::__private::assert_error::<
                <#output as ::dbos_runtime::__private::IsResult>::Err,
            >();
        }
    })
}

/// Arguments that are cloned for each attempt must be `Clone`; reported at each type.
fn clone_asserts(model: &Model) -> Vec<TokenStream> {
    let concrete = model
        .params
        .iter()
        .filter(|param| model.is_concrete(&param.arg.ty));
    concrete
        .map(|Param { arg, .. }| {
            let ty = &arg.ty;
            quote_spanned!(ty.span()=> ::dbos_runtime::__private::assert_clone::<#ty>();)
        })
        .collect()
}

fn clones(params: &[Param]) -> Vec<TokenStream> {
    let clone = |Param { ident, arg }: &Param| {
        let ident = relocated(ident, arg.ty.span());
        quote_spanned!(arg.ty.span()=> ::core::clone::Clone::clone(&#ident))
    };
    params.iter().map(clone).collect()
}

fn values(params: &[Param]) -> Vec<Ident> {
    (0..params.len())
        .map(|index| local(&format!("in{index}"), Span::call_site()))
        .collect()
}

/// `let __dbos_inN: T = inputs.next()?;` for each stored argument, in order.
fn decode(params: &[Param], values: &[Ident], inputs: &Ident) -> Vec<TokenStream> {
    let decode = |(Param { arg, .. }, value): (&Param, &Ident)| {
        let ty = &arg.ty;
        quote_spanned!(ty.span()=> let #value: #ty = #inputs.next()?;)
    };
    params.iter().zip(values).map(decode).collect()
}

/// A scheduled function receives `(scheduled_time, actual_time)`; checks each is a
/// `DateTime<Utc>`, reported at the parameter's type.
fn schedule_checks(model: &Model) -> Option<TokenStream> {
    model.schedule.as_ref()?;
    let checks = model.params.iter().map(|Param { arg, .. }| {
        let ty = &arg.ty;
        let time = local("time", ty.span());
        quote_spanned! {ty.span()=>
            let _ = |#time: #ty| -> ::dbos_runtime::__private::chrono::DateTime<
                ::dbos_runtime::__private::chrono::Utc,
            > { #time };
        }
    });
    Some(quote!(#(#checks)*))
}

/// `#[cfg]`s of the function, repeated on its registration so both are compiled or neither.
fn cfgs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident("cfg"))
}
