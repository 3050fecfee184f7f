// Each line marked `// error` must be rejected by tsc, and no other line.
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import type {
  FunctionArgs,
  FunctionReference,
  PaginationOptions,
  PaginationResult,
} from "convex/server";
import { api } from "./_generated/api";

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
    list: [1n],
    record: {},
    either: "s",
    nested: { deep: [] },
    "with space": false,
    empty: {},
  };
  const { text, ...noText } = args;
  await http.query(api.kinds.every_type, noText); // error
  await http.query(api.kinds.every_type, { ...args, int: 1 }); // error
  await http.query(api.kinds.every_type, { ...args, float: 1n }); // error
  await http.query(api.kinds.every_type, { ...args, bytes: "AQID" }); // error
  await http.query(api.kinds.every_type, { ...args, list: [1] }); // error
  await http.query(api.kinds.every_type, { ...args, record: { a: "x" } }); // error
  await http.query(api.kinds.every_type, { ...args, either: true }); // error
  await http.query(api.kinds.every_type, { ...args, maybe: 5 }); // error
  await http.query(api.kinds.every_type, { ...args, empty: { a: 1 } }); // error
  await http.query(api.kinds.every_type, { ...args, nested: {} }); // error
  await http.query(api.kinds.every_type, { ...args, a_null: undefined }); // error
  await http.query(api.kinds.every_type, { ...args, unknown: 1 }); // error

  const r = await http.query(api.kinds.every_type, args);
  const s: string = r.int; // error
  const n: number = r.maybe; // error

  const notPaginated: PaginatedQueryReference = api.kinds.every_type; // error
  await http.query(api.chat.list_messages, { paginationOpts: { numItems: 10n, cursor: null } }); // error
  await client.mutation(api.admin.users.list, {}); // error
  await http.query(api.admin.users.list, { limit: 5 }); // error
  api.admin.nobody; // error
  return { text, s, n, notPaginated };
}
