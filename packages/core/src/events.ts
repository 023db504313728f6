import type { Disposable, PoolEventName, PoolEvents } from '@keypool/spec';

type Listener<E extends PoolEventName> = (payload: PoolEvents[E]) => void;

/**
 * Typed, synchronous events. A throwing listener never breaks the pool: its
 * error is reported as an 'error' event (or dropped if that listener throws).
 */
export class PoolEmitter {
  private readonly listeners = new Map<PoolEventName, Set<Listener<PoolEventName>>>();

  on<E extends PoolEventName>(event: E, listener: Listener<E>): Disposable {
    let set = this.listeners.get(event);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(event, set);
    }
    const entry = listener as Listener<PoolEventName>;
    set.add(entry);
    return { dispose: () => set.delete(entry) };
  }

  /** Cheap check so hot paths build payloads only when someone listens. */
  has(event: PoolEventName): boolean {
    const set = this.listeners.get(event);
    return set !== undefined && set.size > 0;
  }

  emit<E extends PoolEventName>(event: E, payload: PoolEvents[E]): void {
    const set = this.listeners.get(event);
    if (set === undefined) return;
    for (const listener of set) {
      try {
        listener(payload);
      } catch (error) {
        if (event !== 'error') {
          this.emit('error', {
            error: error instanceof Error ? error : new Error(String(error)),
            during: event,
          });
        }
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}

/** Disposes in reverse order of registration, continuing past failures. */
export function disposeAll(disposables: Disposable[]): Error[] {
  const errors: Error[] = [];
  while (disposables.length > 0) {
    const next = disposables.pop();
    try {
      next?.dispose();
    } catch (error) {
      errors.push(error instanceof Error ? error : new Error(String(error)));
    }
  }
  return errors;
}
