// The official Node socket.io 4.x server doing the classic broadcast: every
// `message` event a socket emits goes to every other socket of its namespace
// (`socket.broadcast.emit`, the sender excluded), acked when the emitter asks.
// Any namespace is accepted (`/lt.fanout` is the load tester's topic). One
// process, the default in-memory adapter, default heartbeat (pingInterval
// 25 s, pingTimeout 20 s), WebSocket and polling transports, no compression
// (fanout does not compress either). Reference point for fanout-loadtest.
//
//   npm ci && node server.js 9003      (or PORT=9003 node server.js)
'use strict';
const http = require('http');
const { Server } = require('socket.io');

const port = Number(process.argv[2] || process.env.PORT || 9003);
const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ['polling', 'websocket'],
  perMessageDeflate: false,
});

io.of(/^\/.*$/).on('connection', (socket) => {
  socket.on('message', (data, ack) => {
    socket.broadcast.emit('message', data);
    if (typeof ack === 'function') ack();
  });
});

httpServer.listen(port, '127.0.0.1', () =>
  console.log(`node socket.io ${require('socket.io/package.json').version} broadcast server on ws://127.0.0.1:${port}/socket.io/`),
);
