//! `runtime dashboard`: the URL that opens a running server's dashboard signed in. The admin
//! key rides in the URL's fragment, which a browser never sends to a server, and which the
//! page moves into the tab's session storage and out of the address bar at once.

use crate::admin::AdminKeyArgs;
use crate::remote::{client_runtime, ServerUrl};
use clap::Args;
use hyper::Method;

#[derive(Args)]
pub struct DashboardArgs {
    /// The server, as `runtime serve` printed it.
    #[arg(long, default_value = "http://127.0.0.1:3210")]
    pub url: String,
    /// Also open it in the desktop's browser (`xdg-open`, `open` on macOS). The link, key
    /// included, is then on their command lines, which other users of this machine can read.
    #[arg(long)]
    pub open: bool,
    #[command(flatten)]
    pub admin: AdminKeyArgs,
}

/// The sign-in URL of the dashboard at `server` (`http://HOST:PORT`) for `key`.
pub fn sign_in_url(server: &str, key: &str) -> String {
    let key: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
    format!("{server}/_dashboard/#key={key}")
}

pub fn run(args: DashboardArgs) -> Result<(), String> {
    let url = ServerUrl::parse(&args.url)?;
    let key = args.admin.require("runtime dashboard", &url)?;
    let url = url.with_admin_key(Some(key.clone()));
    // Checked first, so the URL printed is one that works.
    let runtime = client_runtime()?;
    let (status, answer) =
        runtime.block_on(url.request(Method::GET, "/api/dashboard/deployment", None))?;
    let message = answer["message"].as_str().unwrap_or_default();
    match status {
        200 => {}
        401 => return Err(format!("the server refused the admin key (401): {message}")),
        // An older server without the dashboard answers 404.
        _ => {
            return Err(format!(
                "GET /api/dashboard/deployment answered {status}: {message}"
            ))
        }
    }
    let link = sign_in_url(&url.http_url(), &key);
    println!("{link}");
    eprintln!(
        "This link signs a browser in as the deployment's admin: share it as you would the key."
    );
    if args.open {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        std::process::Command::new(opener)
            .arg(&link)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("opening a browser with {opener}: {e}; open the URL above by hand")
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_travels_in_the_fragment_encoded() {
        assert_eq!(
            super::sign_in_url("http://127.0.0.1:3210", "fvx_admin_ab+/="),
            "http://127.0.0.1:3210/_dashboard/#key=fvx_admin_ab%2B%2F%3D"
        );
    }
}
