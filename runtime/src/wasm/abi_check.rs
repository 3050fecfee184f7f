//! Deploy-time checks: the ABI version a module declares (read from its bytes, before it is
//! compiled), then that its imports and exports are exactly what the ABI allows.

use super::error::DeployError;
use ferrovex_model::abi::{
    function_path, parse_version_section, BuiltWith, WasmType, ABI_VERSION, AUTH_CONFIG_EXPORT,
    CALL_PREFIX, CRONS_EXPORT, DESCRIBE_PREFIX, IGNORED_EXPORTS, IMPORT_MODULE, IMPORT_SIGNATURES,
    MEMORY_EXPORT, SCHEMA_EXPORT, VERSION_SECTION,
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
    pub has_auth_config: bool,
    pub has_crons: bool,
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

/// What `wasm` declares in its [`VERSION_SECTION`]s, one entry per SDK linked into it: `None`
/// when it has no such section (or is not a module this walk can read, which the compiler
/// then reports), an error when a section is malformed.
pub fn declared_versions(wasm: &[u8]) -> Option<Result<Vec<BuiltWith>, String>> {
    let payloads = custom_sections(wasm, VERSION_SECTION)?;
    if payloads.is_empty() {
        return None;
    }
    let mut records = Vec::new();
    for payload in payloads {
        match parse_version_section(payload) {
            Ok(found) => records.extend(found),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(records))
}

/// Refuses a module that declares another ABI version than this host's, before anything of
/// it is compiled or run: its imports would not match either, and the version says why.
pub fn check_version(wasm: &[u8]) -> Result<(), DeployError> {
    match declared_versions(wasm) {
        None => Ok(()),
        Some(Err(reason)) => Err(DeployError::Abi(vec![format!(
            "its custom section {VERSION_SECTION:?}, which says what the module was built with, is malformed: {reason}"
        )])),
        Some(Ok(records)) => match records.into_iter().find(|r| r.abi != ABI_VERSION) {
            None => Ok(()),
            Some(built_with) => Err(DeployError::AbiVersion(built_with)),
        },
    }
}

/// The payloads of the custom sections named `name`, in order; `None` if `wasm` is not a
/// core module whose sections can be walked.
fn custom_sections<'a>(wasm: &'a [u8], name: &str) -> Option<Vec<&'a [u8]>> {
    let mut rest = wasm.strip_prefix(b"\0asm\x01\0\0\0")?;
    let mut found = Vec::new();
    while let Some((&id, tail)) = rest.split_first() {
        let (size, tail) = leb128_u32(tail)?;
        let (section, tail) = tail.split_at_checked(usize::try_from(size).ok()?)?;
        if id == 0 {
            let (name_len, body) = leb128_u32(section)?;
            let (section_name, payload) = body.split_at_checked(usize::try_from(name_len).ok()?)?;
            if section_name == name.as_bytes() {
                found.push(payload);
            }
        }
        rest = tail;
    }
    Some(found)
}

/// An unsigned LEB128 `u32` (at most 5 bytes) and what follows it.
fn leb128_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let mut value = 0u32;
    for (i, &byte) in bytes.iter().enumerate().take(5) {
        if i == 4 && byte > 0x0f {
            return None;
        }
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
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
    let mut has_auth_config = false;
    let mut has_crons = false;
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
        } else if name == SCHEMA_EXPORT || name == AUTH_CONFIG_EXPORT || name == CRONS_EXPORT {
            match name {
                SCHEMA_EXPORT => has_schema = true,
                AUTH_CONFIG_EXPORT => has_auth_config = true,
                _ => has_crons = true,
            }
            if !is_func(&[]) {
                problems.push(format!("export {name:?} must be a function () -> ()"));
            }
        } else if !IGNORED_EXPORTS.contains(&name) {
            problems.push(format!(
                "exports {name:?}, which is not part of the ABI (functions are exported by #[query], #[mutation], #[action] and #[http_action])"
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
        problems
            .push("exports no functions: mark them with #[query], #[mutation] or #[action]".into());
    }
    if problems.is_empty() {
        Ok(CheckedExports {
            functions,
            has_schema,
            has_auth_config,
            has_crons,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module of `sections`: (id, contents).
    fn module(sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        for (id, contents) in sections {
            wasm.push(*id);
            wasm.push(u8::try_from(contents.len()).expect("short sections"));
            wasm.extend(contents);
        }
        wasm
    }

    fn custom(name: &str, payload: &[u8]) -> (u8, Vec<u8>) {
        let mut contents = vec![name.len() as u8];
        contents.extend(name.as_bytes());
        contents.extend(payload);
        (0, contents)
    }

    #[test]
    fn versions_are_read_from_every_version_section() {
        let other = [2, 0, 0, 0, 5, b'0', b'.', b'2', b'.', b'0'];
        let wasm = module(&[
            custom("name", b"ignored"),
            (1, vec![0]),
            custom(VERSION_SECTION, &ferrovex_model::abi::VERSION_RECORD),
            custom(VERSION_SECTION, &other),
        ]);
        let records = declared_versions(&wasm).unwrap().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].abi, ABI_VERSION);
        assert_eq!(records[1].sdk, "0.2.0");
        match check_version(&wasm) {
            Err(DeployError::AbiVersion(built_with)) => assert_eq!(built_with.abi, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn modules_without_the_section_or_unreadable_are_left_to_the_other_checks() {
        assert!(declared_versions(&module(&[custom("name", b"x")])).is_none());
        assert!(declared_versions(b"not wasm").is_none());
        // A section that claims more bytes than there are.
        let mut cut = module(&[custom(
            VERSION_SECTION,
            &ferrovex_model::abi::VERSION_RECORD,
        )]);
        cut.pop();
        assert!(declared_versions(&cut).is_none());
        assert!(check_version(&cut).is_ok());
        // An over-long LEB128 size.
        let mut long = b"\0asm\x01\0\0\0".to_vec();
        long.extend([0, 0x80, 0x80, 0x80, 0x80, 0x10]);
        assert!(declared_versions(&long).is_none());
    }

    #[test]
    fn a_malformed_version_section_is_refused_with_why() {
        let wasm = module(&[custom(VERSION_SECTION, &[1, 0, 0])]);
        let error = check_version(&wasm).unwrap_err().to_string();
        assert!(
            error.contains("custom section \"ferrovex_abi\"")
                && error.contains("is malformed: a record at byte 0 is cut short"),
            "{error}"
        );
    }
}
