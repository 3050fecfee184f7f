//! The context a function receives: the database, the caller's identity, frozen time and
//! seeded randomness.

use crate::auth::UserIdentity;
use crate::db::{DatabaseReader, DatabaseWriter};
use crate::host;
use std::cell::Cell;

/// Who called: `ctx.auth.get_user_identity()`.
pub struct Auth {
    _private: (),
}

impl Auth {
    pub(crate) fn new() -> Self {
        Auth { _private: () }
    }

    /// The signed-in user the call runs for, from the token their client sent (verified by
    /// the server against the providers of [`crate::AuthConfig`]), or `None` when the caller
    /// is not signed in. A query's result depends on it: each identity gets its own.
    ///
    /// ```no_run
    /// # use ferrovex_sdk::prelude::*;
    /// #[mutation]
    /// fn send(ctx: &mut MutationCtx, body: String) -> Result<Id> {
    ///     let Some(user) = ctx.auth.get_user_identity() else {
    ///         bail!("send: sign in first");
    ///     };
    ///     Ok(ctx.db.insert("messages", doc! { "author": user.token_identifier(), "body": body })?)
    /// }
    /// ```
    pub fn get_user_identity(&self) -> Option<UserIdentity> {
        host::auth_identity().map(UserIdentity::new)
    }
}

/// What a query sees: a read-only database. Writing does not compile:
///
/// ```compile_fail
/// use ferrovex_sdk::prelude::*;
/// #[query]
/// fn sneaky(ctx: &QueryCtx) -> Result<()> {
///     ctx.db.insert("messages", doc! { "body": "no" })?;
///     Ok(())
/// }
/// ```
pub struct QueryCtx {
    /// The database, read-only: `ctx.db.get(&id)`, `ctx.db.query("messages")`.
    pub db: DatabaseReader,
    /// The caller's identity.
    pub auth: Auth,
    env: Env,
}

/// What a mutation sees: a database it can read and write.
pub struct MutationCtx {
    /// The database: every read of [`QueryCtx`]'s, and `insert`, `patch`, `replace`,
    /// `delete`, all committed together when the mutation returns `Ok`.
    pub db: DatabaseWriter,
    /// The caller's identity.
    pub auth: Auth,
    /// Runs functions later, as part of this mutation: nothing is scheduled if it fails.
    pub scheduler: crate::action::Scheduler,
    env: Env,
}

/// Time and randomness, both given by the host so that a call is a deterministic function
/// of its arguments and the database.
struct Env {
    rng_state: Cell<Option<u64>>,
}

impl Env {
    fn new() -> Self {
        Env {
            rng_state: Cell::new(None),
        }
    }

    fn next_u64(&self) -> u64 {
        // splitmix64 over the host's seed: small, fast, reproducible.
        let state = self
            .rng_state
            .get()
            .unwrap_or_else(host::random_seed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.rng_state.set(Some(state));
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

macro_rules! env_methods {
    () => {
        /// The call's time in milliseconds since the Unix epoch, frozen for the whole call.
        pub fn now(&self) -> f64 {
            host::now_ms()
        }

        /// A random 64-bit number from the call's seeded generator.
        pub fn random_u64(&self) -> u64 {
            self.env.next_u64()
        }

        /// A random float in `[0, 1)`.
        pub fn random_f64(&self) -> f64 {
            (self.env.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    };
}

impl QueryCtx {
    pub(crate) fn new() -> Self {
        QueryCtx {
            db: DatabaseReader { _private: () },
            auth: Auth { _private: () },
            env: Env::new(),
        }
    }
    env_methods!();
}

impl MutationCtx {
    pub(crate) fn new() -> Self {
        MutationCtx {
            db: DatabaseWriter {
                reader: DatabaseReader { _private: () },
            },
            auth: Auth { _private: () },
            scheduler: crate::action::Scheduler::new(),
            env: Env::new(),
        }
    }
    env_methods!();
}
