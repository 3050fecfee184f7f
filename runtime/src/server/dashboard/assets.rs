//! The dashboard's files (`clients/dashboard/`), compiled in: plain ES modules and a style
//! sheet with no build step, nothing fetched from anywhere but this server, so the binary
//! alone serves the whole dashboard, offline too.

use crate::server::response::{method_not_allowed, request_error, with_body, HttpResponse};
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, StatusCode};

pub const PREFIX: &str = "/_dashboard";

macro_rules! files {
    ($($name:literal => $kind:literal),* $(,)?) => {
        /// `(file name, content type, contents)`.
        pub const FILES: &[(&str, &str, &str)] = &[
            $(($name, $kind, include_str!(concat!("../../../../clients/dashboard/", $name))),)*
        ];
    };
}

files! {
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "main.js" => "text/javascript; charset=utf-8",
    "util.js" => "text/javascript; charset=utf-8",
    "data.js" => "text/javascript; charset=utf-8",
    "functions.js" => "text/javascript; charset=utf-8",
    "logs.js" => "text/javascript; charset=utf-8",
    "schedules.js" => "text/javascript; charset=utf-8",
    "health.js" => "text/javascript; charset=utf-8",
    "settings.js" => "text/javascript; charset=utf-8",
}

/// Scripts and styles from this server only, no frames: the page shows the
/// deployment's data, which must not reach anywhere else.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn serve(method: &Method, path: &str) -> HttpResponse {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed(path, method, "GET, HEAD");
    }
    let name = match path.strip_prefix(PREFIX) {
        Some("" | "/") => "index.html",
        Some(rest) => rest.trim_start_matches('/'),
        None => "",
    };
    let Some((_, kind, contents)) = FILES.iter().find(|(file, _, _)| *file == name) else {
        return request_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "GET {path}: the dashboard has no such file; it has {}",
                FILES
                    .iter()
                    .map(|(file, _, _)| *file)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    };
    let mut response = with_body(StatusCode::OK, kind, contents.as_bytes().to_vec());
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    // The sign-in link carries the key in the fragment, which is never sent; no page of the
    // dashboard passes its address on either.
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // A new server may serve newer files: revalidate rather than cache.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing the dashboard loads comes from another host: no CDN, no web fonts.
    #[test]
    fn no_file_refers_to_another_host() {
        for (name, _, contents) in FILES {
            for marker in ["http://", "https://", "//cdn", "@import url("] {
                let allowed = |at: usize| {
                    // The SVG namespace is a name, never fetched.
                    contents[at..].starts_with("http://www.w3.org/2000/svg")
                };
                let found = contents.match_indices(marker).find(|(at, _)| !allowed(*at));
                assert!(found.is_none(), "{name} refers to {marker}: {found:?}");
            }
        }
    }

    #[test]
    fn files_are_found_by_name_and_others_refused() {
        let index = serve(&Method::GET, "/_dashboard/");
        assert_eq!(index.status(), StatusCode::OK);
        assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(serve(&Method::GET, "/_dashboard").status(), StatusCode::OK);
        let script = serve(&Method::GET, "/_dashboard/data.js");
        assert_eq!(
            script.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        for missing in [
            "/_dashboard/../Cargo.toml",
            "/_dashboard/nope.js",
            "/_dashboard//etc/passwd",
        ] {
            assert_eq!(
                serve(&Method::GET, missing).status(),
                StatusCode::NOT_FOUND,
                "{missing}"
            );
        }
        assert_eq!(
            serve(&Method::POST, "/_dashboard/").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
