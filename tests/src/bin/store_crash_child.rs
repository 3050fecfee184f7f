//! Commits under load until killed, for the crash test.
//!
//! Usage: `store-crash-child DATA_DIR THREADS`. Each thread repeatedly commits one
//! transaction that inserts a `left` and a `right` document with the same sequence number
//! and sets its counter document to that number, then prints `ACK thread seq` once the
//! commit returned (that is, once it is durable). The parent kills this process with SIGKILL
//! at an arbitrary point and checks that every acknowledged commit survived whole.

use ferrovex_model::{obj, Value};
use ferrovex_runtime::store::{IndexRange, Order, Store, StoreError};
use std::io::Write;
use std::sync::Mutex;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: store-crash-child DATA_DIR THREADS");
    let threads: i64 = args.next().and_then(|t| t.parse().ok()).unwrap_or(4);
    let store = Store::open(std::path::Path::new(&dir)).expect("open store");
    store
        .define_index("counters", "by_thread", &["thread"])
        .expect("index");
    store
        .define_index("left", "by_thread_seq", &["thread", "seq"])
        .expect("index");
    let stdout = Mutex::new(std::io::stdout());
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (store, stdout) = (&store, &stdout);
            scope.spawn(move || loop {
                let seq = store
                    .run_mutation(|tx| -> Result<i64, StoreError> {
                        let range = IndexRange::all().eq(thread);
                        let counter = tx.query("counters", "by_thread", &range, Order::Asc, 1)?;
                        let (id, last) = match counter.first() {
                            Some(doc) => (Some(doc.id), doc.fields["count"].as_i64().unwrap()),
                            None => (None, 0),
                        };
                        let seq = last + 1;
                        tx.insert("left", obj! { "thread" => thread, "seq" => seq })?;
                        tx.insert("right", obj! { "thread" => thread, "seq" => seq, "pad" => Value::Bytes(vec![7; 512]) })?;
                        let fields = obj! { "thread" => thread, "count" => seq };
                        match id {
                            Some(id) => tx.replace(id, fields)?,
                            None => {
                                tx.insert("counters", fields)?;
                            }
                        }
                        Ok(seq)
                    })
                    .expect("commit")
                    .value;
                let mut out = stdout.lock().unwrap();
                writeln!(out, "ACK {thread} {seq}").unwrap();
                out.flush().unwrap();
            });
        }
    });
}
