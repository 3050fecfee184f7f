//! Who calls, and what they may do: the deployment's admin key ([`admin_key`]) and users
//! signed in with tokens from the app's providers ([`jwt`]); what they become is a
//! [`Caller`] (`crate::caller`), which every call carries into the wasm host.
//!
//! [`Access`] is what the server holds: the admin key's file and the providers of the module
//! being served, rebuilt at each deploy.

pub mod admin_key;
pub mod jwt;

pub use admin_key::{AdminKeyError, AdminKeyFile};
pub use jwt::{AuthSettings, Providers, TokenError, Verified};

pub use crate::caller::{Caller, Identity};
use crate::env_vars::EnvVars;
use ferrovex_model::abi::AuthConfig;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The server's access control: the admin key of its data folder, and the sign-in providers
/// of the module it serves.
pub struct Access {
    admin_key: AdminKeyFile,
    settings: AuthSettings,
    /// The deployment's own variables, which override `settings.env` of the same name.
    env_vars: Option<EnvVars>,
    providers: RwLock<Arc<Providers>>,
}

impl Access {
    /// Access for a module with `config`: its settings read now, from `env_vars` (the data
    /// folder's variables) over `settings.env` (an unset variable is an error naming it).
    /// Keys are fetched later ([`Access::prefetch`]).
    pub fn new(
        admin_key: AdminKeyFile,
        settings: AuthSettings,
        env_vars: Option<EnvVars>,
        config: &AuthConfig,
    ) -> Result<Access, String> {
        let vars = load(env_vars.as_ref())?;
        let providers = Providers::new(config, &overlaid(&settings, &vars))?;
        Ok(Access {
            admin_key,
            settings,
            env_vars,
            providers: RwLock::new(Arc::new(providers)),
        })
    }

    pub fn admin_key(&self) -> &AdminKeyFile {
        &self.admin_key
    }

    /// The deployment's variables, where it keeps them.
    pub fn env_vars(&self) -> Option<&EnvVars> {
        self.env_vars.as_ref()
    }

    /// The providers of a module about to be deployed, or why its config cannot be used.
    /// Unchanged providers keep their cached keys.
    pub fn prepare(&self, config: &AuthConfig) -> Result<Arc<Providers>, String> {
        let vars = load(self.env_vars.as_ref())?;
        self.prepare_with(config, &vars)
    }

    /// [`Access::prepare`] as if the deployment's variables were `vars` (to check a change
    /// to them before it is made).
    pub fn prepare_with(
        &self,
        config: &AuthConfig,
        vars: &BTreeMap<String, String>,
    ) -> Result<Arc<Providers>, String> {
        let current = self.providers();
        let next = Providers::new(config, &overlaid(&self.settings, vars))?;
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

/// `settings` with the deployment's variables `vars` over its process environment.
fn overlaid(settings: &AuthSettings, vars: &BTreeMap<String, String>) -> AuthSettings {
    let mut settings = settings.clone();
    settings
        .env
        .extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    settings
}

/// The deployment's variables; none when it keeps none.
fn load(env_vars: Option<&EnvVars>) -> Result<BTreeMap<String, String>, String> {
    env_vars.map_or_else(|| Ok(BTreeMap::new()), EnvVars::load)
}
