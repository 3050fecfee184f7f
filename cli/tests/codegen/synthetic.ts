// Every schema type, a module in a folder beside a function of the same name, and Convex's
// pagination types, used as the `convex` npm client takes them (the api is generated in the
// unit tests of cli/src/codegen.rs from hand-written descriptions). Must compile.
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import type {
  FunctionArgs,
  FunctionReference,
  FunctionReturnType,
  PaginationOptions,
  PaginationResult,
} from "convex/server";
import { api } from "./_generated/api";

// What `usePaginatedQuery` takes: convex/react's `PaginatedQueryReference`, written out
// because React's own types are not installed here.
type PaginatedQueryReference = FunctionReference<
  "query",
  "public",
  { paginationOpts: PaginationOptions },
  PaginationResult<any>
>;

export async function everyType(client: ConvexClient, http: ConvexHttpClient) {
  const args: FunctionArgs<typeof api.kinds.every_type> = {
    a_null: null,
    int: 42n,
    float: 2.5,
    flag: true,
    text: "t",
    bytes: new ArrayBuffer(8),
    list: [1n, -2n],
    record: { a: 1, b: NaN },
    either: "s",
    nested: { deep: [{ x: 1 }] },
    "with space": false,
    empty: {},
  };
  const r: FunctionReturnType<typeof api.kinds.every_type> = await http.query(
    api.kinds.every_type,
    args,
  );
  // An optional field may also be null; an `any` field may hold anything, or be left out.
  await client.query(api.kinds.every_type, {
    ...args,
    a_any: { anything: [1, "x", null] },
    maybe: null,
    either: 5n,
    nested: { inner: new ArrayBuffer(1), deep: [] },
  });
  await client.query(api.kinds.every_type, { ...args, maybe: "set", nested: { inner: null, deep: [] } });

  const big: bigint = r.int + r.list[0];
  const num: number = r.float + (r.record["a"] ?? 0);
  const buffer: ArrayBuffer = r.bytes;
  const maybe: string | null | undefined = r.maybe;
  const either: string | bigint = r.either;
  const inner: ArrayBuffer | null | undefined = r.nested.inner;
  const x: number = r.nested.deep[0].x;
  const spaced: boolean = r["with space"];
  const nothing: null = r.a_null;

  const written: null = await client.mutation(api.kinds.write, {});
  await http.mutation(api.kinds.write);

  const paginated: PaginatedQueryReference = api.chat.list_messages;
  const page = await http.query(api.chat.list_messages, {
    paginationOpts: { numItems: 10, cursor: null },
  });
  const done: boolean = page.isDone;
  const next: string = page.continueCursor;

  const users: FunctionReference<"query", "public", Record<string, never>, string> =
    api.admin.users;
  const name: string = await http.query(api.admin.users);
  const names: string[] = await http.query(api.admin.users.list, { limit: 5n });
  await http.query(api.admin.users.list, {});

  return { big, num, buffer, maybe, either, inner, x, spaced, nothing, written };
}
