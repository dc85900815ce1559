/** The hooks annotation: every error class of DESIGN §3 gives its exact located message. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Container } from '@kubernetes/client-node';
import { HookSpecError, MAX_COLLECTED_PROBLEMS, normaliseHooks, parseSpecJson, specJson, type ParseContext } from '../common/spec.js';
import { parseHooksText } from '../webhook/core/hooks-text.js';
import { handlerPolicy } from '../webhook/core/policy.js';
import { checkPreStopBudget, preStopDeadlineMs, worstCaseSeconds } from '../common/budget.js';

const containers: V1Container[] = [
  { name: 'app', image: 'x', ports: [{ name: 'http', containerPort: 8080 }] },
  { name: 'side', image: 'y' },
];
const ctx: ParseContext = { containers, defaults: { timeoutSeconds: 30, shutdownSeconds: 5 } };

function parse(text: string, c: ParseContext = ctx) {
  return normaliseHooks(parseHooksText(text), c);
}

function errorOf(text: string, c: ParseContext = ctx): string {
  try {
    parse(text, c);
  } catch (e) {
    assert.ok(e instanceof HookSpecError, `expected HookSpecError, got ${String(e)}`);
    return e.message;
  }
  assert.fail(`expected ${JSON.stringify(text)} to be rejected`);
}

const table: Array<[string, string, string]> = [
  [
    'not YAML',
    'app: [unclosed',
    'hook-runner.dev/hooks: not valid YAML or JSON: Flow sequence in block collection must be sufficiently indented and end with a ] at line 1, column 15 of the annotation: "app: [unclosed"',
  ],
  ['top level not a map', '- app', 'hook-runner.dev/hooks: must be a map of container name to hooks, got a list ["app"]'],
  ['unknown container', 'db: {preStop: [{sleep: {seconds: 1}}]}', 'hook-runner.dev/hooks: db: no such container in this pod (containers: app, side); hooks apply to regular containers only'],
  ['unknown container field', 'app: {preStart: []}', 'hook-runner.dev/hooks: app.preStart: unknown field; did you mean postStart? expected one of shutdownSeconds, postStart, preStop'],
  ['phase not a list', 'app: {preStop: {sleep: {seconds: 1}}}', 'hook-runner.dev/hooks: app.preStop: must be a list of handlers, got a map {sleep: {seconds: 1}}'],
  [
    'unknown handler kind',
    'app: {preStop: [{grpc: {port: 1}}]}',
    'hook-runner.dev/hooks: app.preStop[0].grpc: unknown handler kind; expected exactly one of exec, httpGet, http, sleep, signal, tcpSocket',
  ],
  ['no handler', 'app: {preStop: [{timeoutSeconds: 3}]}', 'hook-runner.dev/hooks: app.preStop[0]: has no handler; expected exactly one of exec, httpGet, http, sleep, signal, tcpSocket'],
  ['two kinds in one item', 'app: {preStop: [{sleep: {seconds: 1}, exec: {command: [x]}}]}', 'hook-runner.dev/hooks: app.preStop[0]: has exec and sleep; an item takes exactly one handler kind'],
  [
    'bad port number',
    'app: {preStop: [{sleep: {seconds: 1}}, {httpGet: {path: /x, port: 70000}}]}',
    'hook-runner.dev/hooks: app.preStop[1].httpGet.port: must be 1-65535 or a named port of container app, got 70000',
  ],
  [
    'unknown named port',
    'app: {postStart: [{tcpSocket: {port: grpc}}]}',
    'hook-runner.dev/hooks: app.postStart[0].tcpSocket.port: must be 1-65535 or a named port of container app, got the string "grpc"; its named ports are http',
  ],
  ['negative seconds', 'app: {preStop: [{sleep: {seconds: -1}}]}', 'hook-runner.dev/hooks: app.preStop[0].sleep.seconds: must be 0 or more, got -1'],
  ['zero timeout', 'app: {preStop: [{sleep: {seconds: 1}, timeoutSeconds: 0}]}', 'hook-runner.dev/hooks: app.preStop[0].timeoutSeconds: must be greater than 0, got 0'],
  ['negative shutdownSeconds', 'app: {shutdownSeconds: -2}', 'hook-runner.dev/hooks: app.shutdownSeconds: must be 0 or more, got -2'],
  [
    'unknown field in action',
    'app: {preStop: [{httpGet: {path: /x, port: 80, verb: GET}}]}',
    'hook-runner.dev/hooks: app.preStop[0].httpGet.verb: unknown field; expected one of path, port, host, scheme, httpHeaders',
  ],
  [
    'unknown common field',
    'app: {preStop: [{sleep: {seconds: 1}, retry: 2}]}',
    'hook-runner.dev/hooks: app.preStop[0].retry: unknown field; did you mean retries? expected one of sleep, timeoutSeconds, retries, retryDelaySeconds, continueOnError',
  ],
  [
    'exec command a string',
    'app: {postStart: [{exec: {command: "echo hi"}}]}',
    'hook-runner.dev/hooks: app.postStart[0].exec.command: must be a non-empty list of strings (argv, no shell), got the string "echo hi"',
  ],
  ['bad retries', 'app: {preStop: [{sleep: {seconds: 1}, retries: 1.5}]}', 'hook-runner.dev/hooks: app.preStop[0].retries: must be a whole number 0-20, got number 1.5'],
  [
    'bad signal',
    'app: {preStop: [{signal: {name: SIGKILL}}]}',
    'hook-runner.dev/hooks: app.preStop[0].signal.name: must be a signal name such as SIGTERM, SIGQUIT, SIGINT, SIGUSR1 (SIGKILL and SIGSTOP are not allowed), got "SIGKILL"',
  ],
  ['bad scheme', 'app: {preStop: [{http: {path: /, port: 80, scheme: ftp}}]}', 'hook-runner.dev/hooks: app.preStop[0].http.scheme: must be HTTP or HTTPS, got the string "ftp"'],
  ['path without slash', 'app: {preStop: [{http: {path: drain, port: 80}}]}', 'hook-runner.dev/hooks: app.preStop[0].http.path: must start with "/", got "drain"'],
  ['header with newline', 'app: {preStop: [{http: {path: /, port: 80, headers: {X-A: "a\\r\\nb"}}}]}', 'hook-runner.dev/hooks: app.preStop[0].http.headers[0].value: must not contain line breaks'],
  ['duplicate keys', 'app: {}\napp: {}', 'hook-runner.dev/hooks: not valid YAML or JSON: Map keys must be unique; "app" is repeated at line 2, column 1 of the annotation: "app: {}"'],
];

for (const [name, text, expected] of table) {
  test(`validation: ${name}`, () => {
    const msg = errorOf(text);
    if (expected.endsWith(': ')) assert.ok(msg.startsWith(expected), `${msg} should start with ${expected}`);
    else assert.equal(msg, expected);
  });
}

const unknownKinds = 'exec, httpGet, http, sleep, signal, tcpSocket';
const messages: Array<[string, string, string]> = [
  [
    'a missing exec.command names what it got',
    'app: {postStart: [{exec: {}}]}',
    'hook-runner.dev/hooks: app.postStart[0].exec.command: must be a non-empty list of strings (argv, no shell), got nothing (the field is missing)',
  ],
  [
    'an empty exec.command says it is empty',
    'app: {postStart: [{exec: {command: []}}]}',
    'hook-runner.dev/hooks: app.postStart[0].exec.command: must be a non-empty list of strings (argv, no shell), got an empty list []',
  ],
  [
    'a typo in a common field suggests the field',
    'app: {preStop: [{sleep: {seconds: 1}, timeoutSecond: 3}]}',
    'hook-runner.dev/hooks: app.preStop[0].timeoutSecond: unknown field; did you mean timeoutSeconds? expected one of sleep, timeoutSeconds, retries, retryDelaySeconds, continueOnError',
  ],
  [
    'a typo in a handler kind suggests the kind',
    'app: {preStop: [{httpget: {port: 80}}]}',
    `hook-runner.dev/hooks: app.preStop[0].httpget: unknown handler kind; did you mean httpGet? expected exactly one of ${unknownKinds}`,
  ],
  [
    'a misspelt handler kind suggests the kind',
    'app: {preStop: [{sleeep: {seconds: 1}}]}',
    `hook-runner.dev/hooks: app.preStop[0].sleeep: unknown handler kind; did you mean sleep? expected exactly one of ${unknownKinds}`,
  ],
  [
    'a typo in a container name suggests the container',
    'ap: {preStop: [{sleep: {seconds: 1}}]}',
    'hook-runner.dev/hooks: ap: no such container in this pod (containers: app, side); did you mean app? hooks apply to regular containers only',
  ],
  [
    'a typo in a named port suggests the port',
    'app: {postStart: [{httpGet: {port: htp}}]}',
    'hook-runner.dev/hooks: app.postStart[0].httpGet.port: must be 1-65535 or a named port of container app, got the string "htp"; its named ports are http; did you mean http?',
  ],
  [
    'a bad value is reported once, not again through its placeholder',
    'app: {preStop: [{http: {port: 80, method: 5}}, {signal: {name: [x]}}, {exec: [a]}]}',
    'hook-runner.dev/hooks: 3 errors: (1) app.preStop[0].http.method: must be a string, got number 5; (2) app.preStop[1].signal.name: must be a string, got a list ["x"]; (3) app.preStop[2].exec: must be a map, got a list ["a"]',
  ],
];
for (const [name, text, expected] of messages) {
  test(`messages: ${name}`, () => assert.equal(errorOf(text), expected));
}

test('every error is reported with its path: three in one annotation are three, in document order', () => {
  const text = 'app: {shutdownSeconds: -1, preStop: [{sleep: {seconds: 1}, timeoutSeconds: 0, retries: 99}]}\nside: {postStart: [{exec: {command: "echo"}}]}';
  let err: unknown;
  try {
    parse(text);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof HookSpecError);
  assert.deepEqual(err.errors, [
    { path: 'app.shutdownSeconds', message: 'must be 0 or more, got -1' },
    { path: 'app.preStop[0].retries', message: 'must be a whole number 0-20, got number 99' },
    { path: 'app.preStop[0].timeoutSeconds', message: 'must be greater than 0, got 0' },
    { path: 'side.postStart[0].exec.command', message: 'must be a non-empty list of strings (argv, no shell), got the string "echo"' },
  ]);
  assert.equal(
    err.message,
    'hook-runner.dev/hooks: 4 errors: (1) app.shutdownSeconds: must be 0 or more, got -1; (2) app.preStop[0].retries: must be a whole number 0-20, got number 99; ' +
      '(3) app.preStop[0].timeoutSeconds: must be greater than 0, got 0; (4) side.postStart[0].exec.command: must be a non-empty list of strings (argv, no shell), got the string "echo"',
  );
  assert.equal(err.location, 'app.shutdownSeconds', 'location and detail are the first error');
});

test('the message is bounded: 20 errors spelled out, then how many more; errors keeps them all', () => {
  const items = Array.from({ length: 25 }, (_, i) => `{sleep: {seconds: -${i + 1}}}`).join(', ');
  const err = (() => {
    try {
      parse(`app: {preStop: [${items}]}`);
    } catch (e) {
      return e as HookSpecError;
    }
    assert.fail('expected a rejection');
  })();
  assert.equal(err.errors.length, 25);
  assert.match(err.message, /^hook-runner\.dev\/hooks: 25 errors: \(1\) app\.preStop\[0\]\.sleep\.seconds: must be 0 or more, got -1; /);
  assert.match(err.message, /\(20\) app\.preStop\[19\]\.sleep\.seconds: must be 0 or more, got -20; and 5 more$/);
  assert.ok(!err.message.includes('(21)'));
});

test('an admission denial lists every problem, bounded, with no change to the admission code', async () => {
  const { reviewAdmission } = await import('../webhook/core/admission.js');
  const { defaultConfig } = await import('../webhook/core/config.js');
  const items = Array.from({ length: 25 }, (_, i) => `{sleep: {seconds: -${i + 1}}}`).join(', ');
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', annotations: { 'hook-runner.dev/hooks': `app: {preStop: [${items}]}` } }, spec: { containers: [{ name: 'app', image: 'x' }] } };
  const body = {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: 'u', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, operation: 'CREATE', namespace: 'd', object: pod },
  };
  const r = reviewAdmission(body, { config: defaultConfig('test'), mode: 'native' });
  assert.equal(r.outcome, 'denied');
  const message = (r.review as { response: { status: { message: string } } }).response.status.message;
  assert.match(message, /^hook-runner\.dev\/hooks: 25 errors: \(1\) app\.preStop\[0\]\.sleep\.seconds: must be 0 or more, got -1; \(2\) app\.preStop\[1\]/);
  assert.match(message, /\(20\) app\.preStop\[19\]\.sleep\.seconds: must be 0 or more, got -20; and 5 more$/);
});

test('checking stops at 100 problems: thousands of unknown keys in 64 KiB cost no more than that', () => {
  const keys = Array.from({ length: 3000 }, (_, i) => `timeoutSecond${i}: 1`).join(', ');
  const err = (() => {
    try {
      parse(`app: {preStop: [{sleep: {seconds: 1}, ${keys}}]}`);
    } catch (e) {
      return e as HookSpecError;
    }
    assert.fail('expected a rejection');
  })();
  assert.equal(err.errors.length, MAX_COLLECTED_PROBLEMS);
  assert.equal(err.complete, false);
  assert.match(err.message, /^hook-runner\.dev\/hooks: 100 errors \(checking stopped there\): \(1\) app\.preStop\[0\]\.timeoutSecond0: unknown field; /);
  assert.match(err.message, /; and 80 more$/);
});

test('validation: a handler kind the config does not allow is refused with the allowed list', () => {
  const msg = errorOf('app: {postStart: [{exec: {command: [x]}}]}', { ...ctx, policy: handlerPolicy(['http', 'sleep']) });
  assert.equal(msg, "hook-runner.dev/hooks: app.postStart[0].exec: handler kind exec is not allowed by this cluster's hook-runner configuration (allowed: http, sleep)");
});

test('validation: YAML alias bombs are refused before they expand', () => {
  const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
  for (let i = 0; i < 9; i++)
    bomb.push(
      `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9)
        .fill(`*${String.fromCharCode(97 + i)}`)
        .join(',')}]`,
    );
  assert.throws(
    () => parseHooksText(bomb.join('\n')),
    (e: unknown) => e instanceof HookSpecError && /not valid YAML or JSON/.test(e.message),
  );
});

test('validation: an oversize annotation is refused with its size', () => {
  assert.throws(() => parseHooksText(`app: {}\n#${'x'.repeat(70 * 1024)}`), /bytes; at most 65536 are accepted/);
});

test('normalises: defaults filled, named ports resolved, JSON accepted, signal names canonical', () => {
  const spec = parse(
    '{"app": {"postStart": [{"httpGet": {"port": "http"}}], "preStop": [{"signal": {"name": "quit"}}, {"http": {"method": "post", "path": "/d", "port": 8080, "headers": {"A": "1"}}}]}}',
  );
  assert.deepEqual(spec.app!.postStart[0], {
    kind: 'httpGet',
    action: { path: '/', port: 8080, host: '127.0.0.1', scheme: 'HTTP', httpHeaders: [] },
    timeoutSeconds: 30,
    retries: 0,
    retryDelaySeconds: 1,
    continueOnError: false,
  });
  // HOOK_RUNNER_SPEC keeps the wire form (the action under its kind's key) that sidecars of every version read.
  assert.deepEqual(JSON.parse(specJson(spec)).app, {
    shutdownSeconds: 5,
    postStart: [{ httpGet: { path: '/', port: 8080, host: '127.0.0.1', scheme: 'HTTP', httpHeaders: [] }, timeoutSeconds: 30, retries: 0, retryDelaySeconds: 1, continueOnError: false }],
    preStop: [
      { signal: { name: 'SIGQUIT', waitForExit: false }, timeoutSeconds: 30, retries: 0, retryDelaySeconds: 1, continueOnError: false },
      {
        http: { method: 'POST', path: '/d', port: 8080, host: '127.0.0.1', scheme: 'HTTP', headers: [{ name: 'A', value: '1' }] },
        timeoutSeconds: 30,
        retries: 0,
        retryDelaySeconds: 1,
        continueOnError: false,
      },
    ],
  });
});

test('the normalised spec round-trips through the sidecar parser unchanged', () => {
  const spec = parse('app: {shutdownSeconds: 3, postStart: [{exec: {command: [a, ""]}, retries: 2}], preStop: [{tcpSocket: {port: http}}, {sleep: {seconds: 0.5}}]}');
  assert.deepEqual(parseSpecJson(specJson(spec)), spec);
});

test('sidecar parser refuses named ports and bad JSON with the variable name', () => {
  assert.throws(() => parseSpecJson('{'), /^HookSpecError: HOOK_RUNNER_SPEC: not valid JSON/);
  assert.throws(() => parseSpecJson('{"app":{"preStop":[{"tcpSocket":{"port":"http"}}]}}'), {
    message: 'HOOK_RUNNER_SPEC: app.preStop[0].tcpSocket.port: must be a port number 1-65535, got the string "http"',
  });
});

test('budget: worst case counts attempts, timeouts and doubling retry delays', () => {
  const [h] = parse('app: {preStop: [{http: {path: /, port: 80}, timeoutSeconds: 4, retries: 2, retryDelaySeconds: 1}]}').app!.preStop;
  assert.equal(worstCaseSeconds(h!), 3 * 4 + 1 + 2);
  const seed = parse('app: {shutdownSeconds: 10, preStop: [{sleep: {seconds: 55}, timeoutSeconds: 60}]}').app!;
  assert.deepEqual(checkPreStopBudget(seed, 60), { availableSeconds: 50, worstCaseSeconds: 55, fits: false });
  assert.equal(preStopDeadlineMs(1000, 6, 1, 250), 1000 + 5000 - 250);
  assert.equal(preStopDeadlineMs(1000, 5, 10, 250), 1000, 'never before arrival');
});

test("YAML keys: duplicates and collection keys are refused in one pass (the parser's own check is quadratic)", () => {
  assert.equal(errorOf('app: {}\nside: {}\napp: {}'), 'hook-runner.dev/hooks: not valid YAML or JSON: Map keys must be unique; "app" is repeated at line 3, column 1 of the annotation: "app: {}"');
  assert.equal(
    errorOf('app: {preStop: [{sleep: {seconds: 1, "seconds": 2}}]}'),
    'hook-runner.dev/hooks: not valid YAML or JSON: Map keys must be unique; "seconds" is repeated at line 1, column 38 of the annotation: "app: {preStop: [{sleep: {seconds: 1, \\"seconds\\": 2}}]}"',
  );
  assert.equal(errorOf('{app: 1}: {}'), 'hook-runner.dev/hooks: not valid YAML or JSON: map keys must be plain strings, not lists or maps at line 1, column 1 of the annotation: "{app: 1}: {}"');
  assert.equal(errorOf('? [a]\n: {}'), 'hook-runner.dev/hooks: not valid YAML or JSON: map keys must be plain strings, not lists or maps at line 1, column 3 of the annotation: "? [a]"');
  // 1 and "1" become the same key of a JS object.
  assert.match(errorOf('1: {}\n"1": {}'), /"1" is repeated/);
});

test('sleep timeouts: an unset timeout outlasts the sleep (full length); an explicit one is kept', () => {
  const spec = parse('app: {preStop: [{sleep: {seconds: 55}}, {sleep: {seconds: 2}}, {sleep: {seconds: 55}, timeoutSeconds: 10}, {sleep: {seconds: 86400}}, {http: {port: 80}}]}');
  assert.deepEqual(
    spec.app!.preStop.map((h) => h.timeoutSeconds),
    [56, 30, 10, 86400, 30],
  );
  assert.equal(worstCaseSeconds(spec.app!.preStop[0]!), 55);
  assert.equal(worstCaseSeconds(spec.app!.preStop[2]!), 10);
  // The sidecar reads the normalised spec back unchanged.
  assert.deepEqual(parseSpecJson(specJson(spec)), spec);
});
