//! `#[query]`, `#[mutation]`, their `#[internal_...]` forms, `#[schema]` and `#[auth_config]`:
//! they keep the function as written and add the
//! wasm exports of `ferrovex_model::abi` (a call entry point and a description) next to it.
//!
//! The exports exist only on wasm32: built for the developer's own machine (`cargo build`,
//! `cargo test` of an app), the entry points are plain unexported functions, since a native
//! linker refuses export names with `:` in them.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::{
    parse_macro_input, FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type,
};

/// Exports a query: `fn name(ctx: &QueryCtx, arg: T, ...) -> Result<R>`. Its path is
/// `module:name` (docs/PROTOCOL.md section 2).
#[proc_macro_attribute]
pub fn query(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Kind::Query, Visibility::Public)
}

/// Exports a query only other functions, the scheduler and admin-key callers may call: to a
/// client it does not exist.
#[proc_macro_attribute]
pub fn internal_query(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Kind::Query, Visibility::Internal)
}

/// Exports a mutation only other functions, the scheduler and admin-key callers may call: to
/// a client it does not exist.
#[proc_macro_attribute]
pub fn internal_mutation(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Kind::Mutation, Visibility::Internal)
}

/// Exports an action: `fn name(ctx: &mut ActionCtx, arg: T, ...) -> Result<R>`. Not
/// deterministic (real time, real randomness, outbound HTTP); it calls queries and mutations
/// through `ctx`, each a transaction of its own.
#[proc_macro_attribute]
pub fn action(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Kind::Action, Visibility::Public)
}

/// Exports an action only other functions, the scheduler, crons and admin-key callers may
/// call: to a client it does not exist.
#[proc_macro_attribute]
pub fn internal_action(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Kind::Action, Visibility::Internal)
}

/// Serves a route of the app under the server's `/http` prefix:
/// `#[http_action(method = "POST", path = "/hooks/stripe")]` (an exact path) or
/// `#[http_action(method = "GET", path_prefix = "/files/")]`, on
/// `fn name(ctx: &mut ActionCtx, request: HttpRequest) -> Result<HttpResponse>`. The method
/// may be `ANY`.
#[proc_macro_attribute]
pub fn http_action(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut method = None;
    let mut path = None;
    let parser = syn::meta::parser(|meta| {
        let value: syn::LitStr = meta.value()?.parse()?;
        if meta.path.is_ident("method") {
            method = Some(value.value().to_uppercase());
        } else if meta.path.is_ident("path") {
            path = Some((value.value(), false));
        } else if meta.path.is_ident("path_prefix") {
            path = Some((value.value(), true));
        } else {
            return Err(
                meta.error("expected method = \"...\", path = \"...\" or path_prefix = \"...\"")
            );
        }
        Ok(())
    });
    let attr_tokens = Tokens::from(attr.clone());
    parse_macro_input!(attr with parser);
    let (Some(method), Some((path, prefix))) = (method, path) else {
        return error(
            attr_tokens,
            "#[http_action] needs method = \"GET\" (or POST, ANY...) and path = \"/...\" or path_prefix = \"/.../\"",
        );
    };
    let route = ferrovex_model::abi::HttpRoute {
        method: method.clone(),
        path: path.clone(),
        prefix,
    };
    if let Err(reason) = route.check() {
        return error(attr_tokens, &reason);
    }
    expand_with(
        item,
        Kind::HttpAction,
        Visibility::Internal,
        quote!(::core::option::Option::Some((#method, #path, #prefix))),
    )
}

/// Exports the app's cron jobs: `fn crons() -> Crons`. At most one per app.
#[proc_macro_attribute]
pub fn crons(attr: TokenStream, item: TokenStream) -> TokenStream {
    app_export(
        attr,
        item,
        "#[crons]",
        "__runtime_v1_crons",
        quote!(output_crons),
    )
}

/// Exports the app's sign-in providers: `fn auth() -> AuthConfig`. At most one per app.
#[proc_macro_attribute]
pub fn auth_config(attr: TokenStream, item: TokenStream) -> TokenStream {
    app_export(
        attr,
        item,
        "#[auth_config]",
        "__runtime_v1_auth_config",
        quote!(output_auth_config),
    )
}

/// Exports a mutation: `fn name(ctx: &mut MutationCtx, arg: T, ...) -> Result<R>`.
#[proc_macro_attribute]
pub fn mutation(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, Kind::Mutation, Visibility::Public)
}

/// Exports the app's schema: `fn schema() -> Schema`. At most one per app.
#[proc_macro_attribute]
pub fn schema(attr: TokenStream, item: TokenStream) -> TokenStream {
    app_export(
        attr,
        item,
        "#[schema]",
        "__runtime_v1_schema",
        quote!(output_schema),
    )
}

/// An app-wide export (`#[schema]`, `#[auth_config]`): the function as written, and an
/// export `() -> ()` named `export` that outputs what it returns with `output`.
fn app_export(
    attr: TokenStream,
    item: TokenStream,
    attribute: &str,
    export: &str,
    output: Tokens,
) -> TokenStream {
    if !attr.is_empty() {
        return error(
            Tokens::from(attr),
            &format!("{attribute} takes no arguments"),
        );
    }
    let function = parse_macro_input!(item as ItemFn);
    let name = &function.sig.ident;
    quote! {
        #function
        const _: () = {
            #[cfg_attr(target_arch = "wasm32", export_name = #export)]
            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            extern "C" fn __runtime_app_export() {
                ::ferrovex_sdk::__private::#output(#name());
            }
        };
    }
    .into()
}

#[derive(Clone, Copy)]
enum Kind {
    Query,
    Mutation,
    Action,
    HttpAction,
}

#[derive(Clone, Copy)]
enum Visibility {
    Public,
    Internal,
}

fn error(tokens: Tokens, message: &str) -> TokenStream {
    syn::Error::new_spanned(tokens, message)
        .to_compile_error()
        .into()
}

fn expand(attr: TokenStream, item: TokenStream, kind: Kind, visibility: Visibility) -> TokenStream {
    if !attr.is_empty() {
        return error(Tokens::from(attr), "this attribute takes no arguments");
    }
    expand_with(item, kind, visibility, quote!(::core::option::Option::None))
}

fn expand_with(
    item: TokenStream,
    kind: Kind,
    visibility: Visibility,
    route: Tokens,
) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    let sig = &function.sig;
    if !sig.generics.params.is_empty() || sig.asyncness.is_some() {
        return error(
            quote!(#sig),
            "functions must be plain, non-generic and non-async",
        );
    }
    let visibility_tokens = match visibility {
        Visibility::Public => quote!(Public),
        Visibility::Internal => quote!(Internal),
    };
    let mut inputs = sig.inputs.iter();
    let (ctx_type, runner, kind_tokens) = match kind {
        Kind::Query => (quote!(QueryCtx), quote!(run_query), quote!(Query)),
        Kind::Mutation => (quote!(MutationCtx), quote!(run_mutation), quote!(Mutation)),
        Kind::Action => (quote!(ActionCtx), quote!(run_action), quote!(Action)),
        Kind::HttpAction => (quote!(ActionCtx), quote!(run_action), quote!(HttpAction)),
    };
    match inputs.next() {
        Some(FnArg::Typed(_)) => {}
        _ => {
            return error(
                quote!(#sig),
                &format!("the first parameter must be the context, `ctx: &{ctx_type}`"),
            )
        }
    }
    let mut names = Vec::new();
    let mut types = Vec::new();
    for input in inputs {
        let FnArg::Typed(typed) = input else {
            return error(quote!(#input), "methods cannot be functions");
        };
        let Pat::Ident(ident) = &*typed.pat else {
            return error(
                quote!(#typed),
                "parameters must be plain names: they are the argument names",
            );
        };
        names.push(ident.ident.clone());
        types.push((*typed.ty).clone());
    }
    if matches!(kind, Kind::HttpAction) && names.len() != 1 {
        return error(
            quote!(#sig),
            "an HTTP action takes the context and the request: `fn name(ctx: &mut ActionCtx, request: HttpRequest) -> Result<HttpResponse>`",
        );
    }
    let name = &sig.ident;
    let name_text = name.to_string();
    let arg_names: Vec<String> = match kind {
        // The host sends an HTTP action `{request}`, whatever the parameter's name.
        Kind::HttpAction => vec!["request".to_owned()],
        _ => names
            .iter()
            .map(|n| wire_name(n.to_string().trim_start_matches("r#")))
            .collect(),
    };
    let locals: Vec<_> = names.iter().map(|n| format_ident!("__arg_{}", n)).collect();
    let returns = result_type(&sig.output);
    let schema_of = |ty: &Type| {
        quote! {{
            #[allow(unused_imports)]
            use ::ferrovex_sdk::__private::{ViaAny as _, ViaHasSchema as _};
            (&&::ferrovex_sdk::__private::Probe::<#ty>::new()).schema()
        }}
    };
    let param_schemas: Vec<Tokens> = types.iter().map(schema_of).collect();
    let return_schema = match &returns {
        Some(ty) => schema_of(ty),
        None => quote!(::ferrovex_sdk::Type::Any),
    };
    quote! {
        #function
        const _: () = {
            #[cfg_attr(target_arch = "wasm32", export_name = concat!("__runtime_v1_call:", module_path!(), "::", #name_text))]
            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            extern "C" fn __runtime_call(args_handle: u32, args_len: u32) {
                ::ferrovex_sdk::__private::#runner(args_handle, args_len, |ctx, args| {
                    #( #[allow(non_snake_case)] let #locals: #types = args.take(#arg_names)?; )*
                    ::ferrovex_sdk::__private::IntoOutcome::into_outcome(#name(ctx, #(#locals),*))
                });
            }
            #[cfg_attr(target_arch = "wasm32", export_name = concat!("__runtime_v1_describe:", module_path!(), "::", #name_text))]
            #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
            extern "C" fn __runtime_describe() {
                ::ferrovex_sdk::__private::describe(
                    ::ferrovex_sdk::__private::Kind::#kind_tokens,
                    ::ferrovex_sdk::__private::Visibility::#visibility_tokens,
                    &[ #( (#arg_names, #param_schemas) ),* ],
                    #return_schema,
                    #route,
                );
            }
        };
    }
    .into()
}

/// A parameter's argument name: its Rust name, except `pagination_opts`, which is the
/// `paginationOpts` that Convex's `usePaginatedQuery` sends.
fn wire_name(rust_name: &str) -> String {
    match rust_name {
        "pagination_opts" => "paginationOpts".to_owned(),
        other => other.to_owned(),
    }
}

/// `T` of a `Result<T>` / `Result<T, E>` return type.
fn result_type(output: &ReturnType) -> Option<Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(path) = &**ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}
