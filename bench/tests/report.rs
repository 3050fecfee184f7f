//! The benchmark's table: the server's CPU time per call is printed beside the rate.
//! (Being an integration test also makes `cargo test --workspace` build the `bench` binary
//! with the workspace's one feature set.)

use ferrovex_bench::report::{Machine, Report, Row};

#[test]
fn the_table_shows_cpu_microseconds_per_call() {
    let row = Row::new("chat-send", "64 clients, chat:send_message")
        .throughput(20_000.0)
        // 1.5 s of server CPU over 25,000 calls: 60 us a call.
        .cpu_per_call(1.5, 25_000);
    assert_eq!(row.cpu_us_per_call, Some(60.0));
    assert_eq!(
        Row::new("x", "y").cpu_per_call(1.0, 0).cpu_us_per_call,
        None
    );
    let report = Report {
        command: "bench".into(),
        quick: true,
        machine: Machine::describe(),
        started_unix_s: 0,
        duration_s: 1.0,
        rows: vec![row],
        skipped: vec![],
    };
    let table = report.table();
    let header = table.lines().next().unwrap();
    assert!(header.contains("cpu us/op"), "{table}");
    let line = table.lines().nth(2).unwrap();
    let columns: Vec<&str> = line.split_whitespace().collect();
    // scenario, the case's three words, ops/s, p50, p99, max, cpu us/op, other.
    assert_eq!(
        columns[4..10],
        ["20000", "-", "-", "-", "60.0", "-"],
        "{table}"
    );
}
