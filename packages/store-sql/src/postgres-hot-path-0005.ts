import { sql } from 'kysely';
import type { AnyKysely } from './connection.js';
import type { Layout } from './schema.js';

// Migration 0005's functions as it installs them: reserve and settle in fewer statements, the
// reserve taking `p_ignore_cooldown`. Databases that ran it must get the same result from a
// fresh install, so this file never changes; migration 0009 (postgres-hot-path.ts) replaces the
// settle and adds a reserve with shared limits.

const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * Migration 0005 on PostgreSQL: the two functions in fewer statements than 0003's (each costs a
 * plan execution inside the function): the window floor moves lazily, state and day/month
 * counters are read together, and a settle deletes its lease (claiming it) and writes entries,
 * counters and usage in two statements instead of six. keypool_reserve takes
 * `p_ignore_cooldown` (the pool's `lastResort`: cooling and an open breaker's wait do not
 * refuse; everything else does): a new signature, so 0003's 19-argument reserve stays for
 * processes not upgraded yet (they never ask for a last resort).
 */
export async function installPostgresFewerStatements(db: AnyKysely, layout: Layout): Promise<void> {
  const schema =
    layout.schema ??
    String((await sql<{ s: string }>`select current_schema() as s`.execute(db)).rows[0]?.s ?? 'public');
  const q = (name: string) => `${ident(schema)}.${ident(`${layout.prefix}${name}`)}`;
  for (const statement of functionsDdl(q)) await sql.raw(statement).execute(db);
}

const minBigint = '-9223372036854775808';

function functionsDdl(q: (name: string) => string): string[] {
  const states = q('key_state');
  const entries = q('window_entries');
  const totals = q('window_totals');
  const counters = q('counters');
  const leases = q('leases');
  const usage = q('usage');
  return [
    `create or replace function ${q('keypool_reserve')}(
      p_lease_id text, p_key_ids text[], p_rpm float8[], p_tpm float8[], p_rpd float8[], p_tpd float8[],
      p_budget float8[], p_model text, p_tokens bigint, p_cost float8, p_now bigint, p_window_ms bigint,
      p_day text, p_month text, p_day_ends_at bigint, p_month_ends_at bigint, p_ttl_ms bigint, p_meta text,
      p_is_durable boolean, p_ignore_cooldown boolean,
      out lease_key_id text, out lease_is_probe boolean, out refusals text[], out retry_at bigint)
    language plpgsql as $fn$
    declare
      n int := cardinality(p_key_ids);
      cutoff bigint := p_now - p_window_ms;
      -- Past this, the floor moves even when every check passes (keeps the totals' backlog short).
      stale_floor bigint := p_now - p_window_ms - p_window_ms / 4;
      locked int;
      k text;
      st record;
      wt record;
      has_totals boolean;
      is_floor_moved boolean;
      v_floor bigint;
      agg_requests bigint;
      agg_tokens bigint;
      fl_requests bigint;
      fl_tokens bigint;
      w_requests bigint;
      w_tokens bigint;
      gone_requests bigint;
      gone_tokens bigint;
      frees_at bigint;
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
        is_floor_moved := false;
        -- The state (locked above) and today's and this month's counters, in one read.
        select s.invalid_since, s.exhausted_until, s.cooling_until, s.blocked_models, s.breaker,
            s.breaker_open_until, s.probe_lease_id,
            d.requests as d_requests, d.tokens as d_tokens, m.cost_usd as m_cost
          into st
          from ${states} s
          left join ${counters} d on d.key_id = s.key_id and d.window_id = p_day
          left join ${counters} m on m.key_id = s.key_id and m.window_id = p_month
          where s.key_id = k;
        if st.invalid_since is not null then
          reason := 'invalid';
        elsif st.exhausted_until > p_now then
          reason := 'exhausted'; r_at := st.exhausted_until;
        elsif st.cooling_until > p_now and not p_ignore_cooldown then
          reason := 'cooling'; r_at := st.cooling_until;
        elsif p_model is not null and st.blocked_models is not null
            and (st.blocked_models::jsonb ->> p_model)::float8 > p_now then
          reason := 'model-blocked'; r_at := (st.blocked_models::jsonb ->> p_model)::float8;
        elsif st.breaker = 'open' and st.breaker_open_until > p_now and not p_ignore_cooldown then
          reason := 'breaker-open'; r_at := st.breaker_open_until;
        elsif st.breaker in ('open', 'half-open') and st.probe_lease_id is not null then
          reason := 'probe-in-flight';
          select l.expires_at into r_at from ${leases} l where l.id = st.probe_lease_id and l.status = 'active';
        else
          probe := st.breaker in ('open', 'half-open');
          if p_rpm[i] is not null or p_tpm[i] is not null then
            -- Window totals: lock (a settle moving an entry waits, or is seen whole).
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
            -- Entries in flight always count.
            w_requests := agg_requests + fl_requests;
            w_tokens := agg_tokens + fl_tokens;
            if v_floor > cutoff then
              -- The window starts before the totals' floor: count exactly, leave the totals alone.
              select count(*), coalesce(sum(e.tokens), 0) into w_requests, w_tokens
                from ${entries} e where e.key_id = k and e.stamp > cutoff;
              w_requests := w_requests + fl_requests;
              w_tokens := w_tokens + fl_tokens;
            elsif v_floor <= stale_floor
                or (p_rpm[i] is not null and w_requests + 1 > p_rpm[i])
                or (p_tpm[i] is not null and w_tokens + p_tokens > p_tpm[i]) then
              -- Totals since a floor before the window can only count more: move the floor up.
              select count(*), coalesce(sum(e.tokens), 0) into gone_requests, gone_tokens
                from ${entries} e where e.key_id = k and e.stamp > v_floor and e.stamp <= cutoff;
              agg_requests := agg_requests - gone_requests;
              agg_tokens := agg_tokens - gone_tokens;
              v_floor := cutoff;
              is_floor_moved := true;
              w_requests := agg_requests + fl_requests;
              w_tokens := agg_tokens + fl_tokens;
            end if;
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
          if reason is null then
            if p_rpd[i] is not null and coalesce(st.d_requests, 0) + 1 > p_rpd[i] then
              reason := 'requests-per-day'; r_at := p_day_ends_at;
            elsif p_tpd[i] is not null and coalesce(st.d_tokens, 0) + p_tokens > p_tpd[i] then
              reason := 'tokens-per-day'; r_at := p_day_ends_at;
            elsif p_budget[i] is not null and coalesce(st.m_cost, 0) + p_cost > p_budget[i] then
              reason := 'monthly-budget'; r_at := p_month_ends_at;
            end if;
          end if;
        end if;

        if reason is null then
          -- Reserve: window totals (one more in flight; locked above when there are any), then the
          -- unstamped window entry, day/month counters and lease in one statement, then the probe slot.
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
        if is_floor_moved then
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
      -- Claim the lease: a settled lease has nothing left to say (an unknown id answers
      -- already-settled too), so it is deleted; a settle that lost the race finds nothing.
      -- Rows marked 'settled' by earlier versions stay until the purge.
      delete from ${leases} x where x.id = p_lease_id and x.status <> 'settled' returning * into l;
      if not found then
        return;
      end if;
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
        with stamped as (
          update ${entries} e set stamp = v_stamp, tokens = v_tokens where e.lease_id = p_lease_id
        ), counted as (
          update ${counters} c set tokens = c.tokens + (p_tokens - l.estimated_tokens),
              cost_usd = c.cost_usd + (p_cost - l.estimated_cost_usd)
            where is_on_time and c.key_id = l.key_id and c.window_id in (l.day, l.month)
        )
        insert into ${usage} select * from jsonb_populate_record(null::${usage}, p_usage::jsonb)
          where p_usage is not null;
        l.status := case when is_on_time then 'settled' else 'expired' end;
      elsif p_usage is not null then
        insert into ${usage} select * from jsonb_populate_record(null::${usage}, p_usage::jsonb);
      end if;
      return next l;
    end
    $fn$`,
  ];
}
