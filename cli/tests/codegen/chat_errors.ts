// Each line marked `// error` must be rejected by tsc, and no other line.
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import type { FunctionReturnType } from "convex/server";
import { api } from "./_generated/api";

export async function chat(client: ConvexClient, http: ConvexHttpClient) {
  await client.mutation(api.chat.send_message, { user: "a", body: 1 }); // error
  await client.mutation(api.chat.send_message, { user: "a" }); // error
  await client.mutation(api.chat.send_message, { user: "a", body: "b", extra: true }); // error
  await client.mutation(api.chat.get_messages, {}); // error
  await http.query(api.chat.send_message, { user: "a", body: "b" }); // error
  await http.query(api.chat.get_messages, { limit: 5 }); // error
  const wrong: string = await http.mutation(api.chat.send_message, { user: "a", body: "b" }); // error
  const list: FunctionReturnType<typeof api.chat.get_messages> = "not a list"; // error
  api.chat.no_such_function; // error
  return { wrong, list };
}
