import type { BuiltInStrategyName, KeyView, Strategy, StrategyContext } from '@keypool/spec';

/**
 * Built-in strategies order the keys of one tier. Each call of
 * `createStrategy` gets its own state, so two pools never share a rotation.
 */
export function createStrategy(name: BuiltInStrategyName): Strategy {
  switch (name) {
    case 'round-robin':
      return roundRobin();
    case 'random':
      return { name, order: (keys, context) => shuffle(keys, context) };
    case 'least-used':
      return {
        name,
        order: (keys) => [...keys].sort((a, b) => a.inFlight - b.inFlight || a.requests - b.requests),
      };
    case 'weighted':
      return { name, order: weighted };
    case 'priority':
      // Tiers are applied before any strategy; inside a tier, configuration order.
      return { name, order: (keys) => keys };
    case 'latency':
      return {
        name,
        // Unmeasured keys first so every key gets sampled.
        order: (keys) =>
          [...keys].sort(
            (a, b) => (a.latencyEwmaMs ?? -1) - (b.latencyEwmaMs ?? -1) || a.inFlight - b.inFlight,
          ),
      };
  }
}

export const builtInStrategyNames: readonly BuiltInStrategyName[] = [
  'round-robin',
  'random',
  'least-used',
  'weighted',
  'priority',
  'latency',
];

function roundRobin(): Strategy {
  // One cursor per tier list (the pool caches tier arrays, so identity is stable).
  const cursors = new WeakMap<readonly KeyView[], number>();
  return {
    name: 'round-robin',
    order(keys) {
      const count = keys.length;
      if (count <= 1) return keys;
      const start = (cursors.get(keys) ?? 0) % count;
      cursors.set(keys, start + 1);
      if (start === 0) return keys;
      const ordered = new Array<KeyView>(count);
      for (let i = 0; i < count; i++) ordered[i] = keys[(start + i) % count] as KeyView;
      return ordered;
    },
  };
}

function shuffle(keys: readonly KeyView[], context: StrategyContext): KeyView[] {
  const out = [...keys];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(context.random() * (i + 1));
    const swap = out[i] as KeyView;
    out[i] = out[j] as KeyView;
    out[j] = swap;
  }
  return out;
}

/** Weighted random order without replacement (Efraimidis–Spirakis): P(first) ∝ weight. */
function weighted(keys: readonly KeyView[], context: StrategyContext): KeyView[] {
  return keys
    .map((key) => ({ key, rank: key.weight > 0 ? context.random() ** (1 / key.weight) : -1 }))
    .sort((a, b) => b.rank - a.rank)
    .map((entry) => entry.key);
}
