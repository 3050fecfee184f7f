//! The rewrite of a generated module (wasmparser and `wasm_encoder::reencode`). The
//! generated call body stays as it is; the describe export points to an appended function
//! that outputs the chosen description, and a second function `m:g` exports the same call
//! body with the other kind, so every deployed module runs its arbitrary code once as a
//! query and once as a mutation. Most generated bodies never output, and a mutation without
//! an output commits nothing, so for three inputs in four the call exports name an entry
//! function that calls the generated body and then outputs `output_0`'s value unless an
//! output wrapper ran. Placeholder imports become their wrappers (bodies in
//! [`super::wrappers`]), generated calls of the real write imports go through a shim that
//! logs their status too, and the function index space is renumbered around the imports and
//! functions this adds.

use super::wrappers::{
    slot_address, Op, Wrapper, OUTPUT_DONE, PLACEHOLDERS, PLACEHOLDER_MODULE, REQUEST, SHIMMED,
    SHIM_LETTER,
};
use super::{binary, F, G};
use ferrovex_model::abi::{
    import, output, CALL_PREFIX, DESCRIBE_PREFIX, IMPORT_MODULE, IMPORT_SIGNATURES,
};
use std::collections::BTreeMap;
use std::convert::Infallible;
use wasm_encoder::reencode::{self, Reencode};

/// The generated module made deployable and callable. With `outputs`, the describe export
/// is replaced: `outputs[0]` becomes the description of `m:f`; with a second one, `m:g`
/// exports `m:f`'s call body with that description. Every placeholder import becomes its
/// wrapper (`wrappers`, in `PLACEHOLDERS` order), whose id slots start with `slot_ids`;
/// generated calls of real write imports go through a shim. With `entry`, the call exports
/// name an entry function that calls the generated body and outputs if it did not. Every
/// other function, and the call body, stays as generated.
pub(super) fn rewrite(
    wasm: &[u8],
    outputs: &[Vec<u8>],
    wrappers: &[Wrapper],
    slot_ids: &[String],
    entry: bool,
) -> Vec<u8> {
    let mut rewriter = Rewriter::scan(wasm, outputs, wrappers, slot_ids, entry);
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

/// A function the rewrite appends after the generated ones, in this order.
#[derive(Clone, Copy, Debug)]
enum Appended {
    /// The wrapper of a placeholder (index into `PLACEHOLDERS`).
    Wrapper(usize),
    /// The shim of a real write import (its name).
    Shim(&'static str),
    /// Writes the first ids into the slots, once per instance.
    InitSlots,
    /// Outputs `outputs[i]` as a description.
    Describe(usize),
    /// `(i32, i32) -> ()`: calls the generated call body, then outputs `output_0`'s value
    /// unless an output wrapper ran.
    Entry,
}

/// Types the rewrite appends after the generated ones, in this order.
const T_VOID: u32 = 0; // () -> ()
const T_III: u32 = 1; // (i32, i32, i32) -> ()
const T_II: u32 = 2; // (i32, i32) -> ()
const T_III_I: u32 = 3; // (i32, i32, i32) -> i32
const T_I: u32 = 4; // () -> i32
const T_CALL: u32 = 5; // (i32, i32) -> ()

/// The real imports the appended functions call.
const NEEDED: [&str; 9] = [
    import::OUTPUT,
    import::READ_HANDLE,
    import::LOG,
    import::DB_GET,
    import::DB_INSERT,
    import::DB_PATCH,
    import::DB_REPLACE,
    import::DB_DELETE,
    import::DB_SCAN,
];

/// Rewrites a module. The function index space becomes: the generated module's real
/// imports, the real imports it lacks and the appended functions need, its defined
/// functions, then the appended functions.
pub(super) struct Rewriter<'a> {
    outputs: &'a [Vec<u8>],
    pub(super) wrappers: &'a [Wrapper],
    pub(super) slot_ids: &'a [String],
    /// The generated module's function imports, placeholders included.
    imported: u32,
    /// Its defined functions.
    defined: u32,
    /// Its types.
    types: u32,
    /// The function its call export names.
    call: u32,
    /// The generated real imports, which stay.
    kept: u32,
    /// The new index of each generated import.
    import_map: Vec<u32>,
    /// The real imports appended to the import section.
    added: Vec<&'static str>,
    /// The new index of each real import the appended functions call.
    pub(super) real: BTreeMap<&'static str, u32>,
    appended: Vec<Appended>,
    /// Whether the import section was written (a module may have none).
    imports_written: bool,
}

impl<'a> Rewriter<'a> {
    fn scan(
        wasm: &[u8],
        outputs: &'a [Vec<u8>],
        wrappers: &'a [Wrapper],
        slot_ids: &'a [String],
        entry: bool,
    ) -> Self {
        let mut imports = Vec::new();
        let mut rewriter = Rewriter {
            outputs,
            wrappers,
            slot_ids,
            imported: 0,
            defined: 0,
            types: 0,
            call: u32::MAX,
            kept: 0,
            import_map: vec![],
            added: vec![],
            real: BTreeMap::new(),
            appended: vec![],
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
                            imports.push((import.module.to_owned(), import.name.to_owned()));
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
        rewriter.imported = imports.len() as u32;
        let mut kept = 0;
        for (module, name) in &imports {
            if module == IMPORT_MODULE {
                if let Some(needed) = NEEDED.iter().find(|n| **n == name) {
                    rewriter.real.insert(needed, kept);
                }
                kept += 1;
            }
        }
        for name in NEEDED {
            if !rewriter.real.contains_key(name) {
                rewriter
                    .real
                    .insert(name, kept + rewriter.added.len() as u32);
                rewriter.added.push(name);
            }
        }
        rewriter.kept = kept;
        let first_appended = kept + rewriter.added.len() as u32 + rewriter.defined;
        let mut kept = 0;
        for (module, name) in &imports {
            let index = if module == PLACEHOLDER_MODULE {
                let placeholder = PLACEHOLDERS
                    .iter()
                    .position(|(n, _)| n == name)
                    .expect("a placeholder");
                rewriter.appended.push(Appended::Wrapper(placeholder));
                first_appended + rewriter.appended.len() as u32 - 1
            } else if let Some(shimmed) = SHIMMED.iter().find(|n| **n == name) {
                rewriter.appended.push(Appended::Shim(shimmed));
                kept += 1;
                first_appended + rewriter.appended.len() as u32 - 1
            } else {
                kept += 1;
                kept - 1
            };
            rewriter.import_map.push(index);
        }
        rewriter.appended.push(Appended::InitSlots);
        for i in 0..outputs.len() {
            rewriter.appended.push(Appended::Describe(i));
        }
        if entry {
            rewriter.appended.push(Appended::Entry);
        }
        rewriter
    }

    fn appended_index(&self, which: impl Fn(&Appended) -> bool) -> u32 {
        let at = self.appended.iter().position(which).expect("appended");
        self.kept + self.added.len() as u32 + self.defined + at as u32
    }

    pub(super) fn init_slots(&self) -> u32 {
        self.appended_index(|a| matches!(a, Appended::InitSlots))
    }

    fn describe(&self, i: usize) -> u32 {
        self.appended_index(|a| matches!(a, Appended::Describe(j) if *j == i))
    }

    fn add_imports(&mut self, imports: &mut wasm_encoder::ImportSection) {
        self.imports_written = true;
        for name in &self.added {
            let (_, params, results) = IMPORT_SIGNATURES
                .iter()
                .find(|(n, _, _)| n == name)
                .expect("an ABI import");
            let ty = match (params.len(), results.len()) {
                (3, 0) => T_III,
                (2, 0) => T_II,
                (3, 1) => T_III_I,
                _ => unreachable!("no needed import has this signature"),
            };
            imports.import(
                IMPORT_MODULE,
                name,
                wasm_encoder::EntityType::Function(self.types + ty),
            );
        }
    }

    fn body(&self, appended: Appended) -> wasm_encoder::Function {
        match appended {
            Appended::Wrapper(p) => self.wrapper_body(p),
            Appended::Shim(name) => self.shim_body(name),
            Appended::InitSlots => self.init_slots_body(),
            Appended::Describe(i) => self.describe_body(&self.outputs[i]),
            Appended::Entry => self.entry_body(),
        }
    }

    fn type_of(&self, appended: Appended) -> u32 {
        self.types
            + match appended {
                Appended::Wrapper(p) if PLACEHOLDERS[p].1 != Op::Output => T_I,
                Appended::Shim(_) => T_III_I,
                Appended::Entry => T_CALL,
                _ => T_VOID,
            }
    }

    /// `() -> ()`: writes its description at address 0 (growing an empty memory) and
    /// outputs it.
    fn describe_body(&self, bytes: &[u8]) -> wasm_encoder::Function {
        use wasm_encoder::{BlockType, Instruction as I};
        let mut f = wasm_encoder::Function::new([]);
        f.instruction(&I::MemorySize(0))
            .instruction(&I::I32Eqz)
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::I32Const(1))
            .instruction(&I::MemoryGrow(0))
            .instruction(&I::Drop)
            .instruction(&I::End);
        store_bytes(&mut f, 0, bytes);
        f.instruction(&I::I32Const(output::DESCRIPTION))
            .instruction(&I::I32Const(0))
            .instruction(&I::I32Const(bytes.len() as i32))
            .instruction(&I::Call(self.real[import::OUTPUT]))
            .instruction(&I::End);
        f
    }

    /// The call export's function: the generated one, or the entry that calls it.
    fn call_export(&mut self) -> u32 {
        if self.appended.iter().any(|a| matches!(a, Appended::Entry)) {
            self.appended_index(|a| matches!(a, Appended::Entry))
        } else {
            let call = self.call;
            self.function_index(call).expect("infallible")
        }
    }

    fn entry_body(&self) -> wasm_encoder::Function {
        use wasm_encoder::{BlockType, Instruction as I};
        let output = PLACEHOLDERS
            .iter()
            .position(|(name, _)| *name == "output_0")
            .expect("output_0");
        let call = match self.import_map.get(self.call as usize) {
            Some(&new) => new,
            None => self.call - self.imported + self.kept + self.added.len() as u32,
        };
        let mut f = wasm_encoder::Function::new([]);
        f.instruction(&I::LocalGet(0))
            .instruction(&I::LocalGet(1))
            .instruction(&I::Call(call))
            .instruction(&I::I32Const(OUTPUT_DONE))
            .instruction(&I::I32Load8U(MEMARG))
            .instruction(&I::I32Eqz)
            .instruction(&I::If(BlockType::Empty));
        let w = &self.wrappers[output];
        let bytes = binary(&w.request);
        store_bytes(&mut f, REQUEST, &bytes);
        f.instruction(&I::I32Const(w.kind))
            .instruction(&I::I32Const(REQUEST))
            .instruction(&I::I32Const(bytes.len() as i32))
            .instruction(&I::Call(self.real[import::OUTPUT]))
            .instruction(&I::End)
            .instruction(&I::End);
        f
    }

    /// `(ptr, len, out) -> status`: calls the real import and logs its status.
    fn shim_body(&self, name: &'static str) -> wasm_encoder::Function {
        use wasm_encoder::{Instruction as I, ValType};
        let status = 3;
        let mut f = wasm_encoder::Function::new([(1, ValType::I32)]);
        f.instruction(&I::LocalGet(0))
            .instruction(&I::LocalGet(1))
            .instruction(&I::LocalGet(2))
            .instruction(&I::Call(self.real[name]))
            .instruction(&I::LocalSet(status));
        self.log_line(&mut f, SHIM_LETTER, status, slot_address(0) + 2);
        f.instruction(&I::LocalGet(status)).instruction(&I::End);
        f
    }
}

pub(super) const MEMARG: wasm_encoder::MemArg = wasm_encoder::MemArg {
    offset: 0,
    align: 0,
    memory_index: 0,
};

/// Stores `bytes` at `address`, 8 at a time (the last store may write up to 7 more).
pub(super) fn store_bytes(f: &mut wasm_encoder::Function, address: i32, bytes: &[u8]) {
    use wasm_encoder::Instruction as I;
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        f.instruction(&I::I32Const(address + i as i32 * 8))
            .instruction(&I::I64Const(i64::from_le_bytes(word)))
            .instruction(&I::I64Store(MEMARG));
    }
}

impl Reencode for Rewriter<'_> {
    type Error = Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<Infallible>> {
        Ok(match self.import_map.get(func as usize) {
            Some(&new) => new,
            None => func - self.imported + self.kept + self.added.len() as u32,
        })
    }

    fn memory_type(
        &mut self,
        memory_ty: wasmparser::MemoryType,
    ) -> Result<wasm_encoder::MemoryType, reencode::Error<Infallible>> {
        // The scratch area is in the first page.
        let mut ty = reencode::utils::memory_type(self, memory_ty);
        ty.minimum = ty.minimum.max(1);
        ty.maximum = ty.maximum.map(|m| m.max(1));
        Ok(ty)
    }

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        use wasm_encoder::ValType::I32;
        reencode::utils::parse_type_section(self, types, section)?;
        // In the order of T_VOID, T_III, T_II, T_III_I, T_I, T_CALL.
        types.ty().function([], []);
        types.ty().function([I32; 3], []);
        types.ty().function([I32; 2], []);
        types.ty().function([I32; 3], [I32]);
        types.ty().function([], [I32]);
        types.ty().function([I32; 2], []);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut wasm_encoder::ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        for import in section {
            let import = import?;
            if import.module != PLACEHOLDER_MODULE {
                reencode::utils::parse_import(self, imports, import)?;
            }
        }
        self.add_imports(imports);
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
            self.add_imports(&mut imports);
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
        for appended in self.appended.clone() {
            functions.function(self.type_of(appended));
        }
        Ok(())
    }

    fn parse_export(
        &mut self,
        exports: &mut wasm_encoder::ExportSection,
        export: wasmparser::Export<'_>,
    ) -> Result<(), reencode::Error<Infallible>> {
        if export.name.strip_prefix(DESCRIBE_PREFIX) == Some(F) && !self.outputs.is_empty() {
            exports.export(
                export.name,
                wasm_encoder::ExportKind::Func,
                self.describe(0),
            );
            Ok(())
        } else if export.name.strip_prefix(CALL_PREFIX) == Some(F) {
            let call = self.call_export();
            exports.export(export.name, wasm_encoder::ExportKind::Func, call);
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
            let call = self.call_export();
            exports.export(
                &format!("{CALL_PREFIX}{G}"),
                wasm_encoder::ExportKind::Func,
                call,
            );
            exports.export(
                &format!("{DESCRIBE_PREFIX}{G}"),
                wasm_encoder::ExportKind::Func,
                self.describe(1),
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
        for appended in self.appended.clone() {
            code.function(&self.body(appended));
        }
        Ok(())
    }
}
