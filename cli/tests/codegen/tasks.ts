// The tasks example: int64 arguments are bigints, optional arguments may be left out or null,
// and results are typed. This file must type-check with no error.
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import type { FunctionArgs, FunctionReturnType } from "convex/server";
import { api } from "./_generated/api";

export async function tasks(client: ConvexClient, http: ConvexHttpClient) {
  const id: string = await client.mutation(api.tasks.add, { title: "write", priority: 3n });
  await client.mutation(api.tasks.add, { title: "no priority" });
  await http.mutation(api.tasks.add, { title: "null priority", priority: null });
  await client.mutation(api.tasks.complete, { id });
  const removed: null = await http.mutation(api.tasks.remove, { id });

  const open: FunctionReturnType<typeof api.tasks.list_open> = await http.query(
    api.tasks.list_open,
  );
  const titles: string[] = open.map((task) => task.title);

  await http.query(api.tasks.page, { cursor: null, size: 10n });
  const page = await client.query(api.tasks.page, { size: BigInt(20) });
  const args: FunctionArgs<typeof api.tasks.page> = { cursor: "c", size: -1n };
  const size: bigint = args.size;
  return { removed, titles, page, size };
}
