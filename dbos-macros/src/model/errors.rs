//! [`Errors`]: collects every misuse of one expansion, so the user sees them all at once.

use quote::ToTokens;

/// Accumulates errors so one expansion reports every misuse at once.
#[derive(Default)]
pub(super) struct Errors(Option<syn::Error>);

impl Errors {
    pub(super) fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    pub(super) fn push_spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(super) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
