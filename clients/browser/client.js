// The browser client of the runtime: live queries, mutations and actions over the WebSocket
// sync protocol (docs/PROTOCOL.md section 3). One ES module, no build step; the runtime serves
// it at `/api/client.js`:
//
//   import { Client } from "/api/client.js";
//   const client = new Client();
//   const stop = client.subscribe("chat:get_messages", {}, (messages) => render(messages));
//   await client.mutation("chat:send_message", { user: "ada", body: "hi" });
//   const summary = await client.action("chat:summarize", {});
//
// An operator's page passes `{ auth: { adminKey } }` to call internal functions too, and
// `actingAs` to run them as a given user.
//
// Values follow docs/PROTOCOL.md section 1: int64 is a BigInt, bytes a Uint8Array, float64 a
// number (NaN and ±Infinity included). Plain numbers are always float64, so pass `5n`
// where a function takes an int64.

const INITIAL_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10_000;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * A function's error: a failed query, mutation or action, or a refused admin key. `message`
 * names the function and the cause; `data` is the error's value, if the function attached one.
 */
export class FunctionError extends Error {
  /**
   * @param {string} message
   * @param {unknown} data the decoded `errorData`, `undefined` if absent
   * @param {string[]} logLines what the function logged
   */
  constructor(message, data, logLines) {
    super(message);
    this.name = "FunctionError";
    /** @type {unknown} */
    this.data = data;
    /** @type {string[]} */
    this.logLines = logLines;
  }
}

/**
 * @typedef {"connecting" | "connected" | "disconnected" | "closed"} ConnectionState
 *
 * @typedef {object} ConnectionStatus
 * @property {ConnectionState} state `connected` once `Connect` is sent on an open socket;
 *   `disconnected` while waiting to retry; `closed` after {@link Client#close}.
 * @property {number} connectionCount how many times the client has reconnected
 * @property {number} pendingMutations mutations sent or queued whose result is not yet shown
 * @property {number | undefined} retryInMs when `disconnected`: the wait before the next try
 *
 * @typedef {object} CallOptions
 * @property {boolean} [withLogLines=false] resolve to `{ value, logLines }` instead of the
 *   value alone, `logLines` being what the function logged
 */

/**
 * A connection to one deployment: live queries, mutations, and reconnection that keeps
 * them going. Keeps one WebSocket open until {@link Client#close}.
 */
export class Client {
  /**
   * @param {string} [url] the deployment's address (`http(s)://` or `ws(s)://`); by default
   *   the page's own origin
   * @param {object} [options]
   * @param {boolean} [options.logLines=true] print functions' log lines to the console
   * @param {{adminKey: string, actingAs?: object}} [options.auth] authenticate every
   *   connection with the deployment's admin key (internal functions become callable);
   *   with `actingAs`, an identity object, functions see that user (`subject` at least; a
   *   missing `issuer` or `tokenIdentifier` is the server's to refuse)
   */
  constructor(url, options = {}) {
    const base = new URL(url ?? globalThis.location.origin);
    if (base.protocol === "http:") base.protocol = "ws:";
    else if (base.protocol === "https:") base.protocol = "wss:";
    else if (base.protocol !== "ws:" && base.protocol !== "wss:") {
      throw new TypeError(`Client: unsupported URL scheme in ${url}`);
    }
    this._url = new URL("/api/sync", base).href;
    this._printLogLines = options.logLines ?? true;
    this._auth = options.auth ?? null;
    // The last AuthError printed: a refused key is refused again on every reconnect.
    this._authErrorShown = undefined;
    this._sessionId = newSessionId();
    this._connectionCount = 0;
    this._connections = 0;
    this._failures = 0;
    /** @type {WebSocket | null} */
    this._socket = null;
    this._closed = false;
    this._retryTimer = undefined;
    this._state = /** @type {ConnectionState} */ ("connecting");
    this._retryInMs = undefined;
    /** @type {Set<(status: ConnectionStatus) => void>} */
    this._statusListeners = new Set();

    // Queries, one per distinct (path, args), shared by every subscriber to it.
    this._nextQueryId = 1;
    /** @type {Map<number, Query>} */
    this._queries = new Map();
    /** @type {Map<string, number>} */
    this._queryIdByKey = new Map();
    // What this connection's server-side query set holds, and its version.
    /** @type {Set<number>} */
    this._serverQueries = new Set();
    this._querySetVersion = 0;
    this._flushScheduled = false;
    // The last applied transition's end; a new connection starts again from zero.
    this._version = { querySet: 0, identity: 0, ts: 0n };
    this._maxObservedTs = 0n;

    // Request ids are never reused within a session: the server deduplicates by them.
    this._nextRequestId = 1;
    /** @type {Map<number, PendingMutation>} in request order */
    this._mutations = new Map();
    /** @type {Map<number, PendingAction>} */
    this._actions = new Map();

    this._connect();
  }

  /**
   * Subscribes to a query. `onUpdate` is called with its first result and again whenever a
   * commit changes it; all callbacks of one update see one database snapshot.
   *
   * @param {string} path the function, `module:function`
   * @param {Record<string, unknown>} [args] its arguments
   * @param {(value: any, logLines: string[]) => void} onUpdate receives each new result,
   *   with what the query logged computing it
   * @param {(error: FunctionError) => void} [onError] receives the query's failure
   *   (by default printed to the console); a later success calls `onUpdate` again
   * @returns {() => void} unsubscribes (idempotent)
   */
  subscribe(path, args, onUpdate, onError) {
    this._checkOpen();
    const encodedArgs = encodeArgs(args);
    const key = JSON.stringify([path, encodedArgs]);
    let queryId = this._queryIdByKey.get(key);
    let query = queryId === undefined ? undefined : this._queries.get(queryId);
    if (query === undefined) {
      queryId = this._nextQueryId++;
      query = { id: queryId, path, args: encodedArgs, key, subscribers: new Set(), result: undefined };
      this._queries.set(queryId, query);
      this._queryIdByKey.set(key, queryId);
      this._scheduleFlush();
    }
    const subscriber = { onUpdate, onError };
    query.subscribers.add(subscriber);
    const known = query.result;
    if (known !== undefined) {
      // Delivered later, as a fresh query's first result would be.
      queueMicrotask(() => {
        if (query.subscribers.has(subscriber) && query.result === known) {
          this._deliver(query, subscriber);
        }
      });
    }
    return () => {
      if (!query.subscribers.delete(subscriber) || query.subscribers.size > 0) return;
      this._queries.delete(query.id);
      this._queryIdByKey.delete(query.key);
      if (!this._closed) this._scheduleFlush();
    };
  }

  /**
   * Runs a query once: the result as this client's live view has it.
   *
   * @param {string} path the function, `module:function`
   * @param {Record<string, unknown>} [args] its arguments
   * @returns {Promise<any>} its result; rejects with a {@link FunctionError}
   */
  query(path, args) {
    return new Promise((resolve, reject) => {
      let done = false;
      let unsubscribe = null;
      const finish = (settle, value) => {
        if (done) return;
        done = true;
        settle(value);
        // The first result can come before `subscribe` returns.
        if (unsubscribe) unsubscribe();
        else queueMicrotask(() => unsubscribe && unsubscribe());
      };
      unsubscribe = this.subscribe(
        path,
        args,
        (value) => finish(resolve, value),
        (error) => finish(reject, error),
      );
    });
  }

  /**
   * Runs a mutation. Resolves once its commit is visible to this client: every query this
   * client subscribes to shows the write (docs/PROTOCOL.md guarantee 5). Across reconnects it is
   * re-sent with its original request id, and the server applies it exactly once.
   *
   * @param {string} path the function, `module:function`
   * @param {Record<string, unknown>} [args] its arguments
   * @param {CallOptions} [options]
   * @returns {Promise<any>} the function's result (or `{ value, logLines }` with
   *   `withLogLines`); rejects with a {@link FunctionError} carrying `data` and `logLines`
   */
  mutation(path, args, options = {}) {
    try {
      this._checkOpen();
      const requestId = this._nextRequestId++;
      const message = { type: "Mutation", requestId, udfPath: path, args: encodeArgs(args) };
      const withLogLines = options.withLogLines ?? false;
      return new Promise((resolve, reject) => {
        this._mutations.set(requestId, {
          message,
          path,
          resolve,
          reject,
          ts: undefined,
          result: undefined,
          logLines: [],
          withLogLines,
          // The connections it was sent on: sent on an earlier one, it may have run there.
          sends: 0,
        });
        this._notifyStatus();
        if (this._state === "connected") this._sendMutation(this._mutations.get(requestId));
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Runs an action. Actions run at most once: one still running when the connection drops
   * is never re-sent, and its promise rejects (it may or may not have run). One called while
   * disconnected waits for the next connection.
   *
   * @param {string} path the function, `module:function`
   * @param {Record<string, unknown>} [args] its arguments
   * @param {CallOptions} [options]
   * @returns {Promise<any>} the function's result (or `{ value, logLines }` with
   *   `withLogLines`); rejects with a {@link FunctionError} carrying `data` and `logLines`
   */
  action(path, args, options = {}) {
    try {
      this._checkOpen();
      // Shares the mutations' counter: one sequence of request ids per session.
      const requestId = this._nextRequestId++;
      const message = { type: "Action", requestId, udfPath: path, args: encodeArgs(args) };
      const withLogLines = options.withLogLines ?? false;
      return new Promise((resolve, reject) => {
        const action = { message, path, resolve, reject, sent: false, withLogLines };
        this._actions.set(requestId, action);
        if (this._state === "connected") {
          action.sent = true;
          this._send(message);
        }
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Watches the connection: called at once with the current status, then on every change.
   *
   * @param {(status: ConnectionStatus) => void} listener
   * @returns {() => void} stops watching
   */
  onConnectionChange(listener) {
    this._statusListeners.add(listener);
    listener(this.connectionStatus());
    return () => this._statusListeners.delete(listener);
  }

  /** @returns {ConnectionStatus} the connection as it is now */
  connectionStatus() {
    return {
      state: this._state,
      connectionCount: this._connectionCount,
      pendingMutations: this._mutations.size,
      retryInMs: this._retryInMs,
    };
  }

  /** The session id, kept across reconnects. @type {string} */
  get sessionId() {
    return this._sessionId;
  }

  /**
   * Closes the connection for good. Unfinished mutations and actions reject; subscriptions
   * stop.
   */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._retryTimer);
    const socket = this._socket;
    this._socket = null;
    if (socket) socket.close(1000, "client closed");
    const error = new Error("the client was closed");
    for (const mutation of this._mutations.values()) mutation.reject(error);
    this._mutations.clear();
    for (const action of this._actions.values()) action.reject(error);
    this._actions.clear();
    this._queries.clear();
    this._queryIdByKey.clear();
    this._setState("closed");
  }

  // --- Connection ---------------------------------------------------------------------

  _connect() {
    this._retryTimer = undefined;
    this._retryInMs = undefined;
    this._setState("connecting");
    let socket;
    try {
      socket = new WebSocket(this._url);
    } catch (error) {
      console.error("Client: cannot open", this._url, error);
      this._scheduleReconnect();
      return;
    }
    this._socket = socket;
    socket.onopen = () => {
      if (this._socket !== socket) return;
      this._onOpen();
    };
    socket.onmessage = (event) => {
      if (this._socket !== socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        this._restart(`a frame that is not JSON: ${error}`);
        return;
      }
      this._onMessage(message);
    };
    socket.onclose = () => {
      if (this._socket !== socket) return;
      this._socket = null;
      this._loseActions();
      this._scheduleReconnect();
    };
  }

  _onOpen() {
    // Each connection starts from an empty query set at version zero (guarantee 2).
    this._connectionCount = this._connections++;
    this._version = { querySet: 0, identity: 0, ts: 0n };
    this._querySetVersion = 0;
    this._serverQueries = new Set();
    const connect = { type: "Connect", sessionId: this._sessionId, connectionCount: this._connectionCount };
    if (this._maxObservedTs > 0n) connect.maxObservedTimestamp = encodeU64(this._maxObservedTs);
    this._send(connect);
    // Before the query set and the mutations, so that all of them run as this identity.
    if (this._auth !== null) {
      const authenticate = {
        type: "Authenticate",
        baseVersion: this._version.identity,
        tokenType: "Admin",
        value: this._auth.adminKey,
      };
      if (this._auth.actingAs != null) authenticate.impersonating = this._auth.actingAs;
      this._send(authenticate);
    }
    this._state = "connected";
    // The whole query set, as one ModifyQuerySet from version 0.
    this._flush(true);
    // Unanswered mutations, in their order, with their original request ids.
    for (const mutation of this._mutations.values()) {
      if (mutation.ts === undefined) this._sendMutation(mutation);
    }
    // Actions called while disconnected; those sent before were settled when it dropped.
    for (const action of this._actions.values()) {
      if (!action.sent) {
        action.sent = true;
        this._send(action.message);
      }
    }
    this._notifyStatus();
  }

  _scheduleReconnect() {
    if (this._closed) return;
    // Capped exponential backoff with jitter, so a restarted server is not stampeded.
    const ceiling = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** this._failures);
    this._failures = Math.min(this._failures + 1, 30);
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this._retryInMs = delay;
    this._setState("disconnected");
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  /** Drops this connection and reconnects, as after a network failure. */
  _restart(reason) {
    console.warn(`Client: reconnecting: ${reason}`);
    const socket = this._socket;
    this._socket = null;
    if (socket) socket.close(4000, "protocol error");
    this._loseActions();
    this._scheduleReconnect();
  }

  /** Rejects the actions sent on the connection that just ended: they are never re-sent. */
  _loseActions() {
    for (const [requestId, action] of this._actions) {
      if (!action.sent) continue;
      this._actions.delete(requestId);
      action.reject(
        new Error(`the connection was lost while the action ${action.path} ran: it may or may not have run`),
      );
    }
  }

  _sendMutation(mutation) {
    mutation.sends++;
    this._send(mutation.message);
  }

  _send(message) {
    this._socket.send(JSON.stringify(message));
  }

  // --- Messages -----------------------------------------------------------------------

  _onMessage(message) {
    switch (message.type) {
      case "Transition":
        this._onTransition(message);
        break;
      case "MutationResponse":
        this._onMutationResponse(message);
        break;
      case "ActionResponse":
        this._onActionResponse(message);
        break;
      case "AuthError":
        this._onAuthError(message);
        break;
      case "FatalError":
        // The server closes the socket next; the close schedules the reconnect.
        console.error(`Client: the server ended the connection: ${message.error}`);
        break;
      case "Ping":
        break;
      default:
        console.warn("Client: ignoring an unknown message", message);
    }
  }

  _onTransition(transition) {
    const start = transition.startVersion;
    if (
      start.querySet !== this._version.querySet ||
      start.identity !== this._version.identity ||
      decodeU64(start.ts) !== this._version.ts
    ) {
      // Guarantee 2: a gap means this view can no longer be trusted.
      this._restart(
        `a transition starting at ${JSON.stringify(start)} does not follow ` +
          `{"querySet":${this._version.querySet},"identity":${this._version.identity},"ts":"${encodeU64(this._version.ts)}"}`,
      );
      return;
    }
    this._failures = 0;
    this._authErrorShown = undefined;
    const changed = [];
    for (const modification of transition.modifications) {
      const query = this._queries.get(modification.queryId);
      // A query removed here may still be answered until the server sees the removal.
      if (query === undefined) continue;
      this._printLogs(query.path, modification.logLines);
      let result;
      if (modification.type === "QueryUpdated") {
        result = {
          raw: JSON.stringify(modification.value),
          value: decodeValue(modification.value),
          logLines: modification.logLines ?? [],
        };
      } else if (modification.type === "QueryFailed") {
        const error = new FunctionError(
          modification.errorMessage,
          modification.errorData === undefined ? undefined : decodeValue(modification.errorData),
          modification.logLines ?? [],
        );
        result = { raw: `error:${modification.errorMessage}:${JSON.stringify(modification.errorData)}`, error };
      } else {
        continue;
      }
      // A reconnect re-sends every result; subscribers hear only of real changes.
      if (query.result !== undefined && query.result.raw === result.raw) continue;
      query.result = result;
      changed.push(query);
    }
    const end = transition.endVersion;
    this._version = { querySet: end.querySet, identity: end.identity, ts: decodeU64(end.ts) };
    if (this._version.ts > this._maxObservedTs) this._maxObservedTs = this._version.ts;
    // All results are in place before anyone hears of one: one snapshot (guarantee 1).
    for (const query of changed) {
      for (const subscriber of [...query.subscribers]) {
        if (query.subscribers.has(subscriber)) this._deliver(query, subscriber);
      }
    }
    this._settleVisibleMutations();
  }

  _onMutationResponse(response) {
    const mutation = this._mutations.get(response.requestId);
    if (mutation === undefined || mutation.ts !== undefined) return;
    this._printLogs(mutation.path, response.logLines);
    if (!response.success) {
      this._mutations.delete(response.requestId);
      const data = response.errorData === undefined ? undefined : decodeValue(response.errorData);
      mutation.reject(new FunctionError(response.result, data, response.logLines ?? []));
      this._notifyStatus();
      return;
    }
    mutation.ts = decodeU64(response.ts);
    mutation.result = decodeValue(response.result);
    mutation.logLines = response.logLines ?? [];
    if (mutation.ts > this._maxObservedTs) this._maxObservedTs = mutation.ts;
    // Shown once a transition at or after its commit has been applied (guarantee 5).
    this._settleVisibleMutations();
  }

  _settleVisibleMutations() {
    let settled = false;
    for (const [requestId, mutation] of this._mutations) {
      if (mutation.ts !== undefined && mutation.ts <= this._version.ts) {
        this._mutations.delete(requestId);
        const { result, logLines } = mutation;
        mutation.resolve(mutation.withLogLines ? { value: result, logLines } : result);
        settled = true;
      }
    }
    if (settled) this._notifyStatus();
  }

  _onActionResponse(response) {
    const action = this._actions.get(response.requestId);
    if (action === undefined) return;
    this._actions.delete(response.requestId);
    this._printLogs(action.path, response.logLines);
    const logLines = response.logLines ?? [];
    if (!response.success) {
      const data = response.errorData === undefined ? undefined : decodeValue(response.errorData);
      action.reject(new FunctionError(response.result, data, logLines));
      return;
    }
    const value = decodeValue(response.result);
    action.resolve(action.withLogLines ? { value, logLines } : value);
  }

  _onAuthError(message) {
    if (this._authErrorShown !== message.error) {
      this._authErrorShown = message.error;
      console.error(`Client: authentication refused: ${message.error}`);
    }
    // The server reads nothing more from this socket: let go of it now, so that calls made
    // from here on wait for the next connection. The reconnect keeps the usual backoff, as
    // no transition arrives to reset it while the key is refused.
    const socket = this._socket;
    this._socket = null;
    if (socket) socket.close(1000, "AuthError");
    this._scheduleReconnect();
    // Nothing after a refused Authenticate was read. A mutation sent only on this connection
    // (or not yet sent) therefore never ran: it fails. One that committed, or was sent on an
    // earlier connection and may have run there, stays pending: the next connection re-sends
    // it under its request id, and the server answers with its one outcome.
    const error = new FunctionError(message.error, undefined, []);
    for (const [requestId, mutation] of this._mutations) {
      if (mutation.ts === undefined && mutation.sends <= 1) {
        this._mutations.delete(requestId);
        mutation.reject(error);
      }
    }
    for (const action of this._actions.values()) action.reject(error);
    this._actions.clear();
    this._notifyStatus();
    const result = { raw: `autherror:${message.error}`, error };
    const changed = [];
    for (const query of this._queries.values()) {
      // Told once per refusal, not on every reconnect that is refused the same way.
      if (query.result !== undefined && query.result.raw === result.raw) continue;
      query.result = result;
      changed.push(query);
    }
    for (const query of changed) {
      for (const subscriber of [...query.subscribers]) {
        if (query.subscribers.has(subscriber)) this._deliver(query, subscriber);
      }
    }
  }

  // --- Query set ----------------------------------------------------------------------

  _scheduleFlush() {
    if (this._flushScheduled) return;
    this._flushScheduled = true;
    // Changes made in one task go out as one ModifyQuerySet.
    queueMicrotask(() => {
      this._flushScheduled = false;
      this._flush(false);
    });
  }

  /** Sends what the server's query set lacks or has too many; with `always`, even nothing. */
  _flush(always) {
    if (this._state !== "connected" || this._closed) return;
    const modifications = [];
    for (const queryId of this._serverQueries) {
      if (!this._queries.has(queryId)) {
        modifications.push({ type: "Remove", queryId });
        this._serverQueries.delete(queryId);
      }
    }
    for (const query of this._queries.values()) {
      if (!this._serverQueries.has(query.id)) {
        modifications.push({ type: "Add", queryId: query.id, udfPath: query.path, args: query.args });
        this._serverQueries.add(query.id);
      }
    }
    if (modifications.length === 0 && !(always && this._mutations.size > 0)) return;
    // An empty set still gets a transition: it shows mutations answered before a reconnect.
    const baseVersion = this._querySetVersion++;
    this._send({ type: "ModifyQuerySet", baseVersion, newVersion: baseVersion + 1, modifications });
  }

  _deliver(query, subscriber) {
    const result = query.result;
    if (result.error === undefined) {
      subscriber.onUpdate(result.value, result.logLines);
    } else if (subscriber.onError) {
      subscriber.onError(result.error);
    } else {
      console.error(`Client: query ${query.path} failed: ${result.error.message}`);
    }
  }

  // --- Helpers ------------------------------------------------------------------------

  _checkOpen() {
    if (this._closed) throw new Error("the client is closed");
  }

  _setState(state) {
    this._state = state;
    this._notifyStatus();
  }

  _notifyStatus() {
    const status = this.connectionStatus();
    for (const listener of [...this._statusListeners]) listener(status);
  }

  _printLogs(path, lines) {
    if (!this._printLogLines || !lines) return;
    for (const line of lines) console.log(`[${path}] ${line}`);
  }
}

/**
 * @typedef {object} Query
 * @property {number} id
 * @property {string} path
 * @property {unknown} args encoded
 * @property {string} key
 * @property {Set<{onUpdate: Function, onError?: Function}>} subscribers
 * @property {{raw: string, value?: unknown, logLines?: string[], error?: FunctionError} | undefined} result
 *
 * @typedef {object} PendingMutation
 * @property {object} message the `Mutation` frame, re-sent as it is after a reconnect
 * @property {string} path
 * @property {(value: unknown) => void} resolve
 * @property {(error: Error) => void} reject
 * @property {bigint | undefined} ts the commit timestamp once the server answered
 * @property {unknown} result
 * @property {string[]} logLines
 * @property {boolean} withLogLines resolve to `{ value, logLines }`
 *
 * @typedef {object} PendingAction
 * @property {object} message the `Action` frame
 * @property {string} path
 * @property {(value: unknown) => void} resolve
 * @property {(error: Error) => void} reject
 * @property {boolean} sent whether a connection carried it (then it is never sent again)
 * @property {boolean} withLogLines resolve to `{ value, logLines }`
 */

// --- Values (docs/PROTOCOL.md section 1) ----------------------------------------------------

/**
 * Decodes a wire value: `{"$integer"}` becomes a BigInt, `{"$bytes"}` a Uint8Array,
 * `{"$float"}` NaN, ±Infinity or -0.
 *
 * @param {unknown} json
 * @returns {unknown}
 */
export function decodeValue(json) {
  if (json === null || typeof json !== "object") return json;
  if (Array.isArray(json)) return json.map(decodeValue);
  const keys = Object.keys(json);
  if (keys.length === 1 && keys[0].startsWith("$")) {
    const inner = json[keys[0]];
    switch (keys[0]) {
      case "$integer":
        return eightBytes(inner).getBigInt64(0, true);
      case "$bytes":
        return base64ToBytes(inner);
      case "$float":
        return eightBytes(inner).getFloat64(0, true);
      default:
        throw new TypeError(`unknown encoded value ${JSON.stringify(json)}`);
    }
  }
  const object = {};
  for (const key of keys) object[key] = decodeValue(json[key]);
  return object;
}

/**
 * Encodes a value for the wire: BigInt as `{"$integer"}`, Uint8Array (or ArrayBuffer) as
 * `{"$bytes"}`, NaN, ±Infinity and -0 as `{"$float"}`. Fields that are `undefined` are left out.
 *
 * @param {unknown} value
 * @returns {unknown}
 */
export function encodeValue(value) {
  switch (typeof value) {
    case "boolean":
    case "string":
      return value;
    case "number":
      // NaN, ±Infinity and -0 have no plain JSON form.
      if (Number.isFinite(value) && !Object.is(value, -0)) return value;
      return { $float: bytesToBase64(littleEndian((view) => view.setFloat64(0, value, true))) };
    case "bigint":
      if (value < INT64_MIN || value > INT64_MAX) {
        throw new RangeError(`${value} does not fit in an int64`);
      }
      return { $integer: bytesToBase64(littleEndian((view) => view.setBigInt64(0, value, true))) };
    case "object":
      break;
    default:
      throw new TypeError(`a ${typeof value} is not a value the server stores`);
  }
  if (value === null) return null;
  if (value instanceof Uint8Array) return { $bytes: bytesToBase64(value) };
  if (value instanceof ArrayBuffer) return { $bytes: bytesToBase64(new Uint8Array(value)) };
  if (Array.isArray(value)) {
    return value.map((item) => {
      if (item === undefined) throw new TypeError("undefined is not a value (in an array)");
      return encodeValue(item);
    });
  }
  const prototype = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) {
    throw new TypeError(`a ${value.constructor?.name ?? "object"} is not a value the server stores`);
  }
  const object = {};
  for (const [key, field] of Object.entries(value)) {
    if (key.startsWith("$")) throw new TypeError(`field names must not start with "$": ${key}`);
    if (field !== undefined) object[key] = encodeValue(field);
  }
  return object;
}

/** A call's arguments as the protocol sends them: an array holding the argument object. */
function encodeArgs(args) {
  const encoded = encodeValue(args ?? {});
  if (encoded === null || typeof encoded !== "object" || Array.isArray(encoded)) {
    throw new TypeError("a function's arguments are an object");
  }
  return [encoded];
}

/** 8 bytes written by `write` into a little-endian view. */
function littleEndian(write) {
  const bytes = new Uint8Array(8);
  write(new DataView(bytes.buffer));
  return bytes;
}

/** The 8 bytes an `$integer`, `$float` or timestamp carries, as a view. */
function eightBytes(text) {
  const bytes = base64ToBytes(text);
  if (bytes.length !== 8) throw new TypeError(`${text} is not 8 bytes of base64`);
  return new DataView(bytes.buffer);
}

/** A timestamp on the wire (base64 of 8 little-endian bytes) as a BigInt. */
function decodeU64(text) {
  return eightBytes(text).getBigUint64(0, true);
}

function encodeU64(ts) {
  return bytesToBase64(littleEndian((view) => view.setBigUint64(0, ts, true)));
}

function bytesToBase64(bytes) {
  let binary = "";
  // Chunks keep String.fromCharCode's argument count bounded.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function newSessionId() {
  // randomUUID exists only in secure contexts; a page on a LAN address over http is not one.
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
