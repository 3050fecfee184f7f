//! The chat example with sign-in (README.md in this folder): who wrote a message comes from
//! the token the client signed in with, checked by the server against the provider declared
//! here, so no client can post as someone else.

mod chat;
mod users;

use ferrovex_sdk::env;
use ferrovex_sdk::prelude::*;

/// One OpenID Connect provider, read from the server's environment when the app is deployed:
/// `AUTH_ISSUER` (the provider's URL, as its tokens' `iss` writes it) and
/// `AUTH_APPLICATION_ID` (what its tokens carry in `aud`).
#[auth_config]
fn auth() -> AuthConfig {
    AuthConfig::new().oidc(env("AUTH_ISSUER"), env("AUTH_APPLICATION_ID"))
}
