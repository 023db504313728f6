// Admin-only actions: add a key (write-only secret), import an env file, create API tokens.
import { useQueryClient } from '@tanstack/react-query';
import { type FormEvent, type InputHTMLAttributes, useRef, useState } from 'react';
import { ApiError } from '../api.js';
import { ConfirmDialog, Dialog } from '../components/dialog.js';
import { ScrollRegion } from '../components/scroll-region.js';
import { useToast } from '../components/toast.js';
import { formatAgo, formatDateTime } from '../format.js';
import { useTokens } from '../queries.js';
import { canAdminister } from '../session.js';
import { useSession } from '../session-context.js';
import type { ApiKey, ApiToken, ImportReport, Role } from '../types.js';

const LIMIT_FIELDS = [
  ['rpm', 'Requests / minute'],
  ['tpm', 'Tokens / minute'],
  ['requestsPerDay', 'Requests / day'],
  ['tokensPerDay', 'Tokens / day'],
  ['monthlyBudgetUsd', 'Monthly budget (USD)'],
] as const;

type LimitName = (typeof LIMIT_FIELDS)[number][0];

/** The form field of one of the organization's shared limits, beside the key's own of that name. */
export const orgLimitField = (name: LimitName) => `orgLimits.${name}`;

const fieldText = (form: FormData, name: string) => String(form.get(name) ?? '').trim();

function limitsFromForm(form: FormData, field: (name: LimitName) => string): Record<string, number> {
  const limits: Record<string, number> = {};
  for (const [name] of LIMIT_FIELDS) {
    const value = fieldText(form, field(name));
    if (value !== '') limits[name] = Number(value);
  }
  return limits;
}

/** The POST /v1/keys body from the form; empty fields are left out. */
export function keyBodyFromForm(form: FormData): Record<string, unknown> {
  const text = (name: string) => fieldText(form, name);
  const body: Record<string, unknown> = { provider: text('provider'), secret: text('secret') };
  if (text('alias') !== '') body.alias = text('alias');
  if (text('priority') !== '') body.priority = Number(text('priority'));
  if (text('baseURL') !== '') body.baseURL = text('baseURL');
  const limits = limitsFromForm(form, (name) => name);
  if (Object.keys(limits).length > 0) body.limits = limits;
  if (text('organization') !== '') body.organization = text('organization');
  const orgLimits = limitsFromForm(form, orgLimitField);
  if (Object.keys(orgLimits).length > 0) body.orgLimits = orgLimits;
  return body;
}

/**
 * The API's checks of limits and organization, by field name, so a refusal shows next to its field
 * before anything (the secret included) leaves the browser; empty when the form can go. The browser
 * checks the rest (secret, alias pattern, URL, tier range) from the inputs' attributes.
 */
export function keyFormErrors(form: FormData): Record<string, string> {
  const errors: Record<string, string> = {};
  for (const field of LIMIT_FIELDS.flatMap(([name]) => [name, orgLimitField(name)])) {
    const value = fieldText(form, field);
    const number = Number(value);
    if (value !== '' && !(Number.isFinite(number) && number > 0))
      errors[field] = 'Must be a number above 0, or empty for no limit.';
  }
  const hasOrgLimits = LIMIT_FIELDS.some(([name]) => fieldText(form, orgLimitField(name)) !== '');
  if (hasOrgLimits && fieldText(form, 'organization') === '')
    errors.organization = 'Org limits need an organization: name it, or clear the org limits.';
  return errors;
}

const errorId = (field: string) => `add-key-${field}-error`;

/**
 * A labelled input of the add-key form that says inside its label what is wrong with it; the input
 * is named by the label's text alone, so the error is its description, not part of its name.
 */
function CheckedField({
  label,
  error,
  describedBy,
  ...input
}: {
  label: string;
  error: string | undefined;
  /** Help text the field points at besides its error. */
  describedBy?: string;
} & InputHTMLAttributes<HTMLInputElement> & { name: string }) {
  const labelId = `add-key-${input.name}-label`;
  const descriptions = [describedBy, error === undefined ? undefined : errorId(input.name)].filter(
    (id) => id !== undefined,
  );
  return (
    <label>
      <span id={labelId}>{label}</span>
      <input
        {...input}
        aria-labelledby={labelId}
        aria-invalid={error !== undefined}
        aria-describedby={descriptions.length > 0 ? descriptions.join(' ') : undefined}
      />
      {error !== undefined && (
        <span id={errorId(input.name)} className="error small field-error">
          {error}
        </span>
      )}
    </label>
  );
}

function LimitField({ name, label, error }: { name: string; label: string; error: string | undefined }) {
  return (
    <CheckedField name={name} label={label} error={error} type="number" step="any" placeholder="no limit" />
  );
}

function useRefreshAfterAdminAction() {
  const queryClient = useQueryClient();
  return () =>
    Promise.all(
      [['health'], ['keys'], ['audit'], ['tokens']].map((queryKey) =>
        queryClient.invalidateQueries({ queryKey }),
      ),
    );
}

function AddKey() {
  const { api } = useSession();
  const toast = useToast();
  const refresh = useRefreshAfterAdminAction();
  const formRef = useRef<HTMLFormElement>(null);
  // The secret lives here only between "Add key" and the confirmation; never in React state.
  const pending = useRef<Record<string, unknown> | undefined>(undefined);
  const [confirming, setConfirming] = useState<
    { provider: string; alias?: string; organization?: string } | undefined
  >();
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<Record<string, string>>({});

  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const found = keyFormErrors(form);
    setErrors(found);
    if (Object.keys(found).length > 0) {
      // The first field in the form's order, so keyboard and screen-reader users land on it.
      const first = Array.from(event.currentTarget.elements).find(
        (element): element is HTMLInputElement =>
          element instanceof HTMLInputElement && element.name in found,
      );
      first?.focus();
      return;
    }
    const body = keyBodyFromForm(form);
    pending.current = body;
    setConfirming({
      provider: String(body.provider),
      ...(typeof body.alias === 'string' && { alias: body.alias }),
      ...(typeof body.organization === 'string' && { organization: body.organization }),
    });
  };
  const cancel = () => {
    pending.current = undefined;
    setConfirming(undefined);
  };
  const confirm = async () => {
    if (pending.current === undefined) return;
    setBusy(true);
    try {
      const created = await api.post<ApiKey>('/v1/keys', pending.current);
      toast.success(`Key ${created.alias} added (${created.maskedSecret}).`);
      formRef.current?.reset();
      cancel();
    } catch (error) {
      toast.error(`Could not add the key: ${error instanceof ApiError ? error.message : String(error)}`);
      cancel();
    } finally {
      pending.current = undefined;
      setBusy(false);
      await refresh();
    }
  };

  return (
    <section className="section card" aria-labelledby="add-key">
      <h2 id="add-key">Add a key</h2>
      <form
        ref={formRef}
        onSubmit={submit}
        // Once errors show, they follow the fields as they are fixed.
        onChange={
          Object.keys(errors).length > 0
            ? (event) => setErrors(keyFormErrors(new FormData(event.currentTarget)))
            : undefined
        }
        className="form-grid"
        autoComplete="off"
      >
        <label>
          <span>Provider</span>
          <select name="provider" defaultValue="openai">
            <option value="openai">openai</option>
            <option value="anthropic">anthropic</option>
          </select>
        </label>
        <label>
          <span>Alias</span>
          <input
            name="alias"
            pattern="[A-Za-z0-9][A-Za-z0-9._:@\-]{0,99}"
            placeholder="generated when empty"
          />
        </label>
        <label className="wide">
          <span>Secret (write-only: never shown again)</span>
          <input name="secret" type="password" required autoComplete="new-password" spellCheck={false} />
        </label>
        <label>
          <span>Tier (0 = primary)</span>
          <input name="priority" type="number" min={0} max={1000} step={1} placeholder="0" />
        </label>
        <label>
          <span>Base URL</span>
          <input name="baseURL" type="url" placeholder="provider default" />
        </label>
        {LIMIT_FIELDS.map(([name, label]) => (
          <LimitField key={name} name={name} label={label} error={errors[name]} />
        ))}
        <p id="add-key-org-help" className="wide muted small">
          Keys of one provider and organization share the organization's limits; where their values differ,
          the strictest applies.
        </p>
        <CheckedField
          name="organization"
          label="Organization"
          error={errors.organization}
          describedBy="add-key-org-help"
          maxLength={200}
          placeholder="none"
          spellCheck={false}
        />
        {LIMIT_FIELDS.map(([name, label]) => (
          <LimitField
            key={name}
            name={orgLimitField(name)}
            label={`Org ${label.charAt(0).toLowerCase()}${label.slice(1)}`}
            error={errors[orgLimitField(name)]}
          />
        ))}
        <div className="wide">
          <button type="submit" className="primary">
            Add key
          </button>
        </div>
      </form>
      <ConfirmDialog
        title="Add this key?"
        open={confirming !== undefined}
        confirmLabel="Add key"
        busy={busy}
        onCancel={cancel}
        onConfirm={() => void confirm()}
      >
        <p>
          A {confirming?.provider} key{confirming?.alias !== undefined ? ` named ${confirming.alias}` : ''}
          {confirming?.organization !== undefined ? ` of organization ${confirming.organization}` : ''} joins
          the pool and starts taking traffic. Its secret is encrypted and never shown again.
        </p>
      </ConfirmDialog>
    </section>
  );
}

function ImportEnv() {
  const { api } = useSession();
  const toast = useToast();
  const refresh = useRefreshAfterAdminAction();
  const textRef = useRef<HTMLTextAreaElement>(null);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [report, setReport] = useState<ImportReport | undefined>();

  const readFile = async (file: File | undefined) => {
    if (file === undefined || textRef.current === null) return;
    textRef.current.value = await file.text();
  };
  const confirm = async () => {
    const env = textRef.current?.value ?? '';
    setBusy(true);
    try {
      const result = await api.post<ImportReport>('/v1/keys/import', { env });
      setReport(result);
      toast.success(
        `Import: ${result.added.length} added, ${result.duplicates.length} already present, ${result.invalid.length} invalid.`,
      );
      if (textRef.current !== null) textRef.current.value = '';
    } catch (error) {
      toast.error(`Import failed: ${error instanceof ApiError ? error.message : String(error)}`);
    } finally {
      setBusy(false);
      setConfirming(false);
      await refresh();
    }
  };

  return (
    <section className="section card" aria-labelledby="import-env">
      <h2 id="import-env">Import an env file</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setConfirming(true);
        }}
      >
        <label htmlFor="env-file">Env file</label>
        <input
          id="env-file"
          type="file"
          accept=".env,text/plain"
          onChange={(e) => void readFile(e.target.files?.[0])}
        />
        <label htmlFor="env-text">Or paste lines such as OPENAI_API_KEYS=sk-a,sk-b</label>
        <textarea
          id="env-text"
          ref={textRef}
          rows={5}
          spellCheck={false}
          autoComplete="off"
          className="mono"
        />
        <button type="submit" className="primary">
          Import keys
        </button>
      </form>
      {report !== undefined && (
        <div className="import-report" data-testid="import-report">
          <p>
            {report.added.length} added, {report.duplicates.length} already in the pool,{' '}
            {report.invalid.length} invalid.
          </p>
          <ul className="plain-list small">
            {report.added.map((k) => (
              <li key={k.id}>
                added {k.alias} ({k.provider}, <span className="mono">{k.maskedSecret}</span>)
              </li>
            ))}
            {report.duplicates.map((d) => (
              <li key={`${d.source}-${d.maskedSecret}`}>
                {d.source}: <span className="mono">{d.maskedSecret}</span> is already in the pool
                {d.existingAlias !== undefined ? ` as ${d.existingAlias}` : ''}
              </li>
            ))}
            {report.invalid.map((i) => (
              <li key={`${i.source}-${i.problem}`} className="error">
                {i.source}: {i.problem}
              </li>
            ))}
          </ul>
        </div>
      )}
      <ConfirmDialog
        title="Import these keys?"
        open={confirming}
        confirmLabel="Import"
        busy={busy}
        onCancel={() => setConfirming(false)}
        onConfirm={() => void confirm()}
      >
        <p>Every key in the text joins the pool; keys already in it are skipped and reported.</p>
      </ConfirmDialog>
    </section>
  );
}

function Tokens() {
  const { api } = useSession();
  const toast = useToast();
  const refresh = useRefreshAfterAdminAction();
  const tokens = useTokens(true);
  const [confirming, setConfirming] = useState<{ name: string; role: Role } | undefined>();
  const [created, setCreated] = useState<(ApiToken & { token: string }) | undefined>();
  const [busy, setBusy] = useState(false);
  const formRef = useRef<HTMLFormElement>(null);

  const confirm = async () => {
    if (confirming === undefined) return;
    setBusy(true);
    try {
      const result = await api.post<ApiToken & { token: string }>('/v1/tokens', confirming);
      setCreated(result);
      toast.success(`Token ${result.name} (${result.role}) created.`);
      formRef.current?.reset();
    } catch (error) {
      toast.error(`Could not create the token: ${error instanceof ApiError ? error.message : String(error)}`);
    } finally {
      setBusy(false);
      setConfirming(undefined);
      await refresh();
    }
  };

  return (
    <section className="section card" aria-labelledby="tokens">
      <h2 id="tokens">API tokens</h2>
      <form
        ref={formRef}
        className="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          const form = new FormData(e.currentTarget);
          setConfirming({
            name: String(form.get('name') ?? '').trim(),
            role: String(form.get('role')) as Role,
          });
        }}
      >
        <label>
          <span>Name</span>
          <input name="name" required maxLength={200} placeholder="e.g. ops-alice" />
        </label>
        <label>
          <span>Role</span>
          <select name="role" defaultValue="viewer">
            <option value="viewer">viewer (read)</option>
            <option value="operator">operator (act on keys)</option>
            <option value="admin">admin (everything)</option>
            <option value="service">service (lease keys)</option>
          </select>
        </label>
        <button type="submit" className="primary">
          Create token
        </button>
      </form>
      {tokens.data !== undefined && (
        <ScrollRegion label="API tokens">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
              </tr>
            </thead>
            <tbody>
              {tokens.data.map((t) => (
                <tr key={t.id}>
                  <th scope="row">{t.name}</th>
                  <td>{t.role}</td>
                  <td className="nowrap">{formatDateTime(t.createdAt)}</td>
                  <td>{t.lastUsedAt === undefined ? '—' : formatAgo(t.lastUsedAt, Date.now())}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </ScrollRegion>
      )}
      <ConfirmDialog
        title="Create this token?"
        open={confirming !== undefined}
        confirmLabel="Create token"
        busy={busy}
        onCancel={() => setConfirming(undefined)}
        onConfirm={() => void confirm()}
      >
        <p>
          A {confirming?.role} token named {confirming?.name}. Its value is shown once, right after this.
        </p>
      </ConfirmDialog>
      <Dialog
        title="Copy the new token now"
        open={created !== undefined}
        onClose={() => setCreated(undefined)}
      >
        <p>It is shown only this once; only its hash is stored.</p>
        <p>
          <code className="token-value" data-testid="new-token">
            {created?.token}
          </code>
        </p>
        <div className="dialog-actions">
          <button
            type="button"
            onClick={() => {
              if (created !== undefined)
                void navigator.clipboard?.writeText(created.token).then(() => toast.success('Token copied.'));
            }}
          >
            Copy
          </button>
          <button type="button" className="primary" onClick={() => setCreated(undefined)}>
            Done
          </button>
        </div>
      </Dialog>
    </section>
  );
}

export function Admin() {
  const { role } = useSession();
  if (!canAdminister(role)) {
    return (
      <>
        <h1>Admin</h1>
        <p>Only admin tokens can add keys, import env files and create tokens. Yours has the {role} role.</p>
      </>
    );
  }
  return (
    <>
      <h1>Admin</h1>
      <AddKey />
      <ImportEnv />
      <Tokens />
    </>
  );
}
