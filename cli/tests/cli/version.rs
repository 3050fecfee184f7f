//! `runtime --version` names what apps it runs: the SDK release and ABI version.

use crate::{run_to_end, runtime_bin};
use ferrovex_model::abi::{ABI_VERSION, SDK_VERSION};
use std::process::Command;

#[test]
fn the_version_names_the_sdk_and_abi_it_speaks() {
    let mut command = Command::new(runtime_bin());
    command.arg("--version");
    let output = run_to_end(command);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim_end(),
        format!(
            "runtime {} (apps: ferrovex-sdk {SDK_VERSION}, ABI version {ABI_VERSION})",
            env!("CARGO_PKG_VERSION")
        )
    );
}
