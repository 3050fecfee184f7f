//! A deterministic simulation of the sync engine (docs/PROTOCOL.md section 3).
//!
//! A seed drives everything: clients subscribe to channels of the `channels` guest (and to a
//! query whose arguments are wrong), unsubscribe, send mutations (some with bad arguments),
//! send bad frames, disconnect and reconnect (re-sending their query set and every unanswered
//! mutation, as the clients do); the server reads frames, runs mutations, answers them, runs
//! refresh rounds, sends transitions, and is restarted over the same files. One step at a time,
//! chosen by the seeded generator, on one thread ([`crate::server`]), so a failing seed replays
//! exactly.
//!
//! Every frame a client receives is parsed from its JSON, as a real client would, and checked
//! as it arrives where the check needs no more than that client's history; what needs the
//! whole history (the database at a timestamp) is checked at the end, once every mutation has
//! been answered:
//!
//! 1. One snapshot per transition: after applying a transition, every query the client holds
//!    is the query's result in the database at `endVersion.ts`.
//! 2. Versions chain: each `startVersion` is the previous `endVersion` of the connection, the
//!    first is `{querySet: 0, identity: 0, ts: 0}`; timestamps never go back on a connection.
//! 3. Query-set changes are acknowledged: after a transition to query-set version N the client
//!    holds a result for exactly the queries of its set at N (added ones have their first
//!    result, removed ones were announced with `QueryRemoved`); a `QueryRemoved` names a query
//!    the client held.
//! 4. Nothing missed, never repeated: (1) at each transition and at the end, once the server
//!    is quiet, every client holds the current result of every query; a `QueryUpdated` never
//!    carries the value the client already holds.
//! 5. Read your writes: after a successful `MutationResponse` at `ts`, a transition with
//!    `endVersion.ts >= ts` comes on that connection (checked when the server is quiet).
//! 6. Exactly once and in order: a request is answered once per connection, a re-sent one
//!    gets its first outcome again; each message is in the database once per successful
//!    mutation, and never for a failed one; one client's commits are in request order.
//! 7. Durable before visible: after a restart the store holds every commit a client saw.
//! 8. Errors are explicit: a bad frame gets a `FatalError` with a reason, and the connection
//!    ends; a function's error is `success: false` with a message that names the function.

use crate::server::{channels_wasm, Server};
use ferrovex_model::json::to_json;
use ferrovex_model::{obj, Value};
use ferrovex_runtime::store::{IndexRange, Order, BY_CREATION_TIME};
use ferrovex_runtime::sync::protocol::{
    parse_server_message, Args, ClientMessage, QueryModification, QuerySetModification,
    ServerMessage,
};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, BTreeSet};

/// The knobs of a run.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    pub clients: usize,
    pub steps: usize,
    /// Channels the clients share (more gives queries untouched by a commit).
    pub channels: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            clients: 3,
            steps: 300,
            channels: 3,
        }
    }
}

/// What a run did, for the report of a long run.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimStats {
    pub transitions: usize,
    pub commits: usize,
    pub failed_mutations: usize,
    pub restarts: usize,
    pub reconnects: usize,
    pub fatal_errors: usize,
    /// A digest of every event of the run (steps, frames sent and received), with what
    /// depends on the clock left out: commit timestamps and creation times (taken from the
    /// wall clock) and the document ids drawn from them. Two runs of one seed have the same.
    pub digest: u64,
}

/// SplitMix64: small, seedable, the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// What a subscribed query asks for: a channel, or arguments the function rejects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Query {
    Channel(String),
    BadArgs,
}

/// What a client holds for a query.
#[derive(Clone, Debug, PartialEq)]
enum Held {
    /// The bodies of the messages, newest first.
    Messages(Vec<String>),
    Failed(String),
}

/// A result to check once the history is complete: `held` for `query` at `ts`.
struct Observation {
    client: usize,
    ts: u64,
    query: Query,
    held: Held,
}

struct Mutation {
    channel: String,
    body: String,
    bad_args: bool,
}

struct Connection {
    id: u64,
    /// The query set at each version sent on this connection (index = version).
    sets: Vec<BTreeMap<u64, Query>>,
    held: BTreeMap<u64, Held>,
    last_end: (u64, u64),
    /// Successful responses on this connection not yet followed by a transition at their ts.
    awaiting: BTreeSet<u64>,
    /// Requests answered on this connection.
    answered: BTreeSet<u64>,
    /// A bad frame was sent: a `FatalError` must come, and nothing after it.
    sent_bad_frame: bool,
    ended: bool,
}

struct Client {
    session_id: String,
    connection_count: u64,
    connection: Option<Connection>,
    /// The client's query set (kept across reconnects).
    queries: BTreeMap<u64, Query>,
    next_query_id: u64,
    next_request_id: u64,
    /// Sent, not yet answered: re-sent after every reconnect.
    unanswered: BTreeMap<u64, Mutation>,
    /// Every outcome received: the commit ts of a success, `None` for a failure.
    outcomes: BTreeMap<u64, Option<u64>>,
    max_observed_ts: u64,
}

struct World {
    config: SimConfig,
    rng: Rng,
    dir: tempfile::TempDir,
    wasm: Vec<u8>,
    server: Option<Server>,
    clients: Vec<Client>,
    /// connection id to client index.
    owners: BTreeMap<u64, usize>,
    /// Every commit a response reported: ts to (channel, body).
    commits: BTreeMap<u64, (String, String)>,
    observations: Vec<Observation>,
    stats: SimStats,
    /// The last events, for the report of a failure.
    trace: Vec<String>,
    /// The digest of every event as it happened (the trace keeps long events cut short, and
    /// where the cut falls depends on the clock's digits).
    digest: u64,
}

/// Runs one seed; `Err` names the violated guarantee, with the seed's recent events.
pub fn run_seed(seed: u64, config: SimConfig) -> Result<SimStats, String> {
    let wasm = channels_wasm();
    let dir = crate::scratch_dir();
    let server = Server::start(&dir.path().join("data"), &wasm);
    let clients = (0..config.clients)
        .map(|i| Client {
            session_id: format!("session-{seed}-{i}"),
            connection_count: 0,
            connection: None,
            queries: BTreeMap::new(),
            next_query_id: 1,
            next_request_id: 1,
            unanswered: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            max_observed_ts: 0,
        })
        .collect();
    let mut world = World {
        config,
        rng: Rng::new(seed),
        dir,
        wasm,
        server: Some(server),
        clients,
        owners: BTreeMap::new(),
        commits: BTreeMap::new(),
        observations: Vec::new(),
        stats: SimStats::default(),
        trace: Vec::new(),
        digest: DIGEST_START,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run()));
    let outcome = match result {
        Ok(Ok(())) => Ok(SimStats {
            digest: world.digest,
            ..world.stats
        }),
        Ok(Err(violation)) => Err(violation),
        Err(panic) => Err(format!(
            "panic: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    };
    outcome.map_err(|violation| {
        let recent = world.trace.len().saturating_sub(40);
        let events: Vec<&str> = world.trace[recent..]
            .iter()
            .map(|e| &e[..e.floor_char_boundary(300)])
            .collect();
        format!(
            "seed {seed}: {violation}\nlast events:\n  {}",
            events.join("\n  ")
        )
    })
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

impl World {
    fn server(&mut self) -> &mut Server {
        self.server.as_mut().expect("the server runs")
    }

    fn note(&mut self, mut event: String) {
        self.digest = digest(self.digest, &event);
        if event.len() > 4000 {
            let mut cut = 400;
            while !event.is_char_boundary(cut) {
                cut -= 1;
            }
            event.truncate(cut);
            event.push_str("...");
        }
        self.trace.push(event);
    }

    fn run(&mut self) -> Result<(), String> {
        for _ in 0..self.config.steps {
            self.step()?;
        }
        self.quiesce()?;
        self.final_checks()
    }

    fn step(&mut self) -> Result<(), String> {
        let roll = self.rng.below(100);
        let client = self.rng.below(self.config.clients);
        match roll {
            0..=29 => self.client_action(client),
            30..=44 => {
                self.server_read(client);
                Ok(())
            }
            45..=54 => {
                self.server_mutate(client);
                Ok(())
            }
            55..=64 => {
                // Only when one was asked for, as the server's refresh task: a transition
                // that needs a round nobody requested must show up as a missed one.
                if self.server().refresh_if_requested() {
                    self.note("refresh".into());
                }
                Ok(())
            }
            65..=74 => {
                self.server_send(client);
                Ok(())
            }
            75..=97 => self.deliver(client),
            _ => {
                if self.rng.chance(30) {
                    self.restart()
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Something one client does.
    fn client_action(&mut self, c: usize) -> Result<(), String> {
        if self.clients[c]
            .connection
            .as_ref()
            .is_none_or(|conn| conn.ended)
        {
            self.connect(c);
            return Ok(());
        }
        let roll = self.rng.below(100);
        match roll {
            0..=24 => {
                let query = if self.rng.chance(10) {
                    Query::BadArgs
                } else {
                    Query::Channel(format!("ch{}", self.rng.below(self.config.channels)))
                };
                let client = &mut self.clients[c];
                let id = client.next_query_id;
                client.next_query_id += 1;
                client.queries.insert(id, query.clone());
                let add = add_modification(id, &query);
                self.modify_query_set(c, vec![add], None);
            }
            25..=34 => {
                let ids: Vec<u64> = self.clients[c].queries.keys().copied().collect();
                if ids.is_empty() {
                    return Ok(());
                }
                let id = ids[self.rng.below(ids.len())];
                self.clients[c].queries.remove(&id);
                self.modify_query_set(c, vec![QuerySetModification::Remove { query_id: id }], None);
            }
            35..=84 => {
                let bad_args = self.rng.chance(10);
                let channel = format!("ch{}", self.rng.below(self.config.channels));
                let client = &mut self.clients[c];
                let request_id = client.next_request_id;
                client.next_request_id += 1;
                let mutation = Mutation {
                    body: format!("{}/{request_id}", client.session_id),
                    channel,
                    bad_args,
                };
                let frame = mutation_frame(request_id, &mutation);
                client.unanswered.insert(request_id, mutation);
                self.send(c, frame);
            }
            85..=93 => {
                self.note(format!("client {c} disconnects"));
                self.disconnect(c);
            }
            _ => {
                // A frame the server must refuse with a FatalError.
                let frame = match self.rng.below(4) {
                    0 => "not json".to_owned(),
                    1 => json!({"type": "Subscribe"}).to_string(),
                    // A timestamp that is not 8 bytes of base64.
                    2 => json!({"type": "Connect", "sessionId": "x", "connectionCount": 0, "maxObservedTimestamp": "AAAA"}).to_string(),
                    _ => {
                        // A baseVersion the server does not hold.
                        let version = self.clients[c].connection.as_ref().map_or(0, |conn| conn.sets.len() as u64);
                        self.modify_query_set(c, vec![], Some(version + 5));
                        return Ok(());
                    }
                };
                self.clients[c]
                    .connection
                    .as_mut()
                    .expect("connected")
                    .sent_bad_frame = true;
                self.send(c, frame);
            }
        }
        Ok(())
    }

    fn connect(&mut self, c: usize) {
        if self.clients[c].connection.is_some() {
            self.disconnect(c);
        }
        let id = self.server().accept();
        self.owners.insert(id, c);
        self.stats.reconnects += 1;
        let client = &mut self.clients[c];
        let connect = ClientMessage::Connect {
            session_id: client.session_id.clone(),
            connection_count: client.connection_count,
            last_close_reason: None,
            max_observed_timestamp: Some(client.max_observed_ts),
        }
        .to_json();
        client.connection_count += 1;
        client.connection = Some(Connection {
            id,
            sets: vec![BTreeMap::new()],
            held: BTreeMap::new(),
            last_end: (0, 0),
            awaiting: BTreeSet::new(),
            answered: BTreeSet::new(),
            sent_bad_frame: false,
            ended: false,
        });
        self.note(format!("client {c} connects as {id}"));
        self.send(c, connect.to_string());
        // The whole query set again, then every unanswered mutation, in request order.
        let adds: Vec<QuerySetModification> = self.clients[c]
            .queries
            .iter()
            .map(|(id, q)| add_modification(*id, q))
            .collect();
        if !adds.is_empty() {
            self.modify_query_set(c, adds, None);
        }
        let resend: Vec<String> = self.clients[c]
            .unanswered
            .iter()
            .map(|(id, m)| mutation_frame(*id, m))
            .collect();
        for frame in resend {
            self.send(c, frame);
        }
    }

    fn disconnect(&mut self, c: usize) {
        if let Some(conn) = self.clients[c].connection.take() {
            self.server().close(conn.id);
        }
    }

    fn modify_query_set(
        &mut self,
        c: usize,
        modifications: Vec<QuerySetModification>,
        bad_base: Option<u64>,
    ) {
        let client = &mut self.clients[c];
        let set = client.queries.clone();
        let conn = client.connection.as_mut().expect("connected");
        let base = conn.sets.len() as u64 - 1;
        let frame = ClientMessage::ModifyQuerySet {
            base_version: bad_base.unwrap_or(base),
            new_version: bad_base.unwrap_or(base) + 1,
            modifications,
        }
        .to_json();
        if bad_base.is_some() {
            conn.sent_bad_frame = true;
        } else {
            conn.sets.push(set);
        }
        self.send(c, frame.to_string());
    }

    fn send(&mut self, c: usize, frame: String) {
        let id = self.clients[c].connection.as_ref().expect("connected").id;
        self.note(format!("client {c} sends {frame}"));
        if let Some(session) = self.server().sessions.get_mut(&id) {
            session.inbox.push_back(frame);
        }
    }

    fn session_of(&mut self, c: usize) -> Option<u64> {
        let id = self.clients[c].connection.as_ref()?.id;
        self.server().sessions.contains_key(&id).then_some(id)
    }

    fn server_read(&mut self, c: usize) -> bool {
        let Some(id) = self.session_of(c) else {
            return false;
        };
        let server = self.server.as_mut().expect("runs");
        let session = server.sessions.get_mut(&id).expect("present");
        session.read_one()
    }

    /// Runs the next mutation, or answers the one that ran.
    fn server_mutate(&mut self, c: usize) -> bool {
        let Some(id) = self.session_of(c) else {
            return false;
        };
        let server = self.server.as_mut().expect("runs");
        let session = server.sessions.get_mut(&id).expect("present");
        session.answer() || session.run_one()
    }

    fn server_send(&mut self, c: usize) -> bool {
        let Some(id) = self.session_of(c) else {
            return false;
        };
        let server = self.server.as_mut().expect("runs");
        let session = server.sessions.get_mut(&id).expect("present");
        session.send_transition()
    }

    /// Delivers the oldest frame the server has for client `c`.
    fn deliver(&mut self, c: usize) -> Result<(), String> {
        let Some(id) = self.session_of(c) else {
            return Ok(());
        };
        let frame = {
            let server = self.server.as_mut().expect("runs");
            let session = server.sessions.get_mut(&id).expect("present");
            let Some(frame) = session.outbox.pop_front() else {
                // A session that ended with a FatalError closes once the client has read it.
                if session.fatal.is_some() {
                    server.close(id);
                }
                return Ok(());
            };
            frame
        };
        self.note(format!("client {c} receives {frame}"));
        self.receive(c, &frame)
    }

    fn receive(&mut self, c: usize, frame: &str) -> Result<(), String> {
        let message = parse_server_message(frame)
            .map_err(|e| format!("the server sent a frame that does not parse: {e}"))?;
        let client = &mut self.clients[c];
        let conn = client.connection.as_mut().expect("connected");
        ensure!(!conn.ended, "a frame after FatalError: {frame}");
        match message {
            ServerMessage::Transition {
                start,
                end,
                modifications,
            } => {
                self.stats.transitions += 1;
                ensure!(
                    start.identity == 0 && end.identity == 0,
                    "guarantee 2: the identity version moved without an Authenticate: {frame}"
                );
                let (start, end) = ((start.query_set, start.ts), (end.query_set, end.ts));
                ensure!(
                    start == conn.last_end,
                    "guarantee 2: startVersion {start:?} is not the previous endVersion {:?}",
                    conn.last_end
                );
                ensure!(
                    end.0 >= start.0 && end.1 >= start.1,
                    "guarantee 2: the version went back from {start:?} to {end:?}"
                );
                ensure!(
                    (end.0 as usize) < conn.sets.len(),
                    "a transition to query-set version {} the client never sent",
                    end.0
                );
                let set = conn.sets[end.0 as usize].clone();
                for m in modifications {
                    match m {
                        QueryModification::Removed { query_id } => {
                            // Held, or added and removed again since the last transition
                            // (then the client never saw it, and ignores the removal).
                            let was_in_set = conn.sets[start.0 as usize..=end.0 as usize]
                                .iter()
                                .any(|s| s.contains_key(&query_id));
                            ensure!(
                                conn.held.remove(&query_id).is_some() || was_in_set,
                                "guarantee 3: QueryRemoved of query {query_id}, which the client never had"
                            );
                            ensure!(
                                !set.contains_key(&query_id),
                                "guarantee 3: QueryRemoved of query {query_id}, which is in query set {}",
                                end.0
                            );
                        }
                        QueryModification::Updated {
                            query_id, value, ..
                        } => {
                            let held = Held::Messages(bodies(&to_json(&value))?);
                            ensure!(
                                set.contains_key(&query_id),
                                "QueryUpdated of query {query_id}, not in query set {}",
                                end.0
                            );
                            ensure!(
                                conn.held.get(&query_id) != Some(&held),
                                "guarantee 4: QueryUpdated repeats the result query {query_id} holds"
                            );
                            conn.held.insert(query_id, held);
                        }
                        QueryModification::Failed {
                            query_id, error, ..
                        } => {
                            let error = error.message;
                            ensure!(
                                error.contains("channels:list"),
                                "guarantee 8: a query error that does not name the function: {error}"
                            );
                            ensure!(
                                set.contains_key(&query_id),
                                "QueryFailed of query {query_id}, not in query set {}",
                                end.0
                            );
                            let held = Held::Failed(error);
                            ensure!(
                                conn.held.get(&query_id) != Some(&held),
                                "guarantee 4: QueryFailed repeats the result query {query_id} holds"
                            );
                            conn.held.insert(query_id, held);
                        }
                        QueryModification::Prepared { .. } => {
                            return Err("a prepared modification parsed from a frame".into())
                        }
                    }
                }
                let held_ids: BTreeSet<u64> = conn.held.keys().copied().collect();
                let set_ids: BTreeSet<u64> = set.keys().copied().collect();
                ensure!(
                    held_ids == set_ids,
                    "guarantee 3: at query-set version {} the client holds results for {held_ids:?}, its set is {set_ids:?}",
                    end.0
                );
                conn.last_end = end;
                conn.awaiting.retain(|ts| *ts > end.1);
                client.max_observed_ts = client.max_observed_ts.max(end.1);
                for (query_id, held) in &conn.held {
                    self.observations.push(Observation {
                        client: c,
                        ts: end.1,
                        query: set[query_id].clone(),
                        held: held.clone(),
                    });
                }
            }
            ServerMessage::MutationResponse {
                request_id,
                outcome,
                ..
            } => {
                ensure!(
                    conn.answered.insert(request_id),
                    "guarantee 6: request {request_id} answered twice on one connection"
                );
                let Some(mutation) = client.unanswered.remove(&request_id) else {
                    return Err(format!(
                        "guarantee 6: an answer to request {request_id}, which is not waiting for one"
                    ));
                };
                let outcome = if let Ok((_, ts)) = outcome {
                    ensure!(
                        !mutation.bad_args,
                        "a mutation with bad arguments succeeded"
                    );
                    conn.awaiting.insert(ts);
                    client.max_observed_ts = client.max_observed_ts.max(ts);
                    Some(ts)
                } else {
                    let error = outcome.err().map(|e| e.message).unwrap_or_default();
                    ensure!(
                        error.contains("channels:send"),
                        "guarantee 8: a mutation error that does not name the function: {error}"
                    );
                    ensure!(mutation.bad_args, "a valid mutation failed: {error}");
                    None
                };
                if let Some(previous) = client.outcomes.insert(request_id, outcome) {
                    ensure!(
                        previous == outcome,
                        "guarantee 6: request {request_id} answered {previous:?}, then {outcome:?}"
                    );
                }
                // Exactly once, in order: a later request of this client committed later.
                if let Some(ts) = outcome {
                    let earlier_later = client
                        .outcomes
                        .range(request_id + 1..)
                        .any(|(_, o)| o.is_some_and(|t| t < ts))
                        || client
                            .outcomes
                            .range(..request_id)
                            .any(|(_, o)| o.is_some_and(|t| t > ts));
                    ensure!(
                        !earlier_later,
                        "guarantee 6: request {request_id} committed out of request order"
                    );
                    match self
                        .commits
                        .insert(ts, (mutation.channel.clone(), mutation.body.clone()))
                    {
                        None => self.stats.commits += 1,
                        Some(other) => ensure!(
                            other == (mutation.channel, mutation.body),
                            "two mutations report commit ts {ts}"
                        ),
                    }
                } else {
                    self.stats.failed_mutations += 1;
                }
            }
            ServerMessage::FatalError { error } => {
                self.stats.fatal_errors += 1;
                ensure!(
                    !error.is_empty(),
                    "guarantee 8: a FatalError without a reason"
                );
                ensure!(
                    conn.sent_bad_frame,
                    "guarantee 8: a FatalError for good frames: {error}"
                );
                conn.ended = true;
            }
            ServerMessage::Ping => {}
            other => return Err(format!("an unexpected server message: {other:?}")),
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), String> {
        self.note("server restarts".into());
        self.stats.restarts += 1;
        for c in 0..self.clients.len() {
            self.clients[c].connection = None;
        }
        self.server.take().expect("runs").stop();
        let server = Server::start(&self.dir.path().join("data"), &self.wasm);
        // Guarantee 7: what any client saw was durable.
        let latest = server.store.latest_ts();
        for (c, client) in self.clients.iter().enumerate() {
            ensure!(
                client.max_observed_ts <= latest,
                "guarantee 7: client {c} saw ts {}, the store restarted at {latest}",
                client.max_observed_ts
            );
        }
        self.server = Some(server);
        Ok(())
    }

    /// Lets everything settle: clients reconnect, the server reads, runs, answers, refreshes
    /// and sends until nothing is left to do.
    fn quiesce(&mut self) -> Result<(), String> {
        self.note("quiesce".into());
        for round in 0.. {
            ensure!(round < 10_000, "the server never settles");
            let mut busy = false;
            for c in 0..self.clients.len() {
                let conn = self.clients[c].connection.as_ref();
                let closed = conn.is_none_or(|conn| {
                    conn.ended
                        || !self
                            .server
                            .as_ref()
                            .expect("runs")
                            .sessions
                            .contains_key(&conn.id)
                });
                if closed {
                    self.connect(c);
                    busy = true;
                }
                while self.server_read(c) {
                    busy = true;
                }
                while self.server_mutate(c) {
                    busy = true;
                }
            }
            busy |= self.server().refresh_if_requested();
            for c in 0..self.clients.len() {
                busy |= self.server_send(c);
                while let Some(id) = self.session_of(c) {
                    let pending = !self.server().sessions[&id].outbox.is_empty();
                    if !pending {
                        break;
                    }
                    busy = true;
                    self.deliver(c)?;
                }
            }
            if !busy {
                break;
            }
        }
        Ok(())
    }

    fn final_checks(&mut self) -> Result<(), String> {
        // Everything sent was answered (re-sent after every reconnect until it was).
        for (c, client) in self.clients.iter().enumerate() {
            ensure!(
                client.unanswered.is_empty(),
                "client {c} never got an answer to requests {:?}",
                client.unanswered.keys().collect::<Vec<_>>()
            );
            let conn = client.connection.as_ref().expect("connected");
            ensure!(
                conn.awaiting.is_empty(),
                "guarantee 5: client {c} got no transition at or after its commits {:?}",
                conn.awaiting
            );
        }
        // Exactly once: the database holds each successful mutation's message once.
        let store = self.server.as_ref().expect("runs").store.clone();
        let mut tx = store.begin_read_only();
        let stored = tx
            .query(
                "messages",
                BY_CREATION_TIME,
                &IndexRange::all(),
                Order::Asc,
                1_000_000,
            )
            .map_err(|e| format!("reading the messages: {e}"))?;
        let stored_bodies: Vec<String> = stored
            .iter()
            .map(|d| d.fields["body"].as_str().unwrap_or_default().to_owned())
            .collect();
        let reported: Vec<String> = self.commits.values().map(|(_, b)| b.clone()).collect();
        ensure!(
            stored_bodies == reported,
            "guarantee 6: the database holds {stored_bodies:?}, the answers reported {reported:?} (in commit order)"
        );
        // Nothing missed: every client now holds the current result of every query.
        let latest = store.latest_ts();
        for (c, client) in self.clients.iter().enumerate() {
            let conn = client.connection.as_ref().expect("connected");
            let set = conn.sets.last().expect("one set at least");
            ensure!(
                conn.last_end.0 as usize == conn.sets.len() - 1,
                "guarantee 3: client {c} is at query-set version {}, it sent {}",
                conn.last_end.0,
                conn.sets.len() - 1
            );
            for (query_id, query) in set {
                let expected = self.expected(query, latest);
                let held = conn.held.get(query_id);
                ensure!(
                    held.is_some_and(|h| self.matches(h, &expected)),
                    "guarantee 4: once quiet, client {c} holds {held:?} for query {query_id} ({query:?}), the database has {expected:?}"
                );
            }
        }
        // One snapshot per transition: every result held after every transition.
        for o in &self.observations {
            let expected = self.expected(&o.query, o.ts);
            ensure!(
                self.matches(&o.held, &expected),
                "guarantee 1: client {} held {:?} for {:?} at ts {}, the database had {:?}",
                o.client,
                o.held,
                o.query,
                o.ts,
                expected
            );
        }
        Ok(())
    }

    /// The query's result in the database at `ts`, from the committed history.
    fn expected(&self, query: &Query, ts: u64) -> Option<Vec<String>> {
        match query {
            Query::BadArgs => None,
            Query::Channel(channel) => Some(
                self.commits
                    .range(..=ts)
                    .rev()
                    .filter(|(_, (ch, _))| ch == channel)
                    .take(10)
                    .map(|(_, (_, body))| body.clone())
                    .collect(),
            ),
        }
    }

    fn matches(&self, held: &Held, expected: &Option<Vec<String>>) -> bool {
        match (held, expected) {
            (Held::Messages(got), Some(want)) => got == want,
            (Held::Failed(_), None) => true,
            _ => false,
        }
    }
}

fn add_modification(id: u64, query: &Query) -> QuerySetModification {
    let args = match query {
        Query::Channel(channel) => obj! { "channel" => channel.as_str() },
        Query::BadArgs => obj! { "channel" => 5.0 },
    };
    QuerySetModification::Add {
        query_id: id,
        udf_path: "channels:list".into(),
        args: Args::from_value(&Value::Object(args)),
        journal: None,
    }
}

fn mutation_frame(request_id: u64, m: &Mutation) -> String {
    let mut args = obj! { "channel" => m.channel.as_str() };
    if !m.bad_args {
        args.insert("body".into(), Value::from(m.body.as_str()));
    }
    ClientMessage::Mutation {
        request_id,
        udf_path: "channels:send".into(),
        args: Args::from_value(&Value::Object(args)),
    }
    .to_json()
    .to_string()
}

fn bodies(value: &Json) -> Result<Vec<String>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("a list result that is not an array: {value}"))?
        .iter()
        .map(|doc| {
            doc["body"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("a message without body: {doc}"))
        })
        .collect()
}

/// FNV-1a over one more event, each long run of digits, dots and lowercase letters (a timestamp,
/// a creation time, a document id) and each 8-byte base64 value (a timestamp on the wire)
/// counted as one `#`.
fn digest(mut hash: u64, event: &str) -> u64 {
    let mut feed = |b: u8| {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    };
    let bytes = event.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if is_base64_of_8_bytes(&bytes[i..]) {
            feed(b'#');
            i += 12;
            continue;
        }
        let run = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || **b == b'.')
            .count();
        if run >= 10 {
            feed(b'#');
            i += run;
        } else {
            let end = i + run.max(1);
            bytes[i..end].iter().for_each(|b| feed(*b));
            i = end;
        }
    }
    feed(b'\n');
    hash
}

/// FNV-1a's offset basis.
const DIGEST_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Whether `bytes` starts with the base64 of 8 bytes: 11 characters of the alphabet and `=`.
fn is_base64_of_8_bytes(bytes: &[u8]) -> bool {
    bytes.len() >= 12
        && bytes[..11]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        && bytes[11] == b'='
}
