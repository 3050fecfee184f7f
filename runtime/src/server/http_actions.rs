//! HTTP actions: requests under `/http/` go to the app's routes (`#[http_action]`), for
//! webhooks and public endpoints. `/http/hooks/stripe` is served by the route `/hooks/stripe`
//! (an exact path first, then the longest prefix; the method must match or the route takes
//! `ANY`). The action receives `{request: {method, url, path, query, headers, body}}` and
//! returns `{status, headers, body}`; it runs as no signed-in user (the request's headers,
//! `Authorization` included, are the action's to read), like any action.
//!
//! | status | when |
//! |---|---|
//! | what the action returns | it returned a response |
//! | 404 `NoRouteMatched` | no route serves the path; the message lists the routes |
//! | 405 `MethodNotAllowed` | a route serves the path, not with this method |
//! | 413 `RequestTooLarge` | a body over `MAX_HTTP_ACTION_BODY_BYTES` |
//! | 500 `HttpActionFailed` | the action failed (its `Err`, a panic, a limit), or returned no valid response |
//! | 503 `Overloaded` | every action slot is taken and too many wait |

use super::call_request::read_body_up_to;
use super::response::{request_error, HttpResponse};
use super::Served;
use crate::caller::Caller;
use crate::wasm::{CallError, DeployedModule};
use ferrovex_model::abi::{FunctionKind, HttpRoute};
use ferrovex_model::limits::MAX_HTTP_ACTION_BODY_BYTES;
use ferrovex_model::{Object, Value};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

/// Where HTTP actions are served.
pub const PREFIX: &str = "/http";

/// The route serving `method` and `path` (the path under [`PREFIX`]): an exact path before
/// any prefix, the longest prefix first; `Err(true)` when a route has the path but not the
/// method.
pub fn find_route<'m>(
    routes: impl Iterator<Item = (&'m HttpRoute, &'m str)>,
    method: &str,
    path: &str,
) -> Result<&'m str, bool> {
    let mut best: Option<(&HttpRoute, &str)> = None;
    let mut path_matched = false;
    for (route, function) in routes {
        let matches_path = if route.prefix {
            path.starts_with(&route.path)
        } else {
            path == route.path
        };
        if !matches_path {
            continue;
        }
        path_matched = true;
        if route.method != method && route.method != "ANY" {
            continue;
        }
        let better = match best {
            None => true,
            Some((b, _)) => {
                (b.prefix && !route.prefix)
                    || (b.prefix == route.prefix && route.path.len() > b.path.len())
                    || (b.path == route.path && b.method == "ANY" && route.method != "ANY")
            }
        };
        if better {
            best = Some((route, function));
        }
    }
    best.map(|(_, f)| f).ok_or(path_matched)
}

pub async fn serve(
    app: Arc<Served>,
    module: Arc<DeployedModule>,
    request: Request<Incoming>,
    path: &str,
) -> HttpResponse {
    let route_path = &path[PREFIX.len()..];
    let method = request.method().as_str().to_owned();
    let function = match find_route(module.routes(), &method, route_path) {
        Ok(function) => function.to_owned(),
        Err(path_matched) => {
            let routes: Vec<String> = module
                .routes()
                .map(|(r, f)| {
                    format!(
                        "{} {PREFIX}{}{} ({f})",
                        r.method,
                        r.path,
                        if r.prefix { "*" } else { "" }
                    )
                })
                .collect();
            let (status, code) = if path_matched {
                (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed")
            } else {
                (StatusCode::NOT_FOUND, "NoRouteMatched")
            };
            return request_error(
                status,
                code,
                format!(
                    "{method} {path}: no HTTP action serves it; the routes are: {}",
                    if routes.is_empty() {
                        "none (declare them with #[http_action])".to_owned()
                    } else {
                        routes.join(", ")
                    }
                ),
            );
        }
    };
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let uri = request.uri().clone();
    let headers: Vec<Value> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            Value::Array(vec![
                Value::String(k.as_str().to_owned()),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            ])
        })
        .collect();
    let body = match read_body_up_to(
        request,
        MAX_HTTP_ACTION_BODY_BYTES,
        "MAX_HTTP_ACTION_BODY_BYTES",
    )
    .await
    {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut fields = Object::new();
    fields.insert("method".into(), Value::String(method));
    fields.insert(
        "url".into(),
        Value::String(format!(
            "http://{host}{}",
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        )),
    );
    fields.insert("path".into(), Value::String(route_path.to_owned()));
    fields.insert(
        "query".into(),
        Value::String(uri.query().unwrap_or("").to_owned()),
    );
    fields.insert("headers".into(), Value::Array(headers));
    fields.insert("body".into(), Value::Bytes(body.to_vec()));
    let args = Value::Object(
        [("request".to_owned(), Value::Object(fields))]
            .into_iter()
            .collect(),
    );
    let outcome = app
        .actions
        .run(
            module,
            FunctionKind::HttpAction,
            &function,
            args,
            Caller::default(),
        )
        .await;
    let failed = |message: String| {
        request_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "HttpActionFailed",
            message,
        )
    };
    match outcome {
        Ok(outcome) => {
            response_of(outcome.value).unwrap_or_else(|e| failed(format!("{function}: {e}")))
        }
        Err(failure) if matches!(failure.error, CallError::Host(_)) => request_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Overloaded",
            failure.to_string(),
        ),
        Err(failure) => failed(failure.to_string()),
    }
}

/// The HTTP response an action returned: `{status: int64, headers: [[name, value]], body:
/// bytes | null}`.
fn response_of(value: Value) -> Result<HttpResponse, String> {
    let Value::Object(mut o) = value else {
        return Err("an HTTP action returns {status, headers, body}".into());
    };
    let status = match o.remove("status") {
        Some(Value::Int64(code)) => u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| format!("returned status {code}, which is not an HTTP status"))?,
        _ => return Err("the response needs an int64 \"status\"".into()),
    };
    let body = match o.remove("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Bytes(b)) => b,
        Some(Value::String(s)) => s.into_bytes(),
        Some(_) => return Err("the response's \"body\" must be bytes, a string or null".into()),
    };
    let mut response = Response::new(super::response::full(body));
    *response.status_mut() = status;
    if let Some(Value::Array(headers)) = o.remove("headers") {
        for pair in headers {
            let Value::Array(kv) = pair else {
                return Err("response headers are [name, value] strings".into());
            };
            let (Some(Value::String(k)), Some(Value::String(v))) = (kv.first(), kv.get(1)) else {
                return Err("response headers are [name, value] strings".into());
            };
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("{k:?} is not a header name"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("the value of header {k} is not a valid header value"))?;
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_exact_paths_first_then_the_longest_prefix() {
        let route = |method: &str, path: &str, prefix: bool| HttpRoute {
            method: method.into(),
            path: path.into(),
            prefix,
        };
        let routes = [
            (route("POST", "/hook", false), "a:hook"),
            (route("GET", "/files/", true), "a:files"),
            (route("GET", "/files/special/", true), "a:special"),
            (route("ANY", "/files/special/x", false), "a:exact"),
            (route("ANY", "/any", false), "a:any"),
            (route("GET", "/any", false), "a:get_any"),
        ];
        let find = |method: &str, path: &str| {
            find_route(routes.iter().map(|(r, f)| (r, *f)), method, path)
        };
        assert_eq!(find("POST", "/hook"), Ok("a:hook"));
        assert_eq!(find("GET", "/hook"), Err(true));
        assert_eq!(find("GET", "/hook/x"), Err(false));
        assert_eq!(find("GET", "/files/a.txt"), Ok("a:files"));
        assert_eq!(find("GET", "/files/special/y"), Ok("a:special"));
        assert_eq!(find("DELETE", "/files/special/x"), Ok("a:exact"));
        assert_eq!(find("GET", "/files/special/x"), Ok("a:exact"));
        assert_eq!(find("GET", "/any"), Ok("a:get_any"));
        assert_eq!(find("PUT", "/any"), Ok("a:any"));
        assert_eq!(find("GET", "/nothing"), Err(false));
    }
}
