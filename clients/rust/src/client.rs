//! The public handles: [`Client`], its builder, and [`Subscription`].

use crate::args::IntoArgs;
use crate::error::{Error, FunctionError};
use crate::util::{new_session_id, sync_url};
use crate::worker::{open_socket, Command, Options, QueryResult, Worker};
use ferrovex_model::Value;
use futures_util::Stream;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// A connection to a runtime server's sync endpoint, kept open by a background task.
///
/// Cheap to clone (clones share one connection). The connection closes when the last clone
/// is dropped; subscriptions then end and calls in progress fail with [`Error::Closed`].
///
/// When the connection drops the client reconnects by itself, with capped exponential
/// backoff and jitter: it re-subscribes every query and re-sends every mutation the server
/// has not answered, under the same ids, so the server applies each exactly once.
///
/// ```no_run
/// use futures_util::StreamExt;
/// use ferrovex_client::{obj, Client};
///
/// # async fn example() -> Result<(), ferrovex_client::Error> {
/// let client = Client::connect("http://127.0.0.1:3210").await?;
/// let mut messages = client.subscribe("chat:get_messages", ())?;
/// client
///     .mutation("chat:send_message", obj! { "user" => "ada", "body" => "hi" })
///     .await?;
/// // The mutation is answered once this client shows its write.
/// println!("{:?}", messages.current());
/// while let Some(result) = messages.next().await {
///     println!("messages now: {:?}", result);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    session_id: String,
    next_query_id: AtomicU64,
    status: watch::Receiver<ConnectionStatus>,
}

/// Where the connection stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStatus {
    /// Whether a connection is open now.
    pub connected: bool,
    /// How many connections have been opened (1 for the first; each reconnect adds one).
    pub connection_count: u64,
    /// Why the last connection, or the last attempt, failed.
    pub last_error: Option<String>,
}

/// Settings for [`Client`]; start with [`Client::builder`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    url: String,
    options: Options,
}

impl ClientBuilder {
    /// The delay before the first reconnect attempt (default 100 ms); it doubles with every
    /// failed attempt, up to [`ClientBuilder::reconnect_max_delay`].
    pub fn reconnect_initial_delay(mut self, delay: Duration) -> Self {
        self.options.reconnect_initial_delay = delay;
        self
    }

    /// The longest delay between reconnect attempts (default 10 s).
    pub fn reconnect_max_delay(mut self, delay: Duration) -> Self {
        self.options.reconnect_max_delay = delay;
        self
    }

    /// How long one connection attempt (TCP and WebSocket handshake) may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// After this long without any frame from the server, the connection counts as dead and
    /// the client reconnects (default 60 s; the server sends `Ping` every 15 s). `None`
    /// never gives up on a quiet connection.
    pub fn silence_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.options.silence_timeout = timeout;
        self
    }

    /// Opens the first connection and starts the background task. Fails if the URL is not
    /// usable or the first connection cannot be made; later drops are retried forever.
    pub async fn connect(self) -> Result<Client, Error> {
        let url = sync_url(&self.url).map_err(Error::InvalidUrl)?;
        let socket = open_socket(&url, self.options.connect_timeout)
            .await
            .map_err(Error::Connect)?;
        let session_id = new_session_id();
        let (commands, receiver) = mpsc::unbounded_channel();
        let (status_sender, status) = watch::channel(ConnectionStatus::default());
        let worker = Worker::new(
            url,
            session_id.clone(),
            self.options,
            receiver,
            status_sender,
        );
        tokio::spawn(worker.run(socket));
        Ok(Client {
            inner: Arc::new(Inner {
                commands,
                session_id,
                next_query_id: AtomicU64::new(1),
                status,
            }),
        })
    }
}

impl Client {
    /// Connects to `url`: the sync endpoint (`ws://127.0.0.1:3210/api/sync`) or the server's
    /// base URL (`http://127.0.0.1:3210`). Must be called inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Client, Error> {
        Client::builder(url).connect().await
    }

    /// Settings beyond the URL: reconnect delays and timeouts.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), ferrovex_client::Error> {
    /// use std::time::Duration;
    /// let client = ferrovex_client::Client::builder("ws://127.0.0.1:3210/api/sync")
    ///     .reconnect_max_delay(Duration::from_secs(2))
    ///     .connect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder {
            url: url.to_owned(),
            options: Options {
                reconnect_initial_delay: Duration::from_millis(100),
                reconnect_max_delay: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(10),
                silence_timeout: Some(Duration::from_secs(60)),
            },
        }
    }

    /// The session id this client sends in every `Connect` (a random UUID, kept across
    /// reconnects).
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    /// Where the connection stands now.
    pub fn status(&self) -> ConnectionStatus {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every change of [`Client::status`].
    pub fn watch_status(&self) -> watch::Receiver<ConnectionStatus> {
        self.inner.status.clone()
    }

    /// Subscribes to the query `udf_path` (`module:function`) with `args`. The subscription
    /// yields the query's result now and again whenever a commit changes it; dropping it
    /// unsubscribes.
    pub fn subscribe(&self, udf_path: &str, args: impl IntoArgs) -> Result<Subscription, Error> {
        let args = args.into_args().map_err(Error::InvalidArgs)?;
        let query_id = self.inner.next_query_id.fetch_add(1, Ordering::Relaxed);
        let (results, receiver) = watch::channel(None);
        self.inner
            .commands
            .send(Command::Subscribe {
                query_id,
                udf_path: udf_path.to_owned(),
                args,
                results,
            })
            .map_err(|_| Error::Closed)?;
        Ok(Subscription {
            query_id,
            udf_path: udf_path.to_owned(),
            latest: receiver.clone(),
            receiver: Some(receiver),
            waiting: None,
            commands: self.inner.commands.downgrade(),
        })
    }

    /// Runs the query once: its first result, after which the subscription is dropped.
    pub async fn query(&self, udf_path: &str, args: impl IntoArgs) -> Result<Value, Error> {
        let mut subscription = self.subscribe(udf_path, args)?;
        match futures_util::StreamExt::next(&mut subscription).await {
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(Error::Function(e)),
            None => Err(Error::Closed),
        }
    }

    /// Runs the mutation `udf_path` with `args` and returns its result once this client
    /// shows its write: every subscription read after this returns reflects it.
    ///
    /// Mutations run on the server in the order they are called. One that was sent but not
    /// answered when the connection dropped is re-sent after reconnecting and still runs
    /// only once.
    pub async fn mutation(&self, udf_path: &str, args: impl IntoArgs) -> Result<Value, Error> {
        let args = args.into_args().map_err(Error::InvalidArgs)?;
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Mutation {
                udf_path: udf_path.to_owned(),
                args,
                reply,
            })
            .map_err(|_| Error::Closed)?;
        answer.await.unwrap_or(Err(Error::Closed))
    }
}

type Waiting = Pin<
    Box<
        dyn Future<
                Output = (
                    Result<(), watch::error::RecvError>,
                    watch::Receiver<QueryResult>,
                ),
            > + Send,
    >,
>;

/// A live query: a [`Stream`] of its results, each the query's value or its error, as of a
/// state the database really had. A slow reader skips intermediate results and gets the
/// newest. The stream ends when the client shuts down.
///
/// Dropping it removes the query from the connection's query set.
pub struct Subscription {
    query_id: u64,
    udf_path: String,
    /// For [`Subscription::current`] while `receiver` is inside `waiting`.
    latest: watch::Receiver<QueryResult>,
    receiver: Option<watch::Receiver<QueryResult>>,
    waiting: Option<Waiting>,
    commands: mpsc::WeakUnboundedSender<Command>,
}

impl Subscription {
    /// The newest result the client holds, without waiting; `None` before the first.
    pub fn current(&self) -> Option<Result<Value, FunctionError>> {
        self.latest.borrow().clone()
    }

    /// The query's path, as given to [`Client::subscribe`].
    pub fn udf_path(&self) -> &str {
        &self.udf_path
    }
}

impl Stream for Subscription {
    type Item = Result<Value, FunctionError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.waiting.is_none() {
                let Some(mut receiver) = this.receiver.take() else {
                    return Poll::Ready(None);
                };
                this.waiting = Some(Box::pin(async move {
                    let changed = receiver.changed().await;
                    (changed, receiver)
                }));
            }
            let waiting = this.waiting.as_mut().expect("set above");
            let (changed, mut receiver) = match waiting.as_mut().poll(cx) {
                Poll::Ready(done) => done,
                Poll::Pending => return Poll::Pending,
            };
            this.waiting = None;
            if changed.is_err() {
                // The client shut down: the stream ends (and stays ended).
                return Poll::Ready(None);
            }
            let result = receiver.borrow_and_update().clone();
            this.receiver = Some(receiver);
            if let Some(result) = result {
                return Poll::Ready(Some(result));
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(commands) = self.commands.upgrade() {
            let _ = commands.send(Command::Unsubscribe {
                query_id: self.query_id,
            });
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("udf_path", &self.udf_path)
            .field("query_id", &self.query_id)
            .field("current", &self.current())
            .finish()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session_id", &self.inner.session_id)
            .field("status", &self.status())
            .finish()
    }
}
