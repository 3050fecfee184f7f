//! Who a call runs for, as the layers below the server see it: plain data, no verification
//! (that is `crate::auth`, which makes these from tokens and keys).

use ferrovex_model::binary;
use ferrovex_model::identity::UserIdentity;
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
    /// Who this is, for records kept per caller (a mutation's outcome under its
    /// `(sessionId, requestId)`): empty for an anonymous caller, else `admin` and/or the
    /// identity's token identifier, which stays the same across refreshed tokens of one user.
    pub fn record_key(&self) -> String {
        let user = self
            .identity
            .as_ref()
            .map(|identity| identity.user().token_identifier());
        match (self.admin, user) {
            (false, None) => String::new(),
            (true, None) => "admin".into(),
            (false, Some(user)) => format!("user:{user}"),
            (true, Some(user)) => format!("admin:user:{user}"),
        }
    }

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
