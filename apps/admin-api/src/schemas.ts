import { z } from 'zod';

/**
 * Every request and response shape of the API. The same schemas validate
 * requests (strict: unknown fields are refused) and generate /v1/openapi.json.
 */

export const Id = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, 'must be an id of letters, digits and _ . : - (at most 128)');

export const IdParams = z.strictObject({ id: Id });

const Provider = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'must be a lower-case provider id such as "openai"');
const Alias = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$/,
    'must be 1-100 characters of letters, digits and . _ : @ -, starting with a letter or digit',
  );
const Secret = z
  .string()
  .min(1)
  .max(4096)
  .regex(/^\S+$/, 'must not contain whitespace')
  .meta({ description: 'Write-only: never returned, logged or audited.', writeOnly: true });
const PositiveNumber = z.number().positive().finite();

export const KeyLimits = z
  .strictObject({
    rpm: PositiveNumber.optional(),
    tpm: PositiveNumber.optional(),
    requestsPerDay: PositiveNumber.optional(),
    tokensPerDay: PositiveNumber.optional(),
    monthlyBudgetUsd: PositiveNumber.optional(),
  })
  .meta({ id: 'KeyLimits' });

const keyFields = {
  alias: Alias.optional(),
  priority: z.number().int().min(0).max(1000).optional(),
  weight: z.number().min(0).max(1_000_000).optional(),
  limits: KeyLimits.optional(),
  models: z.array(z.string().min(1).max(200)).max(1000).optional(),
  organization: z.string().max(200).optional(),
  orgLimits: KeyLimits.optional().meta({
    description:
      'Limits every key of the same provider and `organization` shares (the strictest value of each field across them applies); needs `organization`.',
  }),
  project: z.string().max(200).optional(),
  account: z.string().max(200).optional(),
  baseURL: z.url().max(2000).optional(),
  metadata: z.record(z.string().max(100), z.string().max(1000)).optional(),
};

export const KeyCreate = z
  .strictObject({ provider: Provider, secret: Secret, ...keyFields })
  .meta({ id: 'KeyCreate' });
export const KeyUpdate = z
  .strictObject({ secret: Secret.optional(), ...keyFields })
  .meta({ id: 'KeyUpdate', description: 'Fields to change; without `secret` the key keeps its secret.' });

export const KeyInfo = z
  .object({
    id: z.string(),
    alias: z.string(),
    provider: z.string(),
    fingerprint: z.string(),
    maskedSecret: z.string().meta({ example: 'sk-…abcd' }),
    priority: z.number(),
    weight: z.number(),
    limits: KeyLimits,
    models: z.array(z.string()).optional(),
    organization: z.string().optional(),
    orgLimits: KeyLimits.optional(),
    project: z.string().optional(),
    account: z.string().optional(),
    baseURL: z.string().optional(),
    metadata: z.record(z.string(), z.string()).optional(),
    enabled: z.boolean(),
    disabledReason: z.string().optional(),
    createdAt: z.number(),
    updatedAt: z.number(),
    status: z.enum(['active', 'disabled', 'exhausted', 'cooling', 'invalid']).optional(),
  })
  .meta({ id: 'Key' });
export const KeyList = z.object({ keys: z.array(KeyInfo) }).meta({ id: 'KeyList' });

export const DisableBody = z.strictObject({ reason: z.string().max(500).optional() });
export const ResetBody = z.strictObject({
  counters: z.boolean().optional().meta({ description: 'Also clear window, day and month counters.' }),
});
export const EmptyBody = z.strictObject({});

export const ProbeResult = z
  .object({
    ok: z.boolean(),
    latencyMs: z.number(),
    status: z.number().optional(),
    code: z.string().optional(),
    message: z.string().optional(),
    recovered: z.array(z.enum(['invalid', 'exhausted', 'breaker-open'])).meta({
      description:
        'What the passing test cleared, as a passing background probe would (audit `key.probe` by the caller); [] when the key was out for none of these, is disabled, or the test failed.',
    }),
  })
  .meta({ id: 'ProbeResult' });

export const ImportBody = z
  .strictObject({
    env: z
      .string()
      .max(512 * 1024)
      .meta({
        description:
          'Env-file text in any format `fromEnv` reads (OPENAI_API_KEY=…, OPENAI_API_KEYS=a,b, …).',
      }),
  })
  .meta({ id: 'ImportRequest' });
export const ImportResult = z
  .object({
    added: z.array(
      z.object({ id: z.string(), alias: z.string(), provider: z.string(), maskedSecret: z.string() }),
    ),
    duplicates: z.array(
      z.object({
        source: z.string(),
        provider: z.string(),
        maskedSecret: z.string(),
        existingAlias: z.string().optional(),
      }),
    ),
    invalid: z.array(z.object({ source: z.string(), problem: z.string() })),
  })
  .meta({ id: 'ImportResult' });

export const PoolCreate = z
  .strictObject({
    id: Id.optional(),
    name: z.string().min(1).max(200),
    description: z.string().max(2000).optional(),
    strategy: z.string().min(1).max(100).optional(),
    keyIds: z.array(Id).max(10_000).default([]),
  })
  .meta({ id: 'PoolCreate' });
export const PoolUpdate = z
  .strictObject({
    name: z.string().min(1).max(200).optional(),
    description: z.string().max(2000).optional(),
    strategy: z.string().min(1).max(100).optional(),
    keyIds: z.array(Id).max(10_000).optional(),
  })
  .meta({ id: 'PoolUpdate' });
export const PoolInfo = z
  .object({
    id: z.string(),
    name: z.string(),
    description: z.string().optional(),
    strategy: z.string().optional(),
    keyIds: z.array(z.string()),
    keys: z.array(
      z.object({
        id: z.string(),
        alias: z.string(),
        provider: z.string(),
        status: z.string(),
        limits: KeyLimits,
      }),
    ),
    createdAt: z.number(),
    updatedAt: z.number(),
  })
  .meta({ id: 'Pool' });
export const PoolList = z.object({ pools: z.array(PoolInfo) }).meta({ id: 'PoolList' });

export const Role = z.enum(['admin', 'operator', 'viewer', 'service']);
export const TokenCreate = z
  .strictObject({
    name: z.string().min(1).max(200),
    role: Role,
    pools: z
      .array(Id)
      .min(1)
      .max(1000)
      .optional()
      .meta({ description: 'Service tokens only: pools it may lease from.' }),
  })
  .meta({ id: 'TokenCreate' });
export const TokenInfo = z
  .object({
    id: z.string(),
    name: z.string(),
    role: Role,
    pools: z.array(z.string()).optional(),
    createdAt: z.number(),
    lastUsedAt: z.number().optional(),
    revokedAt: z.number().optional(),
  })
  .meta({ id: 'Token' });
export const TokenCreated = TokenInfo.extend({
  token: z.string().meta({ description: 'Shown once; only its hash is stored.' }),
}).meta({ id: 'TokenCreated' });
export const TokenList = z.object({ tokens: z.array(TokenInfo) }).meta({ id: 'TokenList' });
export const Me = z
  .object({
    tokenId: z.string(),
    name: z.string(),
    role: Role,
    pools: z.array(z.string()).optional().meta({ description: 'Service tokens scoped to pools only.' }),
  })
  .meta({ id: 'Me' });

/** A time: epoch ms, or an ISO date / date-time. */
export const Time = z
  .union([
    z
      .string()
      .regex(/^\d{1,15}$/)
      .transform(Number),
    z.iso.datetime({ offset: true }).transform((value) => Date.parse(value)),
    z.iso.date().transform((value) => Date.parse(`${value}T00:00:00Z`)),
  ])
  .meta({ description: 'Epoch milliseconds, an ISO date (2026-11-25, UTC) or an ISO date-time.' });

const GroupBy = z.enum(['key', 'model', 'pool', 'provider', 'day', 'month']);
export const UsageQuery = z
  .strictObject({
    from: Time.optional(),
    to: Time.optional(),
    keyId: Id.optional(),
    model: z.string().min(1).max(200).optional(),
    pool: Id.optional(),
    provider: Provider.optional(),
    groupBy: z
      .string()
      .transform((value, ctx) => {
        const parts = value.split(',').filter(Boolean);
        for (const part of parts) {
          if (!GroupBy.options.includes(part as z.infer<typeof GroupBy>)) {
            ctx.addIssue({
              code: 'custom',
              message: `"${part}" is not one of ${GroupBy.options.join(', ')}`,
            });
            return z.NEVER;
          }
        }
        return parts as Array<z.infer<typeof GroupBy>>;
      })
      .optional()
      .meta({ description: 'Comma-separated: key, model, pool, provider, day, month.' }),
  })
  .refine((q) => q.from === undefined || q.to === undefined || q.from <= q.to, {
    message: '`from` must not be after `to`',
    path: ['from'],
  });
export const UsageRow = z
  .object({
    keyId: z.string().optional(),
    keyAlias: z.string().optional(),
    model: z.string().nullable().optional(),
    pool: z.string().nullable().optional(),
    provider: z.string().optional(),
    day: z.string().optional(),
    month: z.string().optional(),
    requests: z.number(),
    errors: z.number(),
    inputTokens: z.number(),
    outputTokens: z.number(),
    costUsd: z.number(),
  })
  .meta({ id: 'UsageRow' });
export const UsageResult = z.object({ rows: z.array(UsageRow) }).meta({ id: 'Usage' });

export const AuditQuery = z.strictObject({
  from: Time.optional(),
  to: Time.optional(),
  target: z.string().min(1).max(200).optional(),
  action: z.string().min(1).max(100).optional(),
  limit: z
    .string()
    .regex(/^\d{1,4}$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(1).max(1000))
    .optional(),
});
export const AuditEntry = z
  .object({
    id: z.string(),
    time: z.number(),
    actor: z.string(),
    action: z.string(),
    target: z.string().optional(),
    details: z.record(z.string(), z.unknown()).optional(),
  })
  .meta({ id: 'AuditEntry' });
export const AuditList = z.object({ entries: z.array(AuditEntry) }).meta({ id: 'AuditList' });

export const LeaseCreate = z
  .strictObject({
    pool: Id.optional(),
    provider: Provider,
    model: z.string().min(1).max(200).optional(),
    estimatedTokens: z.number().int().min(0).max(10_000_000).optional(),
    affinity: z.string().min(1).max(500).optional(),
    maxWaitMs: z
      .number()
      .int()
      .min(0)
      .max(60_000)
      .optional()
      .meta({ description: 'How long to wait for a key; default 0 (answer 429 with Retry-After at once).' }),
  })
  .meta({ id: 'LeaseRequest' });
export const LeaseCreated = z
  .object({
    leaseId: z.string(),
    secret: z.string().meta({ description: 'The key itself, for this call only. Never logged.' }),
    keyAlias: z.string(),
    provider: z.string(),
    model: z.string().optional(),
    baseURL: z.string().optional(),
    organization: z.string().optional(),
    project: z.string().optional(),
    expiresAt: z.number(),
  })
  .meta({ id: 'Lease' });

const UsageIn = z.strictObject({
  inputTokens: z.number().int().min(0).max(1e9),
  outputTokens: z.number().int().min(0).max(1e9),
  cachedInputTokens: z.number().int().min(0).max(1e9).optional(),
  cacheWriteInputTokens: z
    .number()
    .int()
    .min(0)
    .max(1e9)
    .optional()
    .meta({ description: 'Input tokens written to a prompt cache (Anthropic), part of inputTokens.' }),
  cacheWrite1hInputTokens: z
    .number()
    .int()
    .min(0)
    .max(1e9)
    .optional()
    .meta({ description: 'The part of cacheWriteInputTokens written to a 1-hour cache.' }),
});
export const LeaseReport = z
  .strictObject({
    ok: z.boolean(),
    status: z.number().int().min(100).max(599).optional(),
    kind: z.enum(['http', 'timeout', 'connection', 'abort']).optional(),
    code: z.string().max(200).optional(),
    usage: UsageIn.optional(),
    latencyMs: z.number().min(0).max(86_400_000).optional(),
    respondedAt: z.number().int().min(0).optional().meta({
      description:
        'Epoch ms when the upstream response began; the key’s rate window counts the call from there (default: now).',
    }),
    model: z.string().min(1).max(200).optional(),
    headers: z
      .record(z.string().max(200), z.string().max(2000))
      .optional()
      .meta({ description: 'Upstream response headers (rate-limit ones teach the pool headroom).' }),
  })
  .refine((r) => r.ok || r.status !== undefined || r.kind !== undefined, {
    message:
      'a failed call needs `status` (the HTTP status upstream answered) or `kind` (timeout, connection, abort)',
    path: ['status'],
  })
  .meta({ id: 'LeaseReport' });
export const LeaseReportResult = z
  .object({
    leaseId: z.string(),
    recorded: z.boolean(),
    expired: z.boolean(),
    failure: z.string().optional(),
  })
  .meta({ id: 'LeaseReportResult' });

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      field: z.string().optional(),
      retryAfterMs: z.number().nullable().optional(),
    }),
  })
  .meta({ id: 'Error' });

export const Liveness = z.object({ status: z.literal('ok') });
export const Readiness = z.object({ status: z.enum(['ready', 'not-ready']), reasons: z.array(z.string()) });
const Share = z.number().min(0).max(1);
export const OrgHealth = z
  .object({
    id: z
      .string()
      .meta({ description: 'The hot-state id of its shared limits.', example: 'org:openai:org-a' }),
    provider: z.string(),
    organization: z.string(),
    keyIds: z.array(z.string()),
    limits: KeyLimits,
    headroom: z
      .object({
        rpm: Share.optional(),
        tpm: Share.optional(),
        requestsPerDay: Share.optional(),
        tokensPerDay: Share.optional(),
        monthlyBudgetUsd: Share.optional(),
      })
      .meta({ description: 'Remaining share (0..1) of each shared limit.' }),
    usage: z.record(z.string(), z.unknown()).optional(),
  })
  .meta({
    id: 'OrgHealth',
    description: 'An upstream organization of the pool’s keys and what it has left of its shared limits.',
  });
export const Health = z
  .object({
    status: z.enum(['healthy', 'degraded', 'down']),
    reasons: z.array(z.string()),
    store: z.object({ name: z.string(), degraded: z.boolean() }),
    keys: z.array(z.record(z.string(), z.unknown())),
    orgs: z.array(OrgHealth).meta({ description: 'Organizations of keys that declare `organization`.' }),
    checkedAt: z.number(),
  })
  .meta({ id: 'Health' });
