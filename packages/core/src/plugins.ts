import type {
  Disposable,
  Plugin,
  PluginContext,
  PriceTable,
  Provider,
  Registry,
  Strategy,
  StrategyFn,
} from '@keypool/spec';
import { specificationVersion } from '@keypool/spec';
import { KeypoolError } from './errors.js';
import type { PoolEmitter } from './events.js';
import type { PriceBook } from './prices.js';

/** Identity helper that types a plugin, like `defineConfig` in build tools. */
export function definePlugin(plugin: Plugin): Plugin {
  return plugin;
}

class ProviderRegistry implements Registry<Provider> {
  private readonly items = new Map<string, Provider>();

  register(provider: Provider): Disposable {
    if (provider.specificationVersion !== specificationVersion) {
      throw new KeypoolError(
        'KEYPOOL_INVALID_CONFIG',
        `Provider "${provider.id}" speaks specification ${String(provider.specificationVersion)}, this pool ${specificationVersion}: upgrade the adapter or @keypool/core so they match.`,
      );
    }
    if (this.items.has(provider.id)) {
      throw new KeypoolError(
        'KEYPOOL_DUPLICATE_PLUGIN',
        `Provider "${provider.id}" is registered twice: pass each provider plugin once.`,
      );
    }
    this.items.set(provider.id, provider);
    return { dispose: () => this.items.delete(provider.id) };
  }

  get(id: string): Provider | undefined {
    return this.items.get(id);
  }

  list(): readonly Provider[] {
    return [...this.items.values()];
  }
}

export interface PluginHost {
  readonly providers: ProviderRegistry;
  readonly strategies: Map<string, Strategy>;
  /** Activated plugins' subscriptions, disposed in reverse on close. */
  readonly subscriptions: Disposable[];
  activate(plugins: readonly Plugin[]): Promise<void>;
  dispose(): Promise<Error[]>;
}

export function createPluginHost(emitter: PoolEmitter, prices: PriceBook): PluginHost {
  const providers = new ProviderRegistry();
  const strategies = new Map<string, Strategy>();
  const subscriptions: Disposable[] = [];
  const activated: Plugin[] = [];

  const context: PluginContext = {
    providers,
    strategies: {
      register(name: string, strategy: StrategyFn | Strategy): Disposable {
        if (strategies.has(name)) {
          throw new KeypoolError('KEYPOOL_DUPLICATE_PLUGIN', `Strategy "${name}" is registered twice.`);
        }
        strategies.set(name, typeof strategy === 'function' ? { name, order: strategy } : strategy);
        return { dispose: () => strategies.delete(name) };
      },
    },
    on: (event, listener) => emitter.on(event, listener),
    subscriptions,
    prices: {
      register(table: PriceTable): Disposable {
        return { dispose: prices.add(table) };
      },
    },
  };

  return {
    providers,
    strategies,
    subscriptions,
    async activate(plugins) {
      const seen = new Set<string>();
      for (const plugin of plugins) {
        if (seen.has(plugin.id)) {
          throw new KeypoolError(
            'KEYPOOL_DUPLICATE_PLUGIN',
            `Plugin "${plugin.id}" is listed twice in plugins: keep one.`,
          );
        }
        seen.add(plugin.id);
      }
      // Deterministic: in the order given, each finishing before the next starts.
      for (const plugin of plugins) {
        await plugin.activate(context);
        activated.push(plugin);
      }
    },
    async dispose() {
      const errors: Error[] = [];
      while (subscriptions.length > 0) {
        try {
          subscriptions.pop()?.dispose();
        } catch (error) {
          errors.push(error instanceof Error ? error : new Error(String(error)));
        }
      }
      while (activated.length > 0) {
        const plugin = activated.pop();
        try {
          await plugin?.deactivate?.();
        } catch (error) {
          errors.push(error instanceof Error ? error : new Error(String(error)));
        }
      }
      return errors;
    },
  };
}
