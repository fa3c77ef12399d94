//! `#[derive(Object)]` for the movegc garbage-collected heap.
//!
//! The derive turns a plain struct with named fields into a heap object
//! type: it computes the object's layout (how many reference slots, how
//! many data bytes), gives every field a typed *field key* constant that the
//! runtime uses to read and write that field of a heap object, and
//! implements `movegc::Object` so values of the struct can be moved into the
//! heap. It is re-exported by the runtime as `movegc::Object` (next to the
//! trait of the same name), so users write `use movegc::Object;` and never
//! name this crate.
//!
//! ```ignore
//! use movegc::{Gc, Object};
//!
//! #[derive(Object)]
//! pub struct Node {
//!     pub left: Option<Gc<Node>>,   // reference slot 0
//!     pub right: Option<Gc<Node>>,  // reference slot 1
//!     pub kids: [Option<Gc<Node>>; 4], // reference slots 2..6
//!     pub value: i64,               // data field 0
//! }
//!
//! // Generated (abridged):
//! impl Node {
//!     pub const LEFT: movegc::RefField<Node, Option<Gc<Node>>> = /* slot 0 */;
//!     pub const RIGHT: movegc::RefField<Node, Option<Gc<Node>>> = /* slot 1 */;
//!     pub const KIDS: movegc::RefSlots<Node, Option<Gc<Node>>, 4> = /* slots 2..6 */;
//!     pub const VALUE: movegc::DataField<Node, i64> = /* computed offset */;
//! }
//! unsafe impl movegc::Object for Node { const REFS: usize = 6; /* ... */ }
//! unsafe impl movegc::Zeroable for Node {} // every reference is nullable
//! ```
//!
//! # Field classification
//!
//! Fields are classified by their *written* type, syntactically (the macro
//! cannot see through type aliases):
//!
//! * **Reference, non-null**: a path whose last segment is `Gc` with exactly
//!   one type argument, e.g. `Gc<Node>` or `movegc::Gc<Node>`.
//! * **Reference, nullable**: a path whose last segment is `Option` whose
//!   single type argument is such a `Gc<...>` path, e.g. `Option<Gc<Node>>`.
//! * **Reference array**: `[X; N]` where `X` is one of the two forms above
//!   and `N` any constant expression; it occupies `N` consecutive slots.
//! * **Data**: every other type. It must implement `movegc::Data`; a type
//!   that does not is reported by the compiler as an unsatisfied
//!   `movegc::Data` bound naming the field's type.
//!
//! Reference slots are numbered from 0 in declaration order over the
//! reference and reference-array fields; data fields are laid out by the
//! runtime's `data_offsets` from their `Data::SIZE` / `Data::ALIGN`.
//!
//! # Generated items
//!
//! * One associated constant per field, named after the field in
//!   `SCREAMING_SNAKE_CASE` (`max_depth` and `maxDepth` become `MAX_DEPTH`,
//!   `r#type` becomes `TYPE`) and with the field's own visibility:
//!   `movegc::RefField<Self, T>` for a reference field of written type `T`,
//!   `movegc::RefSlots<Self, X, N>` for a reference array `[X; N]`, and
//!   `movegc::DataField<Self, T>` for a data field of type `T`.
//! * A hidden constant `__MOVEGC_DATA` holding the data layout.
//! * `unsafe impl movegc::Object`: `REFS`, `DATA`, `NAME` (the struct's
//!   name), the type's tag cell (a `static` of its own), handle checking
//!   and field initialisation (through the field keys).
//! * `unsafe impl movegc::Zeroable` when every reference (including array
//!   elements) is nullable, so an all-zero object is a valid value. Structs
//!   without references are `Zeroable` too.
//!
//! # Limitations
//!
//! * Only structs with named fields (or unit / empty structs) are supported;
//!   tuple structs, enums and unions are rejected.
//! * No generic, lifetime or const parameters: every heap type needs its own
//!   type tag, and a generic struct would share one between instantiations.
//! * The generated `__write_fields` takes the fields out of the value by
//!   destructuring it. For a struct that implements `Drop` the compiler
//!   rejects this (error E0509) as soon as a field type is not `Copy`; if all
//!   field types are `Copy` it compiles, but the `Drop` impl then runs on the
//!   Rust value right after its fields were copied into the heap. Heap
//!   objects themselves are never dropped by the collector, so implementing
//!   `Drop` for a heap type is almost certainly a mistake.
//! * Two fields whose names map to the same constant (for example `max_depth`
//!   and `maxDepth`) are rejected. A field constant that collides with an
//!   inherent item the user declares on the same struct is reported by the
//!   compiler as a duplicate definition.
//! * The generated code names the runtime by the absolute path `::movegc`;
//!   inside the runtime crate itself that needs `extern crate self as movegc;`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::HashMap;

use proc_macro::TokenStream;
use proc_macro2::{Delimiter, Literal, TokenStream as TokenStream2, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{
    parse_macro_input, Data, DeriveInput, Error, Expr, Field, Fields, GenericArgument,
    GenericParam, Ident, Lit, PathArguments, Type, TypePath,
};

/// Derives `movegc::Object` (and, when possible, `movegc::Zeroable`) for a
/// struct with named fields, plus one typed field-key constant per field.
///
/// See the [crate documentation](crate) for the classification rules, the
/// generated items and the limitations.
///
/// # Safety argument for the generated code
///
/// The generated code contains `unsafe` blocks (constructing reference
/// field keys with `new_unchecked`) and `unsafe impl`s of `Object` and
/// `Zeroable`. They are sound because:
///
/// * every reference slot index handed to `RefField::new_unchecked` /
///   `RefSlots::new_unchecked` is, with the array length, below
///   `Object::REFS`, which is the sum of the same per-field slot counts
///   (all computed here, not by anything the generated code calls);
/// * each slot only ever holds values of its field's written type: the only
///   writers are these keys (typed with that type) and `__write_fields`,
///   which stores each field through its own key;
/// * data keys are made by the runtime's safe, checked `DataField::new`
///   (against `Object::DATA`, the size objects are allocated with; plain
///   data may overlay any bytes), so even a `::movegc` path that resolved
///   to something else could not put one outside the object;
/// * the type tag lives in a `static` of this impl's own, of the runtime's
///   `TagCell` type (the trait's signature requires it), assigned by the
///   runtime;
/// * `Zeroable` is only implemented when every reference slot holds an
///   `Option<Gc<_>>`: each field counted as nullable is checked against the
///   runtime's `Nullable` bound, so a shadowed `Option` is a compile error.
#[proc_macro_derive(Object)]
pub fn derive_object(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(|err| err.to_compile_error())
        .into()
}

/// Name of the hidden inherent constant holding the data layout.
const DATA_CONST: &str = "__MOVEGC_DATA";

/// How a field is stored in a heap object.
enum FieldKind<'a> {
    /// A single reference slot; `nullable` for `Option<Gc<_>>`.
    Ref { nullable: bool },
    /// `len` consecutive reference slots holding `elem`.
    RefArray {
        elem: &'a Type,
        len: &'a Expr,
        nullable: bool,
    },
    /// Plain bytes, laid out from the type's `movegc::Data` impl.
    Data,
}

/// Classifies a field by its written type (see the crate docs).
fn classify(ty: &Type) -> FieldKind<'_> {
    if let Some(nullable) = ref_form(ty) {
        return FieldKind::Ref { nullable };
    }
    if let Type::Array(array) = peel(ty) {
        if let Some(nullable) = ref_form(&array.elem) {
            return FieldKind::RefArray {
                elem: &array.elem,
                len: &array.len,
                nullable,
            };
        }
    }
    FieldKind::Data
}

/// `Some(false)` for `Gc<T>`, `Some(true)` for `Option<Gc<T>>`, `None` for
/// anything else.
fn ref_form(ty: &Type) -> Option<bool> {
    if single_type_arg(ty, "Gc").is_some() {
        return Some(false);
    }
    let inner = single_type_arg(ty, "Option")?;
    single_type_arg(inner, "Gc").map(|_| true)
}

/// If `ty` is a path whose last segment is `name<T>` with exactly one type
/// argument, returns `T`.
fn single_type_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(TypePath {
        qself: None, path, ..
    }) = peel(ty)
    else {
        return None;
    };
    let last = path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match (args.args.len(), args.args.first()) {
        (1, Some(GenericArgument::Type(arg))) => Some(arg),
        _ => None,
    }
}

/// Strips invisible groups (from `macro_rules!` `$t:ty`) and parentheses.
fn peel(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

/// Converts a field name to `SCREAMING_SNAKE_CASE`: upper-cases it and
/// inserts `_` where a lower-case letter or digit is followed by an
/// upper-case letter (so `camelCase` names convert sensibly too).
fn screaming(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut after_lower = false;
    for ch in name.chars() {
        if ch.is_uppercase() && after_lower {
            out.push('_');
        }
        after_lower = ch.is_lowercase() || ch.is_ascii_digit();
        out.extend(ch.to_uppercase());
    }
    out
}

/// The value of an array length if it is a plain integer literal.
fn literal_len(len: &Expr) -> Option<usize> {
    match len {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Int(int) if matches!(int.suffix(), "" | "usize") => int.base10_parse().ok(),
            _ => None,
        },
        Expr::Group(group) => literal_len(&group.expr),
        _ => None,
    }
}

/// An array length in a form usable as a const generic argument: literals,
/// paths and blocks verbatim, anything else wrapped in braces.
fn const_arg(len: &Expr) -> TokenStream2 {
    let is_block = {
        let mut tokens = len.to_token_stream().into_iter();
        matches!(
            (tokens.next(), tokens.next()),
            (Some(TokenTree::Group(group)), None) if group.delimiter() == Delimiter::Brace
        )
    };
    if is_block || matches!(len, Expr::Lit(_) | Expr::Path(_)) {
        len.to_token_stream()
    } else {
        quote!({ #len })
    }
}

/// A reference slot index: a known count plus the lengths of preceding
/// reference arrays whose length is not a literal.
#[derive(Default)]
struct SlotIndex<'a> {
    fixed: usize,
    symbolic: Vec<&'a Expr>,
}

impl SlotIndex<'_> {
    /// Human-readable form for doc comments.
    fn describe(&self) -> String {
        if self.symbolic.is_empty() {
            self.fixed.to_string()
        } else {
            format!("`{}`", self.to_token_stream())
        }
    }
}

impl<'a> SlotIndex<'a> {
    /// Advances past a reference array of length `len`.
    fn add_len(&mut self, len: &'a Expr) {
        match literal_len(len) {
            Some(n) => self.fixed += n,
            None => self.symbolic.push(len),
        }
    }
}

impl ToTokens for SlotIndex<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream2) {
        let fixed = Literal::usize_unsuffixed(self.fixed);
        let symbolic = &self.symbolic;
        tokens.extend(quote!(#fixed #(+ (#symbolic))*));
    }
}

/// Rejects everything but non-generic structs and returns the fields.
fn struct_fields(input: &DeriveInput) -> syn::Result<Vec<&Field>> {
    if let Some(param) = input.generics.params.first() {
        let what = match param {
            GenericParam::Lifetime(_) => "lifetime parameters",
            GenericParam::Type(_) => "generic structs",
            GenericParam::Const(_) => "const generic parameters",
        };
        return Err(Error::new_spanned(
            &input.generics,
            format!(
                "#[derive(Object)] does not support {what}: each heap type needs its own type tag"
            ),
        ));
    }
    match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => Ok(named.named.iter().collect()),
            Fields::Unit => Ok(Vec::new()),
            Fields::Unnamed(unnamed) => Err(Error::new_spanned(
                unnamed,
                "#[derive(Object)] does not support tuple structs: use named fields, \
                 the field keys are named after them",
            )),
        },
        Data::Enum(data) => Err(Error::new_spanned(
            data.enum_token,
            "#[derive(Object)] only supports structs with named fields, not enums",
        )),
        Data::Union(data) => Err(Error::new_spanned(
            data.union_token,
            "#[derive(Object)] only supports structs with named fields, not unions",
        )),
    }
}

/// Adds `err` to the accumulated `errors`.
fn push_error(errors: &mut Option<Error>, err: Error) {
    match errors {
        Some(errors) => errors.combine(err),
        None => *errors = Some(err),
    }
}

/// Generates the whole derive output for `input`.
fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let fields = struct_fields(input)?;
    let name = &input.ident;
    let where_clause = &input.generics.where_clause;
    let name_str = name.unraw().to_string();

    let mut key_consts = Vec::new();
    let mut data_layouts = Vec::new();
    let mut checks = Vec::new();
    let mut writes = Vec::new();
    let mut nullable_checks = Vec::new();
    let mut bindings = Vec::new();
    let mut slot = SlotIndex::default();
    let mut zeroable = true;
    let mut seen: HashMap<String, &Ident> = HashMap::new();
    let mut errors: Option<Error> = None;

    for (i, field) in fields.iter().enumerate() {
        let ident = field
            .ident
            .as_ref()
            .expect("named fields always have an identifier");
        let ty = &field.ty;
        let vis = &field.vis;

        let key_name = screaming(&ident.unraw().to_string());
        let key = match syn::parse_str::<Ident>(&key_name) {
            Ok(mut key) if key_name != DATA_CONST => {
                key.set_span(ident.span());
                key
            }
            _ => {
                let err = Error::new_spanned(
                    ident,
                    format!(
                        "#[derive(Object)] cannot name a field key `{key_name}` after this field"
                    ),
                );
                push_error(&mut errors, err);
                continue;
            }
        };
        if let Some(previous) = seen.insert(key_name.clone(), ident) {
            let err = Error::new_spanned(
                ident,
                format!(
                    "#[derive(Object)]: fields `{previous}` and `{ident}` both map to the field key `{key_name}`"
                ),
            );
            push_error(&mut errors, err);
            continue;
        }

        let binding = format_ident!("__movegc_f{i}");
        bindings.push(quote!(#ident: #binding));

        match classify(ty) {
            FieldKind::Ref { nullable } => {
                zeroable &= nullable;
                let doc = format!(
                    "Field key of `{name}::{ident}` (reference slot {}).",
                    slot.describe()
                );
                key_consts.push(quote! {
                    #[doc = #doc]
                    #vis const #key: ::movegc::RefField<#name, #ty> =
                        unsafe { ::movegc::RefField::new_unchecked(#slot) };
                });
                checks.push(quote!(c.check_ref(&self.#ident)?;));
                writes.push(quote!(w.set(Self::#key, #binding);));
                if nullable {
                    nullable_checks.push(quote_spanned! {ty.span()=>
                        const _: () = ::movegc::__private::assert_nullable::<#ty>();
                    });
                }
                slot.fixed += 1;
            }
            FieldKind::RefArray {
                elem,
                len,
                nullable,
            } => {
                zeroable &= nullable;
                let doc = match (&slot.symbolic[..], literal_len(len)) {
                    ([], Some(n)) => format!(
                        "Field key of `{name}::{ident}` (reference slots {}..{}).",
                        slot.fixed,
                        slot.fixed + n
                    ),
                    _ => format!(
                        "Field key of `{name}::{ident}` (`{}` reference slots starting at slot {}).",
                        len.to_token_stream(),
                        slot.describe()
                    ),
                };
                let n = const_arg(len);
                key_consts.push(quote! {
                    #[doc = #doc]
                    #vis const #key: ::movegc::RefSlots<#name, #elem, #n> =
                        unsafe { ::movegc::RefSlots::new_unchecked(#slot) };
                });
                checks.push(quote!(c.check_refs(&self.#ident)?;));
                writes.push(quote!(w.set_slots(Self::#key, #binding);));
                if nullable {
                    nullable_checks.push(quote_spanned! {elem.span()=>
                        const _: () = ::movegc::__private::assert_nullable::<#elem>();
                    });
                }
                slot.add_len(len);
            }
            FieldKind::Data => {
                let k = Literal::usize_unsuffixed(data_layouts.len());
                let doc = format!(
                    "Field key of `{name}::{ident}` (data field {k}; its byte offset is \
                     computed at compile time from the data fields' `Data` layouts)."
                );
                data_layouts.push(quote_spanned! {ty.span()=>
                    (<#ty as ::movegc::Data>::SIZE, <#ty as ::movegc::Data>::ALIGN)
                });
                key_consts.push(quote! {
                    #[doc = #doc]
                    #vis const #key: ::movegc::DataField<#name, #ty> =
                        ::movegc::DataField::new(Self::__MOVEGC_DATA.0[#k]);
                });
                // Spanned so that a missing `Data` impl points at the field type.
                writes.push(quote_spanned! {ty.span()=>
                    w.write(Self::#key, #binding);
                });
            }
        }
    }
    if let Some(errors) = errors {
        return Err(errors);
    }

    let data_count = Literal::usize_unsuffixed(data_layouts.len());
    let refs = &slot;
    // Avoid unused-variable warnings in the user's crate for empty bodies.
    let c = if checks.is_empty() {
        quote!(_c)
    } else {
        quote!(c)
    };
    let w = if writes.is_empty() {
        quote!(_w)
    } else {
        quote!(w)
    };
    let zeroable_impl = zeroable.then(|| {
        quote! {
            #[automatically_derived]
            unsafe impl ::movegc::Zeroable for #name #where_clause {}
        }
    });

    Ok(quote! {
        #[automatically_derived]
        impl #name #where_clause {
            #[doc(hidden)]
            const __MOVEGC_DATA: ([usize; #data_count], usize) =
                ::movegc::__private::data_offsets::<#data_count>([#(#data_layouts),*]);

            #(#key_consts)*
        }

        #[automatically_derived]
        unsafe impl ::movegc::Object for #name #where_clause {
            const REFS: usize = #refs;
            const DATA: usize = Self::__MOVEGC_DATA.1;
            const NAME: &'static str = #name_str;

            fn __tag_cell() -> &'static ::movegc::__private::TagCell {
                static TAG: ::movegc::__private::TagCell = ::movegc::__private::TagCell::new();
                &TAG
            }

            fn __check_handles(
                &self,
                #c: &::movegc::__private::Check<'_>,
            ) -> ::movegc::Result<()> {
                #(#checks)*
                ::core::result::Result::Ok(())
            }

            fn __write_fields(self, #w: &mut ::movegc::__private::Writer<'_, Self>) {
                let Self { #(#bindings),* } = self;
                #(#writes)*
            }
        }

        #zeroable_impl
        #(#nullable_checks)*
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(src: &str) -> Type {
        syn::parse_str(src).expect("valid type")
    }

    /// Short description of a classification, for assertions.
    fn kind(src: &str) -> String {
        match classify(&ty(src)) {
            FieldKind::Ref { nullable } => format!("ref nullable={nullable}"),
            FieldKind::RefArray {
                elem,
                len,
                nullable,
            } => format!(
                "array [{}; {}] nullable={nullable}",
                elem.to_token_stream(),
                len.to_token_stream()
            ),
            FieldKind::Data => "data".to_owned(),
        }
    }

    fn expand_str(src: &str) -> syn::Result<String> {
        let input: DeriveInput = syn::parse_str(src).expect("valid item");
        expand(&input).map(|tokens| tokens.to_string())
    }

    /// Token-normalised form of `src`, for substring checks on expansions.
    fn toks(src: &str) -> String {
        src.parse::<TokenStream2>()
            .expect("valid tokens")
            .to_string()
    }

    #[test]
    fn screaming_snake_case() {
        assert_eq!(screaming("max_depth"), "MAX_DEPTH");
        assert_eq!(screaming("left"), "LEFT");
        assert_eq!(screaming("maxDepth"), "MAX_DEPTH");
        assert_eq!(screaming("x2"), "X2");
        assert_eq!(screaming("_private"), "_PRIVATE");
        assert_eq!(screaming("__movegc_data"), DATA_CONST);
    }

    #[test]
    fn classifies_references() {
        assert_eq!(kind("Gc<Node>"), "ref nullable=false");
        assert_eq!(kind("movegc::Gc<Node>"), "ref nullable=false");
        assert_eq!(kind("::movegc::Gc<Node>"), "ref nullable=false");
        assert_eq!(kind("Option<Gc<Node>>"), "ref nullable=true");
        assert_eq!(
            kind("core::option::Option<movegc::Gc<Node>>"),
            "ref nullable=true"
        );
        assert_eq!(kind("(Gc<Node>)"), "ref nullable=false");
    }

    #[test]
    fn classifies_reference_arrays() {
        assert_eq!(
            kind("[Gc<Node>; 3]"),
            "array [Gc < Node >; 3] nullable=false"
        );
        assert_eq!(
            kind("[Option<Gc<Node>>; N * 2]"),
            "array [Option < Gc < Node > >; N * 2] nullable=true"
        );
    }

    #[test]
    fn classifies_data() {
        for src in [
            "i64",
            "u8",
            "[u8; 16]",
            "Option<i64>",
            "Option<Option<Gc<Node>>>",
            "Gc",
            "Gc<A, B>",
            "Gc<'static>",
            "Vec<Gc<Node>>",
            "[[Gc<Node>; 2]; 2]",
            "<X as Tr>::Gc<Node>",
            "&'static str",
        ] {
            assert_eq!(kind(src), "data", "{src}");
        }
    }

    #[test]
    fn literal_lengths() {
        let len = |src: &str| literal_len(&syn::parse_str(src).expect("valid expr"));
        assert_eq!(len("4"), Some(4));
        assert_eq!(len("4usize"), Some(4));
        assert_eq!(len("4u8"), None);
        assert_eq!(len("N"), None);
        let arg = |src: &str| const_arg(&syn::parse_str(src).expect("valid expr")).to_string();
        assert_eq!(arg("4"), "4");
        assert_eq!(arg("N"), "N");
        assert_eq!(arg("N * 2"), "{ N * 2 }");
    }

    #[test]
    fn expands_node() {
        let out = expand_str(
            "pub struct Node {
                pub left: Option<Gc<Node>>,
                pub(crate) right: Option<Gc<Node>>,
                kids: [Option<Gc<Node>>; 4],
                pub value: i64,
                pub r#type: u8,
                more: [Option<Gc<Node>>; M],
                last: Option<Gc<Node>>,
            }",
        )
        .expect("expands");
        for expected in [
            "const __MOVEGC_DATA : ([usize ; 2] , usize) = :: movegc :: __private :: data_offsets :: < 2 >",
            "pub const LEFT : :: movegc :: RefField < Node , Option < Gc < Node > > > = unsafe { :: movegc :: RefField :: new_unchecked (0) }",
            "pub (crate) const RIGHT",
            "const KIDS : :: movegc :: RefSlots < Node , Option < Gc < Node > > , 4 > = unsafe { :: movegc :: RefSlots :: new_unchecked (2) }",
            "pub const VALUE : :: movegc :: DataField < Node , i64 > = :: movegc :: DataField :: new (Self :: __MOVEGC_DATA . 0 [0])",
            "pub const TYPE : :: movegc :: DataField < Node , u8 >",
            "DataField :: new (Self :: __MOVEGC_DATA . 0 [1])",
            "RefSlots :: new_unchecked (6)",
            "RefField :: new_unchecked (6 + (M))",
            "const REFS : usize = 7 + (M) ;",
            "const NAME : & 'static str = \"Node\"",
            "c . check_ref (& self . left) ? ;",
            "c . check_refs (& self . kids) ? ;",
            "let Self { left : __movegc_f0 , right : __movegc_f1 , kids : __movegc_f2 , value : __movegc_f3 , r#type : __movegc_f4 , more : __movegc_f5 , last : __movegc_f6 } = self ;",
            "w . set_slots (Self :: KIDS , __movegc_f2) ;",
            "w . write (Self :: TYPE , __movegc_f4) ;",
            "w . set (Self :: LAST , __movegc_f6) ;",
            "unsafe impl :: movegc :: Zeroable for Node { }",
            "const _ : () = :: movegc :: __private :: assert_nullable :: < Option < Gc < Node > > > () ;",
            "fn __tag_cell () -> & 'static :: movegc :: __private :: TagCell",
        ] {
            assert!(out.contains(&toks(expected)), "missing `{expected}` in\n{out}");
        }
        assert!(!out.contains("check_ref (& self . value)"));
    }

    #[test]
    fn non_null_references_are_not_zeroable() {
        let out = expand_str("struct Pair { a: Option<Gc<Pair>>, b: [Gc<Pair>; 2] }").unwrap();
        assert!(!out.contains("Zeroable"));
        assert!(out.contains(&toks("const REFS : usize = 3 ;")));
    }

    #[test]
    fn expands_empty_structs() {
        for src in ["struct Unit;", "struct Empty {}"] {
            let out = expand_str(src).expect("expands");
            for expected in [
                "const __MOVEGC_DATA : ([usize ; 0] , usize) = :: movegc :: __private :: data_offsets :: < 0 > ([]) ;",
                "const REFS : usize = 0 ;",
                "_c : & :: movegc :: __private :: Check",
                "_w : & mut :: movegc :: __private :: Writer",
                "Zeroable",
            ] {
                assert!(out.contains(&toks(expected)), "missing `{expected}` in\n{out}");
            }
        }
    }

    #[test]
    fn rejects_unsupported_inputs() {
        let err = |src: &str| expand_str(src).expect_err("rejected").to_string();
        assert!(err("struct G<T> { x: T }").contains("does not support generic structs"));
        assert!(err("struct L<'a> { x: &'a u8 }").contains("does not support lifetime"));
        assert!(err("struct C<const N: usize> { x: u8 }").contains("const generic"));
        assert!(err("struct T(u8);").contains("tuple structs"));
        assert!(err("enum E { A }").contains("not enums"));
        assert!(err("union U { a: u8 }").contains("not unions"));
        assert!(err("struct D { max_depth: u8, maxDepth: u8 }").contains("both map to"));
        assert!(err("struct H { __movegc_data: u8 }").contains("cannot name a field key"));
    }
}
