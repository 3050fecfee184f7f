//! The benchmark command: every scenario against a real `runtime serve` over loopback, the
//! baselines beside them, one table, a JSON file and SVG plots.
//!
//! ```sh
//! cargo test --release --workspace --no-run && target/release/bench [--quick] [--seconds N] [--only SCENARIO,...] [--out DIR]
//! ```
//!
//! Scenarios: baseline (RocksDB alone), chat-send, bank-transfer (with the PostgreSQL
//! baseline when it is installed), fanout (with a raw-broadcast baseline, `broadcast`, and a
//! commit touching 1 of 10 against 1 of 100,010 subscriptions), calls (with an HTTP floor,
//! `http_floor`), scale (restart after a clean close and after kill -9), scheduler (the lag of scheduled
//! mutations at 1,000 per second), actions (actions that each fetch from loopback), dashboard
//! (the Data page's requests on a table of 10^6 documents), nodes (fan-out and chat-send on
//! three nodes over one PostgreSQL database against one server, when PostgreSQL is installed).
//! `--quick` runs shorter and smaller (about 45 s once built). `--seconds N` runs each throughput
//! case for N seconds instead of 5 (2 with `--quick`): what settles only after a while, such as
//! RocksDB's write-ahead log files being written over, shows in longer runs. Results go to `DIR` (default
//! `target/bench`): `results.json`, `table.txt`, `latency-load.svg`, `latency-calls.svg`,
//! `fanout.svg`, `scale.svg`, and each server's log in `logs/`. `BENCH_DIR` chooses where the
//! stores go (default: inside `DIR`).

use ferrovex_bench::report::{loadavg, Machine, Report, Row};
use ferrovex_bench::scenarios::{self, Context};
use ferrovex_bench::server::{build_app, raise_fd_limit, runtime_binary, workspace_root};
use ferrovex_bench::svg;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

struct Args {
    quick: bool,
    seconds: Option<u64>,
    only: Vec<String>,
    out: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench [--quick] [--seconds N] [--only SCENARIO,...] [--out DIR]\nscenarios: {}",
        scenarios::ALL.join(", ")
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut args = Args {
        quick: false,
        seconds: None,
        only: Vec::new(),
        out: workspace_root().join("target/bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--seconds" => {
                let given = it.next().unwrap_or_else(|| usage());
                match given.parse::<u64>() {
                    Ok(n) if (1..=3600).contains(&n) => args.seconds = Some(n),
                    _ => {
                        eprintln!("--seconds takes a whole number from 1 to 3600, got {given:?}");
                        usage()
                    }
                }
            }
            "--only" => {
                let list = it.next().unwrap_or_else(|| usage());
                for s in list.split(',').filter(|s| !s.is_empty()) {
                    if !scenarios::ALL.contains(&s) {
                        eprintln!("no scenario {s:?}");
                        usage();
                    }
                    args.only.push(s.to_owned());
                }
            }
            "--out" => args.out = PathBuf::from(it.next().unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("unknown argument {other:?}");
                usage()
            }
        }
    }
    // The throughput scenarios are compared with the RocksDB baseline: it runs with them.
    if args
        .only
        .iter()
        .any(|s| s == "chat-send" || s == "bank-transfer")
        && !args.only.iter().any(|s| s == "baseline")
    {
        args.only.push("baseline".into());
    }
    args
}

fn main() {
    let args = parse();
    let selected: Vec<&str> = scenarios::ALL
        .iter()
        .copied()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s))
        .collect();
    let fd_limit = raise_fd_limit();
    std::fs::create_dir_all(args.out.join("logs")).expect("creating the output folder");
    let data_root = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| args.out.clone());
    let data = tempfile::Builder::new()
        .prefix("data-")
        .tempdir_in(&data_root)
        .expect("creating the data folder");
    let machine = Machine::describe();
    println!(
        "benchmark{}: {} ({} cores, {} GiB), load {}, RLIMIT_NOFILE {fd_limit}, data in {}",
        if args.quick { " --quick" } else { "" },
        machine.cpu,
        machine.cores,
        machine.memory_gib,
        machine.load_at_start,
        data.path().display()
    );

    let runtime = runtime_binary().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    // Build the apps first, so no timed start includes compiling them.
    for app in [
        "examples/chat",
        "examples/bank",
        "runtime/tests/guests/channels",
        scenarios::JOBS_APP,
    ] {
        if let Err(e) = build_app(&workspace_root().join(app)) {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }

    let started = Instant::now();
    let mut ctx = Context {
        quick: args.quick,
        seconds: args.seconds,
        runtime,
        data: data.path().to_owned(),
        logs: args.out.join("logs"),
        clients: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap(),
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    for scenario in &selected {
        println!("{scenario} ...");
        let t0 = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match *scenario {
            "baseline" => scenarios::rocks::run(&mut ctx),
            "chat-send" => scenarios::chat::run(&mut ctx),
            "bank-transfer" => scenarios::bank::run(&mut ctx),
            "fanout" => scenarios::fanout::run(&mut ctx),
            "calls" => scenarios::calls::run(&mut ctx),
            "scale" => scenarios::scale::run(&mut ctx),
            "scheduler" => scenarios::scheduler::run(&mut ctx),
            "actions" => scenarios::actions::run(&mut ctx),
            "dashboard" => scenarios::dashboard::run(&mut ctx),
            "nodes" => scenarios::nodes::run(&mut ctx),
            _ => unreachable!(),
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => ctx.skipped.push(format!("{scenario}: {e}")),
            Err(_) => ctx
                .skipped
                .push(format!("{scenario}: panicked (see above)")),
        }
        println!("{scenario}: {:.1} s", t0.elapsed().as_secs_f64());
    }

    let mut machine = machine;
    machine.load_at_end = loadavg();
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: args.quick,
        machine,
        started_unix_s: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(started.elapsed().as_secs()),
        duration_s: started.elapsed().as_secs_f64(),
        rows: std::mem::take(&mut ctx.rows),
        skipped: std::mem::take(&mut ctx.skipped),
    };
    let table = report.table();
    println!();
    print!("{table}");
    println!(
        "\n{:.0} s; load {} at start, {} at end",
        report.duration_s, report.machine.load_at_start, report.machine.load_at_end
    );
    let write = |name: &str, text: &str| {
        let path = args.out.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| eprintln!("{}: {e}", path.display()));
        path
    };
    write("table.txt", &table);
    let json = args.out.join("results.json");
    if let Err(e) = report.write_json(&json) {
        eprintln!("{}: {e}", json.display());
    }
    let of = |f: &dyn Fn(&Row) -> bool| report.rows.iter().filter(|r| f(r)).collect::<Vec<_>>();
    let load_rows = of(&|r| {
        (r.scenario == "chat-send"
            || r.scenario == "bank-transfer"
            || r.case.starts_with("rocksdb")
            || r.case.starts_with("postgresql"))
            && r.latency.is_some()
    });
    let call_rows = of(&|r| r.scenario == "calls" || r.case.starts_with("native"));
    let mut plots = vec![write(
        "latency-load.svg",
        &svg::latency_chart(
            "Latency distributions under load (64 clients); dashed: baselines",
            &load_rows,
        )
        .render(),
    )];
    plots.push(write(
        "latency-calls.svg",
        &svg::latency_chart(
            "Per-call latency; dashed: native Rust on the same store",
            &call_rows,
        )
        .render(),
    ));
    plots.push(write(
        "fanout.svg",
        &svg::load_chart(
            "Commit-to-delivery against subscribers",
            "subscribers (log)",
            "latency, ms (log)",
            &of(&|r| r.scenario == "fanout"),
        )
        .render(),
    ));
    plots.push(write(
        "scale.svg",
        &svg::load_chart(
            "Query latency and restart-to-ready against documents",
            "documents (log)",
            "ms (log)",
            &of(&|r| r.scenario == "scale" && r.load.is_some()),
        )
        .render(),
    ));
    println!("results: {}", json.display());
    for p in plots {
        println!("plot: {}", p.display());
    }
    // The official Rust client (convex 0.10.4) can loop forever once its client is gone: in
    // its reconnect path it awaits a request on a channel that is closed by then, which is
    // ready at once, so the task never yields (seen once in two quick runs, after the
    // results were complete). Dropping the runtime would wait for that thread; leave it
    // behind, since everything is written.
    let Context { clients, .. } = ctx;
    clients.shutdown_background();
    drop(data);
}
