//! The seed corpus, a measure of any folder of inputs or random ones, and the rewrite and
//! the wrappers on hand-written modules.

use super::rewrite::rewrite;
use super::tables::{contents, replay, reset, wrapper_lines};
use super::wrappers::{store_plan, wrapper, Op, ID_MARKER, PLACEHOLDERS, SLOTS};
use super::*;
use ferrovex_model::abi::DESCRIBE_PREFIX;
use ferrovex_model::Object;

fn corpus_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("a corpus folder")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    files
}

/// Totals over inputs.
#[derive(Debug, Default)]
struct Totals {
    inputs: usize,
    deployed: usize,
    called: usize,
    /// Inputs whose calls made store calls through the wrappers.
    with_db_calls: usize,
    db_calls: usize,
    /// Inputs with a mutation that wrote through the wrappers and committed.
    with_commits: usize,
    commits: usize,
    db_writes: usize,
    unmodeled: usize,
}

impl Totals {
    fn add(&mut self, ran: Ran) {
        self.inputs += 1;
        self.deployed += usize::from(ran.deployed);
        self.called += usize::from(ran.queries > 0 && ran.mutations > 0);
        self.with_db_calls += usize::from(ran.db_calls > 0);
        self.db_calls += ran.db_calls;
        self.with_commits += usize::from(ran.commits > 0 && ran.db_writes > 0);
        self.commits += ran.commits;
        self.db_writes += ran.db_writes;
        self.unmodeled += ran.unmodeled;
    }
}

/// The seed corpus deploys: a share of its inputs get past describe and run their
/// generated call body as a query and as a mutation, some of them call the store
/// through the wrappers, and some of those mutations write and commit.
#[test]
fn seed_corpus_deploys_and_calls() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/modules");
    let files = corpus_files(&dir);
    let mut totals = Totals::default();
    for file in &files {
        let ran = run(&std::fs::read(file).expect("a corpus file"));
        eprintln!("{}: {ran:?}", file.display());
        totals.add(ran);
    }
    eprintln!("{totals:?}");
    assert!(
        totals.called >= 3 && totals.called * 3 >= files.len(),
        "{} of {} seed inputs deployed and ran as a query and a mutation",
        totals.called,
        files.len()
    );
    assert!(
        totals.with_db_calls >= 2,
        "only {} seed inputs reach the store",
        totals.with_db_calls
    );
    assert!(
        totals.with_commits >= 1,
        "no seed input writes to the store and commits"
    );
}

/// Counts for a folder of inputs (`FUZZ_MODULES_DIR`) or for `FUZZ_MODULES_RANDOM`
/// random inputs: `cargo test --release -p ferrovex-fuzz-checks --lib measure -- --ignored
/// --nocapture`. With `FUZZ_MODULES_SAVE` (a folder), the random inputs that reach the
/// store are saved there: candidates for seeds.
#[test]
#[ignore]
fn measure() {
    let mut totals = Totals::default();
    if let Some(dir) = std::env::var_os("FUZZ_MODULES_DIR") {
        for file in corpus_files(std::path::Path::new(&dir)) {
            totals.add(run(&std::fs::read(file).expect("a corpus file")));
        }
    }
    let random: usize = std::env::var("FUZZ_MODULES_RANDOM")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let save = std::env::var_os("FUZZ_MODULES_SAVE").map(std::path::PathBuf::from);
    for i in 0..random {
        let len = 64 + (next() % 4096) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let ran = run(&data);
        totals.add(ran);
        if let Some(save) = &save {
            if ran.commits > 0 && ran.db_writes > 0 {
                std::fs::write(save.join(format!("commit-{i}")), &data).unwrap();
            } else if ran.db_calls > 0 {
                std::fs::write(save.join(format!("db-{i}")), &data).unwrap();
            }
        }
    }
    eprintln!("{totals:?}");
}

fn mutation_description() -> FunctionDescription {
    FunctionDescription {
        visibility: ferrovex_model::abi::Visibility::Public,
        kind: FunctionKind::Mutation,
        args: Type::object([]),
        returns: Type::Any,
        route: None,
    }
}

/// A rewritten module is what the ABI asks for, with and without imports of its own.
#[test]
fn rewrite_without_imports() {
    let wasm = wat::parse_str(format!(
        r#"(module
            (memory (export "memory") 1)
            (func (export "{CALL_PREFIX}{F}") (param i32 i32))
            (func (export "{DESCRIBE_PREFIX}{F}")))"#
    ))
    .unwrap();
    let description = mutation_description();
    let g = FunctionDescription {
        visibility: ferrovex_model::abi::Visibility::Public,
        kind: FunctionKind::Query,
        ..description.clone()
    };
    let plan = store_plan(&mut Unstructured::new(&[]), None).unwrap();
    let wasm = rewrite(
        &wasm,
        &[binary(&description.to_value()), binary(&g.to_value())],
        &plan.wrappers,
        &vec![String::from(ID_MARKER); SLOTS],
        true,
    );
    let fixture = fixture().lock().unwrap_or_else(|e| e.into_inner());
    let module = fixture.host.deploy(&fixture.store, &wasm).expect("deploys");
    assert_eq!(module.function("m:f").unwrap().description, description);
    assert_eq!(module.function("m:g").unwrap().description, g);
}

/// Wrappers called in a known order do what their lines say, and the model agrees with
/// the store: insert into slot 2, patch, replace and get it, delete a reset document,
/// scan, output; the mutation commits exactly that, the query traps at its insert.
#[test]
fn wrappers_reach_the_store() {
    let calls = [
        "db_insert_0",
        "db_patch_0",
        "db_replace_0",
        "db_get_0",
        "db_delete_0",
        "db_scan_0",
    ];
    let mut wat = String::from("(module\n");
    for name in calls {
        wat.push_str(&format!(
            "(import \"fuzz\" \"{name}\" (func (result i32)))\n"
        ));
    }
    // An insert into a table whose name is refused.
    let refused = binary(&Value::Object(
        ferrovex_model::obj! { "table" => "_x", "fields" => Object::new() },
    ));
    let refused_data: String = refused.iter().map(|b| format!("\\{b:02x}")).collect();
    let refused_len = refused.len();
    wat.push_str(&format!(
        r#"(import "fuzz" "output_0" (func))
           (import "runtime_v1" "db_insert" (func (param i32 i32 i32) (result i32)))
           (memory (export "memory") 0)
           (func (export "{CALL_PREFIX}{F}") (param i32 i32)
             call 0 drop call 1 drop call 2 drop call 3 drop call 4 drop call 5 drop
             ;; a generated call of a real write import: it goes through the shim
             (drop (call 7 (i32.const 256) (i32.const {refused_len}) (i32.const 0)))
             call 6)
           (func (export "{DESCRIBE_PREFIX}{F}"))
           (data (i32.const 256) "{refused_data}"))"#
    ));
    let wasm = wat::parse_str(&wat).unwrap();
    let mut wrappers = store_plan(&mut Unstructured::new(&[]), None)
        .unwrap()
        .wrappers;
    let op = |name: &str| PLACEHOLDERS.iter().position(|(n, _)| *n == name).unwrap();
    // Insert, patch, replace and get slot 2; delete slot 0.
    for name in ["db_insert_0", "db_patch_0", "db_replace_0", "db_get_0"] {
        let w = &wrappers[op(name)];
        wrappers[op(name)] = wrapper(w.op, 2, 1, None);
    }
    wrappers[op("db_delete_0")] = wrapper(Op::Delete, 0, 0, None);
    let fixture = fixture().lock().unwrap_or_else(|e| e.into_inner());
    let store = &fixture.store;
    let ids = reset(store);
    let wasm = rewrite(
        &wasm,
        &[
            binary(&mutation_description().to_value()),
            binary(
                &FunctionDescription {
                    visibility: ferrovex_model::abi::Visibility::Public,
                    kind: FunctionKind::Query,
                    ..mutation_description()
                }
                .to_value(),
            ),
        ],
        &wrappers,
        &ids,
        false,
    );
    let module = fixture.host.deploy(store, &wasm).expect("deploys");
    let before = contents(store);
    let ts = store.latest_ts();
    let outcome = fixture
        .host
        .run_mutation(
            store,
            &module,
            "m:f",
            &Value::Object(Object::new()),
            CallOptions::default(),
        )
        .expect("the mutation succeeds");
    let lines = wrapper_lines(&outcome.log_lines).expect("lines in sequence");
    let statuses: Vec<_> = lines.iter().map(|l| (l.placeholder, l.status)).collect();
    assert_eq!(
        statuses,
        [
            (Some(op("db_insert_0")), 0),
            (Some(op("db_patch_0")), 0),
            (Some(op("db_replace_0")), 0),
            (Some(op("db_get_0")), 0),
            (Some(op("db_delete_0")), 0),
            (Some(op("db_scan_0")), 0),
            (None, 1),
        ],
        "{:?}",
        outcome.log_lines
    );
    let mut model = before.clone();
    let wrote = replay("m:f", FunctionKind::Mutation, &lines, &wrappers, &mut model);
    assert_eq!(wrote, Some(true));
    assert!(outcome.ts > ts);
    assert_eq!(contents(store), model);
    assert_eq!(model.len(), before.len(), "one inserted, one deleted");
    assert!(!model.contains_key(&ids[0]));
    let query = fixture
        .host
        .run_query(
            store,
            &module,
            "m:g",
            &Value::Object(Object::new()),
            CallOptions::default(),
        )
        .expect_err("a query's insert traps");
    assert!(wrapper_lines(&query.log_lines).unwrap().is_empty());
    assert_eq!(contents(store), model);
}
