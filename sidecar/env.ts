/** The sidecar's configuration, read only from the environment the webhook writes (DESIGN §5). */
import {
  DEFAULT_GRACE_SECONDS,
  DEFAULT_SIDECAR_PORT,
  ENV_EVENT_OUTPUT,
  ENV_GRACE_SECONDS,
  ENV_NODE_NAME,
  ENV_POD_NAME,
  ENV_POD_NAMESPACE,
  ENV_POD_UID,
  ENV_PORT,
  ENV_SPEC,
  ENV_TOKEN,
} from '../common/names.js';
import { parseSpecJson, type HookSpec } from '../common/spec.js';
import { CallerEnvError, parseCallerEnv, type CallerSetting } from './callers.js';

export interface SidecarEnv {
  spec: HookSpec;
  token: string;
  port: number;
  graceSeconds: number;
  eventOutput: boolean;
  /** Who may call the hook API (HOOK_RUNNER_CALLERS, HOOK_RUNNER_HOST_IP, HOOK_RUNNER_HOST_IPS). */
  callers: CallerSetting;
  pod: { name: string; namespace: string; uid: string; node: string };
}

/** One clear message naming the variable that is wrong. */
export class EnvError extends Error {
  constructor(
    readonly variable: string,
    detail: string,
  ) {
    super(`${variable}: ${detail}`);
    this.name = 'EnvError';
  }
}

/** Shortest token accepted: the webhook writes 128 bits or more. */
const MIN_TOKEN_LENGTH = 16;

function parsePort(variable: string, raw: string): number {
  if (!/^[0-9]+$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535) throw new EnvError(variable, `must be a port number 1-65535, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

export function loadSidecarEnv(env: NodeJS.ProcessEnv): SidecarEnv {
  const specText = env[ENV_SPEC];
  if (specText === undefined || specText.trim() === '') throw new EnvError(ENV_SPEC, 'is not set; it must hold the JSON of the normalised hooks (the webhook writes it)');
  let spec: HookSpec;
  try {
    spec = parseSpecJson(specText, ENV_SPEC);
  } catch (e) {
    // HookSpecError messages already start with the variable name.
    throw new EnvError(ENV_SPEC, (e as Error).message.replace(new RegExp(`^${ENV_SPEC}: `), ''));
  }
  const token = env[ENV_TOKEN];
  if (token === undefined || token === '') throw new EnvError(ENV_TOKEN, 'is not set; it must hold the token the kubelet sends in X-Hook-Runner-Token');
  if (token.length < MIN_TOKEN_LENGTH) throw new EnvError(ENV_TOKEN, `is ${token.length} characters; at least ${MIN_TOKEN_LENGTH} are required`);
  const port = env[ENV_PORT] === undefined || env[ENV_PORT] === '' ? DEFAULT_SIDECAR_PORT : parsePort(ENV_PORT, env[ENV_PORT]!);
  let graceSeconds = DEFAULT_GRACE_SECONDS;
  const g = env[ENV_GRACE_SECONDS];
  if (g !== undefined && g !== '') {
    if (!/^[0-9]+(\.[0-9]+)?$/.test(g)) throw new EnvError(ENV_GRACE_SECONDS, `must be a number of seconds (0 or more), got ${JSON.stringify(g)}`);
    graceSeconds = Number(g);
  }
  const eo = env[ENV_EVENT_OUTPUT];
  if (eo !== undefined && eo !== '' && eo !== 'true' && eo !== 'false') throw new EnvError(ENV_EVENT_OUTPUT, `must be true or false, got ${JSON.stringify(eo)}`);
  let callers: CallerSetting;
  try {
    callers = parseCallerEnv(env);
  } catch (e) {
    if (e instanceof CallerEnvError) throw new EnvError(e.variable, e.message.slice(e.variable.length + 2));
    throw e;
  }
  return {
    spec,
    token,
    port,
    graceSeconds,
    eventOutput: eo === 'true',
    callers,
    pod: { name: env[ENV_POD_NAME] ?? '', namespace: env[ENV_POD_NAMESPACE] ?? '', uid: env[ENV_POD_UID] ?? '', node: env[ENV_NODE_NAME] ?? '' },
  };
}
