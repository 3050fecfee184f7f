//! The `modules` target: arbitrary wasm modules (wasm-smith), limited to the imports of
//! `runtime_v1` and the exports of a guest (`memory`, a function's call and description),
//! deployed and, when they deploy, called as a query and as a mutation.
//!
//! An input picks, in this order, the wasm-smith config with the module's description and
//! the call's arguments ([`choices`]), what each placeholder import's wrapper sends
//! ([`wrappers`]), and the module. The generated module is then rewritten ([`rewrite`]) so
//! that most inputs deploy with a valid description, run their arbitrary code once as a
//! query and once as a mutation, and reach the store through the wrappers with well-formed
//! requests. The store is reset before every input, and each call's wrapper lines are
//! replayed on a model of the tables ([`tables`]). Tests in `tests.rs`.
//!
//! Checks: the host never panics; a deploy either succeeds or fails with an error that says
//! why (compile, description; never the ABI check, which every generated module passes); a
//! valid description deploys as written and an invalid one is refused; a call either returns
//! or fails with an error that names the function; a call of the wrong kind or with
//! arguments its description refuses fails before running; a result matches the declared
//! type; a query never moves the store's latest timestamp, a failed mutation commits nothing,
//! a successful one leaves the store at its timestamp; no instance outlives a deploy or a call
//! (the pool's slots are all free afterwards). Store-touching calls, replayed from the
//! wrappers' lines on a model of the tables: every status is the one the model expects
//! (reads and inserts succeed, changing an existing document succeeds, changing a missing
//! one fails); a query never writes and, like a failed mutation, leaves the tables as they
//! were; after a successful mutation the tables at its timestamp are exactly the model with
//! its writes, and one without writes commits nothing.

mod choices;
mod rewrite;
mod tables;
#[cfg(test)]
mod tests;
mod wrappers;

use arbitrary::Unstructured;
use choices::{config, other_kind, plan, Describe};
use ferrovex_model::abi::{FunctionDescription, FunctionKind, Type, CALL_PREFIX};
use ferrovex_model::Value;
use ferrovex_runtime::store::Store;
use ferrovex_runtime::wasm::{CallError, CallOptions, DeployError, HostConfig, WasmHost};
use rewrite::rewrite;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tables::{contents, replay, reset, wrapper_lines, Docs};
use wrappers::store_plan;

/// The Rust path of the generated function; `m:g` is added by the rewrite.
const F: &str = "app::m::f";
const G: &str = "app::m::g";

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
            // Generated loops often never end: a short limit keeps inputs fast, and the
            // timeout path is what is tested either way.
            timeout: Duration::from_millis(100),
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

/// What one input did, for the corpus test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ran {
    pub deployed: bool,
    /// Calls that got past the kind and argument checks and ran the generated body.
    pub queries: usize,
    pub mutations: usize,
    /// Store calls the wrappers made (and logged), over all calls.
    pub db_calls: usize,
    /// Those that succeeded and wrote, in mutations.
    pub db_writes: usize,
    /// Mutations that committed (a timestamp after the one they began on).
    pub commits: usize,
    /// Calls whose lines were not checked against the model (see `wrapper_lines`, `replay`).
    pub unmodeled: usize,
}

pub fn modules(data: &[u8]) {
    run(data);
}

pub(crate) fn run(data: &[u8]) -> Ran {
    let mut ran = Ran::default();
    let mut u = Unstructured::new(data);
    let Ok(config) = config(&mut u) else {
        return ran;
    };
    let Ok((describe, args)) = plan(&mut u) else {
        return ran;
    };
    let returns = match &describe {
        Describe::Valid(f) => Some(&f.returns),
        _ => None,
    };
    let Ok(store_plan) = store_plan(&mut u, returns) else {
        return ran;
    };
    let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
        return ran;
    };
    let generated = module.to_bytes();
    let verbose = std::env::var_os("FUZZ_CHECKS_VERBOSE").is_some();
    if verbose {
        eprintln!(
            "modules run: the call body calls {:?}",
            host_calls(&generated)
        );
    }
    let fixture = fixture().lock().unwrap_or_else(|e| e.into_inner());
    let (store, host) = (&fixture.store, &fixture.host);
    let ids = reset(store);
    let slot_ids: Vec<String> = store_plan
        .slots
        .iter()
        .map(|&i| ids[usize::from(i)].clone())
        .collect();
    let outputs = match &describe {
        Describe::Generated => vec![],
        Describe::Invalid(value) => vec![binary(value)],
        Describe::Valid(f) => {
            let g = FunctionDescription {
                visibility: ferrovex_model::abi::Visibility::Public,
                kind: other_kind(f.kind),
                ..f.clone()
            };
            vec![binary(&f.to_value()), binary(&g.to_value())]
        }
    };
    let wasm = rewrite(
        &generated,
        &outputs,
        &store_plan.wrappers,
        &slot_ids,
        store_plan.entry,
    );
    let before = store.latest_ts();
    let deployed = host.deploy(store, &wasm);
    if verbose {
        match &deployed {
            Ok(m) => eprintln!("modules run: deployed, {} functions", m.functions().count()),
            Err(e) => eprintln!("modules run: refused: {e}"),
        }
    }
    assert_eq!(host.live_instances(), 0, "a deploy left an instance");
    assert_eq!(store.latest_ts(), before, "a deploy committed");
    let module = match deployed {
        Ok(module) => module,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "a deploy error without a reason");
            assert!(
                !matches!(e, DeployError::Abi(_)),
                "a module within the ABI refused by the ABI check: {e}"
            );
            return ran;
        }
    };
    ran.deployed = true;
    match &describe {
        Describe::Generated => {}
        Describe::Invalid(value) => panic!("deployed with the description {value:?}"),
        Describe::Valid(f) => {
            let described: Vec<_> = module
                .functions()
                .map(|info| (info.path.as_str(), info.description.clone()))
                .collect();
            let g = FunctionDescription {
                visibility: ferrovex_model::abi::Visibility::Public,
                kind: other_kind(f.kind),
                ..f.clone()
            };
            assert_eq!(
                described,
                [("m:f", f.clone()), ("m:g", g)],
                "the deployed functions differ from their descriptions"
            );
        }
    }
    // Replays a call's lines on the tables it began on; `None` when they cannot be.
    let check_lines =
        |ran: &mut Ran, path: &str, kind: FunctionKind, log: &[String], docs: &mut Docs| {
            let lines = wrapper_lines(log);
            if verbose {
                eprintln!("modules run: {kind} {path}: lines {lines:?}");
            }
            let wrote = lines.as_ref().and_then(|lines| {
                ran.db_calls += lines.len();
                replay(path, kind, lines, &store_plan.wrappers, docs)
            });
            if wrote.is_none() {
                ran.unmodeled += 1;
            }
            wrote
        };
    let functions: Vec<_> = module.functions().cloned().collect();
    for function in functions {
        let path = &function.path;
        let description = &function.description;
        // What the host must refuse before running anything.
        let refused =
            |kind: FunctionKind| description.kind != kind || description.args.check(&args).is_err();
        let expect_refusal = |kind: FunctionKind, e: &CallError| {
            if description.kind != kind {
                assert!(matches!(e, CallError::WrongKind { .. }), "{path}: {e}");
            } else {
                assert!(matches!(e, CallError::InvalidArguments(_)), "{path}: {e}");
            }
        };

        let before = store.latest_ts();
        let docs_before = contents(store);
        let query = host.run_query(store, &module, path, &args, CallOptions::default());
        if verbose {
            eprintln!(
                "modules run: query {path}: {:?}",
                query.as_ref().map(|o| &o.value)
            );
        }
        assert_eq!(host.live_instances(), 0, "a query left an instance");
        assert_eq!(store.latest_ts(), before, "a query moved the store");
        assert!(
            contents(store) == docs_before,
            "{path}: a query changed the tables"
        );
        if !refused(FunctionKind::Query) {
            ran.queries += 1;
        }
        let log = match &query {
            Ok(outcome) => &outcome.log_lines,
            Err(failure) => &failure.log_lines,
        };
        check_lines(
            &mut ran,
            path,
            FunctionKind::Query,
            log,
            &mut docs_before.clone(),
        );
        match query {
            Ok(outcome) => {
                assert!(!refused(FunctionKind::Query), "{path}: ran a refused query");
                assert_eq!(outcome.ts, before, "{path}: a query read an old snapshot");
                check_result(path, &description.returns, &outcome.value);
            }
            Err(e) => {
                assert!(e.to_string().starts_with(path.as_str()), "{e}");
                if refused(FunctionKind::Query) {
                    expect_refusal(FunctionKind::Query, &e.error);
                }
            }
        }

        let before = store.latest_ts();
        let mutation = host.run_mutation(store, &module, path, &args, CallOptions::default());
        if verbose {
            eprintln!(
                "modules run: mutation {path}: {:?}",
                mutation.as_ref().map(|o| &o.value)
            );
        }
        assert_eq!(host.live_instances(), 0, "a mutation left an instance");
        if !refused(FunctionKind::Mutation) {
            ran.mutations += 1;
        }
        let log = match &mutation {
            Ok(outcome) => outcome.log_lines.clone(),
            Err(failure) => failure.log_lines.clone(),
        };
        let log = &log;
        let mut model = docs_before.clone();
        let wrote = check_lines(&mut ran, path, FunctionKind::Mutation, log, &mut model);
        let docs_after = contents(store);
        match mutation {
            Ok(outcome) => {
                assert!(
                    !refused(FunctionKind::Mutation),
                    "{path}: ran a refused mutation"
                );
                assert!(outcome.ts >= before, "{path}: committed in the past");
                assert_eq!(store.latest_ts(), outcome.ts, "{path}: commit not visible");
                check_result(path, &description.returns, &outcome.value);
                if outcome.ts > before {
                    ran.commits += 1;
                }
                if let Some(wrote) = wrote {
                    ran.db_writes += wrapper_lines(log)
                        .unwrap_or_default()
                        .iter()
                        .filter(|l| {
                            l.status == 0
                                && l.placeholder
                                    .is_some_and(|p| store_plan.wrappers[p].op.writes())
                        })
                        .count();
                    assert!(
                        docs_after == model,
                        "{path}: after the mutation committed at {}, the tables are\n{docs_after:?}\nbut its writes make them\n{model:?}",
                        outcome.ts
                    );
                    if !wrote {
                        assert_eq!(outcome.ts, before, "{path}: committed without writes");
                    }
                    if model != docs_before {
                        assert!(outcome.ts > before, "{path}: wrote without committing");
                    }
                }
            }
            Err(e) => {
                assert!(e.to_string().starts_with(path.as_str()), "{e}");
                assert_eq!(store.latest_ts(), before, "a failed mutation committed");
                assert!(
                    docs_after == docs_before,
                    "{path}: a failed mutation changed the tables"
                );
                if refused(FunctionKind::Mutation) {
                    expect_refusal(FunctionKind::Mutation, &e.error);
                }
            }
        }
    }
    ran
}

fn check_result(path: &str, returns: &Type, value: &Value) {
    if let Err(e) = returns.check(value) {
        panic!("{path}: returned {value:?}, which breaks its type: {e}");
    }
}

/// The imports the call export's body calls directly, in order (for `FUZZ_CHECKS_VERBOSE`).
fn host_calls(wasm: &[u8]) -> Vec<String> {
    let mut imports = Vec::new();
    let (mut call, mut defined) = (None, 0);
    let mut calls = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::ImportSection(section)) => {
                for import in section.into_iter().flatten() {
                    if let wasmparser::TypeRef::Func(_) = import.ty {
                        imports.push(import.name.to_owned());
                    }
                }
            }
            Ok(wasmparser::Payload::ExportSection(section)) => {
                for export in section.into_iter().flatten() {
                    if export.name.strip_prefix(CALL_PREFIX) == Some(F) {
                        call = Some(export.index);
                    }
                }
            }
            Ok(wasmparser::Payload::CodeSectionEntry(body)) => {
                if call == Some(imports.len() as u32 + defined) {
                    let Ok(reader) = body.get_operators_reader() else {
                        break;
                    };
                    for op in reader.into_iter().flatten() {
                        if let wasmparser::Operator::Call { function_index } = op {
                            if let Some(name) = imports.get(function_index as usize) {
                                calls.push(name.clone());
                            }
                        }
                    }
                }
                defined += 1;
            }
            _ => {}
        }
    }
    calls
}

fn binary(value: &Value) -> Vec<u8> {
    ferrovex_model::binary::encode(value)
}
