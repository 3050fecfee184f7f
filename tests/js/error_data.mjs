// A function error that carries data (`Error::new(..).with_data(..)` in the guest) reaches
// both npm clients as a `ConvexError` whose `data` is that value: over the WebSocket
// (`errorData` in `MutationResponse`) and over HTTP (`errorData` in the error body). Runs
// against the tasks example, whose `tasks:add` refuses an empty title with
// `{"field": "title"}`. Prints `RESULT`.

import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { makeFunctionReference } from "convex/server";
import { outcome, run, say, url, within } from "./lib.mjs";

const addTask = makeFunctionReference("tasks:add");

await run(async () => {
  const client = new ConvexClient(url);
  const overWebSocket = await within(
    "tasks:add over the WebSocket",
    outcome(client.mutation(addTask, { title: "" })),
  );
  const http = new ConvexHttpClient(url);
  const overHttp = await within(
    "tasks:add over HTTP",
    outcome(http.mutation(addTask, { title: " " })),
  );
  say("RESULT", { overWebSocket, overHttp });
  await client.close();
});
