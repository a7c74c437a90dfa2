// Talks to fanout's /ws with the `ws` npm client, permessage-deflate on
// (Node's most used WebSocket implementation, independent of ours): subscribes,
// publishes MESSAGES JSON documents compressed (threshold 0: every frame), and
// prints one JSON line per message received back: {extensions, seq, data}.
// Run by tests/deflate_node.rs. Usage: node deflate.mjs WS_URL DOC_JSON MESSAGES [SERVER_MAX_WINDOW_BITS]
import WebSocket from 'ws';

const [url, doc, count, windowBits] = process.argv.slice(2);
const perMessageDeflate = { threshold: 0 };
if (windowBits) perMessageDeflate.serverMaxWindowBits = Number(windowBits);
const ws = new WebSocket(url, { perMessageDeflate });
const timer = setTimeout(() => {
  console.error('timed out');
  process.exit(2);
}, 10000);
let received = 0;
ws.on('open', () => {
  ws.send(JSON.stringify({ op: 'subscribe', topic: 'node.deflate', id: 1 }));
});
ws.on('message', (raw) => {
  const m = JSON.parse(raw.toString());
  if (m.type === 'ack' && m.id === 1) {
    for (let i = 0; i < Number(count); i++) {
      ws.send(JSON.stringify({ op: 'publish', topic: 'node.deflate', data: { i, doc: JSON.parse(doc) } }));
    }
    return;
  }
  if (m.type !== 'message') return;
  console.log(JSON.stringify({ extensions: ws.extensions, seq: m.seq, data: m.data }));
  if (++received === Number(count)) {
    clearTimeout(timer);
    ws.close(1000);
  }
});
ws.on('error', (e) => {
  console.error(`ws error: ${e.message}`);
  process.exit(1);
});
