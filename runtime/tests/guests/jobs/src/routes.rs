//! HTTP actions under `/http/`.

use ferrovex_sdk::prelude::*;

/// Echoes what it received: the method and query in headers, the body as is, status 201.
#[http_action(method = "POST", path = "/echo")]
fn echo(_ctx: &mut ActionCtx, request: HttpRequest) -> Result<HttpResponse> {
    let mut response = HttpResponse::new(201)
        .header("x-method", request.method.clone())
        .header("x-query", request.query.clone())
        .header("x-path", request.path.clone())
        .body(request.body.0.clone());
    if let Some(value) = request.header("x-custom") {
        response = response.header("x-custom-echo", value);
    }
    Ok(response)
}

/// Every method under `/files/`: the rest of the path, as text.
#[http_action(method = "ANY", path_prefix = "/files/")]
fn files(_ctx: &mut ActionCtx, request: HttpRequest) -> Result<HttpResponse> {
    let name = request.path.trim_start_matches("/files/").to_owned();
    Ok(HttpResponse::text(
        200,
        format!("{} {name}", request.method),
    ))
}

/// A webhook that writes through a mutation and answers JSON.
#[http_action(method = "POST", path = "/hooks/record")]
fn hook(ctx: &mut ActionCtx, request: HttpRequest) -> Result<HttpResponse> {
    let tag = request.text()?;
    ctx.run_mutation::<()>("jobs:record", &doc! { "tag": tag.clone() })?;
    HttpResponse::json(200, &doc! { "recorded": tag })
}

#[http_action(method = "GET", path = "/fail")]
fn fail(_ctx: &mut ActionCtx, _request: HttpRequest) -> Result<HttpResponse> {
    bail!("the route failed on purpose");
}

/// A status that is not an HTTP status.
#[http_action(method = "GET", path = "/bad-status")]
fn bad_status(_ctx: &mut ActionCtx, _request: HttpRequest) -> Result<HttpResponse> {
    Ok(HttpResponse::new(1000))
}
