//! `GET /api/client.js`: the browser client (`clients/browser/client.js`), one ES module that
//! pages import as they are, with no build step.

use crate::server::response::{method_not_allowed, with_body, HttpResponse};
use hyper::header::{HeaderValue, CACHE_CONTROL, X_CONTENT_TYPE_OPTIONS};
use hyper::{Method, StatusCode};

/// Compiled in, so the module always matches the protocol this server speaks.
pub const CLIENT_JS: &str = include_str!("../../../clients/browser/client.js");

pub const PATH: &str = "/api/client.js";

pub fn serve(method: &Method) -> HttpResponse {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed(PATH, method, "GET, HEAD");
    }
    let mut response = with_body(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        CLIENT_JS.as_bytes().to_vec(),
    );
    let headers = response.headers_mut();
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // A redeployed runtime may serve a newer client: revalidate rather than cache.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
