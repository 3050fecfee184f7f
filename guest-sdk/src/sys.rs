//! The raw imports of `ferrovex_model::abi` (documented there, with their errors and traps).
//!
//! Outside wasm32 (when the SDK is built for the host, e.g. by `cargo test --workspace` or
//! rustdoc) the imports are stubs that panic: guest functions only run inside the runtime.

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "runtime_v1")]
extern "C" {
    pub fn read_handle(handle: u32, ptr: *mut u8, len: u32);
    pub fn output(kind: i32, ptr: *const u8, len: u32);
    pub fn log(ptr: *const u8, len: u32);
    pub fn panic(ptr: *const u8, len: u32);
    pub fn now_ms() -> f64;
    pub fn random_seed() -> i64;
    pub fn auth_identity(out: *mut u32);
    pub fn db_get(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    pub fn db_insert(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    pub fn db_patch(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    pub fn db_replace(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    pub fn db_delete(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    pub fn db_scan(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    pub fn schedule(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    pub fn cancel_job(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    pub fn run_function(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    pub fn fetch(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    pub fn env_var(ptr: *const u8, len: u32, out: *mut u32) -> i32;
}

#[cfg(not(target_arch = "wasm32"))]
mod stubs {
    #![allow(clippy::missing_safety_doc)]
    const OUTSIDE: &str =
        "guest-sdk functions run only inside the runtime's wasm host (wasm32-unknown-unknown)";
    pub unsafe extern "C" fn read_handle(_: u32, _: *mut u8, _: u32) {
        panic!("{OUTSIDE}")
    }
    pub unsafe extern "C" fn output(_: i32, _: *const u8, _: u32) {
        panic!("{OUTSIDE}")
    }
    pub unsafe extern "C" fn log(_: *const u8, _: u32) {
        panic!("{OUTSIDE}")
    }
    pub unsafe extern "C" fn panic(_: *const u8, _: u32) {}
    pub unsafe extern "C" fn now_ms() -> f64 {
        panic!("{OUTSIDE}")
    }
    pub unsafe extern "C" fn random_seed() -> i64 {
        panic!("{OUTSIDE}")
    }
    pub unsafe extern "C" fn auth_identity(_: *mut u32) {
        panic!("{OUTSIDE}")
    }
    macro_rules! db_stub {
        ($($name:ident),*) => {$(
            pub unsafe extern "C" fn $name(_: *const u8, _: u32, _: *mut u32) -> i32 { panic!("{OUTSIDE}") }
        )*};
    }
    db_stub!(
        db_get,
        db_insert,
        db_patch,
        db_replace,
        db_delete,
        db_scan,
        schedule,
        cancel_job,
        run_function,
        fetch,
        env_var
    );
}

#[cfg(not(target_arch = "wasm32"))]
pub use stubs::*;
