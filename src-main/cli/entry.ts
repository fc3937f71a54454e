import { runCli } from './main';

const code = await runCli(process.argv.slice(2));
// Let stdout drain before exiting, so piped JSON is never cut short.
process.stdout.write('', () => process.exit(code));
