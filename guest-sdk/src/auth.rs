//! The sign-in providers an app trusts: `#[auth_config]`.

use crate::value::ValueRef;
use ferrovex_model::abi;
pub use ferrovex_model::abi::{JwtAlgorithm, Setting};
use ferrovex_model::identity;
use serde::{Serialize, Serializer};

/// The signed-in caller (`ctx.auth.get_user_identity()`): `token_identifier()` (`issuer|subject`,
/// the key to store a user's data under), `subject()`, `issuer()`, the standard claims
/// (`name()`, `email()`...) and any claim by name (`claim("org_role")`). A function may return
/// it: it serializes as the object of all its fields.
#[derive(Clone, Debug, PartialEq)]
pub struct UserIdentity(identity::UserIdentity);

impl UserIdentity {
    pub(crate) fn new(inner: identity::UserIdentity) -> Self {
        UserIdentity(inner)
    }
}

impl std::ops::Deref for UserIdentity {
    type Target = identity::UserIdentity;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Serialize for UserIdentity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ValueRef(&self.0.to_value()).serialize(s)
    }
}

/// The providers whose tokens the deployment accepts, declared once per app:
///
/// ```
/// use ferrovex_sdk::prelude::*;
/// use ferrovex_sdk::{env, JwtAlgorithm};
///
/// #[auth_config]
/// fn auth() -> AuthConfig {
///     AuthConfig::new()
///         // An OpenID Connect issuer (Clerk, Auth0, Google...): keys from its discovery document.
///         .oidc(env("AUTH_ISSUER"), env("AUTH_APPLICATION_ID"))
///         // Any JWT issuer with a JWKS: at a URL, or in a file of the app folder.
///         .custom_jwt("https://tokens.example.com", "my-app", JwtAlgorithm::ES256, "https://tokens.example.com/jwks.json")
/// }
/// ```
///
/// A setting written as [`env`]`("NAME")` is read from the server's environment when the app
/// is deployed, so one build serves a development and a production issuer; an unset variable
/// fails the deploy with its name. An app without `#[auth_config]` accepts no sign-in.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig(abi::AuthConfig);

impl AuthConfig {
    /// No providers yet.
    pub fn new() -> Self {
        AuthConfig::default()
    }

    /// Trusts an OpenID Connect issuer: tokens with `iss` equal to `issuer` (its URL, as its
    /// tokens write it) and `aud` containing `application_id`, signed with a key of the JWKS
    /// named by `{issuer}/.well-known/openid-configuration`.
    pub fn oidc(mut self, issuer: impl Into<Setting>, application_id: impl Into<Setting>) -> Self {
        self.0.providers.push(abi::AuthProvider::Oidc {
            issuer: issuer.into(),
            application_id: application_id.into(),
        });
        self
    }

    /// Trusts any issuer of signed JWTs: tokens with `iss` equal to `issuer` and `aud`
    /// containing `audience`, signed with `algorithm` by a key of the JWKS at `jwks` (an
    /// `https://` or `http://` URL, or a file path relative to the app folder).
    pub fn custom_jwt(
        mut self,
        issuer: impl Into<Setting>,
        audience: impl Into<Setting>,
        algorithm: JwtAlgorithm,
        jwks: impl Into<Setting>,
    ) -> Self {
        self.0.providers.push(abi::AuthProvider::CustomJwt {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithm,
            jwks: jwks.into(),
        });
        self
    }

    pub(crate) fn into_abi(self) -> abi::AuthConfig {
        self.0
    }
}

/// A setting read from the deployment's environment variable `name` when the app is deployed.
pub fn env(name: &str) -> Setting {
    Setting::Env(name.to_owned())
}
