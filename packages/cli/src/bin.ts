import { printError } from './output.js';
import { createProgram } from './program.js';

const program = createProgram();
program.parseAsync(process.argv).catch((error: unknown) => {
  printError(error, process.argv.includes('--json'));
  process.exitCode = 1;
});
