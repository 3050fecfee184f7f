//! Who a request comes from: its `Authorization` header (docs/PROTOCOL.md section 4.1).
//! `Bearer <token>` signs a call in as the token's user; `Convex <admin key>` is the
//! deployment's admin, required by every admin endpoint and by internal functions.

use super::response::{request_error, HttpResponse};
use crate::auth::{Access, AdminKeyError, Caller};
use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::StatusCode;

/// What an `Authorization` header carries.
enum Credential<'a> {
    None,
    Bearer(&'a str),
    AdminKey(&'a str),
}

fn credential(headers: &HeaderMap) -> Result<Credential<'_>, HttpResponse> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(Credential::None);
    };
    let invalid =
        |message: String| request_error(StatusCode::UNAUTHORIZED, "InvalidAuthHeader", message);
    let text = value
        .to_str()
        .map_err(|_| invalid("the Authorization header is not ASCII".into()))?;
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim();
    match scheme {
        s if s.eq_ignore_ascii_case("bearer") && !rest.is_empty() => Ok(Credential::Bearer(rest)),
        s if s.eq_ignore_ascii_case("convex") && !rest.is_empty() => {
            Ok(Credential::AdminKey(rest))
        }
        // What was sent is not repeated: it may be a secret without its scheme.
        _ => Err(invalid(
            "the Authorization header must be `Bearer <token>` (a signed-in user) or `Convex <admin key>`".into(),
        )),
    }
}

fn refused_key(endpoint: &str, error: AdminKeyError) -> HttpResponse {
    let status = match error {
        AdminKeyError::Unreadable(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNAUTHORIZED,
    };
    request_error(status, error.code(), format!("{endpoint}: {error}"))
}

/// The caller a call request comes from; a refused token or key is a 401 naming the rule.
pub async fn caller(
    access: &Access,
    endpoint: &str,
    headers: &HeaderMap,
) -> Result<Caller, HttpResponse> {
    match credential(headers)? {
        Credential::None => Ok(Caller::default()),
        Credential::Bearer(token) => match access.verify(token).await {
            Ok(verified) => Ok(Caller::user(verified.identity)),
            Err(e) => Err(request_error(
                StatusCode::UNAUTHORIZED,
                e.code(),
                format!("{endpoint}: the bearer token is refused: {e}"),
            )),
        },
        Credential::AdminKey(key) => access
            .admin_key()
            .check(Some(key))
            .map(|()| Caller::admin())
            .map_err(|e| refused_key(endpoint, e)),
    }
}

/// Refuses a request to an admin endpoint unless it carries the admin key.
pub fn require_admin(
    access: &Access,
    endpoint: &str,
    headers: &HeaderMap,
) -> Result<(), HttpResponse> {
    let key = match credential(headers)? {
        Credential::AdminKey(key) => Some(key),
        Credential::None | Credential::Bearer(_) => None,
    };
    access
        .admin_key()
        .check(key)
        .map_err(|e| refused_key(endpoint, e))
}
