//! The app's web files: content types, index.html, redirects, and no way out of the folder.

use crate::TestServer;
use hyper::StatusCode;
use std::fs;

const SECRET: &str = "the secret outside the web folder";

/// A web folder with a few files, and a secret beside it that must never be served.
async fn server_with_files() -> TestServer {
    let server = TestServer::start_with_web("examples/chat", true).await;
    let web = server.web_dir();
    fs::write(web.join("index.html"), "<h1>chat</h1>").unwrap();
    fs::write(web.join("app.js"), "export const x = 1;").unwrap();
    fs::write(web.join("style.css"), "body {}").unwrap();
    fs::write(web.join("logo.SVG"), "<svg/>").unwrap();
    fs::write(web.join("data.bin"), [0u8, 1, 2]).unwrap();
    fs::create_dir(web.join("docs")).unwrap();
    fs::write(web.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    fs::write(web.join("docs/a b.txt"), "spaced").unwrap();
    fs::write(server.dir.path().join("secret.txt"), SECRET).unwrap();
    // A link that points outside the folder is not a way out either.
    std::os::unix::fs::symlink(server.dir.path().join("secret.txt"), web.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(server.dir.path(), web.join("outside")).unwrap();
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_served_with_their_content_types_and_index_html() {
    let server = server_with_files().await;
    let cases = [
        ("/", "text/html; charset=utf-8", "<h1>chat</h1>"),
        ("/index.html", "text/html; charset=utf-8", "<h1>chat</h1>"),
        (
            "/app.js",
            "text/javascript; charset=utf-8",
            "export const x = 1;",
        ),
        ("/style.css", "text/css; charset=utf-8", "body {}"),
        ("/logo.SVG", "image/svg+xml", "<svg/>"),
        ("/data.bin", "application/octet-stream", "\0\u{1}\u{2}"),
        ("/docs/", "text/html; charset=utf-8", "<h1>docs</h1>"),
        ("/docs/a%20b.txt", "text/plain; charset=utf-8", "spaced"),
        (
            "/app.js?v=3",
            "text/javascript; charset=utf-8",
            "export const x = 1;",
        ),
    ];
    for (path, content_type, body) in cases {
        let (status, headers, got) = server.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(String::from_utf8_lossy(&got), body, "{path}");
    }

    // A folder without its trailing slash redirects, so its relative links resolve.
    let (status, headers, _) = server.get("/docs").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "/docs/");

    // HEAD: the headers of GET, no body.
    let (status, headers, body) = server.request("HEAD", "/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-length"], "19");
    assert!(body.is_empty());

    for missing in ["/nope.html", "/docs/nope", "/app.js/x"] {
        let (status, _, body) = server.get(missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        assert!(
            String::from_utf8_lossy(&body).starts_with(&format!("not found: {missing}")),
            "{missing}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_path_reaches_a_file_outside_the_folder() {
    let server = server_with_files().await;
    let attempts = [
        "/../secret.txt",
        "/docs/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/docs/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/%2e%2e%2fsecret.txt",
        "//../secret.txt",
        "/./../secret.txt",
        "/link.txt",
        "/outside/secret.txt",
        "/secret.txt%00.html",
        "/%c0%ae%c0%ae/secret.txt",
    ];
    for target in attempts {
        let answer = server.raw_get(target).await;
        assert!(
            answer.starts_with("HTTP/1.1 404") || answer.starts_with("HTTP/1.1 400"),
            "{target}: {answer}"
        );
        assert!(
            !answer.contains(SECRET),
            "{target} leaked the secret: {answer}"
        );
    }
    // The request that does not try to escape still works on the same server.
    let answer = server.raw_get("/index.html").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_without_web_files_answers_404() {
    let server = TestServer::start("examples/chat").await;
    let (status, _, body) = server.get("/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "not found: /: this app has no web files"
    );
    server.shutdown().await;
}
