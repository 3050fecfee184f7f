//! The deployment's admin key on the command line: `runtime admin-key` (print or rotate the
//! key of a local data folder), and how the commands that need it (`logs`, `export`,
//! `import`, and `run` for internal functions) find it.

use crate::app::AppDir;
use crate::remote::ServerUrl;
use clap::Args;
use ferrovex_runtime::auth::AdminKeyFile;
use std::path::PathBuf;

/// Where a command takes the admin key from.
#[derive(Args, Clone)]
pub struct AdminKeyArgs {
    /// The deployment's admin key [default: $FERROVEX_ADMIN_KEY, else the key in --data]
    #[arg(long, env = "FERROVEX_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// The data folder of a local server, whose admin key to use [default: ./data]
    #[arg(long)]
    pub data: Option<PathBuf>,
}

impl AdminKeyArgs {
    /// The key given, or that of the local data folder when `url` is a server on this
    /// machine (a local key is never sent elsewhere unasked); `None` if there is none.
    pub fn find(&self, url: &ServerUrl) -> Result<Option<String>, String> {
        if let Some(key) = &self.admin_key {
            return Ok(Some(key.trim().to_owned()));
        }
        if !url.is_loopback() {
            return Ok(None);
        }
        let data = self.data.clone().unwrap_or_else(|| PathBuf::from("data"));
        match AdminKeyFile::existing(&data) {
            Ok(file) => file.read().map(Some),
            Err(_) if self.data.is_none() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The key, which `what` needs.
    pub fn require(&self, what: &str, url: &ServerUrl) -> Result<String, String> {
        self.find(url)?.ok_or_else(|| {
            format!(
                "{what} needs the deployment's admin key: pass --admin-key KEY or set FERROVEX_ADMIN_KEY, or --data DIR for a local server's data folder (`runtime admin-key` prints a local key)"
            )
        })
    }
}

#[derive(Args)]
pub struct AdminKeyCommand {
    /// The app crate's folder.
    #[arg(default_value = ".")]
    pub app_dir: PathBuf,
    /// Its data folder [default: APP_DIR/data].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Replace the key with a new one: the old one stops working at once, also in a running
    /// server.
    #[arg(long)]
    pub rotate: bool,
}

pub fn run(args: AdminKeyCommand) -> Result<(), String> {
    let data = match args.data {
        Some(data) => data,
        None => AppDir::open(&args.app_dir)?.default_data_dir(),
    };
    let file = AdminKeyFile::existing(&data).map_err(|e| {
        format!("{e}. A data folder gets its admin key when `runtime serve` first starts with it")
    })?;
    let key = if args.rotate {
        file.rotate()
            .map_err(|e| format!("rotating {}: {e}", file.path().display()))?
    } else {
        file.read()?
    };
    println!("{key}");
    Ok(())
}
