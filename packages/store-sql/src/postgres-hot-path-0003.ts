import { sql } from 'kysely';
import type { AnyKysely } from './connection.js';
import type { Layout } from './schema.js';

// Migration 0003 exactly as it shipped: window entries stamped, totals split into in flight and
// stamped, and the functions that stamp entries. Databases that ran it must get the same result
// from a fresh install, so this file never changes; migration 0005 (postgres-hot-path.ts)
// replaces the functions.

/**
 * Migration 0003 on PostgreSQL, after window_entries got its `stamp` column:
 * window totals split into in flight and stamped (rebuilt from the entries),
 * and the functions that stamp entries. keypool_settle takes `respondedAt` now;
 * its old signature is dropped, so a process that predates 0003 fails loudly
 * instead of settling without stamping.
 */
export async function installPostgresWindowStamps(db: AnyKysely, layout: Layout): Promise<void> {
  const schema =
    layout.schema ??
    String((await sql<{ s: string }>`select current_schema() as s`.execute(db)).rows[0]?.s ?? 'public');
  const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;
  const q = (name: string) => `${ident(schema)}.${ident(`${layout.prefix}${name}`)}`;
  for (const statement of postgresDdl(q)) await sql.raw(statement).execute(db);
}

const minBigint = '-9223372036854775808';

function postgresDdl(q: (name: string) => string): string[] {
  const states = q('key_state');
  const entries = q('window_entries');
  const totals = q('window_totals');
  const counters = q('counters');
  const leases = q('leases');
  const usage = q('usage');
  return [
    `alter table ${totals} add column inflight_requests bigint not null default 0,
      add column inflight_tokens bigint not null default 0`,
    // Rebuilt from the (now stamped) entries: every stamped entry counts (floor at the minimum)
    // until the first reservation moves the floor up.
    `delete from ${totals}`,
    `insert into ${totals} (key_id, floor_at, requests, tokens, inflight_requests, inflight_tokens)
      select key_id, ${minBigint}, count(stamp), coalesce(sum(tokens) filter (where stamp is not null), 0),
        count(*) filter (where stamp is null), coalesce(sum(tokens) filter (where stamp is null), 0)
      from ${entries} group by key_id`,
    `drop function if exists ${q('keypool_settle')}(text, bigint, float8, bigint, text, boolean)`,

    `create or replace function ${q('keypool_reserve')}(
      p_lease_id text, p_key_ids text[], p_rpm float8[], p_tpm float8[], p_rpd float8[], p_tpd float8[],
      p_budget float8[], p_model text, p_tokens bigint, p_cost float8, p_now bigint, p_window_ms bigint,
      p_day text, p_month text, p_day_ends_at bigint, p_month_ends_at bigint, p_ttl_ms bigint, p_meta text,
      p_is_durable boolean,
      out lease_key_id text, out lease_is_probe boolean, out refusals text[], out retry_at bigint)
    language plpgsql as $fn$
    declare
      n int := cardinality(p_key_ids);
      cutoff bigint := p_now - p_window_ms;
      locked int;
      k text;
      st record;
      wt record;
      has_totals boolean;
      v_floor bigint;
      v_floor_was bigint;
      agg_requests bigint;
      agg_tokens bigint;
      fl_requests bigint;
      fl_tokens bigint;
      w_requests bigint;
      w_tokens bigint;
      gone_requests bigint;
      gone_tokens bigint;
      frees_at bigint;
      d_requests bigint;
      d_tokens bigint;
      m_cost float8;
      reason text;
      r_at bigint;
      probe boolean;
    begin
      if not p_is_durable then
        perform set_config('synchronous_commit', 'off', true);
      end if;
      refusals := array_fill(null::text, array[n]);
      -- Lock every candidate's state in key order (so lockers queue, never deadlock), creating missing rows.
      perform 1 from ${states} s where s.key_id = any(p_key_ids) order by s.key_id for update;
      get diagnostics locked = row_count;
      if locked < n then
        insert into ${states} (key_id, breaker, consecutive_failures, updated_at)
          select x, 'closed', 0, 0 from unnest(p_key_ids) x order by x on conflict do nothing;
        perform 1 from ${states} s where s.key_id = any(p_key_ids) order by s.key_id for update;
      end if;

      for i in 1..n loop
        k := p_key_ids[i];
        reason := null;
        r_at := null;
        probe := false;
        has_totals := false;
        select * into st from ${states} s where s.key_id = k;
        if st.invalid_since is not null then
          reason := 'invalid';
        elsif st.exhausted_until > p_now then
          reason := 'exhausted'; r_at := st.exhausted_until;
        elsif st.cooling_until > p_now then
          reason := 'cooling'; r_at := st.cooling_until;
        elsif p_model is not null and st.blocked_models is not null
            and (st.blocked_models::jsonb ->> p_model)::float8 > p_now then
          reason := 'model-blocked'; r_at := (st.blocked_models::jsonb ->> p_model)::float8;
        elsif st.breaker = 'open' and st.breaker_open_until > p_now then
          reason := 'breaker-open'; r_at := st.breaker_open_until;
        elsif st.breaker in ('open', 'half-open') and st.probe_lease_id is not null then
          reason := 'probe-in-flight';
          select l.expires_at into r_at from ${leases} l where l.id = st.probe_lease_id and l.status = 'active';
        else
          probe := st.breaker in ('open', 'half-open');
          if p_rpm[i] is not null or p_tpm[i] is not null then
            -- Window totals: lock, then read the entries (a new snapshot, so a settle that
            -- held the lock is seen whole), subtract the stamped ones that left the window.
            select * into wt from ${totals} t where t.key_id = k for update;
            if not found then
              insert into ${totals} (key_id, floor_at, requests, tokens, inflight_requests, inflight_tokens)
                values (k, ${minBigint}, 0, 0, 0, 0);
              v_floor := ${minBigint}; agg_requests := 0; agg_tokens := 0; fl_requests := 0; fl_tokens := 0;
            else
              v_floor := wt.floor_at; agg_requests := wt.requests; agg_tokens := wt.tokens;
              fl_requests := wt.inflight_requests; fl_tokens := wt.inflight_tokens;
            end if;
            has_totals := true;
            v_floor_was := v_floor;
            if v_floor <= cutoff then
              select count(*), coalesce(sum(e.tokens), 0) into gone_requests, gone_tokens
                from ${entries} e where e.key_id = k and e.stamp > v_floor and e.stamp <= cutoff;
              agg_requests := agg_requests - gone_requests;
              agg_tokens := agg_tokens - gone_tokens;
              v_floor := cutoff;
              w_requests := agg_requests; w_tokens := agg_tokens;
            else
              -- The window starts before the totals' floor: count exactly, leave the totals alone.
              select count(*), coalesce(sum(e.tokens), 0) into w_requests, w_tokens
                from ${entries} e where e.key_id = k and e.stamp > cutoff;
            end if;
            -- Entries in flight always count.
            w_requests := w_requests + fl_requests;
            w_tokens := w_tokens + fl_tokens;
            if (p_rpm[i] is not null and w_requests + 1 > p_rpm[i])
                or (p_tpm[i] is not null and w_tokens + p_tokens > p_tpm[i]) then
              -- The oldest stamped entry leaves first; entries in flight no sooner than a window from now.
              select coalesce(min(e.stamp), p_now) + p_window_ms into frees_at
                from ${entries} e where e.key_id = k and e.stamp > cutoff;
              if p_rpm[i] is not null and w_requests + 1 > p_rpm[i] then
                reason := 'rpm'; r_at := frees_at;
              else
                reason := 'tpm'; r_at := case when p_tokens > p_tpm[i] then null else frees_at end;
              end if;
            end if;
          end if;
          if reason is null and (p_rpd[i] is not null or p_tpd[i] is not null or p_budget[i] is not null) then
            select max(c.requests) filter (where c.window_id = p_day), max(c.tokens) filter (where c.window_id = p_day),
                max(c.cost_usd) filter (where c.window_id = p_month)
              into d_requests, d_tokens, m_cost
              from ${counters} c where c.key_id = k and c.window_id in (p_day, p_month);
            if p_rpd[i] is not null and coalesce(d_requests, 0) + 1 > p_rpd[i] then
              reason := 'requests-per-day'; r_at := p_day_ends_at;
            elsif p_tpd[i] is not null and coalesce(d_tokens, 0) + p_tokens > p_tpd[i] then
              reason := 'tokens-per-day'; r_at := p_day_ends_at;
            elsif p_budget[i] is not null and coalesce(m_cost, 0) + p_cost > p_budget[i] then
              reason := 'monthly-budget'; r_at := p_month_ends_at;
            end if;
          end if;
        end if;

        if reason is null then
          -- Reserve: window totals (one more in flight), then the unstamped window entry, day/month
          -- counters and lease, then the probe slot.
          if has_totals then
            update ${totals} t set floor_at = v_floor, requests = agg_requests, tokens = agg_tokens,
                inflight_requests = fl_requests + 1, inflight_tokens = fl_tokens + p_tokens
              where t.key_id = k;
          else
            insert into ${totals} as t (key_id, floor_at, requests, tokens, inflight_requests, inflight_tokens)
              values (k, ${minBigint}, 0, 0, 1, p_tokens)
              on conflict (key_id) do update
              set inflight_requests = t.inflight_requests + 1, inflight_tokens = t.inflight_tokens + p_tokens;
          end if;
          -- One statement for the three inserts (fewer executor round trips inside the function).
          with entry as (
            insert into ${entries} (lease_id, key_id, reserved_at, tokens, stamp)
              values (p_lease_id, k, p_now, p_tokens, null)
          ), counted as (
            insert into ${counters} as c (key_id, window_id, requests, tokens, cost_usd)
              values (k, p_day, 1, p_tokens, p_cost), (k, p_month, 1, p_tokens, p_cost)
              on conflict (key_id, window_id) do update set requests = c.requests + excluded.requests,
                tokens = c.tokens + excluded.tokens, cost_usd = c.cost_usd + excluded.cost_usd
          )
          insert into ${leases} (id, key_id, model, estimated_tokens, estimated_cost_usd, reserved_at, expires_at,
              day, month, is_probe, meta, status)
            values (p_lease_id, k, p_model, p_tokens, p_cost, p_now, p_now + p_ttl_ms, p_day, p_month,
              case when probe then 1 else 0 end, p_meta, 'active');
          if probe then
            update ${states} s set breaker = 'half-open', probe_lease_id = p_lease_id, updated_at = p_now
              where s.key_id = k;
          end if;
          lease_key_id := k;
          lease_is_probe := probe;
          refusals := null;
          retry_at := null;
          return;
        end if;

        refusals[i] := reason;
        if has_totals and v_floor <> v_floor_was then
          -- Keep the totals moving for keys that are checked but not chosen.
          update ${totals} t set floor_at = v_floor, requests = agg_requests, tokens = agg_tokens
            where t.key_id = k;
        end if;
        if r_at is not null and (retry_at is null or r_at < retry_at) then
          retry_at := r_at;
        end if;
      end loop;
    end
    $fn$`,

    `create or replace function ${q('keypool_settle')}(
      p_lease_id text, p_tokens bigint, p_cost float8, p_now bigint, p_responded_at bigint, p_usage text,
      p_is_durable boolean)
    returns setof ${leases}
    language plpgsql as $fn$
    declare
      l ${leases}%rowtype;
      is_on_time boolean;
      v_stamp bigint;
      v_tokens bigint;
    begin
      if not p_is_durable then
        perform set_config('synchronous_commit', 'off', true);
      end if;
      select * into l from ${leases} x where x.id = p_lease_id for update;
      if not found or l.status = 'settled' then
        return;
      end if;
      update ${leases} x set status = 'settled' where x.id = p_lease_id;
      if l.status = 'active' then
        -- Lock order as in reserve: key_state, then window totals, then counters.
        if l.is_probe = 1 then
          update ${states} s set probe_lease_id = null where s.probe_lease_id = p_lease_id;
        end if;
        is_on_time := l.expires_at > p_now;
        if is_on_time then
          -- The upstream had the request by the time it responded: the entry counts from there.
          v_stamp := least(p_now, greatest(l.reserved_at, coalesce(p_responded_at, p_now)));
          v_tokens := p_tokens;
        else
          -- Expired unreported: stamped at expiresAt, kept at the estimate.
          v_stamp := l.expires_at;
          v_tokens := l.estimated_tokens;
        end if;
        -- In flight -> stamped; counted only above the floor (below it the entry has left already).
        update ${totals} t set inflight_requests = t.inflight_requests - 1,
            inflight_tokens = t.inflight_tokens - l.estimated_tokens,
            requests = t.requests + case when v_stamp > t.floor_at then 1 else 0 end,
            tokens = t.tokens + case when v_stamp > t.floor_at then v_tokens else 0 end
          where t.key_id = l.key_id;
        update ${entries} e set stamp = v_stamp, tokens = v_tokens where e.lease_id = p_lease_id;
        if is_on_time then
          update ${counters} c set tokens = c.tokens + (p_tokens - l.estimated_tokens),
              cost_usd = c.cost_usd + (p_cost - l.estimated_cost_usd)
            where c.key_id = l.key_id and c.window_id in (l.day, l.month);
          l.status := 'settled';
        else
          l.status := 'expired';
        end if;
      end if;
      if p_usage is not null then
        insert into ${usage} select * from jsonb_populate_record(null::${usage}, p_usage::jsonb);
      end if;
      return next l;
    end
    $fn$`,
  ];
}
