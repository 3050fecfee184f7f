//! The one wasmtime `Engine` and its configuration, and the epoch ticker behind the time limit.

use ferrovex_model::limits::SLOT_KEEP_RESIDENT_BYTES;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    WasmFeatures,
};

/// The host's limits and resources. `Default` gives the starting values (taken from Convex).
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Wall-clock time one query or mutation may run (`MAX_EXECUTION_TIME`, 1 s).
    pub timeout: Duration,
    /// Wall-clock time one action may run, waiting on the network included
    /// (`MAX_ACTION_SECONDS`).
    pub action_timeout: Duration,
    /// Linear memory one call may use (`MAX_GUEST_MEMORY`, 64 MiB).
    pub memory_limit: usize,
    /// Native stack wasm code may use; callers' threads need this plus room for the host.
    pub max_wasm_stack: usize,
    /// Instances that can run at once: slots of the pooling allocator.
    pub max_instances: u32,
    /// How often the epoch advances; the time limit is enforced to within one tick.
    pub epoch_tick: Duration,
    /// Epoch ticks a mutation's attempt run inline on an async worker may reach before it is
    /// stopped and made again on the blocking pool (`Store::run_mutation_async`); `None`, or a
    /// bound no shorter than `timeout`, runs every attempt on the pool. With 1, an inline
    /// attempt's guest code holds a worker at most one tick, and a short one is stopped only
    /// when a tick falls within it. Only wasm code checks the epoch: a host call in progress
    /// (a large scan) finishes first.
    pub inline_ticks: Option<u64>,
    /// Where compiled modules are cached; `None` compiles on every deploy.
    pub cache_dir: Option<PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            timeout: Duration::from_secs(1),
            action_timeout: Duration::from_secs(ferrovex_model::limits::MAX_ACTION_SECONDS),
            memory_limit: 64 * 1024 * 1024,
            max_wasm_stack: 512 * 1024,
            max_instances: 128,
            epoch_tick: Duration::from_millis(10),
            inline_ticks: Some(1),
            cache_dir: None,
        }
    }
}

impl HostConfig {
    /// Epoch ticks until a call that may run for `timeout` is interrupted.
    pub(crate) fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let ticks = timeout
            .as_nanos()
            .div_ceil(self.epoch_tick.as_nanos().max(1));
        (ticks as u64).max(1)
    }

    /// Epoch ticks a mutation's attempt run inline may reach (`inline_ticks`), or `None`
    /// when no attempt runs inline: also when that bound is no shorter than the mutation's
    /// own limit, which would then hold the worker for all of it.
    pub(crate) fn inline_deadline_ticks(&self) -> Option<u64> {
        let full = self.deadline_ticks(self.timeout);
        self.inline_ticks.filter(|ticks| *ticks < full)
    }
}

pub(crate) fn build_engine(config: &HostConfig) -> wasmtime::Result<Engine> {
    let mut c = Config::new();
    c.cranelift_opt_level(OptLevel::Speed);
    // Determinism: every NaN a float operation produces has the same bits.
    c.cranelift_nan_canonicalization(true);
    c.epoch_interruption(true);
    c.max_wasm_stack(config.max_wasm_stack);
    // What Rust's wasm32-unknown-unknown emits by default stays on (bulk memory, sign
    // extension, multi-value, reference types, mutable globals, saturating float-to-int);
    // proposals no guest needs, and that widen the attack surface, are off.
    let unused = WasmFeatures::THREADS
        | WasmFeatures::SHARED_EVERYTHING_THREADS
        | WasmFeatures::SIMD
        | WasmFeatures::RELAXED_SIMD
        | WasmFeatures::MULTI_MEMORY
        | WasmFeatures::MEMORY64
        | WasmFeatures::TAIL_CALL
        | WasmFeatures::GC
        | WasmFeatures::FUNCTION_REFERENCES
        | WasmFeatures::EXCEPTIONS
        | WasmFeatures::LEGACY_EXCEPTIONS
        | WasmFeatures::STACK_SWITCHING
        | WasmFeatures::WIDE_ARITHMETIC
        | WasmFeatures::CUSTOM_PAGE_SIZES
        | WasmFeatures::COMPONENT_MODEL;
    c.wasm_features(unused, false);
    // Copy-on-write images make a fresh instance per call cheap: its memory is mapped from
    // the module's data segments, not copied.
    c.memory_init_cow(true);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(config.max_instances)
        .total_memories(config.max_instances)
        .total_tables(config.max_instances)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .max_memory_size(config.memory_limit)
        // Resetting a slot by memset rather than by returning its pages to the kernel saves
        // the page faults a fresh call would take on its stack and heap. Page for page,
        // faulting costs more than clearing: a call writing 64 KiB of heap took 45 µs with 4
        // MiB kept, 57 with 64 KiB, 86 with 16 KiB. With PAGEMAP_SCAN (Linux 6.7+) only pages
        // present and private are reset.
        //
        // But without userfaultfd write protection every page present and private counts as
        // written, so a page a call touched stays "dirty" for every later call in its slot,
        // until the slot holds `SLOT_KEEP_RESIDENT_BYTES`. From then on the scan stops once it
        // has found that many, and everything past it goes back to the kernel with `madvise`
        // on every call in the slot, whatever the call touched: a system call, a TLB
        // shootdown on the other core, and page faults in the next call. With 64 KiB kept,
        // bank transfers (24 KiB each) ran in full slots: 0.15-0.43 `madvise` and 0.4-1.1 TLB
        // flushes per transfer (`perf stat -e syscalls:sys_enter_madvise,tlb:tlb_flush` on
        // the server, bank uniform phase), `madvise` 5.2% of the server's samples. Two things
        // keep slots from filling: 256 KiB kept, so that the slots of ordinary calls do not,
        // and one call in `SLOT_RELEASE_EVERY_CALLS` emptying its slot (`call.rs`), so that
        // one large call fills its slot only for a while. With both, 0.02 `madvise` per
        // transfer (that one call in 64) and about a quarter less server CPU per transfer
        // (BENCHMARKS.md). The price is what a full slot clears on every call until it is
        // emptied, at most 256 KiB: with 4 MiB, one `bank:seed` of 10,000 accounts left 940
        // KiB in its slot, and clearing it on every transfer there was 6.2% of the server's
        // CPU.
        .linear_memory_keep_resident(SLOT_KEEP_RESIDENT_BYTES)
        .table_keep_resident(64 * 1024)
        .pagemap_scan(Enabled::Auto);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c)
}

/// Advances the engine's epoch every tick until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch ticker");
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
