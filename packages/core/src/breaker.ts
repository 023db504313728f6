import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';

/**
 * One opossum breaker per key, per process. The store holds the fleet-wide
 * truth (failures, open-until, the single half-open probe); these local
 * breakers mirror it so the process gets opossum's state machine and events
 * (open → halfOpen after the cooldown → close) without polling.
 */
export class KeyBreakers {
  // A shared bucket controller replaces opossum's per-breaker rolling-stats
  // interval: 1,000 keys must not mean 1,000 timers.
  private readonly rotation = new EventEmitter();
  private readonly breakers = new Map<string, CircuitBreaker>();

  constructor(
    private readonly cooldownMs: number,
    private readonly onHalfOpen: (keyId: string) => void,
  ) {}

  private breakerFor(keyId: string): CircuitBreaker {
    let breaker = this.breakers.get(keyId);
    if (breaker === undefined) {
      breaker = new CircuitBreaker(async () => undefined, {
        name: keyId,
        resetTimeout: this.cooldownMs,
        enableSnapshots: false,
        rollingPercentilesEnabled: false,
        rotateBucketController: this.rotation,
      });
      breaker.on('halfOpen', () => this.onHalfOpen(keyId));
      this.breakers.set(keyId, breaker);
    }
    return breaker;
  }

  open(keyId: string): void {
    this.breakerFor(keyId).open();
  }

  close(keyId: string): void {
    this.breakers.get(keyId)?.close();
  }

  isOpen(keyId: string): boolean {
    return this.breakers.get(keyId)?.opened ?? false;
  }

  forget(keyId: string): void {
    this.breakers.get(keyId)?.shutdown();
    this.breakers.delete(keyId);
  }

  dispose(): void {
    for (const breaker of this.breakers.values()) breaker.shutdown();
    this.breakers.clear();
    this.rotation.removeAllListeners();
  }
}
