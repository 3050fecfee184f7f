// The function references the page calls: `api.chat.send_message` names `chat:send_message`.
//
// `anyApi` accepts any name and types nothing. This file is the one place to swap in the
// typed `api` that `runtime codegen` writes from the Rust functions' signatures:
//
//   ./scripts/runtime codegen examples/chat --out examples/chat-react/src/_generated
//
// and then replace the two lines below with
//
//   export { api } from "./_generated/api";
import { anyApi } from "convex/server";
export const api = anyApi;
