// Drives the reference Socket.IO client (socket.io-client 4.8) for tests/socketio_client.rs.
//
// Reads one JSON command a line on stdin and prints one JSON line per thing a client
// observed, tagged with the client's name (`as`). The Rust test decides what happens
// when and asserts on what is printed. Bytes travel as {"$bytes": "<base64>"} both ways.
//
//   {"cmd":"connect","as":"a","url":"http://HOST:PORT/chat.room1","opts":{...}}
//       -> {"as":"a","on":"connect","id":..,"recovered":..,"transport":..}
//          {"as":"a","on":"connect_error","message":..,"data":..}
//          {"as":"a","on":"event","event":"message","args":[..]}   (every event, onAny)
//          {"as":"a","on":"disconnect","reason":..}
//          {"as":"a","on":"upgrade","transport":"websocket"}       (polling -> websocket)
//          {"as":"a","on":"ping"}                                  (a server ping)
//   {"cmd":"emit","as":"a","event":"message","args":[..],"ack":"ref"}  ack optional
//       -> {"as":"a","on":"ack","ref":"ref","err":null,"res":[..]}
//   {"cmd":"state","as":"a"}  -> {"as":"a","on":"state","connected":..,"recovered":..,
//                                 "sid":..,"transport":..,"pingInterval":..,"pingTimeout":..}
//   {"cmd":"disconnect","as":"a"}  socket.disconnect(): the client leaves
//   {"cmd":"drop","as":"a","hold":true}  socket.io.engine.close(): the connection is lost;
//       with hold, the client waits for {"cmd":"reconnect","as":"a"} to come back
//   {"cmd":"exit"}
import { io } from 'socket.io-client';
import { createInterface } from 'node:readline';

const WAIT = 10000; // the longest an ack may take
const sockets = new Map();
const print = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

const isBytes = (v) => v instanceof ArrayBuffer || ArrayBuffer.isView(v);
const bytesOf = (v) => (v instanceof ArrayBuffer ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength));
const encode = (v) => {
  if (isBytes(v)) return { $bytes: bytesOf(v).toString('base64') };
  if (Array.isArray(v)) return v.map(encode);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encode(x)]));
  return v;
};
const decode = (v) => {
  if (v && typeof v === 'object' && typeof v.$bytes === 'string') return Buffer.from(v.$bytes, 'base64');
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(x)]));
  return v;
};

function connect({ as, url, opts = {} }) {
  // forceNew: each named client is its own connection, as two browser tabs would be
  // (unless opts say forceNew: false, to share one as namespaces of one page do).
  const s = io(url, { forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 500, ...opts });
  const say = (on, o = {}) => print({ as, on, ...o });
  sockets.set(as, s);
  s.on('connect', () => say('connect', { id: s.id, recovered: s.recovered, transport: s.io.engine.transport.name }));
  s.on('connect_error', (e) => say('connect_error', { message: e.message, data: e.data ?? null }));
  s.on('disconnect', (reason) => say('disconnect', { reason }));
  s.onAny((event, ...args) => say('event', { event, args: encode(args) }));
  s.io.on('open', () => {
    s.io.engine.on('upgrade', (t) => say('upgrade', { transport: t.name }));
    s.io.engine.on('ping', () => say('ping'));
  });
}

const commands = {
  connect,
  emit({ as, event, args = [], ack }) {
    const s = sockets.get(as);
    if (ack === undefined) return s.emit(event, ...decode(args));
    s.timeout(WAIT).emit(event, ...decode(args), (err, ...res) =>
      print({ as, on: 'ack', ref: ack, err: err ? err.message : null, res: encode(res) }),
    );
  },
  state({ as }) {
    const s = sockets.get(as);
    const e = s.io.engine;
    print({
      as,
      on: 'state',
      connected: s.connected,
      recovered: s.recovered,
      sid: e?.id ?? null,
      transport: e?.transport?.name ?? null,
      pingInterval: e?._pingInterval ?? null,
      pingTimeout: e?._pingTimeout ?? null,
    });
  },
  disconnect({ as }) {
    sockets.get(as).disconnect();
  },
  drop({ as, hold }) {
    const s = sockets.get(as);
    if (hold) s.io.reconnection(false);
    s.io.engine.close();
  },
  reconnect({ as }) {
    const s = sockets.get(as);
    s.io.reconnection(true);
    s.connect();
  },
  exit() {
    for (const s of sockets.values()) s.disconnect();
    process.exit(0);
  },
};

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  const run = commands[cmd.cmd];
  if (!run) throw new Error(`unknown command ${cmd.cmd}`);
  run(cmd);
}
process.exit(0);
