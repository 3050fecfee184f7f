//! Deploy-time check that a module's imports and exports are exactly what the ABI allows.

use ferrovex_model::abi::{
    function_path, WasmType, CALL_PREFIX, DESCRIBE_PREFIX, IGNORED_EXPORTS, IMPORT_MODULE,
    IMPORT_SIGNATURES, MEMORY_EXPORT, SCHEMA_EXPORT,
};
use std::collections::BTreeMap;
use wasmtime::{ExternType, FuncType, Module, ValType};

/// A function the module exports: its path and its two exports.
#[derive(Clone, Debug)]
pub struct ExportedFunction {
    pub path: String,
    pub call_export: String,
    pub describe_export: String,
}

pub struct CheckedExports {
    pub functions: Vec<ExportedFunction>,
    pub has_schema: bool,
}

fn matches(ty: &FuncType, params: &[WasmType], results: &[WasmType]) -> bool {
    let same = |a: &ValType, b: &WasmType| {
        matches!(
            (a, b),
            (ValType::I32, WasmType::I32)
                | (ValType::I64, WasmType::I64)
                | (ValType::F64, WasmType::F64)
        )
    };
    ty.params().len() == params.len()
        && ty.results().len() == results.len()
        && ty.params().zip(params).all(|(a, b)| same(&a, b))
        && ty.results().zip(results).all(|(a, b)| same(&a, b))
}

fn signature(params: &[WasmType], results: &[WasmType]) -> String {
    let list = |types: &[WasmType]| {
        types
            .iter()
            .map(|t| format!("{t:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

/// Every problem with the module's imports and exports, or its functions.
pub fn check(module: &Module) -> Result<CheckedExports, Vec<String>> {
    let mut problems = Vec::new();
    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        if module_name != IMPORT_MODULE {
            let hint = if module_name.starts_with("wasi") {
                " (WASI is not available: build for wasm32-unknown-unknown)"
            } else {
                ""
            };
            problems.push(format!(
                "imports {module_name}.{name}, but only module {IMPORT_MODULE:?} exists{hint}"
            ));
            continue;
        }
        let Some((_, params, results)) = IMPORT_SIGNATURES.iter().find(|(n, _, _)| *n == name)
        else {
            problems.push(format!(
                "imports {IMPORT_MODULE}.{name}, which the host does not provide"
            ));
            continue;
        };
        match import.ty() {
            ExternType::Func(ty) if matches(&ty, params, results) => {}
            other => problems.push(format!(
                "imports {IMPORT_MODULE}.{name} as {other:?}, but it is a function {}",
                signature(params, results)
            )),
        }
    }

    let mut calls = BTreeMap::new();
    let mut describes = BTreeMap::new();
    let mut has_memory = false;
    let mut has_schema = false;
    for export in module.exports() {
        let name = export.name();
        let ty = export.ty();
        let is_func =
            |params: &[WasmType]| matches!(&ty, ExternType::Func(f) if matches(f, params, &[]));
        if name == MEMORY_EXPORT {
            has_memory = matches!(ty, ExternType::Memory(_));
            if !has_memory {
                problems.push("exports \"memory\" but it is not a memory".into());
            }
        } else if let Some(rust_path) = name.strip_prefix(CALL_PREFIX) {
            if !is_func(&[WasmType::I32, WasmType::I32]) {
                problems.push(format!(
                    "export {name:?} must be a function (i32, i32) -> ()"
                ));
            }
            calls.insert(rust_path.to_owned(), name.to_owned());
        } else if let Some(rust_path) = name.strip_prefix(DESCRIBE_PREFIX) {
            if !is_func(&[]) {
                problems.push(format!("export {name:?} must be a function () -> ()"));
            }
            describes.insert(rust_path.to_owned(), name.to_owned());
        } else if name == SCHEMA_EXPORT {
            has_schema = true;
            if !is_func(&[]) {
                problems.push(format!("export {name:?} must be a function () -> ()"));
            }
        } else if !IGNORED_EXPORTS.contains(&name) {
            problems.push(format!(
                "exports {name:?}, which is not part of the ABI (functions are exported by #[query] and #[mutation])"
            ));
        }
    }
    if !has_memory {
        problems.push("exports no memory named \"memory\"".into());
    }

    let mut functions = Vec::new();
    let mut paths = BTreeMap::new();
    for (rust_path, call_export) in &calls {
        let Some(describe_export) = describes.get(rust_path) else {
            problems.push(format!(
                "exports {call_export:?} without its description {DESCRIBE_PREFIX}{rust_path}"
            ));
            continue;
        };
        let Some(path) = function_path(rust_path) else {
            problems.push(format!(
                "function {rust_path} is at the crate root; define functions in a module (src/<module>.rs) so they get a path module:function"
            ));
            continue;
        };
        if let Some(previous) = paths.insert(path.clone(), rust_path.clone()) {
            problems.push(format!(
                "{previous} and {rust_path} both have the path {path}"
            ));
        }
        functions.push(ExportedFunction {
            path,
            call_export: call_export.clone(),
            describe_export: describe_export.clone(),
        });
    }
    for rust_path in describes.keys().filter(|p| !calls.contains_key(*p)) {
        problems.push(format!(
            "exports a description of {rust_path} but no {CALL_PREFIX}{rust_path}"
        ));
    }
    if functions.is_empty() && problems.is_empty() {
        problems.push("exports no functions: mark them with #[query] or #[mutation]".into());
    }
    if problems.is_empty() {
        Ok(CheckedExports {
            functions,
            has_schema,
        })
    } else {
        Err(problems)
    }
}
