//! Outbound HTTP requests of actions (`ctx.fetch`): one reqwest client (rustls with ring),
//! the guard against server-side request forgery, and the limits of
//! `ferrovex_model::limits` (time, response size, redirects), each a [`FetchError`] naming it.
//!
//! The guard: every address a request would connect to is classified, whether the URL names
//! it or DNS gives it (the resolver checks what it resolved, and the client connects to
//! exactly those addresses, so a name cannot resolve to a public address for the check and a
//! private one for the connection), and so is every redirect's. Loopback, private, link-local,
//! shared, unspecified, multicast and broadcast addresses are refused unless the operator
//! allows them ([`OutboundPolicy::allow_private`], `runtime serve --allow-private-fetch`).

use ferrovex_model::limits::{
    MAX_FETCH_MILLIS, MAX_FETCH_REDIRECTS, MAX_FETCH_REQUEST_BYTES, MAX_FETCH_RESPONSE_BYTES,
};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What the operator allows actions to reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Loopback, private and link-local addresses too (for a service on the same machine or
    /// network, and for tests). Off by default.
    pub allow_private: bool,
}

/// Why an address is refused, or `None` for a public one.
pub fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4);
            }
            let segments = v6.segments();
            let first = segments[0];
            if segments[..6] == [0, 0, 0, 0, 0xffff, 0] {
                // IPv4-translated (SIIT): the IPv4 address it stands for decides.
                return v4_kind(Ipv4Addr::from(u128::from(v6) as u32));
            }
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfec0 {
                Some("site-local")
            } else if first == 0x2002 {
                // 6to4: the IPv4 address in bits 16..48 decides.
                v4_kind(Ipv4Addr::from(
                    ((segments[1] as u32) << 16) | segments[2] as u32,
                ))
                .or(Some("6to4"))
            } else if first == 0x2001 && segments[1] == 0 {
                Some("Teredo tunnel")
            } else if first & 0xff00 == 0xff00 {
                Some("multicast")
            } else if v6.segments()[..6] == [0, 0, 0, 0, 0, 0] {
                // IPv4-compatible (deprecated): classify by the IPv4 part.
                v4_kind(Ipv4Addr::from(u128::from(v6) as u32)).or(Some("IPv4-compatible"))
            } else if first == 0x64 && segments[1] == 0xff9b && segments[2] == 0 {
                // NAT64 (64:ff9b::/96): the IPv4 address it stands for decides.
                v4_kind(Ipv4Addr::from(u128::from(v6) as u32))
            } else if first == 0x64 && segments[1] == 0xff9b {
                Some("local-use NAT64")
            } else {
                None
            }
        }
    }
}

fn v4_kind(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local")
    } else if v4.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if a == 192 && b == 0 && v4.octets()[2] == 0 {
        Some("IETF protocol assignments")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking")
    } else if v4.is_broadcast() {
        Some("broadcast")
    } else if v4.is_multicast() || a >= 240 {
        Some("multicast or reserved")
    } else {
        None
    }
}

/// An outbound request that failed, with the rule or limit and what was given.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchError {
    /// The request itself is not acceptable (`INVALID`): a malformed URL, method or header,
    /// a scheme other than http(s), a body over the limit.
    Invalid(String),
    /// The address is not allowed (`INVALID`).
    Refused {
        url: String,
        ip: IpAddr,
        kind: &'static str,
    },
    /// It was tried and failed (`FAILED`): the network, a timeout, redirects, the body size.
    Failed(String),
}

impl FetchError {
    pub fn is_invalid(&self) -> bool {
        !matches!(self, FetchError::Failed(_))
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Invalid(m) | FetchError::Failed(m) => f.write_str(m),
            FetchError::Refused { url, ip, kind } => write!(
                f,
                "fetch {url}: refused to connect to {ip}, a {kind} address; actions reach only public addresses unless the server runs with --allow-private-fetch"
            ),
        }
    }
}

/// A request as the `fetch` import receives it.
#[derive(Clone, Debug)]
pub struct FetchRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// At most [`MAX_FETCH_MILLIS`].
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FetchResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Where the response came from, after redirects.
    pub url: String,
}

/// The client every action shares.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    policy: OutboundPolicy,
}

/// Installs the process's TLS crypto provider for the HTTP clients (actions' fetch, issuers'
/// keys, the link between nodes), unless one is already installed: ring. It has no
/// post-quantum key exchange (hence the deprecation); the certificate checks it does in full.
pub(crate) fn install_crypto_provider() {
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let _ = provider.install_default();
}

impl Fetcher {
    pub fn new(policy: OutboundPolicy) -> Fetcher {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver { policy }))
            .redirect(redirect_policy(policy))
            // A proxy from the environment would connect on the request's behalf, out of the
            // guard's sight.
            .no_proxy()
            .connect_timeout(Duration::from_millis(MAX_FETCH_MILLIS))
            .build()
            .expect("the TLS configuration of the HTTP client is valid");
        Fetcher { client, policy }
    }

    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchResponse, FetchError> {
        let FetchRequest {
            method,
            url,
            headers,
            body,
            timeout,
        } = request;
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| FetchError::Invalid(format!("fetch {url:?}: not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::Invalid(format!(
                "fetch {url}: the scheme must be http or https, got {:?}",
                parsed.scheme()
            )));
        }
        check_literal_host(&parsed, self.policy)?;
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| {
            FetchError::Invalid(format!("fetch {url}: {method:?} is not an HTTP method"))
        })?;
        if let Some(body) = &body {
            if body.len() > MAX_FETCH_REQUEST_BYTES {
                return Err(FetchError::Invalid(format!(
                    "fetch {url}: the request body exceeds MAX_FETCH_REQUEST_BYTES ({MAX_FETCH_REQUEST_BYTES} bytes): got {} bytes",
                    body.len()
                )));
            }
        }
        let limit = Duration::from_millis(MAX_FETCH_MILLIS);
        let timeout = timeout.map_or(limit, |t| t.min(limit));
        let mut builder = self.client.request(method, parsed);
        for (name, value) in &headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                FetchError::Invalid(format!("fetch {url}: {name:?} is not a header name"))
            })?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                FetchError::Invalid(format!(
                    "fetch {url}: the value of header {name} is not a valid header value"
                ))
            })?;
            builder = builder.header(name, value);
        }
        if let Some(body) = body {
            builder = builder.body(body);
        }
        let timed_out = || {
            FetchError::Failed(format!(
                "fetch {url}: no complete response within {} ms (the request's timeout; MAX_FETCH_MILLIS is {MAX_FETCH_MILLIS})",
                timeout.as_millis()
            ))
        };
        let exchange = async {
            let mut response = builder.send().await.map_err(|e| describe(&url, e))?;
            let status = response.status().as_u16();
            let final_url = response.url().to_string();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let too_large = |got: String| {
                FetchError::Failed(format!(
                    "fetch {url}: the response body exceeds MAX_FETCH_RESPONSE_BYTES ({MAX_FETCH_RESPONSE_BYTES} bytes): got {got}"
                ))
            };
            if let Some(length) = response.content_length() {
                if length > MAX_FETCH_RESPONSE_BYTES as u64 {
                    return Err(too_large(format!("Content-Length {length}")));
                }
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| describe(&url, e))? {
                if body.len() + chunk.len() > MAX_FETCH_RESPONSE_BYTES {
                    return Err(too_large(format!(
                        "more than {} bytes",
                        body.len() + chunk.len()
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(FetchResponse {
                status,
                headers,
                body,
                url: final_url,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| timed_out())?
    }
}

/// A reqwest error in words, with the refusal or the redirect limit named when it is one.
fn describe(url: &str, error: reqwest::Error) -> FetchError {
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refusal>() {
            return refused.0.clone();
        }
        source = e.source();
    }
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        chain.push_str(": ");
        chain.push_str(&e.to_string());
        source = e.source();
    }
    FetchError::Failed(format!("fetch {url}: {chain}"))
}

/// A refusal carried through reqwest's error chain.
#[derive(Debug)]
struct Refusal(FetchError);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refusal {}

/// A URL whose host is an IP address is checked here (no resolver sees it).
fn check_literal_host(url: &reqwest::Url, policy: OutboundPolicy) -> Result<(), FetchError> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => {
            return Err(FetchError::Invalid(format!(
                "fetch {url}: the URL has no host"
            )))
        }
    };
    check_ip(url.as_str(), ip, policy)
}

fn check_ip(url: &str, ip: IpAddr, policy: OutboundPolicy) -> Result<(), FetchError> {
    match private_kind(ip) {
        Some(kind) if !policy.allow_private => Err(FetchError::Refused {
            url: url.to_owned(),
            ip,
            kind,
        }),
        _ => Ok(()),
    }
}

/// Follows up to [`MAX_FETCH_REDIRECTS`] redirects, each hop's literal address checked (a
/// name goes through the resolver), and stops a loop at once.
fn redirect_policy(policy: OutboundPolicy) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if let Err(e) = check_literal_host(attempt.url(), policy) {
            return attempt.error(Refusal(e));
        }
        if attempt.previous().iter().any(|u| u == attempt.url()) {
            let looped = FetchError::Failed(format!(
                "fetch {}: a redirect loop: {} redirects back to {}",
                attempt.previous()[0],
                attempt.previous().last().map(|u| u.as_str()).unwrap_or("?"),
                attempt.url()
            ));
            return attempt.error(Refusal(looped));
        }
        if attempt.previous().len() > MAX_FETCH_REDIRECTS {
            let message = format!(
                "fetch {}: more than MAX_FETCH_REDIRECTS ({MAX_FETCH_REDIRECTS}) redirects; the last went to {}",
                attempt.previous()[0],
                attempt.url()
            );
            return attempt.error(Refusal(FetchError::Failed(message)));
        }
        attempt.follow()
    })
}

/// Resolves with the system resolver and refuses the name if any address it gives is
/// refused (an attacker's name may list a public address and a private one).
struct GuardedResolver {
    policy: OutboundPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                check_ip(&host, addr.ip(), policy).map_err(
                    |e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(Refusal(e)) },
                )?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", Some("loopback")),
            ("127.255.0.9", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("unspecified")),
            ("100.64.0.1", Some("shared (carrier-grade NAT)")),
            ("255.255.255.255", Some("broadcast")),
            ("224.0.0.1", Some("multicast or reserved")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fe80::1", Some("link-local")),
            ("fd00::1", Some("private (unique local)")),
            ("ff02::1", Some("multicast")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("64:ff9b::a00:1", Some("private")),
            ("64:ff9b:1::1", Some("local-use NAT64")),
            ("::ffff:0:7f00:1", Some("loopback")),
            ("fec0::1", Some("site-local")),
            ("2002:7f00:1::", Some("loopback")),
            ("2002:808:808::", Some("6to4")),
            ("2001:0:4136:e378::1", Some("Teredo tunnel")),
            ("192.0.0.8", Some("IETF protocol assignments")),
            ("198.18.0.1", Some("benchmarking")),
            // Public addresses.
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("1.1.1.1", None),
            ("2606:4700::1111", None),
            ("::ffff:8.8.8.8", None),
        ];
        for (text, expected) in cases {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(private_kind(ip), *expected, "{text}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_unless_allowed() {
        let refused = OutboundPolicy::default();
        let allowed = OutboundPolicy {
            allow_private: true,
        };
        for url in [
            "http://127.0.0.1:8080/x",
            "http://[::1]/",
            "http://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/",
            "http://[::ffff:192.168.0.1]/",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            let error = check_literal_host(&parsed, refused).unwrap_err();
            assert!(matches!(error, FetchError::Refused { .. }), "{url}");
            assert!(
                error.to_string().contains("--allow-private-fetch"),
                "{error}"
            );
            assert!(check_literal_host(&parsed, allowed).is_ok(), "{url}");
        }
        let public = reqwest::Url::parse("http://93.184.215.14/").unwrap();
        assert!(check_literal_host(&public, refused).is_ok());
    }

    /// A name that resolves to loopback is refused by the resolver, before any connection.
    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let fetcher = Fetcher::new(OutboundPolicy::default());
        let error = fetcher
            .fetch(FetchRequest {
                method: "GET".into(),
                url: "http://localhost:9/".into(),
                headers: vec![],
                body: None,
                timeout: None,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                FetchError::Refused {
                    kind: "loopback",
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
