// The classic Node `ws` broadcast server: every message a client sends is
// sent to every connected client (the sender included; the load tester
// ignores its own messages). Reference point for fanout-loadtest.
//
//   npm install && node server.js 9001      (or PORT=9001 node server.js)
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || process.env.PORT || 9001);
const wss = new WebSocketServer({ host: '127.0.0.1', port });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    wss.clients.forEach((c) => c.send(data, { binary: isBinary }));
  });
  ws.on('error', () => {});
});

wss.on('listening', () => console.log(`node-ws broadcast server on ws://127.0.0.1:${port}`));
