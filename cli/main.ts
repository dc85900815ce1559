#!/usr/bin/env node
/**
 * The one `hook-runner` binary. Each subcommand is imported lazily so that the sidecar, which runs
 * in every hooked pod, loads only what it uses.
 */
const USAGE = `hook-runner: container lifecycle hooks with timeouts, retries, logs, events and a grace-period budget

Usage:
  hook-runner webhook [--listen HOST:PORT] [--tls-cert-file F --tls-key-file F | --self-signed] [--config F]
  hook-runner inject -f FILE|DIR|- [-f ...] [-R] [--config F] [-o yaml|json] [--sidecar-mode M]
  hook-runner uninject -f FILE|- [-o yaml|json]
  hook-runner explain -f FILE|- | pod NAME [-n NS] [--config F] [-o text|json|yaml]
  hook-runner check [--kubeconfig F] [--context C] [-o text|json|yaml]
  hook-runner sidecar            (configured by environment; see the README)
  hook-runner wait-ready [--port N] [--timeout-seconds N]
  hook-runner version [-o json|yaml]
  hook-runner help [COMMAND]

Run 'hook-runner <command> --help' or 'hook-runner help <command>' for a command's options.
`;

const COMMANDS = ['webhook', 'inject', 'uninject', 'explain', 'check', 'sidecar', 'wait-ready', 'version', 'help'];

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'webhook':
      return (await import('../webhook/cli.js')).runWebhookCli(rest);
    case 'inject':
      return (await import('../webhook/inject-cli.js')).runInjectCli(rest);
    case 'uninject':
      return (await import('./uninject-cli.js')).runUninjectCli(rest);
    case 'explain':
      return (await import('./explain-cli.js')).runExplainCli(rest);
    case 'check':
      return (await import('./check-cli.js')).runCheckCli(rest);
    case 'sidecar':
      return (await import('../sidecar/bundle.js')).runSidecarCli(rest);
    case 'wait-ready':
      return (await import('../sidecar/wait-ready.js')).runWaitReadyCli(rest);
    case 'version':
    case '--version':
      return (await import('./version.js')).runVersionCli(rest);
    case 'help':
      // `help inject` is `inject --help`, as git and kubectl do.
      if (rest[0] !== undefined && rest[0] !== 'help' && !rest[0].startsWith('-')) return main([rest[0], '--help']);
      process.stdout.write(USAGE);
      return 0;
    case undefined:
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default: {
      const near = COMMANDS.find((c) => c.startsWith(cmd) || cmd.startsWith(c));
      process.stderr.write(`hook-runner: unknown command ${JSON.stringify(cmd)}${near ? `; did you mean ${near}?` : ''}\n\n${USAGE}`);
      return 2;
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    // Servers resolve only when they have shut down; a number means "exit now with this code".
    if (typeof code === 'number') process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`hook-runner: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
