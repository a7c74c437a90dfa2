// Connects a real EventSource to fanout's SSE stream, reads N `message`
// events, and prints each event's id and data as one JSON line.
// Usage: node read_events.mjs URL N
import { EventSource } from "eventsource";

const [url, count] = [process.argv[2], Number(process.argv[3] || 1)];
const es = new EventSource(url);
let seen = 0;
const timer = setTimeout(() => {
  console.error(`timed out after ${seen} of ${count} events`);
  process.exit(2);
}, 10000);
es.addEventListener("message", (e) => {
  console.log(JSON.stringify({ id: e.lastEventId, data: JSON.parse(e.data) }));
  seen += 1;
  if (seen >= count) {
    clearTimeout(timer);
    es.close();
    process.exit(0);
  }
});
es.onerror = (e) => console.error(`eventsource error: ${e.message ?? e.type}`);
