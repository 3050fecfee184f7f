//! `GET /api/env` and `POST /api/env`: the deployment's environment variables
//! (`crate::env_vars`), behind the admin key. A change the app's auth config cannot work with
//! (a variable it names removed) is refused whole; an accepted one takes effect at once: the
//! sign-in providers are read again and their keys fetched.

use super::call_request::read_body;
use super::response::{json, request_error, HttpResponse};
use super::Served;
use crate::sync::engine::SyncEngine;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `{"variables": {NAME: value, ...}}`.
pub fn list(app: &Served) -> HttpResponse {
    let Some(vars) = app.access.env_vars() else {
        return no_variables();
    };
    match vars.load() {
        Ok(vars) => json(StatusCode::OK, &json!({ "variables": vars })),
        Err(e) => request_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", e),
    }
}

/// `{"set": {NAME: "value" | null, ...}}` (null removes): the names held after the change.
pub async fn change(
    app: Arc<Served>,
    sync: &Arc<SyncEngine>,
    request: Request<Incoming>,
) -> HttpResponse {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let bad = |message: String| {
        request_error(
            StatusCode::BAD_REQUEST,
            "BadEnvironmentVariables",
            format!("POST /api/env: {message}"),
        )
    };
    let changes: BTreeMap<String, Option<String>> = match serde_json::from_slice::<Json>(&body) {
        Ok(Json::Object(mut fields)) => match fields.remove("set") {
            Some(set) => match serde_json::from_value(set) {
                Ok(changes) => changes,
                Err(_) => {
                    return bad("\"set\" must map names to strings, or to null to remove".into())
                }
            },
            None => return bad("expected {\"set\": {NAME: \"value\" | null}}".into()),
        },
        Ok(_) => return bad("the body must be a JSON object".into()),
        Err(e) => return bad(format!("the body is not JSON ({e})")),
    };
    if app.access.env_vars().is_none() {
        return no_variables();
    }
    let module = sync.module();
    let (app_for_change, module_for_change) = (app.clone(), module.clone());
    let changed = tokio::task::spawn_blocking(move || {
        let access = &app_for_change.access;
        let vars = access.env_vars().expect("checked above");
        let mut prepared = None;
        let result = vars.change(&changes, |vars| {
            let providers = access
                .prepare_with(&module_for_change.auth_config, vars)
                .map_err(|e| format!("the app's auth config cannot work with this change: {e}"))?;
            prepared = Some(providers);
            Ok(())
        });
        result.map(|vars| (vars, prepared.expect("accepted")))
    })
    .await
    .expect("changing variables does not panic");
    match changed {
        Ok((vars, providers)) => {
            providers.prefetch().await;
            app.access.install(providers);
            let names: Vec<&String> = vars.keys().collect();
            json(StatusCode::OK, &json!({ "variables": names }))
        }
        Err(message) => bad(message),
    }
}

fn no_variables() -> HttpResponse {
    request_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "this server keeps no environment variables (it was started without a data folder)",
    )
}
