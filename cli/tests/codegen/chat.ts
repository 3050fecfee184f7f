// The chat example's functions used as the `convex` npm client is meant to be used with them:
// this file must type-check with no error.
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import type {
  FunctionArgs,
  FunctionReference,
  FunctionReturnType,
} from "convex/server";
import { api } from "./_generated/api";

export async function chat(client: ConvexClient, http: ConvexHttpClient) {
  await client.mutation(api.chat.send_message, { user: "a", body: "b" });
  const nothing: null = await http.mutation(api.chat.send_message, {
    user: "ada",
    body: "hi",
  });

  const r: FunctionReturnType<typeof api.chat.get_messages> = await http.query(
    api.chat.get_messages,
    {},
  );
  // Documents are `any`: their fields are whatever was written.
  const bodies: string[] = r.map((m) => m.body);
  // An empty argument object may be left out over HTTP.
  await http.query(api.chat.get_messages);
  const unsubscribe = client.onUpdate(api.chat.get_messages, {}, (messages) => {
    const count: number = messages.length;
    return count;
  });
  unsubscribe();

  // The references are of the right kind, and their argument types are the function's.
  const send: FunctionReference<"mutation"> = api.chat.send_message;
  const list: FunctionReference<"query"> = api.chat.get_messages;
  const args: FunctionArgs<typeof api.chat.send_message> = { user: "u", body: "b" };
  const user: string = args.user;
  return { nothing, bodies, send, list, user };
}
