use ferrovex_sdk::prelude::*;
use std::hint::black_box;

/// The raw ABI, to do what the SDK never would.
mod raw {
    #[link(wasm_import_module = "runtime_v1")]
    extern "C" {
        pub fn read_handle(handle: u32, ptr: *mut u8, len: u32);
        pub fn output(kind: i32, ptr: *const u8, len: u32);
        pub fn log(ptr: *const u8, len: u32);
        pub fn db_get(ptr: *const u8, len: u32, out: *mut u32) -> i32;
        pub fn db_insert(ptr: *const u8, len: u32, out: *mut u32) -> i32;
    }
}

fn encode(value: &Value) -> Vec<u8> {
    ferrovex_sdk::__private::encode(value)
}

#[query]
fn ok(_ctx: &QueryCtx) -> Result<String> {
    Ok("ok".into())
}

#[mutation]
fn add(ctx: &mut MutationCtx, body: String) -> Result<Id> {
    log!("adding {body}");
    ctx.db.insert("notes", doc! { "body": body })
}

#[query]
fn count(ctx: &QueryCtx) -> Result<i64> {
    Ok(ctx.db.query("notes").collect()?.len() as i64)
}

#[query]
fn spin(_ctx: &QueryCtx) -> Result<()> {
    let mut i = 0u64;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

/// Writes, then never returns: the write must not survive the time limit.
#[mutation]
fn spin_after_write(ctx: &mut MutationCtx) -> Result<()> {
    ctx.db.insert("notes", doc! { "body": "doomed" })?;
    let mut i = 0u64;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

#[query]
fn memory_bomb(_ctx: &QueryCtx) -> Result<usize> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(black_box(vec![1u8; 1 << 20]));
        if hoard.len() > 100_000 {
            return Ok(hoard.len());
        }
    }
}

fn recurse(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        black_box(recurse(black_box(n - 1))) + 1
    }
}

#[query]
fn deep_recursion(_ctx: &QueryCtx) -> Result<u64> {
    Ok(recurse(black_box(u64::MAX)))
}

#[mutation]
fn panic_after_writes(ctx: &mut MutationCtx) -> Result<()> {
    for i in 0..3i64 {
        ctx.db.insert("notes", doc! { "body": "doomed", "i": i })?;
    }
    log!("about to panic");
    panic!("deliberate panic after 3 writes");
}

#[mutation]
fn err_after_writes(ctx: &mut MutationCtx) -> Result<()> {
    ctx.db.insert("notes", doc! { "body": "doomed" })?;
    Err(Error::new("deliberate error after a write").with_data(doc! { "code": 42i64 }))
}

/// Asks the host to read 4 GiB - 16 bytes of log line.
#[query]
fn huge_length(_ctx: &QueryCtx) -> Result<()> {
    let byte = 0u8;
    unsafe { raw::log(&byte, 0xFFFF_FFF0) };
    Ok(())
}

/// A pointer near the top of the address space whose end overflows 32 bits.
#[query]
fn overflowing_pointer(_ctx: &QueryCtx) -> Result<()> {
    let mut out = [0u32; 2];
    unsafe { raw::db_get(0xFFFF_FFF0usize as *const u8, 0x20, out.as_mut_ptr()) };
    Ok(())
}

/// A valid request, but the response slot is outside memory.
#[query]
fn out_of_bounds_out_pointer(_ctx: &QueryCtx) -> Result<()> {
    let request = encode(&Value::Object(ferrovex_sdk::Object::from([(
        "id".to_owned(),
        Value::from("x"),
    )])));
    unsafe {
        raw::db_get(
            request.as_ptr(),
            request.len() as u32,
            0x7FFF_FFF0usize as *mut u32,
        )
    };
    Ok(())
}

#[query]
fn forged_handle(_ctx: &QueryCtx) -> Result<()> {
    let mut buffer = [0u8; 4];
    unsafe { raw::read_handle(12345, buffer.as_mut_ptr(), 4) };
    Ok(())
}

/// Reads a handle, then reads it again.
#[query]
fn stale_handle(_ctx: &QueryCtx) -> Result<()> {
    let request = encode(&Value::Object(ferrovex_sdk::Object::from([(
        "id".to_owned(),
        Value::from("x"),
    )])));
    let mut out = [0u32; 2];
    unsafe { raw::db_get(request.as_ptr(), request.len() as u32, out.as_mut_ptr()) };
    let mut buffer = vec![0u8; out[1] as usize];
    unsafe { raw::read_handle(out[0], buffer.as_mut_ptr(), out[1]) };
    unsafe { raw::read_handle(out[0], buffer.as_mut_ptr(), out[1]) };
    Ok(())
}

/// The SDK's `QueryCtx` cannot write, so call the import directly.
#[query]
fn write_from_query(_ctx: &QueryCtx) -> Result<()> {
    let request = encode(&Value::Object(ferrovex_sdk::Object::from([
        ("table".to_owned(), Value::from("notes")),
        ("fields".to_owned(), Value::Object(Default::default())),
    ])));
    let mut out = [0u32; 2];
    unsafe { raw::db_insert(request.as_ptr(), request.len() as u32, out.as_mut_ptr()) };
    Ok(())
}

/// More index ranges than one transaction may read.
#[query]
fn too_many_reads(ctx: &QueryCtx) -> Result<()> {
    for _ in 0..5000 {
        ctx.db.query("notes").first()?;
    }
    Ok(())
}

/// A 17 MiB result, over the 16 MiB limit.
#[query]
fn huge_result(_ctx: &QueryCtx) -> Result<String> {
    Ok("x".repeat(17 * 1024 * 1024))
}

#[query]
fn second_output(_ctx: &QueryCtx) -> Result<()> {
    let null = encode(&Value::Null);
    unsafe {
        raw::output(0, null.as_ptr(), null.len() as u32);
        raw::output(0, null.as_ptr(), null.len() as u32);
    }
    Ok(())
}

#[query]
fn too_many_logs(_ctx: &QueryCtx) -> Result<()> {
    for i in 0..300 {
        log!("line {i}");
    }
    Ok(())
}

/// Everything a call could use to be nondeterministic, which the host pins down.
#[query]
fn entropy(ctx: &QueryCtx) -> Result<Vec<f64>> {
    log!("now is {}", ctx.now());
    Ok(vec![
        ctx.now(),
        ctx.random_f64(),
        ctx.random_f64(),
        ctx.db.query("notes").collect()?.len() as f64,
    ])
}

/// Inserts `{n: value}` into the declared table `strict`; returns the id.
#[mutation]
fn write_strict(ctx: &mut MutationCtx, value: ferrovex_sdk::AnyValue) -> Result<Id> {
    ctx.db.insert(
        "strict",
        ferrovex_sdk::Fields(ferrovex_sdk::Object::from([("n".to_owned(), value.0)])),
    )
}

/// Patches `note` of a `strict` document.
#[mutation]
fn patch_strict(ctx: &mut MutationCtx, id: Id, note: ferrovex_sdk::AnyValue) -> Result<()> {
    ctx.db.patch(
        &id,
        ferrovex_sdk::Fields(ferrovex_sdk::Object::from([("note".to_owned(), note.0)])),
    )
}

/// Stores `value` as a `values` document and returns it: clients round-trip every type.
#[mutation]
fn put_value(
    ctx: &mut MutationCtx,
    value: ferrovex_sdk::AnyValue,
) -> Result<ferrovex_sdk::AnyValue> {
    ctx.db.insert(
        "values",
        ferrovex_sdk::Fields(ferrovex_sdk::Object::from([(
            "value".to_owned(),
            value.0.clone(),
        )])),
    )?;
    Ok(value)
}

/// Every `values` document, oldest first.
#[query]
fn list_values(ctx: &QueryCtx) -> Result<Vec<Document>> {
    ctx.db.query("values").collect()
}

// The host's own cost of a call: each function below makes the host spend memory or time on
// its behalf, and each is refused by a named limit.

/// An `{"id": id}` request for `db_get`.
fn get_request(id: &str) -> Vec<u8> {
    encode(&Value::Object(ferrovex_sdk::Object::from([(
        "id".to_owned(),
        Value::from(id),
    )])))
}

/// Writes a document of `kib` KiB, then asks for it `times` times without ever reading the
/// answers: the host holds every answer in a handle until the call ends.
#[mutation]
fn unread_handles(ctx: &mut MutationCtx, kib: i64, times: i64) -> Result<i64> {
    let id = ctx
        .db
        .insert("notes", doc! { "body": "x".repeat(kib as usize * 1024) })?;
    let request = get_request(id.as_str());
    for _ in 0..times {
        let mut out = [0u32; 2];
        unsafe { raw::db_get(request.as_ptr(), request.len() as u32, out.as_mut_ptr()) };
    }
    Ok(times)
}

/// Writes a document of `kib` KiB and reads it back through the SDK `times` times: reads of
/// the transaction's own writes count against the read limits like any other.
#[mutation]
fn reread_own_write(ctx: &mut MutationCtx, kib: i64, times: i64) -> Result<i64> {
    let id = ctx
        .db
        .insert("notes", doc! { "body": "x".repeat(kib as usize * 1024) })?;
    for _ in 0..times {
        ctx.db.get(&id)?;
    }
    Ok(times)
}

/// One `db_get` request of `mib` MiB (a string id that long).
#[query]
fn big_request(_ctx: &QueryCtx, mib: i64) -> Result<()> {
    let request = get_request(&"x".repeat(mib as usize * 1024 * 1024));
    let mut out = [0u32; 2];
    unsafe { raw::db_get(request.as_ptr(), request.len() as u32, out.as_mut_ptr()) };
    Ok(())
}

/// A result of `n` nulls, written as the encoded array directly: 1 byte each encoded, far
/// more once decoded.
#[query]
fn null_array(_ctx: &QueryCtx, n: i64) -> Result<()> {
    let mut bytes = vec![7u8];
    let mut count = n as u64;
    while count >= 0x80 {
        bytes.push((count as u8) | 0x80);
        count >>= 7;
    }
    bytes.push(count as u8);
    bytes.resize(bytes.len() + n as usize, 0);
    unsafe { raw::output(0, bytes.as_ptr(), bytes.len() as u32) };
    Ok(())
}

/// Fails with a message of `mib` MiB.
#[query]
fn huge_error(_ctx: &QueryCtx, mib: i64) -> Result<()> {
    Err(Error::new("e".repeat(mib as usize * 1024 * 1024)))
}

/// Writes one document into each of `n` new tables.
#[mutation]
fn many_tables(ctx: &mut MutationCtx, n: i64) -> Result<()> {
    for i in 0..n {
        ctx.db.insert(&format!("t{i}"), doc! { "i": i })?;
    }
    Ok(())
}

/// Returns an object whose key starts with `$`, which a client would decode as another type.
#[query]
fn dollar_key(_ctx: &QueryCtx) -> Result<()> {
    let value = encode(&Value::Object(ferrovex_sdk::Object::from([(
        "$integer".to_owned(),
        Value::from("BQAAAAAAAAA="),
    )])));
    unsafe { raw::output(0, value.as_ptr(), value.len() as u32) };
    Ok(())
}

/// Pages `strict` with a cursor that belongs to `notes`: the store refuses it with a status
/// the function handles.
#[query]
fn foreign_cursor(ctx: &QueryCtx) -> Result<String> {
    let first = ctx
        .db
        .query("notes")
        .paginate(PaginationOptions::first(1))?;
    match ctx
        .db
        .query("strict")
        .paginate(PaginationOptions::after(Some(first.continue_cursor), 1))
    {
        Ok(_) => Ok("accepted".into()),
        Err(e) => Ok(format!("refused: {e}")),
    }
}

/// A string result of `mib` MiB (within the result limit).
#[query]
fn big_string(_ctx: &QueryCtx, mib: i64) -> Result<String> {
    Ok("s".repeat(mib as usize * 1024 * 1024))
}

/// Writes `kib` KiB of heap and sums it: a call that touches much of its memory.
#[query]
fn fill_heap(_ctx: &QueryCtx, kib: i64) -> Result<i64> {
    let filled = black_box(vec![1u8; kib as usize * 1024]);
    Ok(filled.iter().map(|b| i64::from(*b)).sum())
}
