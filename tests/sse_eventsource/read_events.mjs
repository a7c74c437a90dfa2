// Connects a real EventSource to fanout's SSE stream, reads N events, and
// prints each event's id, type and data as one JSON line.
// Usage: node read_events.mjs URL N [json|text]
//   json (default): `message` events, data parsed as JSON (GET /sse/...);
//   text: the payload-only stream (GET /sse/t/...): `onmessage` data as the
//   string it is, and `binary` events too.
import { EventSource } from "eventsource";

const [url, count, mode] = [process.argv[2], Number(process.argv[3] || 1), process.argv[4] || "json"];
const es = new EventSource(url);
let seen = 0;
const timer = setTimeout(() => {
  console.error(`timed out after ${seen} of ${count} events`);
  process.exit(2);
}, 10000);
const print = (e) => {
  const data = mode === "json" ? JSON.parse(e.data) : e.data;
  console.log(JSON.stringify({ id: e.lastEventId, type: e.type, data }));
  seen += 1;
  if (seen >= count) {
    clearTimeout(timer);
    es.close();
    process.exit(0);
  }
};
if (mode === "json") {
  es.addEventListener("message", print);
} else {
  // What a page does with a payload-only stream: the value itself is `ev.data`.
  es.onmessage = print;
  es.addEventListener("binary", print);
}
es.onerror = (e) => console.error(`eventsource error: ${e.message ?? e.type}`);
