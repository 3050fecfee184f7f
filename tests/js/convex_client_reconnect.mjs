// npm `ConvexClient` across a server restart: a mutation the server applied but whose answer
// was lost, and one issued while the server is down, are both re-sent when the client
// reconnects (same session, same request ids), resolve then, and each message exists exactly
// once. The test restarts the server on the same port and data when told to:
//
//   script: @@ READY        (one mutation applied, its answer dropped, still pending)
//   test:   STOPPED         (the server is shut down)
//   script: @@ QUEUED       (the client saw the socket close; a second mutation is queued)
//   test:   RESTARTED       (a new server on the same port and data)
//   script: @@ RESULT {...}
//
// The answer is dropped in a wrapper around the WebSocket the client is given, so the lost
// answer happens on cue rather than by racing the shutdown.

import { createRequire } from "node:module";
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import {
  bodies,
  getMessages,
  hear,
  run,
  say,
  sendMessage,
  url,
  waitFor,
  within,
} from "./lib.mjs";

// The `ws` package the convex package itself depends on (its Node entry bundles the same
// version), resolved from there so that this folder declares no dependency of its own.
const WebSocket = createRequire(import.meta.resolve("convex/browser"))("ws");

const faults = {
  dropMutationResponses: false,
  dropped: [],
  // Every frame the client sent, with the number of the socket it went on.
  sent: [],
  sockets: 0,
};

class FaultyWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.number = faults.sockets++;
  }
  send(data, ...rest) {
    faults.sent.push({ socket: this.number, message: JSON.parse(data) });
    return super.send(data, ...rest);
  }
  get onmessage() {
    return super.onmessage;
  }
  set onmessage(handler) {
    super.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "MutationResponse" && faults.dropMutationResponses) {
        faults.dropped.push(message);
        return;
      }
      handler(event);
    };
  }
}

await run(async () => {
  const client = new ConvexClient(url, {
    webSocketConstructor: FaultyWebSocket,
  });
  const updates = [];
  client.onUpdate(getMessages, {}, (messages) => updates.push(messages));
  await waitFor("the subscription's first result", () => updates.length > 0);

  await within(
    'the mutation "before"',
    client.mutation(sendMessage, { user: "ada", body: "before" }),
  );

  // Applied by the server, answer lost: the promise stays pending.
  faults.dropMutationResponses = true;
  // How many connections the client had opened when each mutation settled.
  let inFlightSettledOn = null;
  const inFlight = client
    .mutation(sendMessage, { user: "ada", body: "in flight" })
    .finally(() => {
      inFlightSettledOn = client.connectionState().connectionCount;
    });
  await waitFor("the server's answer to the in-flight mutation", () =>
    faults.dropped.some((m) => m.success === true),
  );
  await waitFor("the subscription to show the in-flight mutation's write", () =>
    bodies(updates.at(-1)).includes("in flight"),
  );
  say("READY");

  await hear("STOPPED");
  const inFlightPendingWhileStopped = inFlightSettledOn === null;
  faults.dropMutationResponses = false;
  await waitFor(
    "the client to see its socket closed",
    () => !client.connectionState().isWebSocketConnected,
  );
  let queuedSettledOn = null;
  const queued = client
    .mutation(sendMessage, { user: "ada", body: "while down" })
    .finally(() => {
      queuedSettledOn = client.connectionState().connectionCount;
    });
  say("QUEUED");

  await hear("RESTARTED");
  const inFlightResult = await within(
    "the in-flight mutation to resolve",
    inFlight,
  );
  const queuedResult = await within("the queued mutation to resolve", queued);
  // Both resolved, so a transition past both commits was applied: the subscription shows
  // them without waiting.
  const latest = bodies(updates.at(-1));

  // What the server holds, asked by a client that saw none of this.
  const http = new ConvexHttpClient(url);
  const stored = bodies(
    await within("a query over HTTP", http.query(getMessages, {})),
  );

  const connects = faults.sent.filter((f) => f.message.type === "Connect");
  const mutationFrames = faults.sent
    .filter((f) => f.message.type === "Mutation")
    .map((f) => ({
      socket: f.socket,
      requestId: f.message.requestId,
      body: f.message.args[0].body,
    }));
  say("RESULT", {
    inFlightPendingWhileStopped,
    inFlightSettledOn,
    queuedSettledOn,
    inFlightResult:
      inFlightResult === undefined ? "(undefined)" : inFlightResult,
    queuedResult: queuedResult === undefined ? "(undefined)" : queuedResult,
    droppedAnswers: faults.dropped.length,
    latest,
    stored,
    sessionIds: connects.map((f) => f.message.sessionId),
    connectSockets: connects.map((f) => f.socket),
    mutationFrames,
    connection: client.connectionState(),
  });
  await client.close();
});
