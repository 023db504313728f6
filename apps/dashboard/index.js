// The built dashboard: static files the admin API serves at `/` (see README).
import { fileURLToPath } from 'node:url';

/** Absolute path of the folder holding the built dashboard (index.html and assets/). */
export const dashboardDir = fileURLToPath(new URL('./dist', import.meta.url));
