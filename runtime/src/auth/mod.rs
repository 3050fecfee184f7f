//! Who calls, and what they may do: the deployment's admin key ([`admin_key`]), users signed
//! in with tokens from the app's providers ([`jwt`]), and the [`Caller`] every call carries
//! into the wasm host (its identity, and whether it may call internal functions).
//!
//! [`Access`] is what the server holds: the admin key's file and the providers of the module
//! being served, rebuilt at each deploy.

pub mod admin_key;
pub mod jwt;

pub use admin_key::{AdminKeyError, AdminKeyFile};
pub use jwt::{AuthSettings, Providers, TokenError, Verified};

use ferrovex_model::abi::AuthConfig;
use ferrovex_model::binary;
use ferrovex_model::identity::UserIdentity;
use parking_lot::RwLock;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A verified user's identity, as the wasm host hands it to functions. Two identities are
/// equal when their fields are (compared by their canonical binary encoding), which is what
/// lets identical identities share one live query.
#[derive(Clone, Debug)]
pub struct Identity {
    user: Arc<UserIdentity>,
    encoded: Arc<[u8]>,
}

impl Identity {
    pub fn new(user: UserIdentity) -> Identity {
        let encoded = binary::encode(&user.to_value()).into();
        Identity {
            user: Arc::new(user),
            encoded,
        }
    }

    pub fn user(&self) -> &UserIdentity {
        &self.user
    }

    /// The identity in the ABI's binary form (what `auth_identity` answers).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl Eq for Identity {}

impl Hash for Identity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.encoded.hash(state)
    }
}

/// Who a call runs for: the identity functions see (`ctx.auth`), and whether the caller holds
/// the admin key, which alone may call internal functions. An input of the call like its
/// arguments: live queries are shared per (function, arguments, caller).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Caller {
    pub identity: Option<Identity>,
    pub admin: bool,
}

impl Caller {
    /// A caller with the admin key, acting as no user.
    pub fn admin() -> Caller {
        Caller {
            identity: None,
            admin: true,
        }
    }

    pub fn user(identity: Identity) -> Caller {
        Caller {
            identity: Some(identity),
            admin: false,
        }
    }
}

/// The server's access control: the admin key of its data folder, and the sign-in providers
/// of the module it serves.
pub struct Access {
    admin_key: AdminKeyFile,
    settings: AuthSettings,
    providers: RwLock<Arc<Providers>>,
}

impl Access {
    /// Access for a module with `config`: its settings read now (an unset environment
    /// variable is an error naming it). Keys are fetched later ([`Access::prefetch`]).
    pub fn new(
        admin_key: AdminKeyFile,
        settings: AuthSettings,
        config: &AuthConfig,
    ) -> Result<Access, String> {
        let providers = Arc::new(Providers::new(config, &settings)?);
        Ok(Access {
            admin_key,
            settings,
            providers: RwLock::new(providers),
        })
    }

    pub fn admin_key(&self) -> &AdminKeyFile {
        &self.admin_key
    }

    /// The providers of a module about to be deployed, or why its config cannot be used.
    /// Unchanged providers keep their cached keys.
    pub fn prepare(&self, config: &AuthConfig) -> Result<Arc<Providers>, String> {
        let current = self.providers();
        let next = Providers::new(config, &self.settings)?;
        if next.same_as(&current) {
            return Ok(current);
        }
        Ok(Arc::new(next))
    }

    /// Makes `providers` (from [`Access::prepare`]) the ones tokens are verified with.
    pub fn install(&self, providers: Arc<Providers>) {
        *self.providers.write() = providers;
    }

    pub fn providers(&self) -> Arc<Providers> {
        self.providers.read().clone()
    }

    /// Fetches every provider's keys now, so that no token waits for them; a provider that
    /// cannot be reached is logged and tried again when a token of it arrives.
    pub async fn prefetch(&self) {
        self.providers().prefetch().await
    }

    /// Verifies a user token against the current providers.
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let providers = self.providers();
        providers.verify(token).await
    }
}
