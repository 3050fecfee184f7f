//! Cron jobs: their schedules (parsed at deploy, by `croner` for cron expressions) and the
//! cron table, when each of the app's crons runs next and whether its last run is still
//! going. No I/O and no clock of its own: the scheduler gives it the time, so its rules are
//! tested with a clock the test controls.
//!
//! The rules (README.md, "Background and outside work"):
//! - An interval cron first runs one interval after it is first deployed; a cron expression
//!   runs at its next matching time (UTC).
//! - At most one run of a cron at a time: a run that comes due while the previous one is
//!   still pending or running is skipped, and the cron waits for its next time.
//! - Runs missed while the server was down are not made up one by one: if any time passed,
//!   the cron runs once when the server is back, then keeps to its schedule from then on.
//! - A cron whose schedule changes in a deploy starts over from the deploy; one that is no
//!   longer declared is forgotten.

use ferrovex_model::abi::{CronSchedule, CronSpec};
use ferrovex_model::DocumentId;
use std::collections::BTreeMap;

/// A parsed schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    Interval(f64),
    Expression(Box<croner::Cron>),
}

impl Schedule {
    pub fn parse(schedule: &CronSchedule) -> Result<Schedule, String> {
        match schedule {
            CronSchedule::IntervalMs(ms) => Ok(Schedule::Interval(*ms as f64)),
            CronSchedule::Expression(text) => text
                .parse::<croner::Cron>()
                .map(|c| Schedule::Expression(Box::new(c)))
                .map_err(|e| format!("the cron expression {text:?} is not valid: {e}")),
        }
    }

    /// The first time strictly after `after_ms` (milliseconds since the Unix epoch).
    pub fn next_after(&self, after_ms: f64) -> f64 {
        match self {
            Schedule::Interval(ms) => after_ms + ms,
            Schedule::Expression(cron) => {
                let Some(after) = chrono::DateTime::from_timestamp_millis(after_ms as i64) else {
                    return f64::INFINITY;
                };
                cron.find_next_occurrence(&after, false)
                    .map(|t| t.timestamp_millis() as f64)
                    .unwrap_or(f64::INFINITY)
            }
        }
    }
}

/// What the store remembers of a cron (a document of `_cron_jobs`).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCron {
    pub name: String,
    /// The schedule as declared, to notice a change.
    pub schedule: String,
    pub next_run: f64,
    pub last_job: Option<DocumentId>,
}

/// The text a schedule is remembered by.
pub fn schedule_text(schedule: &CronSchedule) -> String {
    match schedule {
        CronSchedule::IntervalMs(ms) => format!("every {ms} ms"),
        CronSchedule::Expression(e) => format!("cron {e}"),
    }
}

#[derive(Clone, Debug)]
struct Entry {
    spec: CronSpec,
    schedule: Schedule,
    next_run: f64,
    last_job: Option<DocumentId>,
    /// Its last job is pending or in progress.
    running: bool,
}

/// A decision of [`CronTable::due`].
#[derive(Clone, Debug, PartialEq)]
pub enum Tick {
    /// Start a run now; the cron's next time is `next_run`.
    Run { spec: CronSpec, next_run: f64 },
    /// The previous run is still going: this time is skipped.
    Skip { name: String },
}

#[derive(Default, Debug)]
pub struct CronTable {
    entries: BTreeMap<String, Entry>,
}

impl CronTable {
    /// Takes the declared crons, with what the store remembers of each and whether its last
    /// job is still going. Returns the crons to remember anew (new or changed schedules) and
    /// the names to forget.
    pub fn reconcile(
        &mut self,
        declared: &[CronSpec],
        stored: Vec<(StoredCron, bool)>,
        now: f64,
    ) -> Result<(Vec<StoredCron>, Vec<String>), String> {
        let mut stored: BTreeMap<String, (StoredCron, bool)> = stored
            .into_iter()
            .map(|(c, running)| (c.name.clone(), (c, running)))
            .collect();
        let mut entries = BTreeMap::new();
        let mut remember = Vec::new();
        for spec in declared {
            let schedule = Schedule::parse(&spec.schedule)?;
            let text = schedule_text(&spec.schedule);
            let entry = match stored.remove(&spec.name) {
                Some((kept, running)) if kept.schedule == text => Entry {
                    spec: spec.clone(),
                    schedule,
                    next_run: kept.next_run,
                    last_job: kept.last_job,
                    running,
                },
                previous => {
                    let next_run = schedule.next_after(now);
                    let (last_job, running) = previous
                        .map(|(c, running)| (c.last_job, running))
                        .unwrap_or((None, false));
                    remember.push(StoredCron {
                        name: spec.name.clone(),
                        schedule: text,
                        next_run,
                        last_job,
                    });
                    Entry {
                        spec: spec.clone(),
                        schedule,
                        next_run,
                        last_job,
                        running,
                    }
                }
            };
            entries.insert(spec.name.clone(), entry);
        }
        self.entries = entries;
        Ok((remember, stored.into_keys().collect()))
    }

    /// The crons whose time has come at `now`, each once, with its next time after `now`
    /// (times missed in between are not made up). The caller records each decision, and
    /// then calls [`CronTable::started`] for each run it starts.
    pub fn due(&mut self, now: f64) -> Vec<Tick> {
        let mut ticks = Vec::new();
        for entry in self.entries.values_mut() {
            if entry.next_run > now {
                continue;
            }
            let next_run = entry.schedule.next_after(now);
            entry.next_run = next_run;
            ticks.push(if entry.running {
                Tick::Skip {
                    name: entry.spec.name.clone(),
                }
            } else {
                Tick::Run {
                    spec: entry.spec.clone(),
                    next_run,
                }
            });
        }
        ticks
    }

    /// The run [`CronTable::due`] gave for `name` could not be scheduled (its commit
    /// failed): it is due again at `at`, so the time is not lost.
    pub fn retry(&mut self, name: &str, at: f64) {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.next_run = entry.next_run.min(at);
        }
    }

    /// A run of `name` was scheduled as `job`.
    pub fn started(&mut self, name: &str, job: DocumentId) {
        if let Some(entry) = self.entries.get_mut(name) {
            entry.last_job = Some(job);
            entry.running = true;
        }
    }

    /// `job` ended (whatever its outcome): its cron may run again.
    pub fn finished(&mut self, job: DocumentId) {
        for entry in self.entries.values_mut() {
            if entry.last_job == Some(job) {
                entry.running = false;
            }
        }
    }

    /// When the earliest cron is next due.
    pub fn next_wake(&self) -> Option<f64> {
        self.entries
            .values()
            .map(|e| e.next_run)
            .min_by(f64::total_cmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovex_model::Value;

    fn spec(name: &str, schedule: CronSchedule) -> CronSpec {
        CronSpec {
            name: name.into(),
            schedule,
            function: "jobs:tick".into(),
            args: Value::Object(Default::default()),
        }
    }

    fn id(n: u8) -> DocumentId {
        DocumentId::new(1, [n; 16])
    }

    fn runs(ticks: &[Tick]) -> Vec<(&str, f64)> {
        ticks
            .iter()
            .filter_map(|t| match t {
                Tick::Run { spec, next_run } => Some((spec.name.as_str(), *next_run)),
                Tick::Skip { .. } => None,
            })
            .collect()
    }

    #[test]
    fn an_interval_cron_ticks_once_per_interval_and_never_overlaps_itself() {
        let mut table = CronTable::default();
        let (remember, forget) = table
            .reconcile(
                &[spec("c", CronSchedule::IntervalMs(1000))],
                vec![],
                10_000.0,
            )
            .unwrap();
        assert_eq!(remember[0].next_run, 11_000.0);
        assert!(forget.is_empty());
        assert!(table.due(10_999.0).is_empty());
        let ticks = table.due(11_000.0);
        assert_eq!(runs(&ticks), vec![("c", 12_000.0)]);
        table.started("c", id(1));
        // Its run is still going at the next time: skipped, not queued.
        let ticks = table.due(12_000.0);
        assert_eq!(ticks, vec![Tick::Skip { name: "c".into() }]);
        assert_eq!(table.next_wake(), Some(13_000.0));
        assert!(table.due(12_500.0).is_empty());
        table.finished(id(1));
        assert_eq!(runs(&table.due(13_000.0)), vec![("c", 14_000.0)]);
        assert_eq!(table.next_wake(), Some(14_000.0));
        // A run whose commit failed is due again, not lost.
        table.retry("c", 13_000.0);
        assert_eq!(runs(&table.due(13_100.0)), vec![("c", 14_100.0)]);
    }

    #[test]
    fn runs_missed_while_down_are_made_up_once() {
        let mut table = CronTable::default();
        let stored = StoredCron {
            name: "c".into(),
            schedule: schedule_text(&CronSchedule::IntervalMs(1000)),
            next_run: 11_000.0,
            last_job: Some(id(1)),
        };
        // Down from 10,500 to 60,250: fifty times passed.
        let (remember, _) = table
            .reconcile(
                &[spec("c", CronSchedule::IntervalMs(1000))],
                vec![(stored, false)],
                60_250.0,
            )
            .unwrap();
        assert!(remember.is_empty(), "an unchanged cron keeps its time");
        assert_eq!(runs(&table.due(60_250.0)), vec![("c", 61_250.0)]);
        table.started("c", id(2));
        assert!(runs(&table.due(60_300.0)).is_empty());
    }

    #[test]
    fn a_changed_schedule_starts_over_and_an_undeclared_cron_is_forgotten() {
        let mut table = CronTable::default();
        let stored = |name: &str| {
            (
                StoredCron {
                    name: name.into(),
                    schedule: schedule_text(&CronSchedule::IntervalMs(1000)),
                    next_run: 1.0,
                    last_job: None,
                },
                false,
            )
        };
        let (remember, forget) = table
            .reconcile(
                &[spec("c", CronSchedule::IntervalMs(5000))],
                vec![stored("c"), stored("gone")],
                100.0,
            )
            .unwrap();
        assert_eq!(remember.len(), 1);
        assert_eq!(remember[0].next_run, 5100.0);
        assert_eq!(forget, vec!["gone".to_owned()]);
    }

    #[test]
    fn a_cron_expression_runs_at_its_matching_times() {
        let every_minute = Schedule::parse(&CronSchedule::Expression("* * * * *".into())).unwrap();
        // 2026-01-01T00:00:30Z -> 00:01:00.
        let t = 1_767_225_630_000.0;
        assert_eq!(every_minute.next_after(t), 1_767_225_660_000.0);
        let every_5s = Schedule::parse(&CronSchedule::Expression("*/5 * * * * *".into())).unwrap();
        assert_eq!(every_5s.next_after(t), t + 5000.0);
        let error = Schedule::parse(&CronSchedule::Expression("61 * * * *".into())).unwrap_err();
        assert!(error.contains("\"61 * * * *\""), "{error}");
    }
}
