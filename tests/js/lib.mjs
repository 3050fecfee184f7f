// What the scripts that tests/e2e/convex_clients.rs runs have in common: the line protocol
// with the test, bounded waits, and the chat example's function references.
//
// The protocol: a script writes `@@ WORD` or `@@ WORD {json}` lines on stdout (`READY`,
// `RESULT`, ...) and reads plain `WORD` lines on stdin (`STOPPED`, `RESTARTED`, ...). Nothing
// else goes to stdout: the Convex client logs through `console.log`, which is sent to stderr,
// so the test can show it when something fails.

import { createInterface } from "node:readline";
import { anyApi, makeFunctionReference } from "convex/server";
import { ConvexError } from "convex/values";

console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

/** Turns a hang into a failure; nothing waits for it to pass. */
export const DEADLINE_MS = 60_000;

// Both ways of naming a function the npm package offers: the `api` proxy its codegen
// exports (the same object as `anyApi`), and a reference built from the path string.
export const getMessages = anyApi.chat.get_messages;
export const sendMessage = makeFunctionReference("chat:send_message");

/** The deployment URL the test passes as the first argument. */
export const url = process.argv[2];
if (!url) {
  throw new Error("usage: node SCRIPT.mjs http://127.0.0.1:PORT");
}

/** Writes one protocol line for the test. */
export function say(word, data) {
  const payload = data === undefined ? "" : ` ${JSON.stringify(data)}`;
  process.stdout.write(`@@ ${word}${payload}\n`);
}

const heard = [];
const listeners = new Set();
createInterface({ input: process.stdin }).on("line", (line) => {
  heard.push(line.trim());
  for (const listener of listeners) listener();
});

/** Resolves once the test has written `word` on a line of its own. */
export function hear(word) {
  return within(
    `"${word}" from the test`,
    new Promise((resolve) => {
      const check = () => {
        if (heard.includes(word)) {
          listeners.delete(check);
          resolve();
        }
      };
      listeners.add(check);
      check();
    }),
  );
}

/** Whether the test has written `word` yet. */
export function hasHeard(word) {
  return heard.includes(word);
}

/** `promise`, or a rejection naming `what` after DEADLINE_MS. */
export function within(what, promise) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`waited ${DEADLINE_MS} ms for ${what}`)),
      DEADLINE_MS,
    );
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Resolves once `check()` is true; polls, and fails after DEADLINE_MS. */
export function waitFor(what, check) {
  return within(
    what,
    new Promise((resolve, reject) => {
      const poll = () => {
        try {
          if (check()) return resolve();
        } catch (e) {
          return reject(e);
        }
        // The polling period, not a wait for anything to happen.
        setTimeout(poll, 10);
      };
      poll();
    }),
  );
}

/** How a call ended, in a form the test can read: its value, or its error. */
export async function outcome(promise) {
  try {
    const value = await promise;
    return { ok: true, value: value === undefined ? "(undefined)" : value };
  } catch (e) {
    return {
      ok: false,
      name: e?.constructor?.name ?? typeof e,
      message: e?.message ?? String(e),
      isConvexError: e instanceof ConvexError,
      ...(e?.data === undefined ? {} : { data: e.data }),
    };
  }
}

/** The bodies of a `chat:get_messages` result, in order. */
export function bodies(messages) {
  return messages.map((m) => m.body);
}

/** Runs the script's body, and exits 0 only if it completed. */
export async function run(body) {
  try {
    await body();
  } catch (e) {
    console.error(e?.stack ?? e);
    process.exit(1);
  }
  // Open sockets and the stdin reader would keep the process alive.
  process.exit(0);
}
