// npm `ConvexHttpClient` against the chat example: query, mutation, and failed calls, which
// the server answers with status 200 and `{"status": "error", "errorMessage": ...}` and the
// client turns into a thrown Error carrying that message. The same failing request is also
// sent by hand, to show the status and body the client read. Prints `RESULT`.

import { ConvexHttpClient } from "convex/browser";
import { makeFunctionReference } from "convex/server";
import {
  bodies,
  getMessages,
  outcome,
  run,
  say,
  sendMessage,
  url,
  within,
} from "./lib.mjs";

await run(async () => {
  const client = new ConvexHttpClient(url);
  const before = await within("the first query", client.query(getMessages, {}));
  const sent = await within(
    "the mutation",
    client.mutation(sendMessage, { user: "grace", body: "by http" }),
  );
  const after = await within("the second query", client.query(getMessages, {}));

  const badArguments = await within(
    "the mutation with a wrong argument type",
    outcome(client.mutation(sendMessage, { user: 42, body: "wrong type" })),
  );
  const unknownQuery = await within(
    "a query of a missing function",
    outcome(client.query(makeFunctionReference("chat:no_such_query"), {})),
  );
  // The failed mutation wrote nothing.
  const afterFailures = await within(
    "the query after the failures",
    client.query(getMessages, {}),
  );

  // The request the client sent for the failed mutation, as it sends it.
  const response = await within(
    "the failing mutation sent by hand",
    fetch(`${url}/api/mutation`, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        "Convex-Client": "npm-1.48.0",
      },
      body: JSON.stringify({
        path: "chat:send_message",
        format: "convex_encoded_json",
        args: [{ body: "wrong type", user: 42 }],
      }),
    }),
  );
  const raw = { status: response.status, body: await response.json() };

  say("RESULT", {
    before: bodies(before),
    sent: sent === undefined ? "(undefined)" : sent,
    after,
    badArguments,
    unknownQuery,
    afterFailures: bodies(afterFailures),
    raw,
  });
});
