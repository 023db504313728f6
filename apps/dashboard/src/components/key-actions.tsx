// Operator actions on one key. Each asks first, reports its result, and lands in the audit log
// (the API writes the entry; the page refreshes the trail).
import { useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ApiError } from '../api.js';
import { canOperate } from '../session.js';
import { useSession } from '../session-context.js';
import type { KeyHealth, ProbeResult } from '../types.js';
import { ConfirmDialog } from './dialog.js';
import { useToast } from './toast.js';

type Action = 'enable' | 'disable' | 'reset' | 'test';

export function KeyActions({ keyHealth }: { keyHealth: Pick<KeyHealth, 'id' | 'alias' | 'status'> }) {
  const { api, role } = useSession();
  const toast = useToast();
  const queryClient = useQueryClient();
  const [open, setOpen] = useState<Action | undefined>();
  const [busy, setBusy] = useState(false);

  if (!canOperate(role)) {
    return <p className="muted small">Your token has the {role} role: it can read, not act on keys.</p>;
  }

  const { id, alias, status } = keyHealth;
  const path = `/v1/keys/${encodeURIComponent(id)}`;

  async function run(action: Action, form: FormData) {
    setBusy(true);
    try {
      if (action === 'enable') {
        await api.post(`${path}/enable`);
        toast.success(`${alias} enabled.`);
      } else if (action === 'disable') {
        const reason = String(form.get('reason') ?? '').trim();
        await api.post(`${path}/disable`, reason === '' ? {} : { reason });
        toast.success(`${alias} disabled${reason === '' ? '' : `: ${reason}`}.`);
      } else if (action === 'reset') {
        await api.post(`${path}/reset`, { counters: form.get('counters') === 'on' });
        toast.success(`${alias} reset: cooldown, exhaustion and breaker cleared.`);
      } else {
        const result = await api.post<ProbeResult>(`${path}/test`);
        // A pass also brings an invalid, exhausted or breaker-open key back (the API says what it cleared).
        const recovered = result.recovered ?? [];
        if (result.ok)
          toast.success(
            `${alias} works: the provider answered in ${result.latencyMs} ms.${recovered.length > 0 ? ` It is no longer ${recovered.join(' or ')} and takes traffic again.` : ''}`,
          );
        else
          toast.error(
            `${alias} failed its test${result.status !== undefined ? ` (${result.status}${result.code !== undefined ? ` ${result.code}` : ''})` : ''}${result.message !== undefined ? `: ${result.message}` : ''}.`,
          );
      }
      setOpen(undefined);
    } catch (error) {
      toast.error(
        `Could not ${action} ${alias}: ${error instanceof ApiError ? error.message : String(error)}`,
      );
    } finally {
      setBusy(false);
      await Promise.all([
        queryClient.invalidateQueries({ queryKey: ['health'] }),
        queryClient.invalidateQueries({ queryKey: ['keys'] }),
        queryClient.invalidateQueries({ queryKey: ['audit'] }),
      ]);
    }
  }

  const isOff = status === 'disabled' || status === 'invalid';
  return (
    <fieldset className="actions">
      <legend className="visually-hidden">Actions for {alias}</legend>
      {isOff ? (
        <button type="button" className="primary" onClick={() => setOpen('enable')}>
          Enable
        </button>
      ) : (
        <button type="button" className="danger" onClick={() => setOpen('disable')}>
          Disable
        </button>
      )}
      <button type="button" onClick={() => setOpen('reset')}>
        Reset
      </button>
      <button type="button" onClick={() => setOpen('test')}>
        Test
      </button>

      <ConfirmDialog
        title={`Enable ${alias}?`}
        open={open === 'enable'}
        confirmLabel="Enable key"
        busy={busy}
        onCancel={() => setOpen(undefined)}
        onConfirm={(form) => void run('enable', form)}
      >
        <p>
          The pool starts sending traffic to this key again
          {status === 'invalid' ? ', and forgets that the provider refused it' : ''}.
        </p>
      </ConfirmDialog>
      <ConfirmDialog
        title={`Disable ${alias}?`}
        open={open === 'disable'}
        confirmLabel="Disable key"
        danger
        busy={busy}
        onCancel={() => setOpen(undefined)}
        onConfirm={(form) => void run('disable', form)}
      >
        <p>No new requests go to this key until someone enables it. Requests in flight finish.</p>
        <label htmlFor="disable-reason">Reason (shown to other operators and in the audit log)</label>
        <textarea id="disable-reason" name="reason" maxLength={500} rows={3} required />
      </ConfirmDialog>
      <ConfirmDialog
        title={`Reset ${alias}?`}
        open={open === 'reset'}
        confirmLabel="Reset key"
        busy={busy}
        onCancel={() => setOpen(undefined)}
        onConfirm={(form) => void run('reset', form)}
      >
        <p>Clears cooldown, exhaustion, invalidity and the breaker, so the key takes traffic now.</p>
        <label className="check">
          <input type="checkbox" name="counters" /> Also clear its rate window, daily and monthly counters
        </label>
      </ConfirmDialog>
      <ConfirmDialog
        title={`Test ${alias}?`}
        open={open === 'test'}
        confirmLabel="Run test"
        busy={busy}
        onCancel={() => setOpen(undefined)}
        onConfirm={(form) => void run('test', form)}
      >
        <p>
          Makes the provider's cheapest real call (listing models) with this key and reports what it answered.
        </p>
      </ConfirmDialog>
    </fieldset>
  );
}
