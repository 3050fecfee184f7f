// Each line marked `// error` must be rejected by tsc, and no other line.
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { api } from "./_generated/api";

export async function tasks(client: ConvexClient, http: ConvexHttpClient) {
  // A JS number is sent as a float64, which an int64 argument refuses.
  await http.query(api.tasks.page, { cursor: null, size: 10 }); // error
  await client.mutation(api.tasks.add, { title: "t", priority: 3 }); // error
  await client.mutation(api.tasks.add, { priority: 3n }); // error
  await client.mutation(api.tasks.complete, { id: 42n }); // error
  await http.query(api.tasks.page, { cursor: 7, size: 1n }); // error
  const id: number = await client.mutation(api.tasks.add, { title: "t" }); // error
  return id;
}
