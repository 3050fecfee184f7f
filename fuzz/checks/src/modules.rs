//! The `modules` target: arbitrary wasm modules (wasm-smith), limited to the imports of
//! `runtime_v1` and the exports of a guest (`memory`, a function's call and description),
//! deployed and, when they deploy, called as a query and as a mutation.
//!
//! Checks: the host never panics; a deploy either succeeds or fails with an error that says
//! why (compile, ABI check, description); a call either returns or fails with an error that
//! names the function; a failed call commits nothing; no instance outlives a deploy or a call
//! (the pool's slots are all free afterwards).

use arbitrary::Unstructured;
use model::abi::WasmType;
use model::abi::IMPORT_SIGNATURES;
use model::{Object, Value};
use runtime::store::Store;
use runtime::wasm::{CallOptions, HostConfig, WasmHost};
use std::sync::{Arc, Mutex, OnceLock};

struct Fixture {
    store: Arc<Store>,
    /// A host of its own, without the module cache: every module here is new.
    host: WasmHost,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Mutex<Fixture> {
    static FIXTURE: OnceLock<Mutex<Fixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = crate::scratch_dir();
        let store = Arc::new(Store::open(&dir.path().join("data")).expect("open the store"));
        let host = WasmHost::new(HostConfig {
            max_instances: 4,
            ..HostConfig::default()
        })
        .expect("the wasm host starts");
        Mutex::new(Fixture {
            store,
            host,
            _dir: dir,
        })
    })
}

fn wat_type(t: &WasmType) -> &'static str {
    match t {
        WasmType::I32 => "i32",
        WasmType::I64 => "i64",
        WasmType::F64 => "f64",
    }
}

/// A module whose imports are every import of the ABI: what generated modules may import.
fn imports_module() -> Vec<u8> {
    let mut wat = String::from("(module\n");
    for (name, params, results) in IMPORT_SIGNATURES {
        let params: Vec<&str> = params.iter().map(wat_type).collect();
        let results: Vec<&str> = results.iter().map(wat_type).collect();
        wat.push_str(&format!(
            "(import \"runtime_v1\" \"{name}\" (func (param {}) (result {})))\n",
            params.join(" "),
            results.join(" ")
        ));
    }
    wat.push(')');
    wat::parse_str(&wat).expect("valid WAT")
}

/// A module with the exports of a guest of one function.
fn exports_module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "__runtime_v1_call:app::m::f") (param i32 i32))
            (func (export "__runtime_v1_describe:app::m::f")))"#,
    )
    .expect("valid WAT")
}

fn config(u: &mut Unstructured) -> arbitrary::Result<wasm_smith::Config> {
    static IMPORTS: OnceLock<Vec<u8>> = OnceLock::new();
    static EXPORTS: OnceLock<Vec<u8>> = OnceLock::new();
    let mut config = wasm_smith::Config {
        available_imports: Some(IMPORTS.get_or_init(imports_module).clone()),
        exports: Some(EXPORTS.get_or_init(exports_module).clone()),
        max_funcs: 8,
        max_instructions: 200,
        // The exported memory is generated whatever this says; one more would need the
        // multi-memory proposal, which the host does not enable.
        max_memories: 0,
        reference_types_enabled: false,
        max_memory32_bytes: 4 << 20,
        memory64_enabled: false,
        max_tables: 1,
        max_table_elements: 100,
        max_data_segments: 4,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        gc_enabled: false,
        exceptions_enabled: false,
        tail_call_enabled: false,
        ..wasm_smith::Config::default()
    };
    // Sometimes features the host refuses at deploy (SIMD), sometimes not.
    config.simd_enabled = u.ratio(1, 8)?;
    config.relaxed_simd_enabled = false;
    Ok(config)
}

pub fn modules(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(config) = config(&mut u) else { return };
    let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
        return;
    };
    let wasm = module.to_bytes();
    let fixture = fixture().lock().unwrap_or_else(|e| e.into_inner());
    let before = fixture.store.latest_ts();
    let deployed = fixture.host.deploy(&fixture.store, &wasm);
    if std::env::var_os("FUZZ_CHECKS_VERBOSE").is_some() {
        match &deployed {
            Ok(m) => eprintln!("modules run: deployed, {} functions", m.functions().count()),
            Err(e) => eprintln!("modules run: refused: {e}"),
        }
    }
    assert_eq!(
        fixture.host.live_instances(),
        0,
        "a deploy left an instance"
    );
    let module = match deployed {
        Ok(module) => module,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "a deploy error without a reason");
            return;
        }
    };
    let args = Value::Object(Object::new());
    for function in module
        .functions()
        .map(|f| f.path.clone())
        .collect::<Vec<_>>()
    {
        let query = fixture.host.run_query(
            &fixture.store,
            &module,
            &function,
            &args,
            CallOptions::default(),
        );
        assert_eq!(fixture.host.live_instances(), 0, "a query left an instance");
        if let Err(e) = query {
            assert!(e.to_string().starts_with(&function), "{e}");
        }
        let mutation = fixture.host.run_mutation(
            &fixture.store,
            &module,
            &function,
            &args,
            CallOptions::default(),
        );
        assert_eq!(
            fixture.host.live_instances(),
            0,
            "a mutation left an instance"
        );
        if let Err(e) = mutation {
            assert!(e.to_string().starts_with(&function), "{e}");
            assert_eq!(
                fixture.store.latest_ts(),
                before,
                "a failed mutation committed"
            );
        }
    }
}
