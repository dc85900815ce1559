/** Placeholder until the explain subcommand lands. */
export async function runExplainCli(_argv: string[]): Promise<number> {
  process.stderr.write("hook-runner explain: not implemented yet\n");
  return 1;
}
