//! A signed-in caller's identity: what a function sees through `ctx.auth` and what the host
//! builds from a verified token. One object of fields, as Convex's `UserIdentity`:
//! `tokenIdentifier` (`issuer|subject`, the stable key of a user), `issuer`, `subject`, the
//! standard OpenID Connect claims under camelCase names (`email`, `emailVerified`, `name`,
//! `pictureUrl`...), and every other claim of the token under its own name.
//!
//! The claims that differ from one token to the next of the same sign-in (`exp`, `iat`,
//! `nbf`, `jti`, `nonce`, `auth_time`, hashes) are left out: a refreshed token gives the same
//! identity, so live queries keep their results and identical identities share one
//! computation.

use crate::json::field_name_error;
use crate::value::{Object, Value};
use serde_json::Value as Json;

/// The registered claims that are part of every identity under other names, or that change
/// with every token of one sign-in: never copied into the identity as they are.
const OMITTED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "nonce",
    "auth_time",
    "at_hash",
    "c_hash",
];

/// The standard OpenID Connect claims (Core 1.0, section 5.1) and the identity field each is
/// given under, as Convex names them.
pub const STANDARD_CLAIMS: &[(&str, &str)] = &[
    ("name", "name"),
    ("given_name", "givenName"),
    ("family_name", "familyName"),
    ("nickname", "nickname"),
    ("preferred_username", "preferredUsername"),
    ("profile", "profileUrl"),
    ("picture", "pictureUrl"),
    ("email", "email"),
    ("email_verified", "emailVerified"),
    ("gender", "gender"),
    ("birthdate", "birthday"),
    ("zoneinfo", "timezone"),
    ("locale", "language"),
    ("phone_number", "phoneNumber"),
    ("phone_number_verified", "phoneNumberVerified"),
    ("address", "address"),
    ("updated_at", "updatedAt"),
];

/// A caller's identity (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct UserIdentity(Object);

impl UserIdentity {
    /// The identity of a token from `issuer` for `subject` with these claims (the rest of the
    /// token's payload). Claims whose names cannot be field names are left out.
    pub fn from_claims(
        issuer: &str,
        subject: &str,
        claims: impl IntoIterator<Item = (String, Value)>,
    ) -> UserIdentity {
        let mut fields = Object::new();
        for (name, value) in claims {
            if OMITTED_CLAIMS.contains(&name.as_str()) {
                continue;
            }
            let name = match STANDARD_CLAIMS.iter().find(|(claim, _)| *claim == name) {
                Some((_, field)) => (*field).to_owned(),
                None => name,
            };
            if field_name_error(&name).is_none() {
                fields.insert(name, value);
            }
        }
        fields.insert(
            "tokenIdentifier".into(),
            format!("{issuer}|{subject}").into(),
        );
        fields.insert("issuer".into(), issuer.into());
        fields.insert("subject".into(), subject.into());
        UserIdentity(fields)
    }

    /// The identity in a value (an object with at least the three string fields
    /// `tokenIdentifier`, `issuer` and `subject`).
    pub fn from_value(value: Value) -> Result<UserIdentity, String> {
        let Value::Object(fields) = value else {
            return Err(format!(
                "an identity is an object, got {}",
                value.type_name()
            ));
        };
        for field in ["tokenIdentifier", "issuer", "subject"] {
            if !matches!(fields.get(field), Some(Value::String(_))) {
                return Err(format!("an identity needs the string field {field:?}"));
            }
        }
        Ok(UserIdentity(fields))
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// Every field.
    pub fn fields(&self) -> &Object {
        &self.0
    }

    fn text(&self, field: &str) -> Option<&str> {
        self.0.get(field).and_then(Value::as_str)
    }

    /// `issuer|subject`: the key to store a user's data under.
    pub fn token_identifier(&self) -> &str {
        self.text("tokenIdentifier").unwrap_or_default()
    }

    /// The token's `iss`.
    pub fn issuer(&self) -> &str {
        self.text("issuer").unwrap_or_default()
    }

    /// The token's `sub`: the user's id at the issuer.
    pub fn subject(&self) -> &str {
        self.text("subject").unwrap_or_default()
    }

    /// The `name` claim.
    pub fn name(&self) -> Option<&str> {
        self.text("name")
    }

    /// The `email` claim.
    pub fn email(&self) -> Option<&str> {
        self.text("email")
    }

    /// The `email_verified` claim.
    pub fn email_verified(&self) -> Option<bool> {
        match self.0.get("emailVerified") {
            Some(Value::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    /// The `picture` claim.
    pub fn picture_url(&self) -> Option<&str> {
        self.text("pictureUrl")
    }

    /// Any field by its identity name: a standard claim's camelCase name (`givenName`) or a
    /// custom claim's own name.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
}

/// A claim as a value: integers as int64, other numbers as float64; object fields whose names
/// cannot be field names are left out (a client could not decode them).
pub fn claim_value(json: Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Boolean(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int64(i),
            None => Value::Float64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s),
        Json::Array(items) => Value::Array(items.into_iter().map(claim_value).collect()),
        Json::Object(fields) => Value::Object(
            fields
                .into_iter()
                .filter(|(name, _)| field_name_error(name).is_none())
                .map(|(name, value)| (name, claim_value(value)))
                .collect::<Object>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_become_fields_under_their_identity_names() {
        let identity = UserIdentity::from_claims(
            "https://issuer.example",
            "user-1",
            [
                ("email".to_owned(), Value::from("ada@example.com")),
                ("email_verified".to_owned(), Value::Boolean(true)),
                ("given_name".to_owned(), Value::from("Ada")),
                ("exp".to_owned(), Value::Int64(1)),
                ("iat".to_owned(), Value::Int64(1)),
                ("aud".to_owned(), Value::from("app")),
                ("org_role".to_owned(), Value::from("admin")),
                ("$bad".to_owned(), Value::from("dropped")),
                ("naïve".to_owned(), Value::from("dropped")),
                ("sub".to_owned(), Value::from("someone else")),
            ],
        );
        assert_eq!(identity.token_identifier(), "https://issuer.example|user-1");
        assert_eq!(identity.subject(), "user-1");
        assert_eq!(identity.email(), Some("ada@example.com"));
        assert_eq!(identity.email_verified(), Some(true));
        assert_eq!(identity.claim("givenName"), Some(&Value::from("Ada")));
        assert_eq!(identity.claim("org_role"), Some(&Value::from("admin")));
        let names: Vec<&str> = identity.fields().keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "email",
                "emailVerified",
                "givenName",
                "issuer",
                "org_role",
                "subject",
                "tokenIdentifier"
            ]
        );
        assert_eq!(
            UserIdentity::from_value(identity.to_value()).unwrap(),
            identity
        );
    }

    #[test]
    fn an_identity_value_needs_its_three_keys() {
        for (value, error) in [
            (Value::Null, "an identity is an object, got null"),
            (
                Value::Object(Object::new()),
                "an identity needs the string field \"tokenIdentifier\"",
            ),
        ] {
            assert_eq!(UserIdentity::from_value(value).unwrap_err(), error);
        }
    }
}
