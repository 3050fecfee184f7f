//! Modules whose imports or exports do not match the ABI are rejected at deploy time, with a
//! message that names the offending import or export.

use crate::test_host;
use ferrovex_runtime::store::Store;
use ferrovex_runtime::wasm::DeployError;

fn deploy(wat: &str) -> DeployError {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    let wasm = wat::parse_str(wat).expect("valid WAT");
    match test_host(2).deploy(&store, &wasm) {
        Ok(_) => panic!("deployed a module that breaks the ABI:\n{wat}"),
        Err(e) => e,
    }
}

/// A minimal well-formed function, to which each case adds one defect.
const FUNCTION: &str = r#"
    (memory (export "memory") 1)
    (func (export "__runtime_v1_call:app::m::f") (param i32 i32))
    (func (export "__runtime_v1_describe:app::m::f"))
"#;

#[test]
fn import_and_export_mismatches_are_rejected_with_their_names() {
    let cases = [
        (format!(r#"(module (import "env" "foo" (func)) {FUNCTION})"#), "imports env.foo, but only module \"runtime_v1\" exists"),
        (
            format!(r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) {FUNCTION})"#),
            "WASI is not available",
        ),
        (format!(r#"(module (import "runtime_v1" "db_explode" (func)) {FUNCTION})"#), "runtime_v1.db_explode, which the host does not provide"),
        (
            format!(r#"(module (import "runtime_v1" "log" (func (param i32))) {FUNCTION})"#),
            "imports runtime_v1.log as",
        ),
        (
            r#"(module (func (export "__runtime_v1_call:app::m::f") (param i32 i32)) (func (export "__runtime_v1_describe:app::m::f")))"#.into(),
            "exports no memory named \"memory\"",
        ),
        (
            r#"(module (memory (export "memory") 1) (func (export "__runtime_v1_call:app::m::f") (param i32 i32)))"#.into(),
            "without its description",
        ),
        (
            r#"(module (memory (export "memory") 1) (func (export "__runtime_v1_call:app::f") (param i32 i32)) (func (export "__runtime_v1_describe:app::f")))"#.into(),
            "is at the crate root",
        ),
        (format!(r#"(module {FUNCTION} (func (export "malloc")))"#), "exports \"malloc\", which is not part of the ABI"),
        (r#"(module (memory (export "memory") 1))"#.into(), "exports no functions"),
    ];
    for (wat, expected) in cases {
        let error = deploy(&wat);
        assert!(matches!(error, DeployError::Abi(_)), "{wat}: {error}");
        let message = error.to_string();
        assert!(
            message.contains(expected),
            "{wat}:\n{message}\nlacks {expected:?}"
        );
        assert!(
            message.starts_with("the module does not match the host ABI runtime_v1"),
            "{message}"
        );
    }
}

#[test]
fn modules_using_disabled_proposals_or_not_wasm_do_not_compile() {
    let simd = format!(r#"(module {FUNCTION} (func (result v128) (v128.const i64x2 0 0)))"#);
    assert!(matches!(deploy(&simd), DeployError::Compile(_)));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    let error = test_host(2)
        .deploy(&store, b"not wasm")
        .err()
        .expect("rejected");
    assert!(matches!(error, DeployError::Compile(_)), "{error}");
}

#[test]
fn a_function_that_describes_itself_badly_is_rejected() {
    // The describe export returns without output.
    let error = deploy(&format!("(module {FUNCTION})"));
    assert!(matches!(error, DeployError::Describe { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("__runtime_v1_describe:app::m::f: returned without a result"),
        "{error}"
    );
}

/// The version record of `ferrovex_model::abi::VERSION_SECTION` as a WAT string.
fn version_record_wat(abi: u32, sdk: &str) -> String {
    let mut bytes = abi.to_le_bytes().to_vec();
    bytes.push(u8::try_from(sdk.len()).unwrap());
    bytes.extend(sdk.as_bytes());
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

#[test]
fn a_module_of_another_abi_version_is_refused_with_both_versions_and_what_to_run() {
    use ferrovex_model::abi::{sdk_requirement, ABI_VERSION, SDK_VERSION, VERSION_SECTION};
    // What an SDK of a later release would build: its own import module and export prefixes,
    // and its versions in the section. The version is checked first, so the message is about
    // it and not about the imports it also gets wrong.
    let newer = ABI_VERSION + 1;
    let record = version_record_wat(newer, "0.9.0");
    let wat = format!(
        r#"(module
            (@custom "{VERSION_SECTION}" "{record}")
            (import "runtime_v{newer}" "log" (func (param i32 i32)))
            (memory (export "memory") 1)
            (func (export "__runtime_v{newer}_call:app::m::f") (param i32 i32))
            (func (export "__runtime_v{newer}_describe:app::m::f")))"#
    );
    let error = deploy(&wat);
    let DeployError::AbiVersion(built_with) = &error else {
        panic!("expected a version refusal, got: {error}");
    };
    assert_eq!((built_with.abi, built_with.sdk.as_str()), (newer, "0.9.0"));
    let message = error.to_string();
    for expected in [
        format!("built with ferrovex-sdk 0.9.0, which speaks ABI version {newer}"),
        format!("this runtime speaks ABI version {ABI_VERSION} (ferrovex-sdk {SDK_VERSION})"),
        format!("set `ferrovex-sdk = \"{}\"`", sdk_requirement()),
        "in the app's Cargo.toml".to_owned(),
        format!("a runtime that speaks ABI version {newer}"),
        "cargo install --locked --path cli".to_owned(),
    ] {
        assert!(message.contains(&expected), "{message}\nlacks {expected:?}");
    }
    assert!(!message.contains("imports"), "{message}");

    // An older one too.
    let older = format!(
        r#"(module (@custom "{VERSION_SECTION}" "{}") {FUNCTION})"#,
        version_record_wat(0, "0.0.1")
    );
    let error = deploy(&older);
    assert!(
        matches!(error, DeployError::AbiVersion(_)),
        "an older ABI is refused too: {error}"
    );
    assert!(
        error
            .to_string()
            .contains("built with ferrovex-sdk 0.0.1, which speaks ABI version 0"),
        "{error}"
    );
}

#[test]
fn a_module_of_this_abi_version_passes_the_version_check() {
    use ferrovex_model::abi::{ABI_VERSION, SDK_VERSION, VERSION_SECTION};
    let record = version_record_wat(ABI_VERSION, SDK_VERSION);
    // It goes on to describe its function, which fails for this empty body: past the check.
    let error = deploy(&format!(
        r#"(module (@custom "{VERSION_SECTION}" "{record}") {FUNCTION})"#
    ));
    assert!(matches!(error, DeployError::Describe { .. }), "{error}");
    // A malformed section is refused with what is wrong with it.
    let error = deploy(&format!(
        r#"(module (@custom "{VERSION_SECTION}" "\01\00") {FUNCTION})"#
    ));
    assert!(matches!(error, DeployError::Abi(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("\"ferrovex_abi\", which says what the module was built with, is malformed"),
        "{error}"
    );
}
