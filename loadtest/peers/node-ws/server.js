// The classic Node `ws` broadcast server: every message a client sends is
// sent to every connected client (the sender included; the load tester
// ignores its own messages). Reference point for fanout-loadtest.
//
//   npm ci && node server.js 9001      (or PORT=9001 node server.js)
//
// permessage-deflate (RFC 7692) is off unless asked for:
//
//   node server.js 9001 --deflate               server_no_context_takeover, as the broker
//   node server.js 9001 --deflate=takeover      the server keeps its context across messages
//   --deflate-threshold=N                       compress messages of N bytes and more (default 0: all)
//   --deflate-level=N                           zlib level 1..9 (default: zlib's, 6)
//
// or DEFLATE=no_context_takeover|takeover (and DEFLATE_THRESHOLD, DEFLATE_LEVEL) in the environment.
// ws compresses every message once per client, as it must when each client has its own context.
'use strict';
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
// `--name` gives '', `--name=value` gives 'value', absent gives the environment's value.
const option = (name, env) => {
  const arg = args.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (arg === undefined) return process.env[env];
  return arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : '';
};

const port = Number(args.find((a) => /^\d+$/.test(a)) || process.env.PORT || 9001);
const mode = option('deflate', 'DEFLATE');
let perMessageDeflate = false;
if (mode !== undefined && mode !== 'off') {
  if (!['', 'no_context_takeover', 'takeover'].includes(mode)) {
    console.error(`unknown --deflate mode '${mode}' (no_context_takeover or takeover)`);
    process.exit(2);
  }
  perMessageDeflate = {
    serverNoContextTakeover: mode !== 'takeover',
    threshold: Number(option('deflate-threshold', 'DEFLATE_THRESHOLD') || 0),
  };
  const level = option('deflate-level', 'DEFLATE_LEVEL');
  if (level) perMessageDeflate.zlibDeflateOptions = { level: Number(level) };
}

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    wss.clients.forEach((c) => c.send(data, { binary: isBinary }));
  });
  ws.on('error', () => {});
});

wss.on('listening', () => {
  const deflate = perMessageDeflate
    ? `permessage-deflate ${mode === 'takeover' ? 'with context takeover' : 'server_no_context_takeover'}, threshold ${perMessageDeflate.threshold}`
    : 'no permessage-deflate';
  console.log(`node-ws broadcast server on ws://127.0.0.1:${port} (${deflate})`);
});
