//! Background and outside work: the scheduler (`ctx.scheduler`, in mutations and actions),
//! actions (`#[action]`: real time and randomness, other functions by path, outbound HTTP,
//! environment variables), HTTP actions (`#[http_action]`) and cron jobs (`#[crons]`).

use crate::db::Id;
use crate::error::Error;
use crate::host;
use crate::value::{from_value, to_value};
use ferrovex_model::abi::{import, CronSchedule, CronSpec, FunctionKind};
use ferrovex_model::{Object, Value};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Arguments as an object value: anything that serializes to a map (`doc!`, a struct, a
/// `BTreeMap`), or `()` for none.
fn args_value(function: &str, args: &impl Serialize) -> Result<Value, Error> {
    match to_value(args) {
        Ok(Value::Object(o)) => Ok(Value::Object(o)),
        Ok(Value::Null) => Ok(Value::Object(Object::new())),
        Ok(other) => Err(Error::new(format!(
            "{function}: arguments must serialize to an object, got {}",
            other.type_name()
        ))),
        Err(e) => Err(Error::new(format!("{function}: arguments: {e}"))),
    }
}

/// Runs functions later: `ctx.scheduler`. From a mutation, what it schedules is part of the
/// mutation's transaction (nothing is scheduled if the mutation fails); from an action, each
/// call commits at once. A scheduled mutation runs exactly once; a scheduled action at most
/// once. Jobs and their states are documents of the `_scheduled_functions` table, which
/// queries can read (and subscribe to) like any table.
pub struct Scheduler {
    _private: (),
}

impl Scheduler {
    pub(crate) fn new() -> Self {
        Scheduler { _private: () }
    }

    /// Runs the mutation or action at `path` with `args` after `delay` (zero: as soon as
    /// possible). Returns the job's id.
    ///
    /// ```no_run
    /// # use ferrovex_sdk::prelude::*;
    /// # use std::time::Duration;
    /// #[mutation]
    /// fn remind(ctx: &mut MutationCtx, text: String) -> Result<Id> {
    ///     ctx.scheduler.run_after(Duration::from_secs(60), "reminders:send", &doc! { "text": text })
    /// }
    /// ```
    pub fn run_after(
        &self,
        delay: Duration,
        path: &str,
        args: &impl Serialize,
    ) -> Result<Id, Error> {
        self.run_at(host::now_ms() + delay.as_secs_f64() * 1000.0, path, args)
    }

    /// Runs the mutation or action at `path` at `time` (milliseconds since the Unix epoch; a
    /// time in the past means as soon as possible). Returns the job's id.
    pub fn run_at(&self, time: f64, path: &str, args: &impl Serialize) -> Result<Id, Error> {
        let mut request = Object::new();
        request.insert("path".into(), path.into());
        request.insert("args".into(), args_value(path, args)?);
        request.insert("at".into(), Value::Float64(time));
        match host::request(import::SCHEDULE, host::import_fn!(schedule), request) {
            Ok(Value::String(id)) => Ok(Id(id)),
            Ok(_) => Err(Error::new("schedule: the host answered without an id")),
            Err((_, message)) => Err(Error::new(message_of(message))),
        }
    }

    /// Cancels a job that has not started; one that runs or has ended is left as it is.
    pub fn cancel(&self, job: &Id) -> Result<(), Error> {
        let mut request = Object::new();
        request.insert("id".into(), job.as_str().into());
        host::request(import::CANCEL_JOB, host::import_fn!(cancel_job), request)
            .map(|_| ())
            .map_err(|(_, message)| Error::new(message_of(message)))
    }
}

fn message_of(value: Value) -> String {
    match value {
        Value::String(message) => message,
        Value::Object(mut o) => match o.remove("message") {
            Some(Value::String(message)) => message,
            _ => "(no message)".into(),
        },
        _ => "(no message)".into(),
    }
}

/// What an action sees: no database of its own (it calls queries and mutations, each a
/// transaction of its own), the real time, real randomness, outbound HTTP and the
/// deployment's environment variables. An action runs at most once: nothing retries it.
pub struct ActionCtx {
    /// The caller's identity (the scheduler's and HTTP actions' calls have none).
    pub auth: crate::ctx::Auth,
    /// Runs functions later.
    pub scheduler: Scheduler,
}

impl ActionCtx {
    pub(crate) fn new() -> Self {
        ActionCtx {
            auth: crate::ctx::Auth::new(),
            scheduler: Scheduler::new(),
        }
    }

    /// The current time in milliseconds since the Unix epoch (not frozen: an action is not
    /// deterministic).
    pub fn now(&self) -> f64 {
        host::now_ms()
    }

    /// A random number from the operating system's generator.
    pub fn random_u64(&self) -> u64 {
        host::random_seed()
    }

    /// The deployment's environment variable `name` (`runtime env set NAME VALUE`).
    pub fn env(&self, name: &str) -> Option<String> {
        let mut request = Object::new();
        request.insert("name".into(), name.into());
        match host::request(import::ENV_VAR, host::import_fn!(env_var), request) {
            Ok(Value::String(value)) => Some(value),
            _ => None,
        }
    }

    /// Runs the query at `path` and returns its result.
    pub fn run_query<T: DeserializeOwned>(
        &self,
        path: &str,
        args: &impl Serialize,
    ) -> Result<T, Error> {
        self.run(FunctionKind::Query, path, args)
    }

    /// Runs the mutation at `path` in a transaction of its own and returns its result; its
    /// error (message and data) comes back as this `Err`.
    pub fn run_mutation<T: DeserializeOwned>(
        &self,
        path: &str,
        args: &impl Serialize,
    ) -> Result<T, Error> {
        self.run(FunctionKind::Mutation, path, args)
    }

    /// Runs the action at `path` and returns its result.
    pub fn run_action<T: DeserializeOwned>(
        &self,
        path: &str,
        args: &impl Serialize,
    ) -> Result<T, Error> {
        self.run(FunctionKind::Action, path, args)
    }

    fn run<T: DeserializeOwned>(
        &self,
        kind: FunctionKind,
        path: &str,
        args: &impl Serialize,
    ) -> Result<T, Error> {
        let mut request = Object::new();
        request.insert("kind".into(), kind.as_str().into());
        request.insert("path".into(), path.into());
        request.insert("args".into(), args_value(path, args)?);
        match host::request(
            import::RUN_FUNCTION,
            host::import_fn!(run_function),
            request,
        ) {
            Ok(value) => from_value(value)
                .map_err(|e| Error::new(format!("{path}: its result does not convert: {e}"))),
            Err((_, Value::Object(mut error))) => {
                let message = match error.remove("message") {
                    Some(Value::String(m)) => m,
                    _ => "(no message)".into(),
                };
                let mut e = Error::new(message);
                if let Some(data) = error.remove("data") {
                    e = e.with_data(crate::value::AnyValue(data));
                }
                Err(e)
            }
            Err((_, message)) => Err(Error::new(message_of(message))),
        }
    }

    /// Sends an HTTP request (through the host, which refuses private addresses unless the
    /// operator allows them, and bounds time, size and redirects). A response of any status
    /// is `Ok`; a request that could not be made or completed is `Err`, naming why.
    ///
    /// ```no_run
    /// # use ferrovex_sdk::prelude::*;
    /// #[action]
    /// fn weather(ctx: &mut ActionCtx, city: String) -> Result<String> {
    ///     let response = ctx.fetch(Fetch::get(format!("https://wttr.in/{city}?format=3")))?;
    ///     response.text()
    /// }
    /// ```
    pub fn fetch(&self, request: Fetch) -> Result<FetchResponse, Error> {
        let mut o = Object::new();
        o.insert("method".into(), request.method.into());
        o.insert("url".into(), request.url.into());
        o.insert(
            "headers".into(),
            Value::Array(
                request
                    .headers
                    .into_iter()
                    .map(|(k, v)| Value::Array(vec![k.into(), v.into()]))
                    .collect(),
            ),
        );
        o.insert(
            "body".into(),
            request.body.map(Value::Bytes).unwrap_or(Value::Null),
        );
        o.insert(
            "timeoutMs".into(),
            request
                .timeout
                .map(|t| Value::Int64(t.as_millis().max(1) as i64))
                .unwrap_or(Value::Null),
        );
        match host::request(import::FETCH, host::import_fn!(fetch), o) {
            Ok(value) => from_value(value)
                .map_err(|e| Error::new(format!("fetch: a malformed response from the host: {e}"))),
            Err((_, message)) => Err(Error::new(message_of(message))),
        }
    }
}

/// An outbound request: `Fetch::get(url)`, `Fetch::post(url).json(&body)?`.
#[derive(Clone, Debug)]
pub struct Fetch {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
}

impl Fetch {
    /// A request with any method (`"PUT"`, `"DELETE"`...).
    pub fn new(method: &str, url: impl Into<String>) -> Fetch {
        Fetch {
            method: method.to_owned(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Fetch {
        Fetch::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Fetch {
        Fetch::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Fetch {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The request's body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Fetch {
        self.body = Some(body.into());
        self
    }

    /// A JSON body, with its `Content-Type`.
    pub fn json(self, body: &impl Serialize) -> Result<Fetch, Error> {
        let text = serde_json::to_vec(body).map_err(|e| Error::new(format!("fetch: {e}")))?;
        Ok(self.header("content-type", "application/json").body(text))
    }

    /// Gives up sooner than the host's limit (`MAX_FETCH_MILLIS`).
    pub fn timeout(mut self, timeout: Duration) -> Fetch {
        self.timeout = Some(timeout);
        self
    }
}

/// An outbound request's response.
#[derive(Clone, Debug, Deserialize)]
pub struct FetchResponse {
    /// The HTTP status.
    pub status: u16,
    /// `(name, value)`, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: crate::Bytes,
    /// Where it came from, after redirects.
    pub url: String,
}

impl FetchResponse {
    /// True for a 2xx status.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<String, Error> {
        String::from_utf8(self.body.0.clone())
            .map_err(|_| Error::new(format!("fetch {}: the body is not UTF-8", self.url)))
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body.0).map_err(|e| {
            Error::new(format!(
                "fetch {}: the body is not the JSON expected: {e}",
                self.url
            ))
        })
    }
}

/// The request an HTTP action receives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpRequest {
    /// `GET`, `POST`...
    pub method: String,
    /// The whole URL, as the server saw it.
    pub url: String,
    /// The path under the server's `/http` prefix, as the route names it.
    pub path: String,
    /// The query string, without `?` (empty when none).
    pub query: String,
    /// `(name, value)`, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The whole body (at most `MAX_HTTP_ACTION_BODY_BYTES`).
    pub body: crate::Bytes,
}

impl HttpRequest {
    /// The first header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<String, Error> {
        String::from_utf8(self.body.0.clone())
            .map_err(|_| Error::new("the request body is not UTF-8"))
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body.0)
            .map_err(|e| Error::new(format!("the request body is not the JSON expected: {e}")))
    }
}

/// What an HTTP action answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: crate::Bytes,
}

impl HttpResponse {
    /// An empty response with this status.
    pub fn new(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: crate::Bytes(Vec::new()),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, text: impl Into<String>) -> HttpResponse {
        HttpResponse::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(text.into().into_bytes())
    }

    /// An `application/json` response.
    pub fn json(status: u16, body: &impl Serialize) -> Result<HttpResponse, Error> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::new(e.to_string()))?;
        Ok(HttpResponse::new(status)
            .header("content-type", "application/json")
            .body(bytes))
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> HttpResponse {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The response's body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> HttpResponse {
        self.body = crate::Bytes(body.into());
        self
    }
}

/// The app's cron jobs, returned by its `#[crons]` function. Each runs a mutation or action
/// (internal ones too) with fixed arguments. At most one run of a cron at a time: a time that
/// comes while the last run is still going is skipped. Times missed while the server was
/// down are made up by one run when it is back.
///
/// ```no_run
/// # use ferrovex_sdk::prelude::*;
/// # use std::time::Duration;
/// #[crons]
/// fn crons() -> Crons {
///     Crons::new()
///         .interval("clear presence", Duration::from_secs(60), "presence:clear", &doc! {})
///         .cron("nightly digest", "0 3 * * *", "digest:send", &doc! {})
/// }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Crons {
    jobs: Vec<CronSpec>,
}

impl Crons {
    /// No cron jobs yet.
    pub fn new() -> Crons {
        Crons::default()
    }

    /// Runs `path` every `interval` (at least one millisecond), first one interval after the
    /// deploy that declares it.
    pub fn interval(
        mut self,
        name: &str,
        interval: Duration,
        path: &str,
        args: &impl Serialize,
    ) -> Crons {
        self.push(
            name,
            CronSchedule::IntervalMs(interval.as_millis().max(1) as u64),
            path,
            args,
        );
        self
    }

    /// Runs `path` at the times of a cron expression (UTC): five fields, `minute hour
    /// day-of-month month day-of-week`, or six with seconds first.
    pub fn cron(
        mut self,
        name: &str,
        expression: &str,
        path: &str,
        args: &impl Serialize,
    ) -> Crons {
        self.push(
            name,
            CronSchedule::Expression(expression.to_owned()),
            path,
            args,
        );
        self
    }

    fn push(&mut self, name: &str, schedule: CronSchedule, path: &str, args: &impl Serialize) {
        let args = args_value(path, args).unwrap_or_else(|e| panic!("cron {name:?}: {e}"));
        self.jobs.push(CronSpec {
            name: name.to_owned(),
            schedule,
            function: path.to_owned(),
            args,
        });
    }

    pub(crate) fn into_abi(self) -> ferrovex_model::abi::Crons {
        ferrovex_model::abi::Crons { jobs: self.jobs }
    }
}
