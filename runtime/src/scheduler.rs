//! The scheduler: runs the jobs of `_scheduled_functions` (`crate::jobs`) when they come due,
//! and the app's cron jobs (`crate::crons`).
//!
//! One task, woken by a commit that touches the jobs' index, by a deploy, or by the time of
//! the next due job or cron. Each pass:
//! - starts the crons whose time has come (a job and the cron's next time in one commit);
//! - takes the pending jobs due now, earliest first, and for each
//!   - a mutation: runs it to its end before the next job starts, with the job read in its
//!     transaction and marked a success by its commit ([`CommitWith::Job`]): a job's mutation
//!     commits exactly once, whatever crashes, and scheduled mutations run in due order;
//!   - an action: hands it to a task of its own, which waits for a running slot
//!     (`crate::actions`, in turn with client actions), marks the job inProgress in a commit
//!     of its own (if it is still pending), runs it and records how it ended.
//!     A crash while it runs leaves it inProgress, and the next start marks it failed: an
//!     action runs at most once.
//!
//! Jobs run as `Caller::admin()`: no signed-in user, internal functions within reach.
//!
//! A function that failed (its `Err`, a panic, a limit) fails its job, with the message. A
//! failure that is not the function's (every instance slot busy, the store refusing commits)
//! leaves the job pending and the pass ends; the next is `RETRY_AFTER` later.

use crate::actions::Actions;
use crate::caller::Caller;
use crate::crons::{CronTable, StoredCron, Tick};
use crate::jobs::{self, Job, JobState};
use crate::store::{catalog, Store, StoreError, Transaction};
use crate::wasm::{CallError, CallFailure, CallOptions, CommitWith, DeployedModule, WasmHost};
use ferrovex_model::abi::{CronSpec, FunctionKind};
use ferrovex_model::{binary, DocumentId, Object, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Due jobs taken per pass.
const JOBS_PER_PASS: usize = 256;
/// Jobs that ended are kept this long after their due time, then deleted (Convex keeps them
/// a week too): long enough to look at, short enough that a cron every second does not
/// grow the table without end.
const DONE_JOBS_KEPT_MS: f64 = 7.0 * 24.0 * 3600.0 * 1000.0;
/// How often ended jobs past that age are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Jobs read by one transaction at start: within the read limit (`MAX_BYTES_READ`, 16 MiB)
/// even if each holds `MAX_SCHEDULED_ARGS_BYTES` (256 KiB) of arguments.
const JOBS_PER_READ: usize = 48;
const _: () = assert!(
    JOBS_PER_READ * (ferrovex_model::limits::MAX_SCHEDULED_ARGS_BYTES + 4096)
        < ferrovex_model::limits::MAX_BYTES_READ
);
/// How long a pass waits after a failure that was not the function's.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// How often a follower's scheduler looks whether its node leads now.
const LEADERSHIP_CHECK: Duration = Duration::from_millis(500);
/// The longest sleep between passes when nothing is due (a safety net, not a clock).
const IDLE_PASS: Duration = Duration::from_secs(60);

/// The `_cron_jobs` system table: one document per cron of the app, with its next time.
pub const CRON_TABLE: &str = catalog::CRON_JOBS;

/// The module to run jobs on: the one serving now.
pub type CurrentModule = Arc<dyn Fn() -> Arc<DeployedModule> + Send + Sync>;

pub struct Scheduler {
    store: Arc<Store>,
    host: Arc<WasmHost>,
    actions: Arc<Actions>,
    module: CurrentModule,
    wake: Arc<Notify>,
    /// Jobs whose due-time index entry a commit wrote since the last pass: new, run,
    /// canceled or failed ones, to be read again.
    touched: Arc<parking_lot::Mutex<Vec<DocumentId>>>,
    queue: parking_lot::Mutex<DueQueue>,
}

/// The pending jobs by due time, kept up to date from the commits that touch them rather than
/// scanned for: a scan of the pending range steps over the index entries of every job that
/// ran since the last compaction, so scanning at each pass made a job cost more the more had
/// run (833 µs of server CPU per job, and a lag that grew through the run, at 1,000 jobs/s).
#[derive(Default)]
struct DueQueue {
    by_time: BTreeSet<(u64, DocumentId)>,
    time_of: HashMap<DocumentId, f64>,
}

/// `f64` as a `u64` of the same order (every due time is finite).
fn ordered(time: f64) -> u64 {
    let bits = time.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

impl DueQueue {
    /// `id` is pending and due at `time`, or (`None`) no longer pending.
    fn set(&mut self, id: DocumentId, time: Option<f64>) {
        if let Some(old) = self.time_of.remove(&id) {
            self.by_time.remove(&(ordered(old), id));
        }
        if let Some(time) = time {
            self.time_of.insert(id, time);
            self.by_time.insert((ordered(time), id));
        }
    }

    /// Up to `limit` jobs due at `now`, earliest first (ties by id, as the index orders them).
    fn due(&self, now: f64, limit: usize) -> Vec<DocumentId> {
        self.by_time
            .range(..=(ordered(now), DocumentId::new(u32::MAX, [u8::MAX; 16])))
            .take(limit)
            .map(|(_, id)| *id)
            .collect()
    }

    fn next(&self) -> Option<f64> {
        let (_, id) = self.by_time.first()?;
        self.time_of.get(id).copied()
    }
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

impl Scheduler {
    /// Declares the system tables and listens for commits that touch the jobs.
    pub fn new(
        store: Arc<Store>,
        host: Arc<WasmHost>,
        actions: Arc<Actions>,
        module: CurrentModule,
    ) -> Result<Arc<Scheduler>, StoreError> {
        jobs::define(&store)?;
        store.define_index(CRON_TABLE, "by_name", &["name"])?;
        let wake = Arc::new(Notify::new());
        let by_next = store
            .tables()
            .iter()
            .find(|t| t.name == jobs::TABLE)
            .and_then(|t| t.index(jobs::BY_NEXT))
            .map(|i| i.id)
            .expect("defined above");
        let waker = wake.clone();
        let touched: Arc<parking_lot::Mutex<Vec<DocumentId>>> = Default::default();
        let seen = touched.clone();
        let leading = store.leadership();
        store.on_commit(Box::new(move |commits| {
            // A follower's scheduler does not run (its start reads every pending job).
            if !leading.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            let mut ids = Vec::new();
            for commit in commits {
                for (_, key) in commit.keys.iter() {
                    if catalog::index_id_of_key(key) == Some(by_next) {
                        ids.extend(catalog::id_from_index_key(key));
                    }
                }
            }
            if !ids.is_empty() {
                seen.lock().extend(ids);
                waker.notify_one();
            }
        }));
        Ok(Arc::new(Scheduler {
            store,
            host,
            actions,
            module,
            wake,
            touched,
            queue: Default::default(),
        }))
    }

    /// Makes the task look again now (after a deploy: the crons may have changed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `stopping` turns true; the job running then finishes first.
    pub async fn run(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        // Jobs run where commits are made: on a follower, once it leads.
        while !self.store.is_leader() {
            tokio::select! {
                () = tokio::time::sleep(LEADERSHIP_CHECK) => {}
                _ = stopping.changed() => {}
            }
            if *stopping.borrow() {
                return;
            }
        }
        let mut crons = CronTable::default();
        let mut reconciled: Option<String> = None;
        match self.clone().blocking(|s| s.recover()).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::error!("scheduler: recovering jobs left in progress failed: {e}")
            }
            None => return,
        }
        let mut last_sweep: Option<std::time::Instant> = None;
        loop {
            if *stopping.borrow() {
                return;
            }
            if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
                last_sweep = Some(std::time::Instant::now());
                let cutoff = now_ms() - DONE_JOBS_KEPT_MS;
                match self
                    .clone()
                    .blocking(move |s| jobs::delete_ended_before(&s.store, cutoff))
                    .await
                {
                    Some(Ok(0)) => {}
                    Some(Ok(n)) => {
                        tracing::info!("scheduler: deleted {n} jobs that ended over a week ago")
                    }
                    Some(Err(e)) => tracing::warn!("scheduler: deleting old jobs failed: {e}"),
                    None => return,
                }
            }
            let module = (self.module)();
            if reconciled.as_deref() != Some(module.hash.as_str()) {
                let declared = module.crons.jobs.clone();
                let table = std::mem::take(&mut crons);
                let Some((table, outcome)) = self
                    .clone()
                    .blocking(move |s| s.reconcile(table, &declared))
                    .await
                else {
                    return;
                };
                crons = table;
                match outcome {
                    Ok(()) => reconciled = Some(module.hash.clone()),
                    Err(e) => tracing::error!("scheduler: reading the crons failed: {e}"),
                }
            }
            let table = std::mem::take(&mut crons);
            let (pass_module, pass_stopping) = (module.clone(), stopping.clone());
            let Some(pass) = self
                .clone()
                .blocking(move |s| s.pass(&pass_module, table, &pass_stopping))
                .await
            else {
                return;
            };
            crons = pass.crons;
            let sleep = match pass.outcome {
                Ok(PassEnd { more: true }) => continue,
                Ok(PassEnd { more: false }) => {
                    let next_job = self.queue.lock().next();
                    let next = [next_job, crons.next_wake()]
                        .into_iter()
                        .flatten()
                        .min_by(f64::total_cmp);
                    match next {
                        Some(at) => Duration::from_secs_f64(
                            ((at - now_ms()).max(0.0) / 1000.0).min(IDLE_PASS.as_secs_f64()),
                        ),
                        None => IDLE_PASS,
                    }
                }
                Err(e) => {
                    tracing::warn!("scheduler: {e}; trying again in {RETRY_AFTER:?}");
                    RETRY_AFTER
                }
            };
            if sleep.is_zero() {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {}
                _ = stopping.changed() => {}
            }
        }
    }

    /// Runs `f` on the blocking pool; `None` when the runtime is shutting down.
    async fn blocking<T: Send + 'static>(
        self: Arc<Self>,
        f: impl FnOnce(&Scheduler) -> T + Send + 'static,
    ) -> Option<T> {
        match tokio::task::spawn_blocking(move || f(&self)).await {
            Ok(value) => Some(value),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }

    /// At start: actions left in progress by a crash did not finish, and are not run again;
    /// then every pending job goes into the queue (later ones come from commits).
    fn recover(&self) -> Result<(), StoreError> {
        self.fail_interrupted()?;
        let mut cursor = None;
        loop {
            let (page, next) = jobs::pending_page(
                &mut self.store.begin_read_only(),
                cursor.as_deref(),
                JOBS_PER_READ,
            )?;
            let mut queue = self.queue.lock();
            for job in page {
                queue.set(job.id, Some(job.scheduled_time));
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(()),
            }
        }
    }

    fn fail_interrupted(&self) -> Result<(), StoreError> {
        loop {
            let left = jobs::in_state(
                &mut self.store.begin_read_only(),
                &JobState::InProgress,
                JOBS_PER_READ,
            )?;
            if left.is_empty() {
                return Ok(());
            }
            for job in left {
                tracing::warn!(
                    "scheduler: the action {} of job {} was running when the server stopped; an action runs at most once, so it is marked failed",
                    job.name,
                    job.id
                );
                self.finish(
                    job.id,
                    JobState::InProgress,
                    JobState::Failed(
                        "the server stopped while this action ran; an action runs at most once, so it was not run again".into(),
                    ),
                )?;
            }
        }
    }

    fn reconcile(
        &self,
        mut table: CronTable,
        declared: &[CronSpec],
    ) -> (CronTable, Result<(), String>) {
        let result = (|| {
            let mut tx = self.store.begin_read_only();
            let stored = read_crons(&mut tx).map_err(|e| e.to_string())?;
            let mut with_state = Vec::new();
            for (_, cron) in &stored {
                let running = match cron.last_job {
                    Some(job) => jobs::get(&mut tx, job)
                        .map_err(|e| e.to_string())?
                        .is_some_and(|j| !j.state.is_done()),
                    None => false,
                };
                with_state.push((cron.clone(), running));
            }
            let (remember, forget) = table.reconcile(declared, with_state, now_ms())?;
            if remember.is_empty() && forget.is_empty() {
                return Ok(());
            }
            self.store
                .run_mutation(|tx| {
                    let stored = read_crons(tx)?;
                    for cron in &remember {
                        write_cron(tx, &stored, cron)?;
                    }
                    for (id, cron) in &stored {
                        if forget.contains(&cron.name) {
                            tx.delete(*id)?;
                        }
                    }
                    Ok::<_, StoreError>(())
                })
                .map(|_| ())
                .map_err(|e| e.to_string())
        })();
        (table, result)
    }

    /// One pass: due crons, then due jobs, until every due job is handled or `stopping`.
    fn pass(
        &self,
        module: &DeployedModule,
        mut table: CronTable,
        stopping: &watch::Receiver<bool>,
    ) -> Pass {
        let outcome = (|| {
            let now = now_ms();
            for tick in table.due(now) {
                let name = match &tick {
                    Tick::Run { spec, .. } => spec.name.clone(),
                    Tick::Skip { name, .. } => name.clone(),
                };
                if let Err(e) = self.tick(&mut table, tick) {
                    table.retry(&name, now);
                    return Err(format!("cron {name:?}: {e}"));
                }
            }
            // A job that ended (an action's, or one canceled) lets its cron run again.
            for ended in self.refresh_queue().map_err(|e| e.to_string())? {
                table.finished(ended);
            }
            let due = self.queue.lock().due(now, JOBS_PER_PASS);
            let end = PassEnd {
                more: due.len() == JOBS_PER_PASS,
            };
            for id in due {
                if *stopping.borrow() {
                    return Ok(end);
                }
                let job =
                    jobs::get(&mut self.store.begin_read_only(), id).map_err(|e| e.to_string())?;
                let Some(job) = job.filter(|j| j.state == JobState::Pending) else {
                    self.queue.lock().set(id, None);
                    continue;
                };
                match self.run_job(module, job)? {
                    JobRun::Ended(id) => {
                        self.queue.lock().set(id, None);
                        table.finished(id);
                    }
                    // Its commits bring it back to the queue if it is still pending then.
                    JobRun::Started => self.queue.lock().set(id, None),
                }
            }
            Ok(end)
        })();
        Pass {
            crons: table,
            outcome,
        }
    }

    /// Reads again the jobs commits touched: pending ones are queued at their time, the
    /// others leave the queue; returns those that ended.
    fn refresh_queue(&self) -> Result<Vec<DocumentId>, StoreError> {
        let mut touched = std::mem::take(&mut *self.touched.lock());
        touched.sort_unstable();
        touched.dedup();
        let mut ended = Vec::new();
        for id in touched {
            // A transaction per job: a job's arguments may take MAX_SCHEDULED_ARGS_BYTES,
            // and many of them would pass one transaction's read limit.
            let job = jobs::get(&mut self.store.begin_read_only(), id)?;
            let pending = match job {
                Some(job) if job.state == JobState::Pending => Some(job.scheduled_time),
                Some(job) if job.state.is_done() => {
                    ended.push(id);
                    None
                }
                _ => None,
            };
            self.queue.lock().set(id, pending);
        }
        Ok(ended)
    }

    fn tick(&self, table: &mut CronTable, tick: Tick) -> Result<(), StoreError> {
        let (spec, next_run) = match tick {
            Tick::Run { spec, next_run } => (spec, next_run),
            // Not written down: after a restart, a skipped time is one more missed time.
            Tick::Skip { name, .. } => {
                tracing::info!(
                    "scheduler: cron {name:?} skipped a run: its last run is still going"
                );
                return Ok(());
            }
        };
        let job = self
            .store
            .run_mutation(|tx| {
                let stored = read_crons(tx)?;
                let previous = stored.iter().find(|(_, c)| c.name == spec.name);
                let now = tx.now_ms();
                let args = binary::encode(&spec.args);
                let job = jobs::schedule(tx, &spec.function, args, now, Some(&spec.name))?;
                let cron = StoredCron {
                    name: spec.name.clone(),
                    schedule: previous
                        .map(|(_, c)| c.schedule.clone())
                        .unwrap_or_default(),
                    next_run,
                    last_job: Some(job),
                };
                write_cron(tx, &stored, &cron)?;
                Ok::<_, StoreError>(job)
            })?
            .value;
        table.started(&spec.name, job);
        Ok(())
    }

    /// Runs one due job: a mutation to its end, an action handed to a task of its own.
    fn run_job(&self, module: &DeployedModule, job: Job) -> Result<JobRun, String> {
        let kind = module.function(&job.name).map(|f| f.description.kind);
        let args = match binary::decode(&job.args) {
            Ok(args) => args,
            Err(e) => {
                let error = format!("the job's stored arguments do not decode: {e}");
                return self.fail(&job, error);
            }
        };
        match kind {
            Some(FunctionKind::Mutation) => {
                let options = CallOptions {
                    caller: Caller::admin(),
                    ..Default::default()
                };
                let ran = self.host.run_mutation_with(
                    &self.store,
                    module,
                    &job.name,
                    &args,
                    options,
                    CommitWith::Job(job.id),
                );
                match ran {
                    Ok(_) => Ok(JobRun::Ended(job.id)),
                    Err(CallFailure {
                        error: CallError::JobNotPending,
                        ..
                    }) => Ok(JobRun::Ended(job.id)),
                    // Not the function's failure: the job stays pending for a later pass.
                    Err(failure) if not_the_functions(&failure.error) => Err(format!(
                        "job {} ({}) could not run: {failure}",
                        job.id, job.name
                    )),
                    Err(failure) => self.fail(&job, failure.to_string()),
                }
            }
            Some(FunctionKind::Action) => {
                // Off this task: it waits for a running slot in turn with client actions
                // (the slots' queue is fair), then marks the job in progress, only if it is
                // still pending, and only then runs it.
                let actions = self.actions.clone();
                let module = Arc::new(module.clone());
                let store = self.store.clone();
                let (id, path) = (job.id, job.name.clone());
                tokio::runtime::Handle::current().spawn(async move {
                    // `None`: the server is stopping; the job stays pending for the next start.
                    let Some(slot) = actions.slot().await else {
                        return;
                    };
                    let marking = store.clone();
                    let started = tokio::task::spawn_blocking(move || {
                        finish_job(&marking, id, JobState::Pending, JobState::InProgress)
                    })
                    .await;
                    match started {
                        Ok(Ok(true)) => {}
                        // Canceled, or started by another pass, meanwhile.
                        Ok(Ok(false)) => return,
                        Ok(Err(e)) => {
                            tracing::warn!("scheduler: starting job {id} ({path}) failed: {e}; it stays pending");
                            return;
                        }
                        Err(_) => return,
                    }
                    let outcome = actions
                        .run_reserved(
                            slot,
                            module,
                            FunctionKind::Action,
                            &path,
                            args,
                            Caller::admin(),
                        )
                        .await;
                    let state = match outcome {
                        Ok(_) => JobState::Success,
                        Err(failure) => JobState::Failed(failure.to_string()),
                    };
                    // Its commit wakes the scheduler: the job's cron (if any) may run again.
                    let recorded = tokio::task::spawn_blocking(move || {
                        finish_job(&store, id, JobState::InProgress, state)
                    })
                    .await;
                    match recorded {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(
                            "scheduler: recording the end of job {id} ({path}) failed: {e}; it stays in progress until the next start, which fails it"
                        ),
                        Err(e) => tracing::error!(
                            "scheduler: recording the end of job {id} ({path}) did not run: {e}"
                        ),
                    }
                });
                Ok(JobRun::Started)
            }
            other => {
                let error = match other {
                    None => format!("{} is not a function of the deployed app", job.name),
                    Some(kind) => format!(
                        "{} is a {kind}; only mutations and actions run as jobs",
                        job.name
                    ),
                };
                self.fail(&job, error)
            }
        }
    }

    /// Fails a pending job with `error`.
    fn fail(&self, job: &Job, error: String) -> Result<JobRun, String> {
        self.finish(job.id, JobState::Pending, JobState::Failed(error))
            .map_err(|e| e.to_string())?;
        Ok(JobRun::Ended(job.id))
    }

    fn finish(&self, id: DocumentId, from: JobState, to: JobState) -> Result<bool, StoreError> {
        finish_job(&self.store, id, from, to)
    }
}

/// Moves job `id` from `from` to `to` if it is still in `from`; whether it did.
fn finish_job(
    store: &Store,
    id: DocumentId,
    from: JobState,
    to: JobState,
) -> Result<bool, StoreError> {
    store
        .run_mutation(|tx| {
            match jobs::get(tx, id)? {
                Some(job) if job.state == from => {}
                _ => return Ok(false),
            }
            let completed = to.is_done().then(|| tx.now_ms());
            jobs::set_state(tx, id, &to, completed)?;
            Ok::<_, StoreError>(true)
        })
        .map(|c| c.value)
}

/// Failures that are not the function's own: the job stays pending and runs later.
fn not_the_functions(error: &CallError) -> bool {
    matches!(
        error,
        CallError::Host(_) | CallError::Store(StoreError::Engine(_))
    )
}

struct Pass {
    crons: CronTable,
    outcome: Result<PassEnd, String>,
}

struct PassEnd {
    /// More jobs may be due right away.
    more: bool,
}

/// How one job's turn ended.
enum JobRun {
    /// It ran (or failed, or was no longer pending).
    Ended(DocumentId),
    /// An action was handed to a task of its own; it ends later.
    Started,
}

/// The crons' next times and last jobs, as `_cron_jobs` keeps them.
pub fn read_crons(tx: &mut Transaction) -> Result<Vec<(DocumentId, StoredCron)>, StoreError> {
    if tx.table_info(CRON_TABLE).is_none() {
        return Ok(Vec::new());
    }
    let page = tx.scan(
        CRON_TABLE,
        "by_name",
        &crate::store::IndexRange::all(),
        crate::store::Order::Asc,
        ferrovex_model::limits::MAX_DOCUMENTS_READ,
        None,
    )?;
    Ok(page
        .documents
        .into_iter()
        .filter_map(|d| {
            let f = &d.fields;
            Some((
                d.id,
                StoredCron {
                    name: f.get("name")?.as_str()?.to_owned(),
                    schedule: f.get("schedule")?.as_str()?.to_owned(),
                    next_run: match f.get("nextRun")? {
                        Value::Float64(t) => *t,
                        _ => return None,
                    },
                    last_job: f
                        .get("lastJob")
                        .and_then(Value::as_str)
                        .and_then(|s| DocumentId::parse(s).ok()),
                },
            ))
        })
        .collect())
}

fn write_cron(
    tx: &mut Transaction,
    stored: &[(DocumentId, StoredCron)],
    cron: &StoredCron,
) -> Result<(), StoreError> {
    let mut fields = Object::new();
    fields.insert("name".into(), cron.name.as_str().into());
    fields.insert("schedule".into(), cron.schedule.as_str().into());
    fields.insert("nextRun".into(), Value::Float64(cron.next_run));
    if let Some(job) = cron.last_job {
        fields.insert("lastJob".into(), Value::String(job.to_string()));
    }
    match stored.iter().find(|(_, c)| c.name == cron.name) {
        Some((id, _)) => tx.replace(*id, fields),
        None => tx.insert(CRON_TABLE, fields).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> DocumentId {
        DocumentId::new(7, [n; 16])
    }

    #[test]
    fn the_due_queue_orders_by_time_then_id_and_forgets_what_is_no_longer_pending() {
        let times = [-5.5, -0.0, 0.0, 1.0, 1e12, 1.767e12];
        for pair in times.windows(2) {
            assert!(ordered(pair[0]) <= ordered(pair[1]), "{pair:?}");
        }
        let mut queue = DueQueue::default();
        queue.set(id(3), Some(300.0));
        queue.set(id(2), Some(100.0));
        queue.set(id(1), Some(100.0));
        queue.set(id(4), Some(50.0));
        assert_eq!(queue.next(), Some(50.0));
        assert_eq!(queue.due(100.0, 10), [id(4), id(1), id(2)]);
        assert_eq!(queue.due(100.0, 2), [id(4), id(1)]);
        // Ran (or canceled): gone; rescheduled: moved.
        queue.set(id(4), None);
        queue.set(id(1), Some(400.0));
        assert_eq!(queue.due(1000.0, 10), [id(2), id(3), id(1)]);
        assert_eq!(queue.next(), Some(100.0));
        queue.set(id(2), None);
        queue.set(id(3), None);
        queue.set(id(1), None);
        assert_eq!(queue.next(), None);
        assert!(queue.due(f64::MAX, 10).is_empty());
    }
}
