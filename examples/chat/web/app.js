// The chat page: live messages from chat:get_messages, sending with chat:send_message.
import { Client } from "/api/client.js";

const client = new Client();
// For the browser console (and tests): client.connectionStatus() and friends.
window.chatClient = client;

const nameInput = document.getElementById("name");
const messageList = document.getElementById("messages");
const composer = document.getElementById("composer");
const bodyInput = document.getElementById("body");
const statusLabel = document.getElementById("status");
const errorLine = document.getElementById("error");

// One name per window: sessionStorage is per tab, and survives a reload.
let name = sessionStorage.getItem("chat-name");
if (!name) {
  name = `User ${Math.floor(1000 + Math.random() * 9000)}`;
  sessionStorage.setItem("chat-name", name);
}
nameInput.value = name;
nameInput.addEventListener("input", () => {
  name = nameInput.value.trim() || name;
  sessionStorage.setItem("chat-name", name);
  render();
});

let messages = [];

client.subscribe(
  "chat:get_messages",
  {},
  (latest) => {
    messages = latest;
    render();
  },
  (error) => showError(`Loading messages failed: ${error.message}`),
);

function render() {
  const main = messageList.parentElement;
  const atBottom = main.scrollHeight - main.scrollTop - main.clientHeight < 40;
  messageList.replaceChildren(
    ...messages.map((message) => {
      const item = document.createElement("li");
      item.className = message.user === name ? "message own" : "message";
      item.dataset.id = message._id;
      const user = document.createElement("span");
      user.className = "user";
      user.textContent = message.user;
      const body = document.createElement("span");
      body.className = "body";
      body.textContent = message.body;
      item.append(user, body);
      return item;
    }),
  );
  if (atBottom) main.scrollTop = main.scrollHeight;
}

composer.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = bodyInput.value.trim();
  if (!body) return;
  bodyInput.value = "";
  try {
    await client.mutation("chat:send_message", { user: name, body });
    showError("");
  } catch (error) {
    showError(`Sending failed: ${error.message}`);
    if (!bodyInput.value) bodyInput.value = body;
  }
});

client.onConnectionChange(({ state }) => {
  statusLabel.dataset.state = state;
  statusLabel.textContent = state === "connected" ? "live" : state === "disconnected" ? "reconnecting…" : state;
});

function showError(text) {
  errorLine.textContent = text;
  errorLine.hidden = !text;
}
