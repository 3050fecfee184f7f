//! An app of one's own, outside this repository. `runtime new` writes an app that depends on
//! the SDK by version. The SDK's crates are packaged (`cargo package`) and served to cargo from
//! a folder standing in for crates.io (directory source replacement, in a `.cargo/config.toml`
//! above the app, as a user's home would hold it); then, with this repository's path nowhere in
//! the app, it builds offline and `runtime serve` serves it: calls over HTTP, and a mutation
//! and a live query over the WebSocket API.

use crate::{
    connect, http_get, post, receive, repo_root, runtime_bin, send, serve_command, Running,
};
use ferrovex_model::abi::{sdk_requirement, SDK_VERSION};
use serde_json::{json, Value as Json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The crates an app depends on, in dependency order.
const PUBLISHED: [&str; 3] = ["ferrovex-model", "ferrovex-sdk-macros", "ferrovex-sdk"];

/// The cargo running these tests.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `command` to its end and fails the test, with its output, if it fails.
fn succeed(mut command: Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A folder in cargo's directory-source layout (what `cargo vendor` writes) holding this
/// release's packaged crates and the registry crates they depend on.
fn stand_in_registry(root: &Path) -> PathBuf {
    let registry = root.join("registry");
    // The examples depend on exactly the SDK's registry crates, at the versions of the lock
    // file `runtime new` writes.
    let mut vendor = cargo();
    vendor
        .args(["vendor", "--versioned-dirs", "--manifest-path"])
        .arg(repo_root().join("examples/Cargo.toml"))
        .arg(&registry);
    succeed(vendor, "cargo vendor of the examples' dependencies");

    // The .crate files as `cargo publish` would upload them (it verifies them in the test
    // command; here they only need to be packed).
    let packages = root.join("packages");
    let mut package = cargo();
    package
        .current_dir(repo_root())
        .args(["package", "--no-verify", "--offline", "--allow-dirty"])
        .arg("--target-dir")
        .arg(&packages);
    for name in PUBLISHED {
        package.args(["-p", name]);
    }
    succeed(package, "cargo package");
    for name in PUBLISHED {
        let crate_file = packages
            .join("package")
            .join(format!("{name}-{SDK_VERSION}.crate"));
        let mut unpack = Command::new("tar");
        unpack.arg("xzf").arg(&crate_file).arg("-C").arg(&registry);
        succeed(unpack, "unpacking a .crate");
        let mut sum = Command::new("sha256sum");
        sum.arg(&crate_file);
        let sum = String::from_utf8(succeed(sum, "sha256sum").stdout).unwrap();
        let sum = sum.split_whitespace().next().expect("a checksum");
        // The package checksum goes into the app's Cargo.lock, as crates.io's would; the
        // files are not listed, so none is checked one by one.
        std::fs::write(
            registry
                .join(format!("{name}-{SDK_VERSION}"))
                .join(".cargo-checksum.json"),
            json!({"files": {}, "package": sum}).to_string(),
        )
        .unwrap();
    }
    registry
}

/// Every file under `dir` that mentions `needle`, skipping cargo's and the server's output.
fn files_mentioning(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("target") && !path.ends_with("data") {
                found.extend(files_mentioning(&path, needle));
            }
        } else if String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(needle) {
            found.push(path);
        }
    }
    found
}

/// The next frame, failing the test on a `FatalError` or a closed connection.
fn next_frame(client: &mut tungstenite::WebSocket<std::net::TcpStream>) -> Json {
    let frame = receive(client).expect("the connection stays open");
    assert_ne!(frame["type"], "FatalError", "{frame}");
    frame
}

/// The new value of query 1 if `frame` is a `Transition` that updates it.
fn list_update(frame: &Json) -> Option<Json> {
    if frame["type"] != "Transition" {
        return None;
    }
    let modification = frame["modifications"]
        .as_array()?
        .iter()
        .find(|m| m["queryId"] == 1)?;
    assert_eq!(modification["type"], "QueryUpdated", "{modification}");
    Some(modification["value"].clone())
}

/// The next value of query 1, skipping other frames.
fn next_list(client: &mut tungstenite::WebSocket<std::net::TcpStream>) -> Json {
    loop {
        if let Some(list) = list_update(&next_frame(client)) {
            return list;
        }
    }
}

#[test]
fn a_new_app_outside_the_repository_builds_from_the_registry_and_serves() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let registry = stand_in_registry(root);
    std::fs::create_dir(root.join(".cargo")).unwrap();
    std::fs::write(
        root.join(".cargo/config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"stand-in\"\n\n[source.stand-in]\ndirectory = {:?}\n\n[net]\noffline = true\n",
            registry.display().to_string()
        ),
    )
    .unwrap();

    // The README's install line, into a folder of the test's: the installed copy is what runs
    // from here on, from a folder outside the repository.
    let bin = root.join("bin");
    let mut install = Command::new(repo_root().join("scripts/install"));
    install.arg(&bin).env("RUNTIME_BIN", runtime_bin());
    let installed = String::from_utf8(succeed(install, "scripts/install").stdout).unwrap();
    assert!(installed.contains("installed runtime "), "{installed}");
    let runtime = bin.join("runtime");

    let mut new = Command::new(&runtime);
    new.args(["new", "my-app"])
        .current_dir(root)
        .env_remove("FERROVEX_SDK_PATH");
    let told = String::from_utf8(succeed(new, "runtime new").stdout).unwrap();
    assert!(told.contains("runtime dev"), "says what to do next: {told}");
    let app = root.join("my-app");
    let manifest = std::fs::read_to_string(app.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!("ferrovex-sdk = \"{}\"", sdk_requirement())),
        "depends on the SDK by version:\n{manifest}"
    );
    for file in [".gitignore", "README.md", "Cargo.lock"] {
        assert!(app.join(file).is_file(), "the app has its {file}");
    }
    let readme = std::fs::read_to_string(app.join("README.md")).unwrap();
    assert!(
        readme.starts_with("# my-app") && readme.contains("runtime dev ."),
        "{readme}"
    );
    let repo = repo_root().display().to_string();
    assert_eq!(
        files_mentioning(&app, &repo),
        Vec::<PathBuf>::new(),
        "files of the app that name the repository at {repo}"
    );

    // Built as its own developer would, offline: every crate comes from the stand-in.
    let mut build = cargo();
    build
        .args(["build", "--offline"])
        .current_dir(&app)
        .env_remove("CARGO_TARGET_DIR");
    succeed(build, "cargo build of the new app");
    let lock = std::fs::read_to_string(app.join("Cargo.lock")).unwrap();
    assert!(
        lock.contains(&format!(
            "name = \"ferrovex-sdk\"\nversion = \"{SDK_VERSION}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\""
        )),
        "the SDK comes from the registry:\n{lock}"
    );
    assert_eq!(files_mentioning(&app, &repo), Vec::<PathBuf>::new());

    let data = root.join("data");
    // `runtime dev my-app`: serves it (and would redeploy on every save; the dev tests cover
    // that).
    let mut dev = Command::new(&runtime);
    dev.args(["dev", "my-app", "--port", "0", "--data"])
        .arg(&data)
        .current_dir(root);
    let developing = Running::start(dev);
    let (status, sent) = post(
        developing.addr,
        "/api/mutation",
        &json!({"path": "messages:send", "args": {"author": "ada", "body": "while developing"}}),
    );
    assert_eq!(
        (status, &sent["status"]),
        (200, &json!("success")),
        "{sent}"
    );
    developing.stop();
    // `serve` starts over from an empty data folder, so the checks below see only its calls.
    std::fs::remove_dir_all(&data).unwrap();

    let mut serve = Command::new(&runtime);
    serve
        .args(["serve", "my-app", "--port", "0", "--data"])
        .arg(&data)
        .current_dir(root);
    let server = Running::start(serve);

    // A live query and a mutation over the WebSocket API.
    let mut client = connect(server.addr, "own-app");
    send(
        &mut client,
        json!({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
        "modifications": [{"type": "Add", "queryId": 1, "udfPath": "messages:list", "args": {}}]}),
    );
    assert_eq!(next_list(&mut client), json!([]));
    send(
        &mut client,
        json!({"type": "Mutation", "requestId": 1, "udfPath": "messages:send",
        "args": {"author": "ada", "body": "over the socket"}}),
    );
    // Its response and the subscription's new result, in whichever order they come.
    let (mut response, mut list) = (None, None);
    while response.is_none() || list.is_none() {
        let frame = next_frame(&mut client);
        if frame["type"] == "MutationResponse" {
            response = Some(frame);
        } else if let Some(update) = list_update(&frame) {
            list = Some(update);
        }
    }
    let (response, list) = (response.unwrap(), list.unwrap());
    assert_eq!(
        (&response["requestId"], &response["success"]),
        (&json!(1), &json!(true)),
        "{response}"
    );
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["author"], "ada", "{list}");
    assert_eq!(list[0]["body"], "over the socket", "{list}");

    // Over HTTP: a mutation, a function's own failure, the query, and the page.
    let (status, sent) = post(
        server.addr,
        "/api/mutation",
        &json!({"path": "messages:send", "args": {"author": "ada", "body": "second"}}),
    );
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["status"], "success", "{sent}");
    let list = next_list(&mut client);
    assert_eq!(list[1]["body"], "second", "the subscriber sees it: {list}");
    let (status, empty) = post(
        server.addr,
        "/api/mutation",
        &json!({"path": "messages:send", "args": {"author": "ada", "body": " "}}),
    );
    assert_eq!(status, 200, "a function's failure: {empty}");
    assert_eq!(empty["status"], "error", "{empty}");
    assert!(
        empty["errorMessage"]
            .as_str()
            .unwrap()
            .contains("a message needs a body"),
        "{empty}"
    );
    let (status, listed) = post(
        server.addr,
        "/api/query",
        &json!({"path": "messages:list", "args": {}}),
    );
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["value"][0]["body"], "over the socket", "{listed}");
    let page = http_get(server.addr, "/");
    assert!(page.contains("<title>my-app</title>"), "{page}");
    server.stop();

    // Creating it again is refused: nothing is overwritten.
    let mut again = Command::new(&runtime);
    again.args(["new", "my-app"]).current_dir(root);
    let again = again.output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

/// `./scripts/runtime new` (which sets `FERROVEX_SDK_PATH`) makes an app that builds against
/// this checkout's SDK through a `[patch.crates-io]` section, so the tutorial works before the
/// crates are published; a path that is not a checkout's SDK is refused, naming the variable.
#[test]
fn a_new_app_made_from_a_checkout_builds_against_its_sdk() {
    let root = tempfile::tempdir().unwrap();
    let sdk = repo_root().join("guest-sdk");
    let mut new = Command::new(runtime_bin());
    new.args(["new", "from-checkout"])
        .current_dir(root.path())
        .env("FERROVEX_SDK_PATH", &sdk);
    succeed(new, "runtime new with FERROVEX_SDK_PATH");
    let app = root.path().join("from-checkout");
    let manifest = std::fs::read_to_string(app.join("Cargo.toml")).unwrap();
    for (name, path) in [
        ("ferrovex-sdk", sdk.clone()),
        ("ferrovex-sdk-macros", sdk.join("macros")),
        ("ferrovex-model", repo_root().join("model")),
    ] {
        let line = format!("{name} = {{ path = {:?} }}", path.display().to_string());
        assert!(manifest.contains(&line), "{line} in:\n{manifest}");
    }
    assert!(manifest.contains("[patch.crates-io]"), "{manifest}");

    let server = Running::start(serve_command(&app, &root.path().join("data")));
    let (status, sent) = post(
        server.addr,
        "/api/mutation",
        &json!({"path": "messages:send", "args": {"author": "ada", "body": "from the checkout"}}),
    );
    assert_eq!(
        (status, &sent["status"]),
        (200, &json!("success")),
        "{sent}"
    );
    let (_, listed) = post(
        server.addr,
        "/api/query",
        &json!({"path": "messages:list", "args": {}}),
    );
    assert_eq!(listed["value"][0]["body"], "from the checkout", "{listed}");
    server.stop();

    let mut wrong = Command::new(runtime_bin());
    wrong
        .args(["new", "elsewhere"])
        .current_dir(root.path())
        .env("FERROVEX_SDK_PATH", root.path());
    let output = wrong.output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FERROVEX_SDK_PATH=")
            && stderr.contains("is not a checkout's guest-sdk folder"),
        "{stderr}"
    );
}
