import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { act, cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import type { ReactNode } from 'react';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Api } from '../api.js';
import { SessionContext } from '../session-context.js';
import type { Role } from '../types.js';
import { HeadroomBars } from './headroom.js';
import { KeyActions } from './key-actions.js';
import { OrgTable } from './org-table.js';
import { StatusBadge } from './status-badge.js';
import { ToastProvider } from './toast.js';

afterEach(() => {
  cleanup();
  vi.useRealTimers();
});

function fakeApi(
  testResult: Record<string, unknown> = { ok: false, latencyMs: 12, status: 401, code: 'invalid_api_key' },
) {
  const calls: Array<{ method: string; path: string; body?: unknown }> = [];
  const api: Api = {
    async get(path) {
      calls.push({ method: 'GET', path });
      return {} as never;
    },
    async post(path, body) {
      calls.push({ method: 'POST', path, body });
      if (path.endsWith('/test')) return testResult as never;
      return {} as never;
    },
  };
  return { api, calls };
}

function withSession(role: Role, api: Api, children: ReactNode) {
  return (
    <QueryClientProvider client={new QueryClient()}>
      <SessionContext.Provider value={{ role, api, token: 't', signOut: () => {} }}>
        <ToastProvider>{children}</ToastProvider>
      </SessionContext.Provider>
    </QueryClientProvider>
  );
}

describe('StatusBadge', () => {
  it('counts a cooling key down to its return', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    render(<StatusBadge status="cooling" until={1_000_000 + 65_000} />);
    expect(screen.getByText('1m 05s')).toBeTruthy();
    act(() => vi.advanceTimersByTime(10_000));
    expect(screen.getByText('55s')).toBeTruthy();
  });

  it('shows no countdown for a disabled key', () => {
    render(<StatusBadge status="disabled" />);
    expect(screen.getByText('disabled').textContent).toBe('disabled');
  });
});

describe('HeadroomBars', () => {
  it('shows one labelled meter per limit, and says so when there is none', () => {
    render(<HeadroomBars headroom={{ rpm: 0.05, tpm: 0.5 }} />);
    const meters = screen.getAllByRole('meter');
    expect(meters.map((m) => m.getAttribute('aria-label'))).toEqual(['rpm headroom', 'tpm headroom']);
    expect(meters[0]!.className).toContain('bar-low');
    expect(screen.getByText('5%')).toBeTruthy();
    cleanup();
    render(<HeadroomBars headroom={{}} />);
    expect(screen.getByText('no limits')).toBeTruthy();
  });
});

describe('OrgTable', () => {
  it('shows each organization with its provider, key count, shared limits and headroom', () => {
    render(
      <OrgTable
        orgs={[
          {
            id: 'org:openai:org-a',
            provider: 'openai',
            organization: 'org-a',
            keyIds: ['key_1', 'key_2'],
            limits: { rpm: 4, monthlyBudgetUsd: 10 },
            headroom: { rpm: 0.75, monthlyBudgetUsd: 0.05 },
          },
          {
            id: 'org:anthropic:org-b',
            provider: 'anthropic',
            organization: 'org-b',
            keyIds: ['key_3'],
            limits: {},
            headroom: {},
          },
        ]}
      />,
    );
    const [first, second] = screen.getAllByRole('row').slice(1);
    expect(first!.getAttribute('data-org')).toBe('org:openai:org-a');
    expect([...first!.children].map((cell) => cell.textContent)).toEqual([
      'org-a',
      'openai',
      '2',
      '4 rpm · $10.00/month',
      'rpm75%budget5%',
    ]);
    const meters = screen.getAllByRole('meter');
    expect(meters.map((m) => [m.getAttribute('aria-label'), m.getAttribute('value')])).toEqual([
      ['rpm headroom', '75'],
      ['budget headroom', '5'],
    ]);
    expect(meters[1]!.className).toContain('bar-low');
    expect(second!.textContent).toContain('no shared limits');
    expect(second!.children[3]!.textContent).toBe('—');
  });
});

describe('KeyActions', () => {
  const key = { id: 'key_1', alias: 'alpha', status: 'active' as const };

  it('offers a viewer nothing to click', () => {
    const { api } = fakeApi();
    render(withSession('viewer', api, <KeyActions keyHealth={key} />));
    expect(screen.queryByRole('button')).toBeNull();
    expect(screen.getByText(/can read, not act/)).toBeTruthy();
  });

  it('disables with a reason only after confirming, then reports the result', async () => {
    const { api, calls } = fakeApi();
    render(withSession('operator', api, <KeyActions keyHealth={key} />));
    fireEvent.click(screen.getByRole('button', { name: 'Disable' }));
    expect(calls.filter((c) => c.method === 'POST')).toEqual([]);
    fireEvent.change(screen.getByLabelText(/Reason/), { target: { value: 'leaked in a log' } });
    fireEvent.click(screen.getByRole('button', { name: 'Disable key' }));
    await waitFor(() => expect(screen.getByText('alpha disabled: leaked in a log.')).toBeTruthy());
    expect(calls.filter((c) => c.method === 'POST')).toEqual([
      { method: 'POST', path: '/v1/keys/key_1/disable', body: { reason: 'leaked in a log' } },
    ]);
  });

  it('reports a failed key test as an error with the upstream status', async () => {
    const { api } = fakeApi();
    render(withSession('admin', api, <KeyActions keyHealth={key} />));
    fireEvent.click(screen.getByRole('button', { name: 'Test' }));
    fireEvent.click(screen.getByRole('button', { name: 'Run test' }));
    await waitFor(() =>
      expect(screen.getByRole('alert').textContent).toContain('alpha failed its test (401 invalid_api_key)'),
    );
  });

  it('says when a passing test brought the key back', async () => {
    const { api } = fakeApi({ ok: true, latencyMs: 40, recovered: ['invalid'] });
    render(withSession('operator', api, <KeyActions keyHealth={{ ...key, status: 'invalid' }} />));
    fireEvent.click(screen.getByRole('button', { name: 'Test' }));
    fireEvent.click(screen.getByRole('button', { name: 'Run test' }));
    await waitFor(() =>
      expect(
        screen.getByText(
          'alpha works: the provider answered in 40 ms. It is no longer invalid and takes traffic again.',
        ),
      ).toBeTruthy(),
    );
  });

  it('offers Enable instead of Disable for a disabled or invalid key', () => {
    const { api } = fakeApi();
    render(withSession('operator', api, <KeyActions keyHealth={{ ...key, status: 'invalid' }} />));
    expect(screen.getByRole('button', { name: 'Enable' })).toBeTruthy();
    expect(screen.queryByRole('button', { name: 'Disable' })).toBeNull();
  });
});
