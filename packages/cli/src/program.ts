import { Command, InvalidArgumentError, Option } from 'commander';
import { importEnv, migrate, rotateMasterKey, tokensCreate, usage } from './commands/admin.js';
import { demo } from './commands/demo.js';
import { keysAdd, keysList, keysSetEnabled, keysTest } from './commands/keys.js';
import { serve } from './commands/serve.js';
import { parseDuration } from './duration.js';
import type { GlobalOptions } from './open-pool.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('a port is a whole number 0-65535.');
  return n;
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number.');
  return n;
}

/**
 * An on/off environment variable. Commander turns a flag on whenever its variable is set at all,
 * even to `0`, so the value is read here: 1/true/yes/on or 0/false/no/off (empty is off).
 */
function envSwitch(name: string): boolean {
  const value = (process.env[name] ?? '').trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return true;
  if (['', '0', 'false', 'no', 'off'].includes(value)) return false;
  throw Object.assign(
    new Error(
      `${name} must be 1 or 0 (true/false, yes/no, on/off), not "${process.env[name]}"; e.g. ${name}=1.`,
    ),
    { code: 'KEYPOOL_INVALID_ENV' },
  );
}

/** The `keypool` command. Every subcommand takes --store, --data-dir and --json. */
export function createProgram(): Command {
  const program = new Command('keypool')
    .description('Run many LLM provider API keys as one rate-limit-aware, fleet-wide resource.')
    .version('0.1.0')
    .showHelpAfterError('(add --help for usage)')
    .addOption(
      new Option(
        '--store <url>',
        'store URL: sqlite:./.keypool/keypool.db (default), postgres://…, mysql://…, redis://…, memory:',
      ).env('KEYPOOL_STORE'),
    )
    .addOption(
      new Option('--data-dir <dir>', 'where the SQLite file and master.key live')
        .env('KEYPOOL_DATA_DIR')
        .default('./.keypool'),
    )
    .option('--json', 'machine-readable output', false);

  const globals = (command: Command): GlobalOptions => command.optsWithGlobals() as GlobalOptions;

  /** --last-resort and --probe-interval, shared by serve and demo. */
  const withPoolBehaviour = (command: Command): Command =>
    command
      .addOption(
        new Option(
          '--last-resort',
          'when no key is eligible, use the one whose 429 cooldown or open breaker ends soonest rather than fail (never an invalid, exhausted or disabled key; limits still hold); the env takes 1 or 0',
        ).env('KEYPOOL_LAST_RESORT'),
      )
      .addOption(
        new Option(
          '--probe-interval <duration>',
          'probe invalid, exhausted and breaker-open keys this often (listing models), one probe per key fleet-wide; a pass brings the key back: 30s, 5m, 1h or ms',
        )
          .env('KEYPOOL_PROBE_INTERVAL')
          // Empty means unset, as with KEYPOOL_STORE: templates often export the variable blank.
          // (Commander keeps '' for a value the parser leaves out, so the action checks for a number.)
          .argParser((value: string) => (value.trim() === '' ? '' : parseDuration(value))),
      );
  const poolBehaviour = (command: Command): { lastResort: boolean; probeIntervalMs?: number } => {
    const o = command.optsWithGlobals() as { lastResort?: boolean; probeInterval?: number | '' };
    const lastResort =
      command.getOptionValueSource('lastResort') === 'env'
        ? envSwitch('KEYPOOL_LAST_RESORT')
        : o.lastResort === true;
    return { lastResort, ...(typeof o.probeInterval === 'number' && { probeIntervalMs: o.probeInterval }) };
  };

  withPoolBehaviour(
    program
      .command('serve')
      .description('serve the admin API (default store: SQLite in ./.keypool, no server needed)')
      .addOption(new Option('-p, --port <port>', 'port').env('PORT').default(8080).argParser(port))
      .addOption(new Option('--host <host>', 'interface to listen on').env('HOST').default('127.0.0.1')),
  ).action(async (_options, command: Command) => {
    const o = globals(command) as GlobalOptions & { port: number; host: string };
    await serve({ ...o, ...poolBehaviour(command) });
  });

  withPoolBehaviour(
    program
      .command('demo')
      .description(
        'serve with a mock upstream, demo keys (some faulty, two in one organization) and synthetic traffic',
      )
      .addOption(new Option('-p, --port <port>', 'port').env('PORT').default(8080).argParser(port))
      .option('--host <host>', 'interface to listen on', '127.0.0.1')
      .option('--duration <seconds>', 'stop after this many seconds', positive)
      .option('--rate <perSecond>', 'synthetic requests per second', positive, 5),
  ).action(async (_options, command: Command) => {
    const o = globals(command) as GlobalOptions & {
      port: number;
      host: string;
      duration?: number;
      rate: number;
    };
    // The demo must not fill a real store with fake keys: memory unless --store says otherwise.
    await demo({ ...o, ...poolBehaviour(command), store: o.store || 'memory:' });
  });

  const keys = program.command('keys').description('list, add, enable, disable and test keys');
  keys
    .command('list')
    .description('list keys (masked) with their status')
    .action(async (_o, command: Command) => keysList(globals(command)));
  keys
    .command('add <provider>')
    .description('add a key; the secret comes from stdin or --secret-env, never from the command line')
    .option('--secret-env <VAR>', 'read the secret from this environment variable')
    .option('--alias <alias>', 'human name, unique')
    .option('--priority <n>', '0 = primary, higher = fallback')
    .option('--weight <n>', 'share for the weighted strategy')
    .option('--base-url <url>', 'upstream base URL (proxy, Azure, mock)')
    .option('--rpm <n>', 'requests per minute limit')
    .option('--tpm <n>', 'tokens per minute limit')
    .option('--models <list>', 'comma-separated models this key may serve')
    .option(
      '--org <id>',
      'upstream organization (e.g. org-…): its keys share the --org-* limits, and a 429 or spent quota on one holds back all',
    )
    .option('--org-rpm <n>', 'requests per minute the organization shares (needs --org)')
    .option('--org-tpm <n>', 'tokens per minute the organization shares (needs --org)')
    .option('--org-rpd <n>', 'requests per day the organization shares (needs --org)')
    .option('--org-tpd <n>', 'tokens per day the organization shares (needs --org)')
    .option('--org-budget-usd <n>', 'monthly budget in USD the organization shares (needs --org)')
    .action(async (provider: string, _o, command: Command) => keysAdd(provider, globals(command)));
  keys
    .command('disable <key>')
    .description('disable a key (id or alias)')
    .option('--reason <text>', 'why, for the audit log and dashboard')
    .action(async (key: string, _o, command: Command) => keysSetEnabled(key, false, globals(command)));
  keys
    .command('enable <key>')
    .description('enable a key (id or alias); also clears "invalid"')
    .action(async (key: string, _o, command: Command) => keysSetEnabled(key, true, globals(command)));
  keys
    .command('test <key>')
    .description("test a key with the provider's cheapest real call; exit code 1 when it fails")
    .action(async (key: string, _o, command: Command) => {
      if (!(await keysTest(key, globals(command)))) process.exitCode = 1;
    });

  program
    .command('import-env <file>')
    .description(
      'import keys from an env file (OPENAI_API_KEY=…, OPENAI_API_KEYS=a,b, KEY_1=… …); "-" reads stdin',
    )
    .action(async (file: string, _o, command: Command) => importEnv(file, globals(command)));

  program
    .command('usage')
    .description('requests, tokens and cost from the usage log')
    .option('--from <date>', 'start (2026-11-01, ISO date-time or epoch ms), inclusive')
    .option('--to <date>', 'end, exclusive')
    .option('--group-by <fields>', 'comma-separated: key, model, pool, provider, day, month', 'key')
    .option('--key <key>', 'only this key (id or alias)')
    .option('--model <model>', 'only this model')
    .action(async (_o, command: Command) => usage(globals(command)));

  const tokens = program.command('tokens').description('API tokens');
  tokens
    .command('create')
    .description('create an API token (shown once; only its hash is stored)')
    .requiredOption('--name <name>', 'who or what uses it')
    .addOption(
      new Option('--role <role>', 'admin, operator, viewer or service')
        .choices(['admin', 'operator', 'viewer', 'service'])
        .makeOptionMandatory(),
    )
    .option('--pools <ids>', 'service tokens: comma-separated pools it may lease from')
    .action(async (_o, command: Command) =>
      tokensCreate(globals(command) as GlobalOptions & { name: string; role: string; pools?: string }),
    );

  program
    .command('rotate-master-key')
    .description('re-seal every secret under a new master key (resumable; restart servers afterwards)')
    .action(async (_o, command: Command) => rotateMasterKey(globals(command)));

  program
    .command('migrate')
    .description('create or update the store schema')
    .action(async (_o, command: Command) => migrate(globals(command)));

  return program;
}
