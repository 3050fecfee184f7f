//! Sign-in tokens: a JWT verified against the providers the app declares (`#[auth_config]`,
//! `ferrovex_model::abi::AuthConfig`), with `jsonwebtoken` doing the cryptography and the
//! registered-claim checks: the signature, `iss`, `aud`, `exp` and `nbf` with
//! [`AUTH_CLOCK_LEEWAY`], and `iat` not in the future.
//!
//! Keys: each provider's JWKS is fetched when the module is deployed
//! ([`Providers::prefetch`]) and cached. A token whose `kid` the cache lacks makes one
//! refetch (the issuer may have rotated its keys), limited per provider to
//! [`JWKS_REFRESH_BURST`] in a row and one per [`JWKS_REFRESH_INTERVAL`] after that, so
//! tokens with made-up key ids cannot make the server hammer an issuer. Calls never fetch:
//! only `Authenticate` and a request's `Authorization` header reach this module.
//!
//! Every refusal is a [`TokenError`] that names the rule the token broke and what it held.

use super::Identity;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ferrovex_model::abi::{AuthConfig, AuthProvider, JwtAlgorithm, Setting};
use ferrovex_model::identity::{claim_value, UserIdentity};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Clock difference tolerated between an issuer and this server, on `exp`, `nbf` and `iat`.
pub const AUTH_CLOCK_LEEWAY: Duration = Duration::from_secs(5);
/// A token longer than this is refused before it is decoded (real ones are 1 to 4 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// A discovery document or JWKS larger than this is refused.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long fetching a discovery document or a JWKS may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Refetches of one provider's keys for unknown key ids allowed in a row...
pub const JWKS_REFRESH_BURST: u32 = 5;
/// ...and the pace after that: one more per interval.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Keys older than this are refetched for an unknown key id even when the budget is spent.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(600);

/// Where the auth config's settings come from: the deployment's environment variables, and
/// the app folder that JWKS file paths are relative to.
#[derive(Clone, Debug, Default)]
pub struct AuthSettings {
    pub env: BTreeMap<String, String>,
    pub app_dir: Option<PathBuf>,
}

impl AuthSettings {
    /// The process's environment, and `app_dir`.
    pub fn from_process(app_dir: Option<PathBuf>) -> AuthSettings {
        AuthSettings {
            env: std::env::vars().collect(),
            app_dir,
        }
    }
}

/// A token that verified: the caller's identity, and when the token stops being valid
/// (seconds since the Unix epoch, leeway included), for a connection to drop the identity
/// then.
#[derive(Clone, Debug)]
pub struct Verified {
    pub identity: Identity,
    pub expires_at: u64,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT at all, or not one this server can read.
    Malformed(String),
    /// `alg: none`: a token without a signature.
    Unsigned,
    /// No provider of the app has the token's issuer.
    NoProvider {
        issuer: String,
        trusted: Vec<String>,
    },
    /// The provider does not sign with the token's algorithm.
    AlgorithmNotAllowed {
        alg: String,
        issuer: String,
        allowed: Vec<&'static str>,
    },
    /// The provider's keys do not include the token's key id, even after a refetch.
    UnknownKey {
        kid: Option<String>,
        issuer: String,
        refetched: bool,
    },
    /// The provider's keys could not be fetched.
    KeysUnavailable {
        issuer: String,
        reason: String,
    },
    BadSignature {
        issuer: String,
    },
    WrongAudience {
        expected: String,
        given: String,
    },
    Expired {
        exp: u64,
        now: u64,
    },
    NotYetValid {
        nbf: u64,
        now: u64,
    },
    IssuedInFuture {
        iat: u64,
        now: u64,
    },
    MissingClaim(String),
}

impl TokenError {
    /// The `code` of an HTTP 401 answer.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::NoProvider { .. } => "NoAuthProvider",
            TokenError::Malformed(_) => "InvalidAuthHeader",
            TokenError::KeysUnavailable { .. } => "AuthProviderUnavailable",
            _ => "Unauthenticated",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(reason) => write!(f, "the token is not a valid JWT: {reason}"),
            TokenError::Unsigned => f.write_str(
                "the token is unsigned (alg \"none\"): only tokens signed by a provider of the app are accepted",
            ),
            TokenError::NoProvider { issuer, trusted } => {
                write!(
                    f,
                    "No auth provider found matching the given token: its issuer (iss) is {issuer:?}, "
                )?;
                if trusted.is_empty() {
                    f.write_str("and the app declares no auth providers (#[auth_config])")
                } else {
                    write!(f, "and the app's providers are {trusted:?}")
                }
            }
            TokenError::AlgorithmNotAllowed { alg, issuer, allowed } => write!(
                f,
                "the token is signed with {alg}, which the provider {issuer:?} is not declared to use (allowed: {})",
                allowed.join(", ")
            ),
            TokenError::UnknownKey { kid, issuer, refetched } => {
                match kid {
                    Some(kid) => write!(f, "the token's key id (kid) {kid:?} is not among the keys of {issuer:?}")?,
                    None => write!(f, "the token names no key id (kid) and {issuer:?} has several keys")?,
                }
                if *refetched {
                    f.write_str(" (fetched again just now)")
                } else {
                    f.write_str(" (the keys were refetched too often lately to try again now)")
                }
            }
            TokenError::KeysUnavailable { issuer, reason } => {
                write!(f, "the keys of the provider {issuer:?} could not be fetched: {reason}")
            }
            TokenError::BadSignature { issuer } => write!(
                f,
                "the token's signature does not verify with the key of {issuer:?} it names"
            ),
            TokenError::WrongAudience { expected, given } => write!(
                f,
                "the token's audience (aud) is {given}, and this app is {expected:?}"
            ),
            TokenError::Expired { exp, now } => write!(
                f,
                "the token expired: exp is {exp}, now is {now} (leeway {} s)",
                AUTH_CLOCK_LEEWAY.as_secs()
            ),
            TokenError::NotYetValid { nbf, now } => write!(
                f,
                "the token is not valid yet: nbf is {nbf}, now is {now} (leeway {} s)",
                AUTH_CLOCK_LEEWAY.as_secs()
            ),
            TokenError::IssuedInFuture { iat, now } => write!(
                f,
                "the token is issued in the future: iat is {iat}, now is {now} (leeway {} s)",
                AUTH_CLOCK_LEEWAY.as_secs()
            ),
            TokenError::MissingClaim(claim) => {
                write!(f, "the token has no {claim:?} claim, which is required")
            }
        }
    }
}

/// Where a provider's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KeySource {
    /// The `jwks_uri` of the issuer's discovery document.
    Discovery,
    Url(String),
    File(PathBuf),
}

struct Provider {
    issuer: String,
    audience: String,
    algorithms: Vec<JwtAlgorithm>,
    source: KeySource,
    /// The keys, and when they were fetched.
    keys: parking_lot::RwLock<Option<(Arc<JwkSet>, Instant)>>,
    /// Held while refetching, so concurrent tokens with a new key id make one fetch.
    refresh: tokio::sync::Mutex<RefreshBudget>,
}

/// A token bucket of refetches.
struct RefreshBudget {
    tokens: u32,
    refilled: Instant,
}

impl RefreshBudget {
    fn take(&mut self) -> bool {
        let earned = (self.refilled.elapsed().as_secs() / JWKS_REFRESH_INTERVAL.as_secs()) as u32;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(JWKS_REFRESH_BURST);
            self.refilled = Instant::now();
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl Provider {
    fn same_as(&self, other: &Provider) -> bool {
        (&self.issuer, &self.audience, &self.algorithms, &self.source)
            == (
                &other.issuer,
                &other.audience,
                &other.algorithms,
                &other.source,
            )
    }

    fn cached_keys(&self) -> Option<Arc<JwkSet>> {
        self.keys.read().as_ref().map(|(keys, _)| keys.clone())
    }

    /// Whether the cached keys are older than [`JWKS_MAX_AGE`] (or there are none).
    fn keys_stale(&self) -> bool {
        self.keys
            .read()
            .as_ref()
            .is_none_or(|(_, fetched)| fetched.elapsed() >= JWKS_MAX_AGE)
    }

    async fn fetch(&self) -> Result<Arc<JwkSet>, String> {
        let text = match &self.source {
            KeySource::File(path) => read_file(path)?,
            KeySource::Url(url) => get(url).await?,
            KeySource::Discovery => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let document: Json = serde_json::from_str(&get(&url).await?)
                    .map_err(|e| format!("the discovery document {url} is not JSON ({e})"))?;
                let Some(jwks_uri) = document.get("jwks_uri").and_then(Json::as_str) else {
                    return Err(format!("the discovery document {url} has no \"jwks_uri\""));
                };
                get(jwks_uri).await?
            }
        };
        let keys: JwkSet = serde_json::from_str(&text)
            .map_err(|e| format!("the JWKS is not a JSON Web Key Set ({e})"))?;
        let keys = Arc::new(keys);
        *self.keys.write() = Some((keys.clone(), Instant::now()));
        Ok(keys)
    }

    /// The key the token names, refetching once (within the budget) if it is not known.
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, TokenError> {
        let find = |keys: &JwkSet| -> Option<Jwk> {
            match kid {
                Some(kid) => keys.find(kid).cloned(),
                None if keys.keys.len() == 1 => keys.keys.first().cloned(),
                None => None,
            }
        };
        if let Some(key) = self.cached_keys().as_deref().and_then(find) {
            return Ok(key);
        }
        let mut budget = self.refresh.lock().await;
        // Another token may have brought the keys while this one waited.
        if let Some(key) = self.cached_keys().as_deref().and_then(find) {
            return Ok(key);
        }
        let unknown = |refetched| TokenError::UnknownKey {
            kid: kid.map(str::to_owned),
            issuer: self.issuer.clone(),
            refetched,
        };
        // Keys older than JWKS_MAX_AGE are refetched whatever the budget, so made-up key ids
        // that drain it cannot keep a rotation from being seen for long.
        if !self.keys_stale() && !budget.take() {
            return Err(unknown(false));
        }
        let keys = self
            .fetch()
            .await
            .map_err(|reason| TokenError::KeysUnavailable {
                issuer: self.issuer.clone(),
                reason,
            })?;
        find(&keys).ok_or_else(|| unknown(true))
    }
}

/// The providers of one deployed module, with their cached keys.
pub struct Providers {
    list: Vec<Provider>,
}

impl Providers {
    /// The providers of `config`, its settings read from `settings` (an unset variable is an
    /// error naming the provider and the variable). No keys are fetched yet.
    pub fn new(config: &AuthConfig, settings: &AuthSettings) -> Result<Providers, String> {
        let mut list = Vec::with_capacity(config.providers.len());
        for (i, provider) in config.providers.iter().enumerate() {
            let read = |setting: &Setting, what: &str| {
                setting
                    .resolve(|name| settings.env.get(name).cloned())
                    .map_err(|reason| {
                        format!(
                            "auth provider {i} (#[auth_config]): its {what} is {setting}, but {reason}; set it in the server's environment"
                        )
                    })
            };
            let (issuer, audience, algorithms, source) = match provider {
                AuthProvider::Oidc {
                    issuer,
                    application_id,
                } => (
                    read(issuer, "issuer")?,
                    read(application_id, "application id")?,
                    vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256],
                    KeySource::Discovery,
                ),
                AuthProvider::CustomJwt {
                    issuer,
                    audience,
                    algorithm,
                    jwks,
                } => {
                    let jwks = read(jwks, "JWKS")?;
                    let source = if jwks.starts_with("https://") || jwks.starts_with("http://") {
                        KeySource::Url(jwks)
                    } else {
                        let path = Path::new(&jwks);
                        KeySource::File(match &settings.app_dir {
                            Some(dir) if path.is_relative() => dir.join(path),
                            _ => path.to_owned(),
                        })
                    };
                    (
                        read(issuer, "issuer")?,
                        read(audience, "audience")?,
                        vec![*algorithm],
                        source,
                    )
                }
            };
            if issuer.is_empty() {
                return Err(format!(
                    "auth provider {i} (#[auth_config]): the issuer is empty"
                ));
            }
            list.push(Provider {
                issuer,
                audience,
                algorithms,
                source,
                keys: parking_lot::RwLock::new(None),
                refresh: tokio::sync::Mutex::new(RefreshBudget {
                    tokens: JWKS_REFRESH_BURST,
                    refilled: Instant::now(),
                }),
            });
        }
        Ok(Providers { list })
    }

    /// Whether both have the same providers (so the cached keys can stay).
    pub fn same_as(&self, other: &Providers) -> bool {
        self.list.len() == other.list.len()
            && self.list.iter().zip(&other.list).all(|(a, b)| a.same_as(b))
    }

    /// Fetches every provider's keys; failures are logged (a token of that provider tries
    /// again).
    pub async fn prefetch(&self) {
        for provider in &self.list {
            // Under the refetch lock, so a token arriving meanwhile waits for these keys
            // instead of fetching them a second time.
            let _refreshing = provider.refresh.lock().await;
            if provider.cached_keys().is_some() {
                continue;
            }
            if let Err(reason) = provider.fetch().await {
                tracing::warn!(
                    "auth provider {:?}: fetching its keys failed: {reason}; tokens it issued are refused until they can be fetched",
                    provider.issuer
                );
            }
        }
    }

    /// Verifies `token`: the identity it carries, or the rule it breaks.
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(format!(
                "it is {} bytes, over the limit MAX_TOKEN_BYTES ({MAX_TOKEN_BYTES})",
                token.len()
            )));
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err(TokenError::Malformed(format!(
                "a JWT is three base64url parts separated by '.', this has {}",
                parts.len()
            )));
        }
        let header = decode_part(parts[0], "header")?;
        let payload = decode_part(parts[1], "payload")?;
        let alg = match header.get("alg") {
            Some(Json::String(alg)) => alg.as_str(),
            _ => return Err(TokenError::Malformed("the header has no \"alg\"".into())),
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::Unsigned);
        }
        let issuer = match payload.get("iss") {
            Some(Json::String(issuer)) => issuer.as_str(),
            _ => return Err(TokenError::MissingClaim("iss".into())),
        };
        // Several providers may share an issuer (one per audience): the first that accepts
        // the token wins, and otherwise the first one's reason is given.
        let mut refusal = None;
        for provider in self.list.iter().filter(|p| same_issuer(&p.issuer, issuer)) {
            match provider.verify(token, &header, &payload, alg).await {
                Ok(verified) => return Ok(verified),
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        Err(refusal.unwrap_or_else(|| TokenError::NoProvider {
            issuer: issuer.to_owned(),
            trusted: self.list.iter().map(|p| p.issuer.clone()).collect(),
        }))
    }
}

/// Whether a token's `iss` names a provider's issuer: equal, or equal but for one trailing
/// `/` (providers differ in how they write it).
fn same_issuer(provider: &str, token: &str) -> bool {
    let trim = |s: &str| s.strip_suffix('/').unwrap_or(s).to_owned();
    trim(provider) == trim(token)
}

impl Provider {
    /// Verifies `token` (its header and payload already decoded) against this self.
    async fn verify(
        &self,
        token: &str,
        header: &Map<String, Json>,
        payload: &Map<String, Json>,
        alg: &str,
    ) -> Result<Verified, TokenError> {
        let algorithm = self
            .algorithms
            .iter()
            .find(|a| a.as_str() == alg)
            .ok_or_else(|| TokenError::AlgorithmNotAllowed {
                alg: alg.to_owned(),
                issuer: self.issuer.clone(),
                allowed: self.algorithms.iter().map(|a| a.as_str()).collect(),
            })?;
        let kid = header.get("kid").and_then(Json::as_str);
        let jwk = self.key(kid).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| {
            TokenError::Malformed(format!(
                "the key {kid:?} of {:?} cannot be used ({e})",
                self.issuer
            ))
        })?;
        let mut validation = Validation::new(match algorithm {
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
        });
        validation.leeway = AUTH_CLOCK_LEEWAY.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // `iss` was matched to this provider's issuer by `same_issuer`.
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let now = now_secs();
        let claim_secs = |name: &str| payload.get(name).and_then(Json::as_u64).unwrap_or(0);
        let claims = jsonwebtoken::decode::<Map<String, Json>>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidAlgorithm => TokenError::BadSignature {
                    issuer: self.issuer.clone(),
                },
                ErrorKind::ExpiredSignature => TokenError::Expired {
                    exp: claim_secs("exp"),
                    now,
                },
                ErrorKind::ImmatureSignature => TokenError::NotYetValid {
                    nbf: claim_secs("nbf"),
                    now,
                },
                ErrorKind::InvalidAudience => TokenError::WrongAudience {
                    expected: self.audience.clone(),
                    given: payload
                        .get("aud")
                        .map(Json::to_string)
                        .unwrap_or_else(|| "absent".into()),
                },
                ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
                _ => TokenError::Malformed(e.to_string()),
            })?
            .claims;
        if let Some(iat) = claims.get("iat").and_then(Json::as_u64) {
            if iat > now + AUTH_CLOCK_LEEWAY.as_secs() {
                return Err(TokenError::IssuedInFuture { iat, now });
            }
        }
        let Some(subject) = claims.get("sub").and_then(Json::as_str).map(str::to_owned) else {
            return Err(TokenError::MissingClaim("sub".into()));
        };
        let expires_at = claims
            .get("exp")
            .and_then(Json::as_u64)
            .ok_or_else(|| TokenError::MissingClaim("exp".into()))?
            .saturating_add(AUTH_CLOCK_LEEWAY.as_secs());
        let fields = claims
            .into_iter()
            .map(|(name, value)| (name, claim_value(value)));
        // The provider's own spelling: one user has one identity whichever way a token wrote
        // the issuer.
        let identity = UserIdentity::from_claims(&self.issuer, &subject, fields);
        Ok(Verified {
            identity: Identity::new(identity),
            expires_at,
        })
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One part of a JWT, base64url-decoded and parsed as a JSON object.
fn decode_part(part: &str, what: &str) -> Result<Map<String, Json>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| TokenError::Malformed(format!("the {what} is not base64url ({e})")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Json::Object(fields)) => Ok(fields),
        Ok(_) => Err(TokenError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
        Err(e) => Err(TokenError::Malformed(format!(
            "the {what} is not JSON ({e})"
        ))),
    }
}

fn read_file(path: &Path) -> Result<String, String> {
    let metadata =
        std::fs::metadata(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if metadata.len() > MAX_JWKS_BYTES as u64 {
        return Err(format!(
            "{} is {} bytes, over the limit MAX_JWKS_BYTES ({MAX_JWKS_BYTES})",
            path.display(),
            metadata.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The HTTP client for issuers' documents: rustls with the ring provider.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        // What travels here is issuers' public keys, whose secrecy does not matter; their
        // integrity rests on the certificate check.
        crate::fetch::install_crypto_provider();
        reqwest::Client::builder()
            .timeout(JWKS_FETCH_TIMEOUT)
            .build()
            .expect("the TLS configuration of the HTTP client is valid")
    })
}

/// `GET url`, its body as text, at most [`MAX_JWKS_BYTES`].
async fn get(url: &str) -> Result<String, String> {
    let mut response = client()
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url} answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(format!(
                "GET {url}: the answer exceeds the limit MAX_JWKS_BYTES ({MAX_JWKS_BYTES})"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| format!("GET {url}: the answer is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovex_model::Value;
    use jsonwebtoken::{EncodingKey, Header};
    use proptest::prelude::*;
    use serde_json::json;

    const ISSUER: &str = "https://issuer.test";

    struct Fixture {
        providers: Providers,
        key: EncodingKey,
        _dir: tempfile::TempDir,
    }

    /// A custom-JWT provider (ES256) whose JWKS is a file: no network.
    fn fixture() -> Fixture {
        use p256::elliptic_curve::Generate;
        use p256::pkcs8::EncodePrivateKey;
        let secret = p256::SecretKey::generate_from_rng(&mut rand::rng());
        let key = EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some("k1".into());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(
            &path,
            serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap(),
        )
        .unwrap();
        let config = AuthConfig {
            providers: vec![AuthProvider::CustomJwt {
                issuer: ISSUER.into(),
                audience: "app".into(),
                algorithm: JwtAlgorithm::ES256,
                jwks: Setting::Env("JWKS".into()),
            }],
        };
        let settings = AuthSettings {
            env: [("JWKS".to_owned(), path.display().to_string())].into(),
            app_dir: None,
        };
        Fixture {
            providers: Providers::new(&config, &settings).unwrap(),
            key,
            _dir: dir,
        }
    }

    impl Fixture {
        fn sign(&self, claims: &Json) -> String {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("k1".into());
            jsonwebtoken::encode(&header, claims, &self.key).unwrap()
        }

        fn verify(&self, token: &str) -> Result<Verified, TokenError> {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(self.providers.verify(token))
        }
    }

    fn claims(subject: &str) -> Json {
        let now = now_secs();
        json!({"iss": ISSUER, "sub": subject, "aud": "app", "iat": now, "exp": now + 600, "role": "reader"})
    }

    #[test]
    fn a_valid_token_gives_the_identity_and_its_expiry() {
        let fixture = fixture();
        let claims = claims("ada");
        let verified = fixture.verify(&fixture.sign(&claims)).unwrap();
        let user = verified.identity.user();
        assert_eq!(user.token_identifier(), "https://issuer.test|ada");
        assert_eq!(user.claim("role"), Some(&Value::from("reader")));
        assert_eq!(
            verified.expires_at,
            claims["exp"].as_u64().unwrap() + AUTH_CLOCK_LEEWAY.as_secs()
        );
    }

    #[test]
    fn settings_name_the_unset_variable_and_the_provider() {
        let config = AuthConfig {
            providers: vec![AuthProvider::Oidc {
                issuer: Setting::Env("AUTH_ISSUER".into()),
                application_id: "app".into(),
            }],
        };
        let error = Providers::new(&config, &AuthSettings::default())
            .err()
            .expect("an unset variable is refused");
        assert_eq!(
            error,
            "auth provider 0 (#[auth_config]): its issuer is $AUTH_ISSUER, but the environment variable AUTH_ISSUER is not set; set it in the server's environment"
        );
    }

    #[test]
    fn refusals_name_the_rule() {
        let fixture = fixture();
        let now = now_secs();
        let with = |changes: Json| {
            let mut c = claims("ada");
            for (k, v) in changes.as_object().unwrap() {
                c[k] = v.clone();
            }
            fixture.sign(&c)
        };
        let cases: Vec<(String, TokenError)> = vec![
            (
                with(json!({"exp": now - 100})),
                TokenError::Expired {
                    exp: now - 100,
                    now,
                },
            ),
            (
                with(json!({"nbf": now + 100})),
                TokenError::NotYetValid {
                    nbf: now + 100,
                    now,
                },
            ),
            (
                with(json!({"iat": now + 100})),
                TokenError::IssuedInFuture {
                    iat: now + 100,
                    now,
                },
            ),
            (
                with(json!({"aud": ["x", "y"]})),
                TokenError::WrongAudience {
                    expected: "app".into(),
                    given: r#"["x","y"]"#.into(),
                },
            ),
            (
                with(json!({"iss": "https://elsewhere.test"})),
                TokenError::NoProvider {
                    issuer: "https://elsewhere.test".into(),
                    trusted: vec![ISSUER.into()],
                },
            ),
            (
                "a.b".into(),
                TokenError::Malformed(
                    "a JWT is three base64url parts separated by '.', this has 2".into(),
                ),
            ),
        ];
        for (token, expected) in cases {
            let error = fixture.verify(&token).unwrap_err();
            // A clock tick between making and checking moves `now` by a second at most.
            let same = match (&error, &expected) {
                (TokenError::Expired { exp: a, .. }, TokenError::Expired { exp: b, .. }) => a == b,
                (
                    TokenError::NotYetValid { nbf: a, .. },
                    TokenError::NotYetValid { nbf: b, .. },
                ) => a == b,
                (
                    TokenError::IssuedInFuture { iat: a, .. },
                    TokenError::IssuedInFuture { iat: b, .. },
                ) => a == b,
                _ => error == expected,
            };
            assert!(same, "{error:?} should be {expected:?}");
        }
    }

    #[test]
    fn providers_may_share_an_issuer_and_its_spelling_is_the_providers() {
        let fixture = fixture();
        let jwks = Setting::Env("JWKS".into());
        let provider = |audience: &str| AuthProvider::CustomJwt {
            issuer: format!("{ISSUER}/").as_str().into(),
            audience: audience.into(),
            algorithm: JwtAlgorithm::ES256,
            jwks: jwks.clone(),
        };
        let config = AuthConfig {
            providers: vec![provider("web"), provider("app")],
        };
        let settings = AuthSettings {
            env: [(
                "JWKS".to_owned(),
                fixture._dir.path().join("jwks.json").display().to_string(),
            )]
            .into(),
            app_dir: None,
        };
        let shared = Fixture {
            providers: Providers::new(&config, &settings).unwrap(),
            key: fixture.key.clone(),
            _dir: tempfile::tempdir().unwrap(),
        };
        // The second provider's audience, and the issuer without the provider's slash.
        let verified = shared.verify(&shared.sign(&claims("ada"))).unwrap();
        assert_eq!(
            verified.identity.user().token_identifier(),
            "https://issuer.test/|ada",
            "the identity spells the issuer as the provider does"
        );
        let mut other = claims("ada");
        other["aud"] = json!("nobody");
        let error = shared.verify(&shared.sign(&other)).unwrap_err();
        assert!(
            matches!(&error, TokenError::WrongAudience { expected, .. } if expected == "web"),
            "the first provider's reason: {error:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text is refused with a reason, never a panic.
        #[test]
        fn arbitrary_text_is_refused(token in ".{0,300}") {
            let fixture = fixture();
            let error = fixture.verify(&token).unwrap_err();
            prop_assert!(!error.to_string().is_empty());
        }

        /// Three parts of arbitrary bytes (headers and payloads that decode to anything).
        #[test]
        fn arbitrary_parts_are_refused(
            header in proptest::collection::vec(any::<u8>(), 0..80),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            signature in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let fixture = fixture();
            let token = format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(payload),
                URL_SAFE_NO_PAD.encode(signature)
            );
            prop_assert!(fixture.verify(&token).is_err());
        }

        /// A valid token changed anywhere (a character replaced, or cut short) never verifies
        /// as anyone else: it is refused, or (where base64 ignores the change) is the same
        /// token.
        #[test]
        fn a_changed_token_never_verifies_as_another_identity(
            position in any::<prop::sample::Index>(),
            replacement in "[A-Za-z0-9_.=-]",
            cut in any::<bool>(),
        ) {
            let fixture = fixture();
            let token = fixture.sign(&claims("ada"));
            let at = position.index(token.len());
            let changed = if cut {
                token[..at].to_owned()
            } else {
                format!("{}{}{}", &token[..at], replacement, &token[at + 1..])
            };
            if let Ok(verified) = fixture.verify(&changed) {
                prop_assert_eq!(verified.identity.user().token_identifier(), "https://issuer.test|ada");
                prop_assert_eq!(verified.identity.user().claim("role"), Some(&Value::from("reader")));
            }
        }
    }
}
