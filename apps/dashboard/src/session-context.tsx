import { createContext, useContext } from 'react';
import type { Api } from './api.js';
import type { Role } from './types.js';

export interface SessionValue {
  role: Role;
  /** Token name is unknown to the API client; the role is what the page adapts to. */
  api: Api;
  token: string;
  signOut(message?: string): void;
}

export const SessionContext = createContext<SessionValue | undefined>(undefined);

export function useSession(): SessionValue {
  const value = useContext(SessionContext);
  if (value === undefined) throw new Error('useSession outside <SessionContext>');
  return value;
}
