//! Small pieces: the sync URL, session ids, reconnect backoff.

use std::time::Duration;

/// Where to connect: `host:port` for the TCP connection and the `ws://` URL of the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyncUrl {
    pub authority: String,
    pub url: String,
}

/// Accepts the sync endpoint itself (`ws://127.0.0.1:3210/api/sync`) or the server's base
/// URL (`http://127.0.0.1:3210`, `ws://127.0.0.1:3210/`), to which `/api/sync` is added.
pub(crate) fn sync_url(given: &str) -> Result<SyncUrl, String> {
    let (scheme, rest) = given
        .split_once("://")
        .ok_or_else(|| format!("{given:?} has no scheme (expected ws:// or http://)"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => {}
        "wss" | "https" => {
            return Err(format!(
                "{given:?}: TLS ({scheme}://) is not supported by this client; use ws:// or http://"
            ))
        }
        _ => {
            return Err(format!(
                "{given:?}: unsupported scheme {scheme:?} (expected ws:// or http://)"
            ))
        }
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{given:?}: expected ws://HOST[:PORT][/PATH]"));
    }
    if path.contains(['?', '#']) {
        return Err(format!(
            "{given:?}: a query string or fragment is not supported"
        ));
    }
    let authority = if has_port(authority) {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let path = path.trim_end_matches('/');
    let path = if path.ends_with("/api/sync") {
        path.to_owned()
    } else {
        format!("{path}/api/sync")
    };
    Ok(SyncUrl {
        url: format!("ws://{authority}{path}"),
        authority,
    })
}

fn has_port(authority: &str) -> bool {
    match authority.rfind(':') {
        // `[::1]` has colons but no port; `[::1]:80` does.
        Some(i) => !authority[i..].contains(']'),
        None => false,
    }
}

/// `n` random bytes from the operating system.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Without the OS's randomness the client cannot make a session id that is safe to share
    // a server with; this fails only on broken systems.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// A random (version 4) UUID in its usual text form.
pub(crate) fn new_session_id() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Capped exponential backoff with jitter: the nth delay is drawn from
/// `[d/2, d]` where `d = min(max, initial * 2^n)`, so clients that lost the same server do
/// not all come back at once.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// The delay before the next attempt; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let jitter = u64::from_le_bytes(random_bytes::<8>()) as f64 / u64::MAX as f64;
        half + half.mul_f64(jitter)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_sync_endpoint() {
        for (given, authority, url) in [
            (
                "ws://127.0.0.1:3210/api/sync",
                "127.0.0.1:3210",
                "ws://127.0.0.1:3210/api/sync",
            ),
            (
                "http://127.0.0.1:3210",
                "127.0.0.1:3210",
                "ws://127.0.0.1:3210/api/sync",
            ),
            (
                "http://localhost:3210/",
                "localhost:3210",
                "ws://localhost:3210/api/sync",
            ),
            (
                "HTTP://example.com/base/",
                "example.com:80",
                "ws://example.com:80/base/api/sync",
            ),
            ("ws://[::1]:9/api/sync/", "[::1]:9", "ws://[::1]:9/api/sync"),
            ("ws://[::1]", "[::1]:80", "ws://[::1]:80/api/sync"),
        ] {
            assert_eq!(
                sync_url(given).unwrap(),
                SyncUrl {
                    authority: authority.into(),
                    url: url.into()
                },
                "{given}"
            );
        }
        for (given, needle) in [
            ("127.0.0.1:3210", "no scheme"),
            ("wss://example.com", "TLS"),
            ("ftp://example.com", "unsupported scheme"),
            ("ws:///api/sync", "expected ws://HOST"),
            ("ws://h/api/sync?x=1", "query string"),
        ] {
            let err = sync_url(given).unwrap_err();
            assert!(err.contains(needle), "{given}: {err}");
        }
    }

    #[test]
    fn session_ids_are_version_4_uuids() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "{a}");
        assert!("89ab".contains(&groups[3][..1]), "{a}");
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings = [100, 200, 400, 800, 1000, 1000];
        for ceiling in ceilings {
            let d = backoff.next_delay();
            let ceiling = Duration::from_millis(ceiling);
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} for {ceiling:?}");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
