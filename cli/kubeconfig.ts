/** The KubeConfig of the operator subcommands: like kubectl, `--kubeconfig` or the default chain, and `--context`. */
import { KubeConfig } from '@kubernetes/client-node';

export function kubeConfigFrom(opts: { kubeconfig?: string; context?: string }): KubeConfig {
  const kc = new KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else kc.loadFromDefault();
  if (opts.context) {
    if (!kc.getContextObject(opts.context))
      throw new Error(
        `kubeconfig has no context ${JSON.stringify(opts.context)}; contexts: ${
          kc
            .getContexts()
            .map((c) => c.name)
            .join(', ') || '(none)'
        }`,
      );
    kc.setCurrentContext(opts.context);
  }
  return kc;
}
