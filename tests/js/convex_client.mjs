// npm `ConvexClient` (over the WebSocket) against the chat example: a subscription, mutations
// that resolve only once the subscription shows them, a one-shot query, failed calls that
// name their function and leave the connection up, and a write by another client arriving
// live. Prints `RESULT` with what it saw; tests/e2e/convex_clients.rs judges it.

import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { makeFunctionReference } from "convex/server";
import {
  bodies,
  getMessages,
  outcome,
  run,
  say,
  sendMessage,
  url,
  waitFor,
  within,
} from "./lib.mjs";

await run(async () => {
  // Node 20 has no global WebSocket: the package's Node entry (`convex/browser` under the
  // "node" export condition) gives ConvexClient the `ws` implementation it bundles.
  const client = new ConvexClient(url);
  const updates = [];
  const subscriptionErrors = [];
  client.onUpdate(
    getMessages,
    {},
    (messages) => updates.push(messages),
    (e) => subscriptionErrors.push(e.message),
  );
  await waitFor("the subscription's first result", () => updates.length > 0);
  const initial = updates.at(-1);

  // Read your writes: the client resolves a mutation only after applying a transition at or
  // past its commit, and runs the subscription callbacks before it resolves, so the latest
  // value delivered must already hold the message.
  const writes = [];
  for (const body of ["first", "second", "third"]) {
    const result = await within(
      `the mutation "${body}"`,
      client.mutation(sendMessage, { user: "ada", body }),
    );
    writes.push({
      body,
      result: result === undefined ? "(undefined)" : result,
      shownWhenResolved: bodies(updates.at(-1)).includes(body),
    });
  }

  // A second client: its query is a real round trip (this client would answer from the
  // result its subscription holds).
  const other = new ConvexClient(url);
  const oneShot = await within(
    "a one-shot query",
    other.query(getMessages, {}),
  );

  // A wrong argument type, and a function that does not exist: both fail with the server's
  // message, which the client puts after its own `[CONVEX M(path)]` prefix.
  const badArguments = await within(
    "the mutation with a wrong argument type",
    outcome(client.mutation(sendMessage, { user: 42, body: "wrong type" })),
  );
  const unknownQuery = await within(
    "a query of a missing function",
    outcome(other.query(makeFunctionReference("chat:no_such_query"), {})),
  );

  // The connection survived both failures and still serves this client.
  const afterFailure = await within(
    "the mutation after the failures",
    client.mutation(sendMessage, { user: "ada", body: "after failure" }),
  );
  const shownAfterFailure = bodies(updates.at(-1)).includes("after failure");

  // A write by another client (over HTTP) reaches the subscription by itself.
  const http = new ConvexHttpClient(url);
  await within(
    "a mutation over HTTP",
    http.mutation(sendMessage, { user: "grace", body: "over http" }),
  );
  await waitFor("the subscription to show the HTTP client's message", () =>
    bodies(updates.at(-1)).includes("over http"),
  );

  const latest = updates.at(-1);
  say("RESULT", {
    initial,
    writes,
    oneShot: bodies(oneShot),
    badArguments,
    unknownQuery,
    afterFailure: afterFailure === undefined ? "(undefined)" : afterFailure,
    shownAfterFailure,
    latest: bodies(latest),
    shapes: latest.map((m) => ({
      keys: Object.keys(m).sort(),
      id: typeof m._id,
      creationTime: typeof m._creationTime,
      user: m.user,
    })),
    creationTimes: latest.map((m) => m._creationTime),
    ids: latest.map((m) => m._id),
    subscriptionErrors,
    connection: client.connectionState(),
  });
  await client.close();
  await other.close();
});
