//! What the browser tests stand on: a runtime server in this process that can be stopped and
//! started again on the same port and data, and headless Chromium driven through a
//! `chromedriver` process over WebDriver.

use crate::guests;
use crate::test_server::{serve_with_auth, Serving};
use fantoccini::wd::{Capabilities, TimeoutConfiguration};
use fantoccini::ClientBuilder;
use ferrovex_runtime::auth::AuthSettings;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value as Json};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Generous: it only turns a hang into a failure, no test waits for it to pass.
pub const DEADLINE: Duration = Duration::from_secs(90);

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Calls `check` until it returns `Some`, polling; fails the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "waited {DEADLINE:?} for {what}");
        // The polling period, not a wait for anything to happen.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A runtime server over a store in a temp folder; [`TestServer::restart`] stops it and
/// starts a new one on the same port over the same data, as a restarted process would.
pub struct TestServer {
    pub addr: SocketAddr,
    wasm: Vec<u8>,
    web_dir: Option<PathBuf>,
    /// The environment the app's auth config reads.
    settings: AuthSettings,
    dir: TempDir,
    running: Option<Serving>,
}

impl TestServer {
    /// Serves the guest crate at `guest_dir` (from the repository root) and `web_dir`.
    pub async fn start(guest_dir: &str, web_dir: Option<PathBuf>) -> TestServer {
        Self::start_with_auth(guest_dir, web_dir, AuthSettings::default()).await
    }

    /// [`TestServer::start`], with the environment the app's auth config reads.
    pub async fn start_with_auth(
        guest_dir: &str,
        web_dir: Option<PathBuf>,
        settings: AuthSettings,
    ) -> TestServer {
        let wasm = tokio::task::block_in_place(|| guests::guest_wasm(guest_dir));
        let mut server = TestServer {
            addr: "127.0.0.1:0".parse().unwrap(),
            wasm,
            web_dir,
            settings,
            dir: tempfile::tempdir().expect("temp dir"),
            running: None,
        };
        server.launch().await;
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The data folder's admin key.
    #[allow(dead_code)] // Not every test binary that shares this harness signs in.
    pub fn admin_key(&self) -> String {
        self.running
            .as_ref()
            .expect("the server is running")
            .admin_key
            .clone()
    }

    /// Sets one of the deployment's environment variables, as `runtime env set` does.
    pub fn set_env(&self, name: &str, value: &str) {
        let change = std::collections::BTreeMap::from([(name.to_owned(), Some(value.to_owned()))]);
        ferrovex_runtime::env_vars::EnvVars::of(&self.dir.path().join("data"))
            .change(&change, |_| Ok(()))
            .unwrap_or_else(|e| panic!("setting {name}: {e}"));
    }

    async fn launch(&mut self) {
        let data = self.dir.path().join("data");
        let serving = serve_with_auth(
            &data,
            &self.wasm,
            self.addr,
            self.web_dir.clone(),
            self.settings.clone(),
        )
        .await;
        self.addr = serving.addr;
        self.running = Some(serving);
    }

    /// Shuts down gracefully and waits until the store is closed.
    pub async fn stop(&mut self) {
        let running = self.running.take().expect("the server is running");
        running.shutdown_and_close().await;
    }

    /// Starts again on the same port over the same data.
    pub async fn restart(&mut self) {
        if self.running.is_some() {
            self.stop().await;
        }
        self.launch().await;
    }
}

/// One `chromedriver` process (in a process group of its own, with the browsers it starts).
pub struct Driver {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Driver {
    pub fn start() -> Driver {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the browser tests need Debian's chromium and chromium-driver \
                 (scripts/setup installs them)"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .arg(format!(
                "--log-path={}",
                dir.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // So that Drop can end the browsers with it, even when a test fails.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMEDRIVER}: {e}"));
        // It prints the port it chose, then little else; a thread drains the rest.
        let stdout = child.stdout.take().expect("piped stdout");
        let (port_sender, port_receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut port_sender = Some(port_sender);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    if let (Some(sender), Ok(port)) = (
                        port_sender.take(),
                        rest.trim_end_matches('.').parse::<u16>(),
                    ) {
                        let _ = sender.send(port);
                    }
                }
            }
        });
        let mut driver = Driver {
            child,
            port: 0,
            dir,
        };
        driver.port = port_receiver.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            panic!(
                "{CHROMEDRIVER} did not report its port; its log:\n{}",
                driver.log()
            )
        });
        driver
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// A new browser (a session of its own: its own profile, storage and windows).
    pub async fn browser(&self) -> Browser {
        let profile = tempfile::tempdir_in(self.dir.path()).expect("profile dir");
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    // Only loopback is reachable: no background fetches of Google's services.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-quic",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Chromium did not start through {CHROMEDRIVER}: {e}\nchromedriver's log:\n{}",
                    self.log()
                )
            });
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(DEADLINE),
                Some(DEADLINE),
                Some(Duration::ZERO),
            ))
            .await
            .expect("setting timeouts");
        Browser {
            client,
            _profile: profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group is this driver and the browsers it started; ids are our own children's.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
pub struct Browser {
    pub client: fantoccini::Client,
    _profile: TempDir,
}

impl Browser {
    /// Clicks the element `selector` finds.
    pub async fn click(&self, selector: &str) {
        self.client
            .find(fantoccini::Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("finding {selector}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {selector}: {e}"));
    }

    /// Replaces the text of the input `selector` finds with `text`, typed as a user would.
    #[allow(dead_code)] // Not every test binary that shares this harness types into inputs.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let input = self
            .client
            .find(fantoccini::Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("finding {selector}: {e}"));
        input
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clearing {selector}: {e}"));
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {selector}: {e}"));
    }

    /// A chat page's messages as `[user, body, own]` (the chat example's page and its React
    /// frontend lay them out alike).
    pub async fn chat_messages(&self) -> Json {
        self.run(
            r##"return [...document.querySelectorAll("#messages .message")].map((m) => [
                 m.querySelector(".user").textContent,
                 m.querySelector(".body").textContent,
                 m.classList.contains("own"),
               ]);"##,
            vec![],
        )
        .await
    }

    /// Waits until the chat page shows exactly `expected` (`who` names the window).
    pub async fn wait_for_chat(&self, who: &str, expected: &Json) {
        eventually(&format!("{who}'s chat to show {expected}"), || async move {
            (self.chat_messages().await == *expected).then_some(())
        })
        .await;
    }

    /// Types a message into a chat page's `#body` and sends it with Enter, or with `#send`
    /// (the chat example's page and its React frontend both have them).
    pub async fn send_chat_message(&self, body: &str, with_enter: bool) {
        let input = self
            .client
            .find(fantoccini::Locator::Id("body"))
            .await
            .expect("#body");
        if with_enter {
            input
                .send_keys(&format!("{body}{}", fantoccini::key::Key::Enter))
                .await
                .expect("typing a message");
        } else {
            input.send_keys(body).await.expect("typing a message");
            self.click("#send").await;
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// Runs `body` as the body of an async function in the page, with `args` as `args`, and
    /// returns what it returns. A thrown error fails the test with its stack.
    pub async fn run(&self, body: &str, args: Vec<Json>) -> Json {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             const args = Array.from(arguments).slice(0, -1);
             (async () => {{ {body} }})().then(
               (value) => done({{ ok: value === undefined ? null : value }}),
               (error) => done({{ error: String(error && error.stack || error) }}));"
        );
        let outcome = self
            .client
            .execute_async(&script, args)
            .await
            .unwrap_or_else(|e| panic!("running a script in the page: {e}\n{body}"));
        if let Some(error) = outcome.get("error") {
            panic!(
                "the page's script threw: {}\n{body}",
                error.as_str().unwrap_or_default()
            );
        }
        outcome["ok"].clone()
    }

    /// Polls the page until `expression` is truthy, and returns its value.
    pub async fn wait_for(&self, what: &str, expression: &str) -> Json {
        let body = &format!("return {expression};");
        eventually(what, || async move {
            let value = self.run(body, vec![]).await;
            let truthy = !matches!(&value, Json::Null | Json::Bool(false))
                && value != json!(0)
                && value != json!("");
            truthy.then_some(value)
        })
        .await
    }

    pub async fn quit(self) {
        let _ = self.client.close().await;
    }
}
