// The generated `api` at run time: the names it sends, as `convex` reads them.
import { getFunctionName } from "convex/server";
import { api } from "./_generated/api.js";

console.log(
  JSON.stringify([getFunctionName(api.chat.send_message), getFunctionName(api.chat.get_messages)]),
);
