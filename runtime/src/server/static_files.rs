//! The app's web files: every `GET` outside `/api/`, from one folder.
//!
//! A request path maps to a file only if, once percent-decoded, every segment is a plain name
//! (no `.`, `..`, backslash or NUL), and the file's canonical path (symlinks resolved) is
//! still inside the folder's canonical path. Anything else is a 404, never a file from
//! elsewhere. A folder serves its `index.html`.

use super::response::{with_body, HttpResponse};
use hyper::header::{HeaderValue, CACHE_CONTROL, LOCATION, X_CONTENT_TYPE_OPTIONS};
use hyper::StatusCode;
use std::path::{Path, PathBuf};

pub async fn serve(web_dir: Option<&Path>, uri_path: &str) -> HttpResponse {
    let Some(web_dir) = web_dir else {
        return not_found(uri_path, "this app has no web files");
    };
    let Some(relative) = relative_path(uri_path) else {
        return not_found(uri_path, "not a valid file path");
    };
    let mut candidate = web_dir.join(&relative);
    if tokio::fs::metadata(&candidate)
        .await
        .is_ok_and(|m| m.is_dir())
    {
        // Relative links in the folder's index.html need the trailing slash.
        if !uri_path.ends_with('/') {
            return redirect(&format!("{uri_path}/"));
        }
        candidate.push("index.html");
    }
    let Some(file) = inside(web_dir, &candidate).await else {
        return not_found(uri_path, "no such file");
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => {
            let mut response = with_body(StatusCode::OK, content_type(&file), bytes);
            let headers = response.headers_mut();
            headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            // Files change while developing; the browser revalidates instead of guessing.
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            response
        }
        Err(e) => with_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("reading {uri_path} failed: {e}").into_bytes(),
        ),
    }
}

/// The decoded path under the web folder, or `None` if it names anything but plain segments.
fn relative_path(uri_path: &str) -> Option<PathBuf> {
    let decoded = String::from_utf8(percent_decode(uri_path)?).ok()?;
    let mut relative = PathBuf::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        let plain = segment != "."
            && segment != ".."
            && !segment.contains(['\\', '\0'])
            // A Windows drive prefix would make `join` discard the folder.
            && !segment.contains(':');
        if !plain {
            return None;
        }
        relative.push(segment);
    }
    Some(relative)
}

/// `%XX` escapes decoded; `None` for a malformed escape.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    Some(decoded)
}

/// The canonical path of `candidate` if it is a file inside `root`, symlinks resolved.
async fn inside(root: &Path, candidate: &Path) -> Option<PathBuf> {
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let file = tokio::fs::canonicalize(candidate).await.ok()?;
    let is_file = tokio::fs::metadata(&file).await.ok()?.is_file();
    (is_file && file.starts_with(&root)).then_some(file)
}

fn content_type(file: &Path) -> &'static str {
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("woff") => "font/woff",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn not_found(uri_path: &str, why: &str) -> HttpResponse {
    with_body(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        format!("not found: {uri_path}: {why}").into_bytes(),
    )
}

fn redirect(location: &str) -> HttpResponse {
    let mut response = with_body(
        StatusCode::PERMANENT_REDIRECT,
        "text/plain; charset=utf-8",
        vec![],
    );
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_segments_make_a_path() {
        assert_eq!(relative_path("/"), Some(PathBuf::new()));
        assert_eq!(
            relative_path("/css/app%20x.css"),
            Some(PathBuf::from("css/app x.css"))
        );
        for bad in [
            "/../secret",
            "/a/../../secret",
            "/%2e%2e/secret",
            "/a/..%2f..%2fsecret",
            "/a/%2E%2E%5Csecret",
            "/./x",
            "/a%00b",
            "/c:/windows",
            "/%zz",
            "/%e",
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
    }
}
