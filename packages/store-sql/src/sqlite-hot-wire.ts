import { SqlStoreError } from './errors.js';

/** An error as plain data, so it crosses `postMessage` with its `code`/`errcode` (a structured clone drops them). */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  props: Record<string, unknown>;
}

export function toWire(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), props: {} };
  const props: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(error)) {
    if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) props[k] = v;
  }
  return { name: error.name, message: error.message, stack: error.stack, props };
}

/** The error again, as the thread that threw it saw it (node:sqlite's code/errcode/errstr; a SqlStoreError stays one). */
export function fromWire(wire: WireError): Error {
  const error =
    wire.name === 'SqlStoreError'
      ? new SqlStoreError(wire.props.code as SqlStoreError['code'], wire.message)
      : Object.assign(new Error(wire.message), wire.props);
  error.name = wire.name;
  if (wire.stack) error.stack = wire.stack;
  return error;
}
