import type { PoolEventName } from '@keypool/spec';
import { defineRoute } from '../route.js';
import { READ } from './roles.js';

/** Pool events forwarded to dashboards. Payloads carry key ids and aliases only, never secrets. */
const FORWARDED: PoolEventName[] = [
  'lease:acquired',
  'lease:released',
  'lease:expired',
  'key:cooldown',
  'key:exhausted',
  'key:invalid',
  'key:model-blocked',
  'key:status',
  'key:added',
  'key:updated',
  'key:removed',
  'key:last-resort',
  'probe:passed',
  'probe:failed',
  'breaker:open',
  'breaker:half-open',
  'breaker:close',
  'request:retry',
  'pool:no-key',
  'store:degraded',
  'store:recovered',
];

export const eventRoutes = [
  defineRoute({
    method: 'get',
    path: '/v1/events',
    summary: 'Server-sent events: pool events as they happen and a `health` event every few seconds',
    tag: 'events',
    roles: READ,
    responses: { 200: { description: 'text/event-stream', contentType: 'text/event-stream' } },
    handle({ req, res }, context) {
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      res.flushHeaders();
      let id = 0;
      const send = (event: string, data: unknown) => {
        id++;
        res.write(`id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      };
      send('health', context.pool.health());
      const subscriptions = FORWARDED.map((name) => context.pool.on(name, (payload) => send(name, payload)));
      const tick = setInterval(() => send('health', context.pool.health()), context.healthIntervalMs);
      // Comment lines keep proxies from closing an idle stream.
      const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
      const end = () => {
        clearInterval(tick);
        clearInterval(keepAlive);
        for (const s of subscriptions) s.dispose();
        context.streams.delete(end);
        res.end();
      };
      context.streams.add(end);
      req.on('close', end);
      return undefined;
    },
  }),
];
