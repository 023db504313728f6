import { formatCount, formatUsd } from '../format.js';
import type { OrgHealth } from '../types.js';
import { HeadroomBars } from './headroom.js';
import { ScrollRegion } from './scroll-region.js';

/**
 * The upstream organizations of the pool's keys and what each has left of the limits its keys
 * share, one bar per limit as in the keys table.
 */
export function OrgTable({ orgs }: { orgs: readonly OrgHealth[] }) {
  return (
    <ScrollRegion label="Organizations table">
      <table className="orgs-table">
        <thead>
          <tr>
            <th scope="col">Organization</th>
            <th scope="col">Provider</th>
            <th scope="col" className="num">
              Keys
            </th>
            <th scope="col">Shared limits</th>
            <th scope="col">Shared headroom</th>
          </tr>
        </thead>
        <tbody>
          {orgs.map((org) => (
            <tr key={org.id} data-org={org.id}>
              <th scope="row" className="mono">
                {org.organization}
              </th>
              <td>{org.provider}</td>
              <td className="num">{org.keyIds.length}</td>
              <td>{limitsText(org.limits)}</td>
              <td>
                <HeadroomBars headroom={org.headroom} empty="no shared limits" />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </ScrollRegion>
  );
}

/** The limits an organization's keys share, as the operator set them (`40 rpm · $10.00/month`). */
function limitsText(limits: OrgHealth['limits']): string {
  const parts = [
    limits.rpm !== undefined && `${formatCount(limits.rpm)} rpm`,
    limits.tpm !== undefined && `${formatCount(limits.tpm)} tpm`,
    limits.requestsPerDay !== undefined && `${formatCount(limits.requestsPerDay)} req/day`,
    limits.tokensPerDay !== undefined && `${formatCount(limits.tokensPerDay)} tok/day`,
    limits.monthlyBudgetUsd !== undefined && `${formatUsd(limits.monthlyBudgetUsd)}/month`,
  ].filter((part): part is string => typeof part === 'string');
  return parts.length > 0 ? parts.join(' · ') : '—';
}
