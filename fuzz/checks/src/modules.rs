//! The `modules` target: arbitrary wasm modules (wasm-smith), limited to the imports of
//! `runtime_v1` and the exports of a guest (`memory`, a function's call and description),
//! deployed and, when they deploy, called as a query and as a mutation.
//!
//! A description wasm-smith writes is never a valid one, so most inputs get a rewritten
//! module (wasmparser and `wasm_encoder::reencode`): the generated call body stays as it is,
//! the describe export points to an appended function that outputs a valid description
//! (kind, arguments and result types picked by the input), and a second function `m:g`
//! exports the same call body with the other kind. So every deployed module runs its
//! arbitrary code once as a query and once as a mutation. Some inputs keep the generated
//! describe export (the describe path itself), some get a well-formed but invalid
//! description (which deploy must refuse).
//!
//! Checks: the host never panics; a deploy either succeeds or fails with an error that says
//! why (compile, description; never the ABI check, which every generated module passes); a
//! valid description deploys as written and an invalid one is refused; a call either returns
//! or fails with an error that names the function; a call of the wrong kind or with
//! arguments its description refuses fails before running; a result matches the declared
//! type; a query never moves the store's latest timestamp, a failed mutation commits nothing,
//! a successful one leaves the store at its timestamp; no instance outlives a deploy or a call
//! (the pool's slots are all free afterwards).

use arbitrary::Unstructured;
use model::abi::{
    import, output, FunctionDescription, FunctionKind, Type, WasmType, CALL_PREFIX,
    DESCRIBE_PREFIX, IMPORT_MODULE, IMPORT_SIGNATURES,
};
use model::Value;
use runtime::store::Store;
use runtime::wasm::{CallError, CallOptions, DeployError, HostConfig, WasmHost};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasm_encoder::reencode::{self, Reencode};

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
    wat::parse_str(format!(
        r#"(module
            (memory (export "memory") 1)
            (func (export "{CALL_PREFIX}{F}") (param i32 i32))
            (func (export "{DESCRIBE_PREFIX}{F}")))"#
    ))
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
    // A start function runs before every entry point, describe included, and mostly traps
    // there: sometimes one, mostly none, so that most modules reach their call.
    config.allow_start_export = u.int_in_range(0u8..=3)? == 3;
    // Code that does not trap on bad memory accesses or arithmetic goes further.
    config.disallow_traps = u.arbitrary()?;
    Ok(config)
}

/// What the describe export of a module does.
#[derive(Clone, Debug)]
enum Describe {
    /// The generated one: arbitrary code, never a valid description.
    Generated,
    /// An appended one that outputs this value, which is no valid description.
    Invalid(Value),
    /// Appended ones: `m:f` with this description, `m:g` with the other kind.
    Valid(FunctionDescription),
}

/// Argument types a description may declare.
fn args_type(choice: u8) -> Type {
    let optional = |t: Type| Type::Optional(Box::new(t));
    match choice % 4 {
        0 => Type::object([]),
        1 => Type::object([("x", optional(Type::Int64))]),
        2 => Type::object([("x", Type::String), ("n", optional(Type::Float64))]),
        _ => Type::object([("x", Type::Any)]),
    }
}

/// Result types a description may declare.
fn returns_type(choice: u8) -> Type {
    match choice % 6 {
        0 => Type::Any,
        1 => Type::Null,
        2 => Type::Optional(Box::new(Type::Int64)),
        3 => Type::Array(Box::new(Type::Any)),
        4 => Type::Union(vec![Type::String, Type::Bytes]),
        _ => Type::object([]),
    }
}

/// Arguments a call may pass: mostly ones that fit the declared type (`args_type(declared)`),
/// sometimes any of them.
fn call_args(declared: u8, choice: u8) -> Value {
    let x_int = || ("x".to_owned(), Value::Int64(7));
    let x_str = || ("x".to_owned(), Value::from("a"));
    let n = || ("n".to_owned(), Value::Float64(1.5));
    let y = || ("y".to_owned(), Value::Boolean(true));
    let fields: Vec<(String, Value)> = if choice < 192 {
        match (declared % 4, choice % 2) {
            (0, _) | (1 | 3, 0) => vec![],
            (1 | 3, _) => vec![x_int()],
            (_, 0) => vec![x_str()],
            (_, _) => vec![x_str(), n()],
        }
    } else {
        match choice % 5 {
            0 => vec![],
            1 => vec![x_int()],
            2 => vec![x_str()],
            3 => vec![x_str(), n()],
            _ => vec![y()],
        }
    };
    Value::Object(fields.into_iter().collect())
}

/// Well-formed values that are no function description.
fn invalid_description(choice: u8) -> Value {
    let valid = FunctionDescription {
        kind: FunctionKind::Query,
        args: Type::object([]),
        returns: Type::Any,
    }
    .to_value();
    let Value::Object(valid) = valid else {
        unreachable!("a description is an object")
    };
    let with = |key: &str, value: Value| {
        let mut o = valid.clone();
        o.insert(key.to_owned(), value);
        Value::Object(o)
    };
    match choice % 4 {
        0 => with("kind", Value::from("action")),
        1 => with("args", Type::Int64.to_value()),
        2 => with("returns", Value::from("any")),
        _ => Value::Null,
    }
}

/// The input's choices besides the module: its description and the call's arguments.
fn plan(u: &mut Unstructured) -> arbitrary::Result<(Describe, Value)> {
    // Out of input, every choice is 0: a valid description.
    let declared: u8 = u.arbitrary()?;
    let describe = match u.int_in_range(0u8..=15)? {
        15 => Describe::Generated,
        14 => Describe::Invalid(invalid_description(u.arbitrary()?)),
        _ => Describe::Valid(FunctionDescription {
            kind: if u.arbitrary()? {
                FunctionKind::Mutation
            } else {
                FunctionKind::Query
            },
            args: args_type(declared),
            returns: returns_type(u.arbitrary()?),
        }),
    };
    Ok((describe, call_args(declared, u.arbitrary()?)))
}

fn other_kind(kind: FunctionKind) -> FunctionKind {
    match kind {
        FunctionKind::Query => FunctionKind::Mutation,
        FunctionKind::Mutation => FunctionKind::Query,
    }
}

/// What one input did, for the corpus test.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ran {
    pub deployed: bool,
    /// Calls that got past the kind and argument checks and ran the generated body.
    pub queries: usize,
    pub mutations: usize,
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
    let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
        return ran;
    };
    let generated = module.to_bytes();
    let wasm = match &describe {
        Describe::Generated => generated,
        Describe::Invalid(value) => rewrite(&generated, &[binary(value)]),
        Describe::Valid(f) => {
            let g = FunctionDescription {
                kind: other_kind(f.kind),
                ..f.clone()
            };
            rewrite(&generated, &[binary(&f.to_value()), binary(&g.to_value())])
        }
    };
    let verbose = std::env::var_os("FUZZ_CHECKS_VERBOSE").is_some();
    if verbose {
        eprintln!("modules run: the call body calls {:?}", host_calls(&wasm));
    }
    let fixture = fixture().lock().unwrap_or_else(|e| e.into_inner());
    let (store, host) = (&fixture.store, &fixture.host);
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
        let query = host.run_query(store, &module, path, &args, CallOptions::default());
        if verbose {
            eprintln!(
                "modules run: query {path}: {:?}",
                query.as_ref().map(|o| &o.value)
            );
        }
        assert_eq!(host.live_instances(), 0, "a query left an instance");
        assert_eq!(store.latest_ts(), before, "a query moved the store");
        if !refused(FunctionKind::Query) {
            ran.queries += 1;
        }
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
        match mutation {
            Ok(outcome) => {
                assert!(
                    !refused(FunctionKind::Mutation),
                    "{path}: ran a refused mutation"
                );
                assert!(outcome.ts >= before, "{path}: committed in the past");
                assert_eq!(store.latest_ts(), outcome.ts, "{path}: commit not visible");
                check_result(path, &description.returns, &outcome.value);
            }
            Err(e) => {
                assert!(e.to_string().starts_with(path.as_str()), "{e}");
                assert_eq!(store.latest_ts(), before, "a failed mutation committed");
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
    model::binary::encode(value)
}

/// The generated module with its describe export replaced: `outputs[0]` becomes the
/// description of `m:f`; with a second one, `m:g` exports `m:f`'s call body with that
/// description. Every other function, and the call body, stays as generated.
fn rewrite(wasm: &[u8], outputs: &[Vec<u8>]) -> Vec<u8> {
    let mut rewriter = Rewriter::scan(wasm, outputs);
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, wasmparser::Parser::new(0), wasm)
        .expect("re-encoding a module wasm-smith generated");
    let rewritten = module.finish();
    if let Err(e) = wasmparser::validate(&rewritten) {
        panic!("the rewritten module is invalid: {e}");
    }
    rewritten
}

/// Rewrites a module: appends a function per description, an `output` import if there is
/// none (which moves every defined function one index up), and the exports.
struct Rewriter<'a> {
    outputs: &'a [Vec<u8>],
    /// Functions imported by the generated module.
    imported: u32,
    /// Its defined functions.
    defined: u32,
    /// Its types.
    types: u32,
    /// The index of its `output` import, if it has one.
    output: Option<u32>,
    /// The function its call export names.
    call: u32,
    /// Whether the import section was written (a module may have none).
    imports_written: bool,
}

impl<'a> Rewriter<'a> {
    fn scan(wasm: &[u8], outputs: &'a [Vec<u8>]) -> Self {
        let mut rewriter = Rewriter {
            outputs,
            imported: 0,
            defined: 0,
            types: 0,
            output: None,
            call: u32::MAX,
            imports_written: false,
        };
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            match payload.expect("wasm-smith generates valid modules") {
                wasmparser::Payload::TypeSection(section) => {
                    for group in section {
                        let group = group.expect("a valid type section");
                        rewriter.types += group.types().len() as u32;
                    }
                }
                wasmparser::Payload::ImportSection(section) => {
                    for import in section {
                        let import = import.expect("a valid import section");
                        if let wasmparser::TypeRef::Func(_) = import.ty {
                            if import.module == IMPORT_MODULE && import.name == import::OUTPUT {
                                rewriter.output = Some(rewriter.imported);
                            }
                            rewriter.imported += 1;
                        }
                    }
                }
                wasmparser::Payload::FunctionSection(section) => {
                    rewriter.defined = section.count();
                }
                wasmparser::Payload::ExportSection(section) => {
                    for export in section {
                        let export = export.expect("a valid export section");
                        if export.name.strip_prefix(CALL_PREFIX) == Some(F) {
                            rewriter.call = export.index;
                        }
                    }
                }
                _ => {}
            }
        }
        assert_ne!(
            rewriter.call,
            u32::MAX,
            "the generated module exports its call"
        );
        rewriter
    }

    /// Functions before the appended ones: the imports (one more if `output` is added) and
    /// the defined functions.
    fn appended(&self) -> u32 {
        self.imported + u32::from(self.output.is_none()) + self.defined
    }

    fn output_import(&self) -> u32 {
        self.output.unwrap_or(self.imported)
    }

    fn add_output_import(&mut self, imports: &mut wasm_encoder::ImportSection) {
        self.imports_written = true;
        if self.output.is_none() {
            imports.import(
                IMPORT_MODULE,
                import::OUTPUT,
                wasm_encoder::EntityType::Function(self.types + 1),
            );
        }
    }

    /// `() -> ()`: writes its description at address 0 (growing an empty memory) and
    /// outputs it.
    fn describe_body(&self, bytes: &[u8]) -> wasm_encoder::Function {
        use wasm_encoder::{BlockType, Instruction as I, MemArg};
        let mut f = wasm_encoder::Function::new([]);
        f.instruction(&I::MemorySize(0))
            .instruction(&I::I32Eqz)
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::I32Const(1))
            .instruction(&I::MemoryGrow(0))
            .instruction(&I::Drop)
            .instruction(&I::End);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            f.instruction(&I::I32Const(i as i32 * 8))
                .instruction(&I::I64Const(i64::from_le_bytes(word)))
                .instruction(&I::I64Store(MemArg {
                    offset: 0,
                    align: 0,
                    memory_index: 0,
                }));
        }
        f.instruction(&I::I32Const(output::DESCRIPTION))
            .instruction(&I::I32Const(0))
            .instruction(&I::I32Const(bytes.len() as i32))
            .instruction(&I::Call(self.output_import()))
            .instruction(&I::End);
        f
    }
}

impl Reencode for Rewriter<'_> {
    type Error = Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<Infallible>> {
        Ok(if self.output.is_none() && func >= self.imported {
            func + 1
        } else {
            func
        })
    }

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_type_section(self, types, section)?;
        // `self.types`: what describe functions have; `self.types + 1`: output's.
        types.ty().function([], []);
        types.ty().function(
            [wasm_encoder::ValType::I32; 3],
            [] as [wasm_encoder::ValType; 0],
        );
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_import_section(self, imports, section)?;
        self.add_output_import(imports);
        Ok(())
    }

    fn intersperse_section_hook(
        &mut self,
        module: &mut wasm_encoder::Module,
        _after: Option<wasm_encoder::SectionId>,
        before: Option<wasm_encoder::SectionId>,
    ) -> Result<(), reencode::Error<Infallible>> {
        // A module without imports gets an import section before its function section.
        if before == Some(wasm_encoder::SectionId::Function) && !self.imports_written {
            let mut imports = wasm_encoder::ImportSection::new();
            self.add_output_import(&mut imports);
            module.section(&imports);
        }
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_function_section(self, functions, section)?;
        for _ in self.outputs {
            functions.function(self.types);
        }
        Ok(())
    }

    fn parse_export(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        export: wasmparser::Export<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        if export.name.strip_prefix(DESCRIBE_PREFIX) == Some(F) {
            exports.export(export.name, wasm_encoder::ExportKind::Func, self.appended());
            Ok(())
        } else {
            reencode::utils::parse_export(self, exports, export)
        }
    }

    fn parse_export_section(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_export_section(self, exports, section)?;
        if self.outputs.len() > 1 {
            let call = self.function_index(self.call)?;
            exports.export(
                &format!("{CALL_PREFIX}{G}"),
                wasm_encoder::ExportKind::Func,
                call,
            );
            exports.export(
                &format!("{DESCRIBE_PREFIX}{G}"),
                wasm_encoder::ExportKind::Func,
                self.appended() + 1,
            );
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        reencode::utils::parse_code_section(self, code, section)?;
        for bytes in self.outputs {
            code.function(&self.describe_body(bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed corpus deploys: a share of its inputs get past describe and run their
    /// generated call body as a query and as a mutation.
    #[test]
    fn seed_corpus_deploys_and_calls() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/modules");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("the modules seed corpus")
            .map(|e| e.expect("a directory entry").path())
            .collect();
        files.sort();
        let (mut deployed, mut called) = (0, 0);
        for file in &files {
            let ran = run(&std::fs::read(file).expect("a corpus file"));
            eprintln!("{}: {ran:?}", file.display());
            deployed += usize::from(ran.deployed);
            called += usize::from(ran.queries > 0 && ran.mutations > 0);
        }
        eprintln!(
            "{} inputs, {deployed} deployed, {called} called",
            files.len()
        );
        assert!(
            called >= 3 && called * 3 >= files.len(),
            "{called} of {} seed inputs deployed and ran as a query and a mutation",
            files.len()
        );
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
        let description = FunctionDescription {
            kind: FunctionKind::Mutation,
            args: Type::object([]),
            returns: Type::Any,
        };
        let g = FunctionDescription {
            kind: FunctionKind::Query,
            ..description.clone()
        };
        let wasm = rewrite(
            &wasm,
            &[binary(&description.to_value()), binary(&g.to_value())],
        );
        let fixture = fixture().lock().unwrap_or_else(|e| e.into_inner());
        let module = fixture.host.deploy(&fixture.store, &wasm).expect("deploys");
        assert_eq!(module.function("m:f").unwrap().description, description);
        assert_eq!(module.function("m:g").unwrap().description, g);
    }
}
