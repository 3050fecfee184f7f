//! The `_scheduled_functions` system table: one document per scheduled call, its state, and
//! the reads and writes the scheduler and the `schedule` / `cancel_job` imports make on it.
//! Plain data over a [`Transaction`], below the wasm host and the scheduler that use it.
//!
//! A job's document (functions read it like any table, live):
//!
//! | field | what |
//! |---|---|
//! | `name` | the function's path |
//! | `args` | its arguments object, in the binary value form (bytes) |
//! | `scheduledTime` | when it is due, milliseconds since the Unix epoch |
//! | `state` | `{kind: "pending" \| "inProgress" \| "success" \| "failed" \| "canceled"}`, with `error` when failed |
//! | `completedTime` | when it ended (success, failed or canceled) |
//! | `cron` | the cron job that made it, if one did |
//!
//! A scheduled mutation goes from pending to success in the same commit as its own writes
//! (exactly once); a scheduled action is marked inProgress in a commit of its own before it
//! starts, so a crash while it runs leaves it inProgress, never pending (at most once).

use crate::store::{Document, IndexRange, Order, StoreError, Transaction};
use ferrovex_model::{DocumentId, Object, Value};

pub const TABLE: &str = crate::store::catalog::SCHEDULED_FUNCTIONS;
/// Pending jobs by due time (and every other state by its jobs' due times).
pub const BY_NEXT: &str = "by_next";
pub const BY_NEXT_FIELDS: &[&str] = &["state.kind", "scheduledTime"];

#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    Pending,
    InProgress,
    Success,
    Failed(String),
    Canceled,
}

impl JobState {
    /// Every state's `kind`, in the order a job may go through them.
    pub const KINDS: [&'static str; 5] = ["pending", "inProgress", "success", "failed", "canceled"];

    pub fn kind(&self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::InProgress => "inProgress",
            JobState::Success => "success",
            JobState::Failed(_) => "failed",
            JobState::Canceled => "canceled",
        }
    }

    /// `{kind}`, with `error` when failed: the `state` field of a job's document.
    pub fn to_value(&self) -> Value {
        let mut o = Object::new();
        o.insert("kind".into(), self.kind().into());
        if let JobState::Failed(error) = self {
            o.insert("error".into(), error.as_str().into());
        }
        Value::Object(o)
    }

    fn from_value(value: Option<&Value>) -> Option<JobState> {
        let o = value?.as_object()?;
        Some(match o.get("kind")?.as_str()? {
            "pending" => JobState::Pending,
            "inProgress" => JobState::InProgress,
            "success" => JobState::Success,
            "failed" => JobState::Failed(
                o.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            "canceled" => JobState::Canceled,
            _ => return None,
        })
    }

    pub fn is_done(&self) -> bool {
        !matches!(self, JobState::Pending | JobState::InProgress)
    }
}

/// One job as the scheduler reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: DocumentId,
    pub name: String,
    /// The arguments object in the binary value form.
    pub args: Vec<u8>,
    pub scheduled_time: f64,
    pub state: JobState,
}

impl Job {
    fn from_document(document: Document) -> Result<Job, StoreError> {
        let corrupt =
            |what: &str| StoreError::Corrupt(format!("{TABLE} document {}: {what}", document.id));
        let f = &document.fields;
        Ok(Job {
            id: document.id,
            name: f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| corrupt("no name"))?
                .to_owned(),
            args: match f.get("args") {
                Some(Value::Bytes(b)) => b.clone(),
                _ => return Err(corrupt("no args")),
            },
            scheduled_time: match f.get("scheduledTime") {
                Some(Value::Float64(t)) => *t,
                _ => return Err(corrupt("no scheduledTime")),
            },
            state: JobState::from_value(f.get("state")).ok_or_else(|| corrupt("no state"))?,
        })
    }
}

/// Declares the table and its index (at start, before any job is written).
pub fn define(store: &crate::store::Store) -> Result<(), StoreError> {
    store
        .define_index(TABLE, BY_NEXT, BY_NEXT_FIELDS)
        .map(|_| ())
}

/// Writes a pending job due at `at_ms`.
pub fn schedule(
    tx: &mut Transaction,
    path: &str,
    args: Vec<u8>,
    at_ms: f64,
    cron: Option<&str>,
) -> Result<DocumentId, StoreError> {
    let mut fields = Object::new();
    fields.insert("name".into(), path.into());
    fields.insert("args".into(), Value::Bytes(args));
    fields.insert("scheduledTime".into(), Value::Float64(at_ms));
    fields.insert("state".into(), JobState::Pending.to_value());
    if let Some(cron) = cron {
        fields.insert("cron".into(), cron.into());
    }
    tx.insert(TABLE, fields)
}

/// The job `id` in `tx`'s view, `None` if there is none (or the id is of another table).
pub fn get(tx: &mut Transaction, id: DocumentId) -> Result<Option<Job>, StoreError> {
    if tx.table_of_id(&id).is_none_or(|t| t.name != TABLE) {
        return Ok(None);
    }
    tx.get(id)?.map(Job::from_document).transpose()
}

/// Why a job could not be canceled.
#[derive(Debug)]
pub enum CancelError {
    NotAJob(String),
    Store(StoreError),
}

impl From<StoreError> for CancelError {
    fn from(e: StoreError) -> CancelError {
        CancelError::Store(e)
    }
}

/// Cancels a pending job; a job already running or done stays as it is (its outcome is
/// what happened).
pub fn cancel(tx: &mut Transaction, id: &str, now_ms: f64) -> Result<(), CancelError> {
    let not_a_job = || {
        CancelError::NotAJob(format!(
            "cancel: {id:?} is not the id of a scheduled job (a document of {TABLE})"
        ))
    };
    let id = DocumentId::parse(id).map_err(|_| not_a_job())?;
    match get(tx, id).map_err(CancelError::Store)? {
        None => Err(not_a_job()),
        Some(job) if job.state == JobState::Pending => {
            set_state(tx, id, &JobState::Canceled, Some(now_ms)).map_err(CancelError::Store)
        }
        Some(_) => Ok(()),
    }
}

/// Moves a job to `state`, with its completion time when it ended.
pub fn set_state(
    tx: &mut Transaction,
    id: DocumentId,
    state: &JobState,
    completed_ms: Option<f64>,
) -> Result<(), StoreError> {
    let mut patch = crate::store::Patch::new();
    patch.insert("state".into(), Some(state.to_value()));
    if let Some(t) = completed_ms {
        patch.insert("completedTime".into(), Some(Value::Float64(t)));
    }
    tx.patch(id, patch)
}

/// One page of pending jobs, earliest first, from `cursor` (the scheduler's start: it keeps
/// what it learns of jobs after that from commits); the cursor of the next page, if any.
pub fn pending_page(
    tx: &mut Transaction,
    cursor: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<Job>, Option<Vec<u8>>), StoreError> {
    if tx.table_info(TABLE).is_none() {
        return Ok((Vec::new(), None));
    }
    let range = IndexRange::all().eq(JobState::Pending.kind());
    let page = tx.scan(TABLE, BY_NEXT, &range, Order::Asc, limit, cursor)?;
    let jobs = page
        .documents
        .into_iter()
        .map(Job::from_document)
        .collect::<Result<_, _>>()?;
    Ok((jobs, page.cursor))
}

/// Deletes the jobs that ended (success, failed, canceled) and were due before `cutoff_ms`,
/// a batch per transaction, each batch within the read limit whatever the jobs' arguments;
/// returns how many.
pub fn delete_ended_before(
    store: &crate::store::Store,
    cutoff_ms: f64,
) -> Result<usize, StoreError> {
    /// Within `MAX_BYTES_READ` even at `MAX_SCHEDULED_ARGS_BYTES` per job.
    const BATCH: usize = 48;
    let mut deleted = 0;
    for state in [
        JobState::Success,
        JobState::Failed(String::new()),
        JobState::Canceled,
    ] {
        loop {
            let batch = store
                .run_mutation(|tx| {
                    if tx.table_info(TABLE).is_none() {
                        return Ok::<_, StoreError>(0);
                    }
                    let range = IndexRange::all()
                        .eq(state.kind())
                        .lt(Value::Float64(cutoff_ms));
                    let old = tx.query(TABLE, BY_NEXT, &range, Order::Asc, BATCH)?;
                    for job in &old {
                        tx.delete(job.id)?;
                    }
                    Ok(old.len())
                })?
                .value;
            deleted += batch;
            if batch < BATCH {
                break;
            }
        }
    }
    Ok(deleted)
}

/// Every job in `state` (for recovery at start: actions left inProgress by a crash).
pub fn in_state(
    tx: &mut Transaction,
    state: &JobState,
    limit: usize,
) -> Result<Vec<Job>, StoreError> {
    scan(tx, IndexRange::all().eq(state.kind()), limit)
}

fn scan(tx: &mut Transaction, range: IndexRange, limit: usize) -> Result<Vec<Job>, StoreError> {
    if tx.table_info(TABLE).is_none() {
        return Ok(Vec::new());
    }
    tx.scan(TABLE, BY_NEXT, &range, Order::Asc, limit, None)?
        .documents
        .into_iter()
        .map(Job::from_document)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn ended_jobs_past_the_cutoff_are_deleted_and_the_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        define(&store).unwrap();
        let args = ferrovex_model::binary::encode(&Value::Object(Object::new()));
        let ids: Vec<DocumentId> = store
            .run_mutation(|tx| {
                let mut ids = Vec::new();
                // Due at 100 (old) and 900 (recent), in every state.
                for at in [100.0, 900.0] {
                    for _ in 0..4 {
                        ids.push(schedule(tx, "jobs:record", args.clone(), at, None)?);
                    }
                }
                Ok::<_, StoreError>(ids)
            })
            .unwrap()
            .value;
        let states = [
            JobState::Success,
            JobState::Failed("no".into()),
            JobState::Canceled,
            JobState::Pending,
        ];
        store
            .run_mutation(|tx| {
                for (i, id) in ids.iter().enumerate() {
                    let state = &states[i % 4];
                    if *state != JobState::Pending {
                        set_state(tx, *id, state, Some(1000.0))?;
                    }
                }
                Ok::<_, StoreError>(())
            })
            .unwrap();
        assert_eq!(delete_ended_before(&store, 500.0).unwrap(), 3);
        let mut tx = store.begin_read_only();
        let left: Vec<_> = ids
            .iter()
            .filter_map(|id| get(&mut tx, *id).unwrap())
            .collect();
        // The old pending one and all four recent ones stay.
        assert_eq!(left.len(), 5);
        assert!(left
            .iter()
            .all(|job| job.state == JobState::Pending || job.scheduled_time == 900.0));
        assert_eq!(delete_ended_before(&store, 500.0).unwrap(), 0);
    }
}
