//! A token issuer of the test's own on loopback: keys made in the test (RS256 and ES256), a
//! JWKS and an OpenID Connect discovery document served over HTTP on 127.0.0.1, tokens
//! signed with any of the keys and any claims. Rotating the keys changes what the JWKS
//! serves; the server counts how often each document was fetched. Shared by the test
//! binaries through `#[path = "../common/issuer.rs"] mod issuer;`.

// Each test binary uses its part.
#![allow(dead_code)]

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value as Json};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// A signing key and its public half as a JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Jwk,
}

impl TestKey {
    /// A new RSA 2048 key for RS256.
    pub fn rsa(kid: &str) -> TestKey {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::PrivateKey::new(&mut rand::rng(), 2048).expect("an RSA key");
        let der = key.to_pkcs1_der().expect("its DER");
        TestKey::from_encoding(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_der(der.as_bytes()),
        )
    }

    /// A new P-256 key for ES256.
    pub fn ec(kid: &str) -> TestKey {
        use p256::elliptic_curve::Generate;
        use p256::pkcs8::EncodePrivateKey;
        let key = p256::SecretKey::generate_from_rng(&mut rand::rng());
        let der = key.to_pkcs8_der().expect("its DER");
        TestKey::from_encoding(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(der.as_bytes()),
        )
    }

    fn from_encoding(kid: &str, alg: Algorithm, encoding: EncodingKey) -> TestKey {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).expect("the public JWK");
        jwk.common.key_id = Some(kid.to_owned());
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
        }
    }

    /// A token with these claims, signed with this key and naming it (`kid`).
    pub fn sign(&self, claims: &Json) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing a token")
    }

    /// A token with these claims, signed with this key, with a header of `header`'s fields.
    pub fn sign_with_header(&self, header: Header, claims: &Json) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing a token")
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct State {
    keys: Vec<Jwk>,
}

/// The issuer's HTTP server: `GET /.well-known/openid-configuration` and `GET /jwks.json`.
pub struct Issuer {
    /// `http://127.0.0.1:PORT`: its `iss`, and where its documents are.
    pub url: String,
    state: Arc<Mutex<State>>,
    jwks_fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Issuer {
    /// Serves `keys`' public halves on a free loopback port until dropped.
    pub async fn start(keys: &[&TestKey]) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the issuer");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
        }));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let (task_state, task_fetches, issuer_url) =
            (state.clone(), jwks_fetches.clone(), url.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (state, fetches, url) =
                    (task_state.clone(), task_fetches.clone(), issuer_url.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (state, fetches, url) =
                                (state.clone(), fetches.clone(), url.clone());
                            async move {
                                let body = match request.uri().path() {
                                    "/.well-known/openid-configuration" => Some(json!({
                                        "issuer": url,
                                        "jwks_uri": format!("{url}/jwks.json"),
                                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                                    })),
                                    "/jwks.json" => {
                                        fetches.fetch_add(1, Ordering::SeqCst);
                                        let keys = state.lock().unwrap().keys.clone();
                                        Some(serde_json::to_value(JwkSet { keys }).unwrap())
                                    }
                                    _ => None,
                                };
                                let response = match body {
                                    Some(body) => Response::builder()
                                        .header("content-type", "application/json")
                                        .header("access-control-allow-origin", "*")
                                        .body(Full::new(Bytes::from(body.to_string()))),
                                    None => Response::builder()
                                        .status(StatusCode::NOT_FOUND)
                                        .body(Full::new(Bytes::new())),
                                };
                                Ok::<_, Infallible>(response.unwrap())
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Issuer {
            url,
            state,
            jwks_fetches,
            task,
        }
    }

    /// Serves these keys from now on (a rotation: the old ones are gone).
    pub fn rotate(&self, keys: &[&TestKey]) {
        self.state.lock().unwrap().keys = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// The JWKS of `keys`, as a file's contents.
    pub fn jwks_of(keys: &[&TestKey]) -> String {
        serde_json::to_string(&JwkSet {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
        })
        .unwrap()
    }

    /// Claims of a valid token from this issuer for `subject`, to `audience`, for an hour.
    pub fn claims(&self, subject: &str, audience: &str) -> Json {
        let now = now();
        json!({
            "iss": self.url,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        })
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The environment `examples/chat-auth` reads: its one OpenID Connect provider is `issuer`.
pub fn chat_auth_settings(issuer: &Issuer) -> ferrovex_runtime::auth::AuthSettings {
    ferrovex_runtime::auth::AuthSettings {
        env: [
            ("AUTH_ISSUER".to_owned(), issuer.url.clone()),
            (
                "AUTH_APPLICATION_ID".to_owned(),
                OIDC_APPLICATION_ID.to_owned(),
            ),
        ]
        .into(),
        app_dir: None,
    }
}

/// The audience of the identity guest's OpenID Connect provider (`OIDC_APPLICATION_ID`).
pub const OIDC_APPLICATION_ID: &str = "test-app";
/// The audiences the identity guest declares for its custom-JWT providers.
pub const RS_AUDIENCE: &str = "rs-audience";
pub const ES_AUDIENCE: &str = "es-audience";

/// Issuers for every provider of `runtime/tests/guests/identity`: an OpenID Connect issuer
/// (discovery document and JWKS on loopback, RS256), a custom-JWT issuer whose JWKS is at a
/// URL (RS256), and one whose JWKS is a file (ES256, no server).
pub struct TestProviders {
    pub oidc: Issuer,
    pub oidc_key: TestKey,
    pub rs: Issuer,
    pub rs_key: TestKey,
    pub es_key: TestKey,
    pub es_issuer: String,
    es_dir: tempfile::TempDir,
}

impl TestProviders {
    pub async fn start() -> TestProviders {
        let oidc_key = TestKey::rsa("oidc-1");
        let rs_key = TestKey::rsa("rs-1");
        let es_key = TestKey::ec("es-1");
        let oidc = Issuer::start(&[&oidc_key]).await;
        let rs = Issuer::start(&[&rs_key]).await;
        let es_dir = tempfile::tempdir().unwrap();
        std::fs::write(es_dir.path().join("jwks.json"), Issuer::jwks_of(&[&es_key])).unwrap();
        TestProviders {
            oidc,
            oidc_key,
            rs,
            rs_key,
            es_key,
            es_issuer: "https://es.issuer.test".into(),
            es_dir,
        }
    }

    /// The environment the identity guest's auth config reads.
    pub fn settings(&self) -> ferrovex_runtime::auth::AuthSettings {
        let env = [
            ("OIDC_ISSUER", self.oidc.url.clone()),
            ("OIDC_APPLICATION_ID", OIDC_APPLICATION_ID.into()),
            ("RS_ISSUER", self.rs.url.clone()),
            ("RS_JWKS", format!("{}/jwks.json", self.rs.url)),
            ("ES_ISSUER", self.es_issuer.clone()),
            (
                "ES_JWKS",
                self.es_dir.path().join("jwks.json").display().to_string(),
            ),
        ];
        ferrovex_runtime::auth::AuthSettings {
            env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            app_dir: None,
        }
    }

    /// A valid token of the OpenID Connect issuer for `subject`, with `extra` claims.
    pub fn token(&self, subject: &str, extra: Json) -> String {
        let mut claims = self.oidc.claims(subject, OIDC_APPLICATION_ID);
        for (name, value) in extra.as_object().cloned().unwrap_or_default() {
            claims[name] = value;
        }
        self.oidc_key.sign(&claims)
    }

    /// `issuer|subject` of the OpenID Connect issuer's tokens.
    pub fn token_identifier(&self, subject: &str) -> String {
        format!("{}|{subject}", self.oidc.url)
    }
}

/// Tokens that break one rule each, with a fragment of the reason the server must give:
/// `(what, token, reason)`.
pub fn bad_tokens(providers: &TestProviders) -> Vec<(&'static str, String, &'static str)> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let now = now();
    let valid = || providers.oidc.claims("mallory", OIDC_APPLICATION_ID);
    let with = |changes: Json| {
        let mut claims = valid();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    };
    let sign = |claims: Json| providers.oidc_key.sign(&claims);
    // Same kid as the issuer's key, another key's signature.
    let impostor = TestKey::rsa("oidc-1");
    let stranger = TestKey::rsa("nobody");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(valid().to_string())
    );
    let mut es_claims = valid();
    es_claims["iss"] = json!(providers.rs.url);
    es_claims["aud"] = json!(RS_AUDIENCE);
    vec![
        (
            "wrong issuer",
            sign(with(json!({"iss": "https://other.issuer.test"}))),
            "No auth provider found matching the given token: its issuer (iss) is \"https://other.issuer.test\"",
        ),
        (
            "wrong audience",
            sign(with(json!({"aud": "another-app"}))),
            "the token's audience (aud) is \"another-app\"",
        ),
        (
            "bad signature",
            impostor.sign(&valid()),
            "signature does not verify",
        ),
        ("alg none", unsigned, "the token is unsigned (alg \"none\")"),
        (
            "expired",
            sign(with(json!({"exp": now - 60, "iat": now - 120, "nbf": now - 120}))),
            "the token expired",
        ),
        (
            "not yet valid",
            sign(with(json!({"nbf": now + 600}))),
            "the token is not valid yet",
        ),
        (
            "issued in the future",
            sign(with(json!({"iat": now + 600}))),
            "the token is issued in the future",
        ),
        (
            "unknown kid",
            stranger.sign(&valid()),
            "the token's key id (kid) \"nobody\" is not among the keys",
        ),
        ("malformed", "not-a-jwt".into(), "the token is not a valid JWT"),
        (
            "malformed payload",
            format!("{}.e30x.sig", URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#)),
            "the token is not a valid JWT",
        ),
        (
            "no subject",
            sign(with(json!({"sub": null}))),
            "the token has no \"sub\" claim",
        ),
        (
            "algorithm the provider does not use",
            providers.es_key.sign(&es_claims),
            "is not declared to use",
        ),
    ]
}
