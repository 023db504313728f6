import {
  createKeyPool,
  generateMasterKey,
  type KeyPoolOptions,
  type MasterKey,
  parseMasterKey,
} from '@keypool/core';
import { anthropicProvider } from '@keypool/provider-anthropic';
import { openaiProvider } from '@keypool/provider-openai';
import type { KeyPool, Store } from '@keypool/spec';
import { type LoadedMasterKeys, loadMasterKeys } from './master-key-file.js';
import { defaultStoreUrl, openStore } from './store-url.js';

export interface GlobalOptions {
  store?: string;
  dataDir: string;
  json?: boolean;
}

export interface OpenedPool {
  pool: KeyPool;
  store: Store;
  storeUrl: string;
  masters: LoadedMasterKeys;
  masterKeys: MasterKey[];
}

const CANARY_META = 'keypool:master-key-canary';

export function storeUrlOf(options: GlobalOptions): string {
  // Empty means unset, as shells and CI templates often export KEYPOOL_STORE=''.
  return options.store || process.env.KEYPOOL_STORE || defaultStoreUrl(options.dataDir);
}

/**
 * Opens the store and a pool on it with both providers. The master key comes
 * from KEYPOOL_MASTER_KEY or the data directory, and is generated only for a
 * store that has never had one.
 */
export async function openPool(
  options: GlobalOptions,
  poolOptions: Pick<KeyPoolOptions, 'refreshMs' | 'keys' | 'lastResort' | 'probes'> = {},
): Promise<OpenedPool> {
  const storeUrl = storeUrlOf(options);
  const store = await openStore(storeUrl);
  try {
    await store.init?.();
    let masters = loadMasterKeys(options.dataDir, { create: false });
    if (masters === undefined && !store.capabilities.durable) {
      // Nothing outlives the process: a key file would only be litter.
      masters = { keys: [parseMasterKey(generateMasterKey())], source: 'ephemeral' };
    }
    if (masters === undefined) {
      if ((await store.getMeta(CANARY_META)) !== undefined) {
        throw Object.assign(
          new Error(
            `This store already holds secrets sealed with a master key, and neither KEYPOOL_MASTER_KEY nor ${options.dataDir}/master.key is there. ` +
              'Set KEYPOOL_MASTER_KEY to that key (or restore the file); without it the secrets cannot be opened.',
          ),
          { code: 'KEYPOOL_MASTER_KEY' },
        );
      }
      masters = loadMasterKeys(options.dataDir, { create: true }) as LoadedMasterKeys;
    }
    const pool = await createKeyPool({
      store,
      plugins: [openaiProvider(), anthropicProvider()],
      masterKey: masters.keys,
      ...(poolOptions.refreshMs !== undefined && { refreshMs: poolOptions.refreshMs }),
      ...(poolOptions.keys !== undefined && { keys: poolOptions.keys }),
      ...(poolOptions.lastResort !== undefined && { lastResort: poolOptions.lastResort }),
      ...(poolOptions.probes !== undefined && { probes: poolOptions.probes }),
    });
    return { pool, store, storeUrl, masters, masterKeys: masters.keys };
  } catch (error) {
    await store.close().catch(() => undefined);
    throw error;
  }
}
