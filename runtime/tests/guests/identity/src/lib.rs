//! Sign-in for the tests: providers whose settings come from the server's environment (the
//! tests' own issuers on loopback), and functions that show the caller.

mod users;

use ferrovex_sdk::prelude::*;
use ferrovex_sdk::{env, JwtAlgorithm};

#[auth_config]
fn auth() -> AuthConfig {
    AuthConfig::new()
        .oidc(env("OIDC_ISSUER"), env("OIDC_APPLICATION_ID"))
        .custom_jwt(
            env("RS_ISSUER"),
            "rs-audience",
            JwtAlgorithm::RS256,
            env("RS_JWKS"),
        )
        .custom_jwt(
            env("ES_ISSUER"),
            "es-audience",
            JwtAlgorithm::ES256,
            env("ES_JWKS"),
        )
}
