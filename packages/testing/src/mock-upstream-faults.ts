/**
 * Scripted faults per key: each request that carries the key takes the next
 * step; when the steps run out the key answers normally again (or the script
 * starts over with `repeat: true`).
 */

/** Faults named by what they model; each dialect answers them the way its real API does. */
export type FaultName =
  /** OpenAI: 429 `insufficient_quota`. Anthropic has no such code: answered like `billing`. */
  | 'insufficient_quota'
  /**
   * Credit exhausted. Anthropic: 400 `invalid_request_error` "Your credit balance is too low…"
   * (what the live API sends; use `{ fault: 'billing', status: 402 }` for the documented
   * 402 `billing_error`). OpenAI: answered like `insufficient_quota`.
   */
  | 'billing'
  /** Destroy the socket before any response. */
  | 'drop'
  /**
   * Send the status line, headers and some of the body (stream chunks), then destroy the socket.
   * With `status` on a stream: send the API's in-stream error event for that status instead
   * (Anthropic `event: error` overloaded_error for 529, OpenAI `data: {"error":…}`) and end cleanly.
   */
  | 'midStreamError'
  /** Send the status line and headers, then destroy the socket before the first body byte. */
  | 'beforeFirstChunkError'
  /** Answer normally (to put a success between faults). */
  | 'ok';

export interface FaultSpec {
  /** One of the named faults; omitted with `status` set means "answer with that error status". */
  fault?: FaultName;
  /** HTTP error status (400, 401, 403, 404, 429, 500, 503, 529 …) answered in the dialect's error shape. */
  status?: number;
  /** Overrides the error `code` (OpenAI) or `error.type` (Anthropic). */
  code?: string;
  message?: string;
  /** `retry-after` header in seconds. */
  retryAfterS?: number;
  /** `retry-after-ms` header. */
  retryAfterMs?: number;
  /** Go duration (`6m0s`, `20ms`) until the requests bucket resets; sets remaining requests to 0. */
  resetRequests?: string;
  /** Go duration until the tokens bucket resets; sets remaining tokens to 0. */
  resetTokens?: string;
  /** Delay before answering (or before the fault), in ms. */
  slow?: number;
  /** For `midStreamError`: how many SSE events (or body bytes / 2 for JSON) go out before the cut. Default 2. */
  afterChunks?: number;
}

/** A step: a spec, a named fault, or a bare status (`429`). */
export type FaultStep = FaultSpec | FaultName | number;

export interface FaultScript {
  steps: FaultStep[];
  /** Start over after the last step instead of falling back to success. */
  repeat?: boolean;
}

export function normalizeStep(step: FaultStep): FaultSpec {
  if (typeof step === 'number') return { status: step };
  if (typeof step === 'string') return { fault: step };
  return step;
}

/** Per-key scripts, consumed in order. The key `*` applies to every key that has no script. */
export class ScriptBook {
  private readonly scripts = new Map<string, { steps: FaultSpec[]; repeat: boolean; next: number }>();

  set(secret: string, script: FaultScript | FaultStep[]): void {
    const { steps, repeat = false } = Array.isArray(script) ? { steps: script } : script;
    this.scripts.set(secret, { steps: steps.map(normalizeStep), repeat, next: 0 });
  }

  /** The step for this request, or undefined when the key has no step left (a normal answer). */
  take(secret: string): FaultSpec | undefined {
    const script = this.scripts.get(secret) ?? this.scripts.get('*');
    if (!script || script.steps.length === 0) return undefined;
    if (script.next >= script.steps.length) {
      if (!script.repeat) return undefined;
      script.next = 0;
    }
    const step = script.steps[script.next]!;
    script.next++;
    return step;
  }

  clear(): void {
    this.scripts.clear();
  }
}
