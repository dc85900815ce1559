/** Placeholder until the check subcommand lands. */
export async function runCheckCli(_argv: string[]): Promise<number> {
  process.stderr.write("hook-runner check: not implemented yet\n");
  return 1;
}
