/**
 * A small in-memory Kubernetes API server over HTTPS on 127.0.0.1, speaking exactly the REST paths
 * the webhook's in-cluster code uses, with the semantics that code relies on:
 *
 * - `GET /version`
 * - namespaces: list and watch (`?watch=true&resourceVersion=N`, one JSON event a line, held open)
 * - namespaced create (`POST`, 409 AlreadyExists), get (404 NotFound), replace (`PUT`, 409 Conflict
 *   when `metadata.resourceVersion` is stale), delete (404, 409 on failed `preconditions`)
 * - cluster-scoped get and JSON patch (`application/json-patch+json` only; a failed `test` op is 422)
 * - bearer-token authentication (401 without it)
 *
 * Every request is recorded (method, path, query, content type, parsed body, status) for tests to
 * assert on; `intercept` lets a test answer or hold a request (inject errors, make two clients race).
 */
import { randomUUID } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import jsonpatch from 'fast-json-patch';
import { KubeConfig } from '@kubernetes/client-node';
import { makeSelfSignedBundle, type SelfSignedBundle } from '../../webhook/cluster/tls.js';

export const FAKE_TOKEN = 'fake-apiserver-token';

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  contentType: string | undefined;
  body: unknown;
  status: number;
}

export interface InterceptReply {
  status: number;
  body: unknown;
}

/** Return a reply to answer the request yourself, or undefined to let the fake handle it (after awaiting, if you like). */
export type Interceptor = (req: { method: string; path: string; query: Record<string, string>; body: unknown }) => Promise<InterceptReply | undefined> | InterceptReply | undefined;

type Obj = {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
};

interface Route {
  group: string; // '' for core
  version: string;
  resource: string;
  namespace?: string;
  name?: string;
}

const KINDS: Record<string, { kind: string; apiVersion: string; namespaced: boolean }> = {
  namespaces: { kind: 'Namespace', apiVersion: 'v1', namespaced: false },
  secrets: { kind: 'Secret', apiVersion: 'v1', namespaced: true },
  rolebindings: { kind: 'RoleBinding', apiVersion: 'rbac.authorization.k8s.io/v1', namespaced: true },
  mutatingwebhookconfigurations: { kind: 'MutatingWebhookConfiguration', apiVersion: 'admissionregistration.k8s.io/v1', namespaced: false },
};

let serverBundle: SelfSignedBundle | undefined;

export function status(code: number, reason: string, message: string): InterceptReply {
  return { status: code, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason, message, code } };
}

export class FakeApiServer {
  readonly requests: RecordedRequest[] = [];
  /** What `/version` answers; a number makes it fail with that status. */
  version: { major: string; minor: string; gitVersion: string } | number = { major: '1', minor: '30', gitVersion: 'v1.30.2' };
  intercept: Interceptor | undefined;
  /** Hold back the response headers of new watches (a black-holed watch, as seen by the client). */
  holdWatchHeaders = false;
  private readonly store = new Map<string, Obj>();
  private readonly events: { resource: string; type: string; object: Obj; rv: number }[] = [];
  private readonly watchers = new Set<{ resource: string; res: ServerResponse }>();
  private rv = 100;
  private constructor(
    private readonly server: https.Server,
    readonly port: number,
    readonly ca: string,
  ) {}

  static async start(): Promise<FakeApiServer> {
    serverBundle ??= makeSelfSignedBundle({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], validityDays: 2 });
    const b = serverBundle;
    let fake: FakeApiServer | undefined;
    const server = https.createServer({ cert: b.cert, key: b.key }, (req, res) => {
      void (fake as FakeApiServer).handle(req, res).catch((e: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify(status(500, 'InternalError', String(e)).body));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    fake = new FakeApiServer(server, (server.address() as AddressInfo).port, b.caCert);
    return fake;
  }

  /** A KubeConfig for this server: verified TLS against its CA, bearer token. */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: `https://127.0.0.1:${this.port}`, caData: Buffer.from(this.ca).toString('base64'), skipTLSVerify: false }],
      users: [{ name: 'fake', token: FAKE_TOKEN }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
      currentContext: 'fake',
    });
    return kc;
  }

  async close(): Promise<void> {
    this.dropWatches();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Ends every open watch stream (clients should re-watch). */
  dropWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  /** Tells every open watch its version is too old (ERROR 410 Gone) and ends it, as the API server does after compaction. */
  expireWatches(): void {
    for (const w of this.watchers) {
      w.res.write(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version' } })}\n`);
      w.res.end();
    }
    this.watchers.clear();
  }

  watchCount(resource = 'namespaces'): number {
    return [...this.watchers].filter((w) => w.resource === resource).length;
  }

  // ----- store access for tests

  get(resource: string, name: string, namespace?: string): Obj | undefined {
    const o = this.store.get(key(resource, namespace, name));
    return o ? structuredClone(o) : undefined;
  }

  list(resource: string, namespace?: string): Obj[] {
    return [...this.store.entries()].filter(([k]) => k.startsWith(`${resource}/${namespace ?? ''}/`) || (namespace === undefined && k.startsWith(`${resource}/`))).map(([, o]) => structuredClone(o));
  }

  /** Creates or replaces an object directly (no request recorded); emits a watch event. */
  put(resource: string, obj: Obj): Obj {
    const meta = KINDS[resource];
    if (!meta) throw new Error(`fake apiserver: unknown resource ${resource}`);
    const ns = meta.namespaced ? obj.metadata?.namespace : undefined;
    const k = key(resource, ns, obj.metadata?.name ?? '');
    const prev = this.store.get(k);
    const o = this.stamp(resource, structuredClone(obj), prev);
    this.store.set(k, o);
    this.emit(resource, prev ? 'MODIFIED' : 'ADDED', o);
    return structuredClone(o);
  }

  /** Deletes an object; `silent` skips the watch event (as if the watch had missed it). */
  remove(resource: string, name: string, namespace?: string, opts: { silent?: boolean } = {}): void {
    const k = key(resource, namespace, name);
    const prev = this.store.get(k);
    if (!prev) return;
    this.store.delete(k);
    this.rv++;
    if (!opts.silent) this.emit(resource, 'DELETED', { ...prev, metadata: { ...prev.metadata, resourceVersion: String(this.rv) } });
  }

  /** Creates the namespace or replaces its labels. */
  setNamespace(name: string, labels: Record<string, string> = {}): Obj {
    const prev = this.get('namespaces', name);
    return this.put('namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { ...prev?.metadata, name, labels: { 'kubernetes.io/metadata.name': name, ...labels } },
      status: { phase: 'Active' },
    });
  }

  /** Requests matching method and a path prefix/regex. */
  calls(method: string, path: string | RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && (typeof path === 'string' ? r.path === path : path.test(r.path)));
  }

  // ----- internals

  private stamp(resource: string, o: Obj, prev: Obj | undefined): Obj {
    const meta = KINDS[resource] as (typeof KINDS)[string];
    this.rv++;
    o.apiVersion ??= meta.apiVersion;
    o.kind ??= meta.kind;
    o.metadata = {
      ...o.metadata,
      uid: prev?.metadata?.uid ?? randomUUID(),
      creationTimestamp: (prev?.metadata?.creationTimestamp as string | undefined) ?? new Date().toISOString(),
      resourceVersion: String(this.rv),
    };
    return o;
  }

  private emit(resource: string, type: string, object: Obj): void {
    const ev = { resource, type, object: structuredClone(object), rv: Number(object.metadata?.resourceVersion) };
    this.events.push(ev);
    for (const w of this.watchers) if (w.resource === resource) w.res.write(`${JSON.stringify({ type, object: ev.object })}\n`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const query = Object.fromEntries(url.searchParams.entries());
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: unknown;
    try {
      body = raw ? (JSON.parse(raw) as unknown) : undefined;
    } catch {
      body = raw;
    }
    const method = req.method ?? 'GET';
    const rec: RecordedRequest = { method, path: url.pathname, query, contentType: req.headers['content-type']?.split(';')[0], body, status: 0 };
    this.requests.push(rec);
    const reply = (r: InterceptReply) => {
      rec.status = r.status;
      res.writeHead(r.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(r.body));
    };

    if (req.headers.authorization !== `Bearer ${FAKE_TOKEN}`) return reply(status(401, 'Unauthorized', 'Unauthorized'));
    const intercepted = await this.intercept?.({ method, path: url.pathname, query, body });
    if (intercepted) return reply(intercepted);

    if (url.pathname === '/version' && method === 'GET') {
      if (typeof this.version === 'number') return reply(status(this.version, 'InternalError', 'version unavailable'));
      return reply({
        status: 200,
        body: { ...this.version, gitCommit: 'fake', gitTreeState: 'clean', buildDate: '2024-01-01T00:00:00Z', goVersion: 'go1.22', compiler: 'gc', platform: 'linux/amd64' },
      });
    }
    const route = parseRoute(url.pathname);
    const meta = route ? KINDS[route.resource] : undefined;
    if (!route || !meta || `${route.group ? `${route.group}/` : ''}${route.version}` !== meta.apiVersion)
      return reply(status(404, 'NotFound', `the server could not find the requested resource (${method} ${url.pathname})`));
    const { resource, namespace, name } = route;
    const what = `${resource} "${name ?? ''}"`;

    if (!name) {
      if (method === 'GET' && (query.watch === 'true' || query.watch === '1')) {
        rec.status = 200;
        res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
        // Like the API server: headers go out at once, before any event.
        if (!this.holdWatchHeaders) res.flushHeaders();
        const since = Number(query.resourceVersion || '0');
        for (const ev of this.events)
          if (ev.resource === resource && ev.rv > since && (!namespace || ev.object.metadata?.namespace === namespace)) res.write(`${JSON.stringify({ type: ev.type, object: ev.object })}\n`);
        const w = { resource, res };
        this.watchers.add(w);
        res.on('close', () => this.watchers.delete(w));
        return;
      }
      if (method === 'GET') {
        const items = this.list(resource, namespace);
        return reply({ status: 200, body: { apiVersion: meta.apiVersion, kind: `${meta.kind}List`, metadata: { resourceVersion: String(this.rv) }, items } });
      }
      if (method === 'POST') {
        const o = body as Obj;
        const n = o?.metadata?.name;
        if (!n) return reply(status(422, 'Invalid', `${resource}: metadata.name: Required value`));
        if (namespace && !this.store.has(key('namespaces', undefined, namespace))) return reply(status(404, 'NotFound', `namespaces "${namespace}" not found`));
        if (this.store.has(key(resource, namespace, n))) return reply(status(409, 'AlreadyExists', `${resource} "${n}" already exists`));
        const created = this.put(resource, { ...o, metadata: { ...o.metadata, namespace } });
        return reply({ status: 201, body: created });
      }
      return reply(status(405, 'MethodNotAllowed', `${method} not allowed on a collection`));
    }

    const k = key(resource, namespace, name);
    const cur = this.store.get(k);
    if (method === 'GET') return reply(cur ? { status: 200, body: cur } : status(404, 'NotFound', `${what} not found`));
    if (!cur) return reply(status(404, 'NotFound', `${what} not found`));
    if (method === 'PUT') {
      const o = body as Obj;
      const rv = o?.metadata?.resourceVersion;
      if (rv && rv !== cur.metadata?.resourceVersion)
        return reply(status(409, 'Conflict', `Operation cannot be fulfilled on ${what}: the object has been modified; please apply your changes to the latest version and try again`));
      if (resource === 'secrets' && o.type !== cur.type) return reply(status(422, 'Invalid', `${what}: type: Invalid value: field is immutable`));
      const updated = this.put(resource, { ...o, metadata: { ...o.metadata, name, namespace } });
      return reply({ status: 200, body: updated });
    }
    if (method === 'DELETE') {
      const pre = (body as { preconditions?: { uid?: string; resourceVersion?: string } } | undefined)?.preconditions;
      if (pre?.uid && pre.uid !== cur.metadata?.uid) return reply(status(409, 'Conflict', `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${cur.metadata?.uid}`));
      if (pre?.resourceVersion && pre.resourceVersion !== cur.metadata?.resourceVersion)
        return reply(status(409, 'Conflict', `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${cur.metadata?.resourceVersion}`));
      this.remove(resource, name, namespace);
      return reply({ status: 200, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, kind: resource } } });
    }
    if (method === 'PATCH') {
      if (rec.contentType !== 'application/json-patch+json') return reply(status(415, 'UnsupportedMediaType', `the fake speaks JSON patch only, got ${rec.contentType}`));
      if (!Array.isArray(body)) return reply(status(400, 'BadRequest', 'JSON patch must be a list of operations'));
      let next: Obj;
      try {
        next = jsonpatch.applyPatch(structuredClone(cur), body as jsonpatch.Operation[], true, false).newDocument;
      } catch (e) {
        return reply(status(422, 'Invalid', `JSON patch failed: ${(e as Error).message.split('\n')[0]}`));
      }
      const updated = this.put(resource, { ...next, metadata: { ...next.metadata, name, namespace } });
      return reply({ status: 200, body: updated });
    }
    return reply(status(405, 'MethodNotAllowed', `${method} not allowed`));
  }
}

function key(resource: string, namespace: string | undefined, name: string): string {
  return `${resource}/${namespace ?? ''}/${name}`;
}

function parseRoute(pathname: string): Route | undefined {
  const s = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let group: string;
  let version: string;
  let rest: string[];
  if (s[0] === 'api' && s.length >= 3) {
    group = '';
    version = s[1] as string;
    rest = s.slice(2);
  } else if (s[0] === 'apis' && s.length >= 4) {
    group = s[1] as string;
    version = s[2] as string;
    rest = s.slice(3);
  } else return undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) return { group, version, namespace: rest[1], resource: rest[2] as string, name: rest[3] };
  if (rest.length > 2) return undefined;
  return { group, version, resource: rest[0] as string, name: rest[1] };
}
