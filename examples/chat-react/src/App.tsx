import { FormEvent, useEffect, useRef, useState } from "react";
import { useMutation, usePaginatedQuery, useQuery } from "convex/react";
import { api } from "./api";

/** A document of the `messages` table, as `chat:send_message` writes it. */
type Message = {
  _id: string;
  _creationTime: number;
  user: string;
  body: string;
};

/** How many messages the history shows at first, and adds per "Load more". */
const PAGE_SIZE = 5;

type View = "chat" | "history";

function viewOfLocation(): View {
  return window.location.hash === "#history" ? "history" : "chat";
}

export default function App() {
  // The view lives in the URL's hash, so a reload or a link opens the same one.
  const [view, setView] = useState<View>(viewOfLocation);
  useEffect(() => {
    const follow = () => setView(viewOfLocation());
    window.addEventListener("hashchange", follow);
    return () => window.removeEventListener("hashchange", follow);
  }, []);
  const [name, setName] = useName();

  return (
    <main className="chat">
      <header>
        <h1>Convex Chat</h1>
        <label>
          Connected as{" "}
          <input
            id="name"
            value={name}
            onChange={(event) => setName(event.target.value)}
            autoComplete="off"
            maxLength={40}
          />
        </label>
        <nav>
          <a href="#chat" id="to-chat" aria-current={view === "chat" ? "page" : undefined}>
            Chat
          </a>
          <a href="#history" id="to-history" aria-current={view === "history" ? "page" : undefined}>
            History
          </a>
        </nav>
      </header>
      {view === "chat" ? <Chat name={name.trim() || "Anonymous"} /> : <History />}
    </main>
  );
}

/** One name per window: sessionStorage is per tab and survives a reload. */
function useName(): [string, (name: string) => void] {
  const [name, setName] = useState(() => {
    const saved = sessionStorage.getItem("chat-name");
    return saved ?? `User ${Math.floor(1000 + Math.random() * 9000)}`;
  });
  useEffect(() => {
    sessionStorage.setItem("chat-name", name);
  }, [name]);
  return [name, setName];
}

/** The tutorial's chat: the latest messages, live, and a box to send one. */
function Chat({ name }: { name: string }) {
  const messages: Message[] | undefined = useQuery(api.chat.get_messages);
  const sendMessage = useMutation(api.chat.send_message);
  const [body, setBody] = useState("");
  const [error, setError] = useState<string | null>(null);

  // The newest message in view. A block, not an arrow's value: browsers have begun to return
  // a promise from scrollIntoView, and React would take a returned value for a cleanup.
  const end = useRef<HTMLDivElement>(null);
  useEffect(() => {
    end.current?.scrollIntoView({ block: "end" });
  }, [messages]);

  async function send(event: FormEvent) {
    event.preventDefault();
    const text = body.trim();
    if (!text) return;
    // Cleared at once so the next message can be typed while this one is on its way; put
    // back if the server refuses it.
    setBody("");
    try {
      await sendMessage({ user: name, body: text });
      setError(null);
    } catch (failure) {
      setError(`Sending failed: ${describe(failure)}`);
      setBody((typed) => typed || text);
    }
  }

  return (
    <>
      <ul id="messages" data-loaded={messages !== undefined} aria-live="polite">
        {messages?.map((message) => (
          <li
            key={message._id}
            data-id={message._id}
            className={message.user === name ? "message own" : "message"}
          >
            <span className="user">{message.user}</span>
            <span className="body">{message.body}</span>
          </li>
        ))}
      </ul>
      <div ref={end} />
      <form id="composer" onSubmit={send}>
        <input
          id="body"
          value={body}
          onChange={(event) => setBody(event.target.value)}
          placeholder="Write a message…"
          aria-label="Message"
          autoComplete="off"
          autoFocus
        />
        <button id="send" type="submit" disabled={!body.trim()}>
          Send
        </button>
      </form>
      {error && (
        <p id="error" className="error" role="alert">
          {error}
        </p>
      )}
    </>
  );
}

/** Every message, newest first, a page at a time; each page stays live as messages come and go. */
function History() {
  const { results, status, loadMore } = usePaginatedQuery(
    api.chat.list_messages,
    {},
    { initialNumItems: PAGE_SIZE },
  );
  const messages: Message[] = results;
  const deleteMessage = useMutation(api.chat.delete_message);
  const [error, setError] = useState<string | null>(null);

  async function remove(id: string) {
    try {
      await deleteMessage({ id });
      setError(null);
    } catch (failure) {
      setError(`Deleting failed: ${describe(failure)}`);
    }
  }

  return (
    <section id="history" data-status={status}>
      <ol id="pages">
        {messages.map((message) => (
          <li key={message._id} data-id={message._id} className="message">
            <span className="user">{message.user}</span>
            <span className="body">{message.body}</span>
            <button
              type="button"
              className="delete"
              onClick={() => remove(message._id)}
              aria-label={`Delete the message "${message.body}"`}
            >
              Delete
            </button>
          </li>
        ))}
      </ol>
      <button
        id="load-more"
        type="button"
        onClick={() => loadMore(PAGE_SIZE)}
        disabled={status !== "CanLoadMore"}
      >
        {status === "Exhausted"
          ? "That is every message"
          : status === "CanLoadMore"
            ? "Load more"
            : "Loading…"}
      </button>
      {error && (
        <p id="error" className="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

/** A failure's message without the client's trailing "Called by client" line. */
function describe(failure: unknown): string {
  const text = failure instanceof Error ? failure.message : String(failure);
  return text.replace(/\s*Called by client\s*$/, "");
}
