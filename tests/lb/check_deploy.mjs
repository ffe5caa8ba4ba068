// check_deploy.mjs: offline checks of deploy/ (Kubernetes) and docker/ (compose + nginx) that
// no docker or cluster is needed for. Run by check_k8s.sh / check_compose.sh (which install
// the npm packages with `npm ci`); prints one line per problem and exits 1 if there is any.
//   node check_deploy.mjs k8s DEPLOY_DIR SETTINGS_FILE
//   node check_deploy.mjs compose COMPOSE_CONFIG_YAML NGINX_CONF SETTINGS_FILE DEPLOY_DIR
// k8s: every object of every YAML file in DEPLOY_DIR is validated against the Kubernetes
// JSON schema of its apiVersion/kind (npm kubernetes-models; it checks types, required fields
// and enums, not unknown field names), the kustomization's resources exist, and the objects
// agree with each other and with the service (names, selectors, ports, probes, security
// context, grace period >= preStop + request deadline, HPA metric = adapter rule).
// compose: the normalised `docker-compose config` output and nginx.conf agree with the
// service's settings (body cap, read timeout above every deadline, stop period, hardening).
// SETTINGS_FILE is `sdserve serve --print-example-config`: the known settings and defaults.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';

const problems = [];
const fail = (msg) => problems.push(msg);
const check = (cond, msg) => {
  if (!cond) fail(msg);
  return cond;
};

// ---- the service's own settings: names (SDSERVE_*) and defaults ---------------------------
function readSettings(path) {
  const defaults = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^#?([a-z_]+) = ?(.*)$/.exec(line);
    if (m) defaults['SDSERVE_' + m[1].toUpperCase()] = m[2];
  }
  if (Object.keys(defaults).length < 5) throw new Error(`${path}: no settings found`);
  return defaults;
}
const parseBytes = (s) => {
  // "16M", "16m", "1048576", "16MiB" -> bytes (binary multiples)
  const m = /^(\d+)\s*([kKmMgG]?)(i?B)?$/.exec(String(s).trim());
  if (!m) return NaN;
  return Number(m[1]) * { '': 1, k: 1024, m: 1048576, g: 1073741824 }[m[2].toLowerCase()];
};
const parseSeconds = (s) => {
  // compose "5m30s" / nginx "660s" / "11m" / number -> seconds
  if (typeof s === 'number') return s;
  let total = 0,
    rest = String(s).trim();
  if (/^\d+(\.\d+)?$/.test(rest)) return Number(rest);
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/y;
  let m;
  while ((m = re.exec(rest)) !== null) {
    total += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2]];
    if (re.lastIndex === rest.length) return total;
  }
  return NaN;
};
function checkEnvNames(env, known, where) {
  for (const k of Object.keys(env))
    if (k.startsWith('SDSERVE_'))
      check(
        k in known || k === 'SDSERVE_CONFIG',
        `${where}: ${k} is not a setting of sdserve serve`,
      );
}

// ---- Kubernetes ------------------------------------------------------------------------------
async function modelFor(apiVersion, kind) {
  const path = apiVersion.includes('/')
    ? `kubernetes-models/${apiVersion}/${kind}`
    : `kubernetes-models/v1/${kind}`;
  try {
    const mod = await import(path);
    return mod[kind];
  } catch (e) {
    return null;
  }
}

function loadDocs(file) {
  const docs = YAML.parseAllDocuments(readFileSync(file, 'utf8'));
  const out = [];
  for (const d of docs) {
    if (d.errors.length) fail(`${file}: YAML error: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

async function checkK8s(dir, settingsFile) {
  const known = readSettings(settingsFile);
  const kustFile = join(dir, 'kustomization.yaml');
  if (!check(existsSync(kustFile), `${kustFile} missing`)) return;
  const [kust] = loadDocs(kustFile);
  check(kust.kind === 'Kustomization', 'kustomization.yaml: kind is not Kustomization');
  const listed = new Set(kust.resources || []);
  for (const r of listed) check(existsSync(join(dir, r)), `kustomization: resource ${r} missing`);

  // every YAML file of the folder, listed or not, is validated
  const all = []; // {file, obj, listed}
  for (const f of readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()) {
    if (f === 'kustomization.yaml') continue;
    for (const obj of loadDocs(join(dir, f))) all.push({ file: f, obj, listed: listed.has(f) });
  }
  for (const { file, obj } of all) {
    const where = `${file}: ${obj.kind}/${obj.metadata?.name}`;
    if (!check(obj.apiVersion && obj.kind, `${file}: a document without apiVersion/kind`)) continue;
    const Model = await modelFor(obj.apiVersion, obj.kind);
    if (!check(Model, `${where}: no schema for ${obj.apiVersion} ${obj.kind}`)) continue;
    try {
      new Model(obj).validate();
    } catch (e) {
      fail(`${where}: schema: ${e.message}`);
    }
  }
  const objs = all.filter((x) => x.listed).map((x) => x.obj);
  const one = (kind, name) =>
    objs.find((o) => o.kind === kind && (!name || o.metadata.name === name));

  const dep = one('Deployment');
  if (!check(dep, 'no Deployment in the kustomization')) return;
  const pod = dep.spec.template.spec;
  const podLabels = dep.spec.template.metadata.labels;
  const c = pod.containers[0];
  const matches = (sel) => sel && Object.entries(sel).every(([k, v]) => podLabels[k] === v);
  check(matches(dep.spec.selector.matchLabels), 'Deployment selector does not match its pods');

  // settings: from the ConfigMaps the container reads, plus env
  const env = {};
  for (const ef of c.envFrom || []) {
    if (ef.configMapRef) {
      const cm = one('ConfigMap', ef.configMapRef.name);
      if (check(cm, `envFrom ConfigMap ${ef.configMapRef.name} not in the kustomization`))
        Object.assign(env, cm.data);
    }
  }
  for (const e of c.env || []) {
    env[e.name] = e.value ?? '(ref)';
    const sk = e.valueFrom?.secretKeyRef;
    if (sk) {
      const sec = one('Secret', sk.name);
      if (check(sec, `env ${e.name}: Secret ${sk.name} not in the kustomization`))
        check(
          sk.key in (sec.stringData || {}) || sk.key in (sec.data || {}),
          `env ${e.name}: Secret ${sk.name} has no key ${sk.key}`,
        );
    }
  }
  checkEnvNames(env, known, 'Deployment env');
  for (const o of objs.filter((o) => o.kind === 'ConfigMap'))
    checkEnvNames(o.data || {}, known, `ConfigMap ${o.metadata.name}`);
  const setting = (k) => env[k] ?? known[k];
  const port = Number(setting('SDSERVE_PORT'));
  check(setting('SDSERVE_HOST') === '0.0.0.0', 'SDSERVE_HOST must be 0.0.0.0 in a pod');
  const http = (c.ports || []).find((p) => p.name === 'http');
  check(http && http.containerPort === port, `container port "http" is not SDSERVE_PORT ${port}`);
  check(
    String(dep.spec.template.metadata.annotations?.['prometheus.io/port']) === String(port),
    'prometheus.io/port annotation is not SDSERVE_PORT',
  );

  // probes
  const probe = (p, path, name) =>
    check(
      p?.httpGet?.path === path && (p.httpGet.port === 'http' || p.httpGet.port === port),
      `${name} must be GET ${path} on the http port`,
    );
  probe(c.startupProbe, '/healthz', 'startupProbe');
  probe(c.readinessProbe, '/readyz', 'readinessProbe');
  probe(c.livenessProbe, '/healthz', 'livenessProbe');
  const startupBudget =
    (c.startupProbe?.periodSeconds ?? 10) * (c.startupProbe?.failureThreshold ?? 3);
  check(startupBudget >= 300, `startupProbe allows ${startupBudget} s for model loading (< 300)`);

  // stopping: preStop + deadline (queue wait + one generation) within the grace period
  const pre = c.lifecycle?.preStop;
  const preSleep =
    pre?.sleep?.seconds ?? Number((pre?.exec?.command || []).join(' ').match(/sleep\s+(\d+)/)?.[1]);
  check(preSleep > 0, 'preStop must sleep (endpoints and balancers drop the pod first)');
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  const deadline = Number(setting('SDSERVE_REQUEST_TIMEOUT_S'));
  const drain = Number(setting('SDSERVE_DRAIN_TIMEOUT_S'));
  check(
    grace >= preSleep + deadline,
    `terminationGracePeriodSeconds ${grace} < preStop ${preSleep} + request deadline ${deadline}`,
  );
  check(
    preSleep + drain < grace,
    `preStop ${preSleep} + SDSERVE_DRAIN_TIMEOUT_S ${drain} must end before the grace period ${grace}`,
  );

  // restricted security context
  const psc = pod.securityContext || {},
    csc = c.securityContext || {};
  check(psc.runAsNonRoot === true || csc.runAsNonRoot === true, 'runAsNonRoot is not set');
  check(
    (psc.seccompProfile || csc.seccompProfile)?.type === 'RuntimeDefault',
    'seccomp is not RuntimeDefault',
  );
  check(csc.allowPrivilegeEscalation === false, 'allowPrivilegeEscalation is not false');
  check(csc.readOnlyRootFilesystem === true, 'readOnlyRootFilesystem is not true');
  check((csc.capabilities?.drop || []).includes('ALL'), 'capabilities do not drop ALL');
  check(csc.privileged !== true, 'privileged container');
  check(
    c.resources?.requests?.cpu && c.resources?.requests?.memory && c.resources?.limits?.memory,
    'resources: cpu/memory requests and a memory limit are needed',
  );

  // the model on a read-only volume, /tmp writable
  const mounts = c.volumeMounts || [];
  const model = String(setting('SDSERVE_MODEL') || '');
  const mm = mounts.find((m) => model.startsWith(m.mountPath + '/') || model === m.mountPath);
  if (check(mm, `SDSERVE_MODEL ${model} is not on a mounted volume`)) {
    check(mm.readOnly === true, `the model volume ${mm.name} is not mounted readOnly`);
    const vol = (pod.volumes || []).find((v) => v.name === mm.name);
    if (check(vol, `volume ${mm.name} not declared`) && vol.persistentVolumeClaim) {
      check(vol.persistentVolumeClaim.readOnly === true, `volume ${mm.name}: claim not readOnly`);
      check(
        one('PersistentVolumeClaim', vol.persistentVolumeClaim.claimName),
        `claim ${vol.persistentVolumeClaim.claimName} not in the kustomization`,
      );
    }
  }
  check(
    mounts.some((m) => m.mountPath === '/tmp'),
    '/tmp is not a writable volume',
  );

  // Service, PDB, HPA point at the Deployment's pods
  const svc = one('Service');
  if (check(svc, 'no Service')) {
    check(matches(svc.spec.selector), 'Service selector does not match the pods');
    for (const p of svc.spec.ports)
      check(
        p.targetPort === 'http' || p.targetPort === port,
        `Service port ${p.name} does not target the http port`,
      );
  }
  const pdb = one('PodDisruptionBudget');
  if (check(pdb, 'no PodDisruptionBudget')) {
    check(matches(pdb.spec.selector.matchLabels), 'PDB selector does not match the pods');
    check(
      pdb.spec.minAvailable === undefined || pdb.spec.minAvailable < dep.spec.replicas,
      'PDB minAvailable must be below the replicas, or nothing can ever be evicted',
    );
  }
  const hpa = one('HorizontalPodAutoscaler');
  if (check(hpa, 'no HorizontalPodAutoscaler')) {
    const t = hpa.spec.scaleTargetRef;
    check(
      t.kind === 'Deployment' && t.name === dep.metadata.name,
      'HPA does not target the Deployment',
    );
    check(hpa.spec.minReplicas >= 2, 'HPA minReplicas below 2 (the PDB then blocks every drain)');
    const pm = hpa.spec.metrics.find((m) => m.type === 'Pods');
    check(
      hpa.spec.metrics.some((m) => m.type === 'Resource' && m.resource.name === 'cpu'),
      'HPA has no CPU fallback',
    );
    // the adapter rule (not in the kustomization: it belongs to the adapter's namespace)
    const adapter = all.find(
      (x) => x.obj.kind === 'ConfigMap' && x.obj.data?.['config.yaml']?.includes('rules'),
    );
    if (
      check(
        pm && adapter,
        'HPA pods metric and the prometheus-adapter rule ConfigMap are both needed',
      )
    ) {
      const rules = YAML.parse(adapter.obj.data['config.yaml']).rules || [];
      const names = rules.map((r) => r.name?.as);
      check(
        names.includes(pm.pods.metric.name),
        `HPA metric ${pm.pods.metric.name} is not served by the adapter rule (${names})`,
      );
      for (const r of rules) {
        check(
          /\bpod\b/.test(JSON.stringify(r.resources)),
          'adapter rule does not map the pod label',
        );
        check(
          r.seriesQuery.includes('sdserve_queue_depth'),
          'adapter rule does not read sdserve_queue_depth',
        );
      }
    }
  }
}

// ---- compose + nginx ---------------------------------------------------------------------------
function nginxDirectives(text) {
  const d = {};
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const m = /^([a-z_]+)(?:\s+(.*?))?;$/.exec(line);
    if (m) (d[m[1]] ||= []).push(m[2] ?? '');
  }
  return d;
}

function checkCompose(composeFile, nginxFile, settingsFile, deployDir) {
  const known = readSettings(settingsFile);
  const cfg = YAML.parse(readFileSync(composeFile, 'utf8'));
  const nginx = nginxDirectives(readFileSync(nginxFile, 'utf8'));
  const services = cfg.services || {};
  const replicas = Object.entries(services).filter(
    ([, s]) =>
      s.environment?.SDSERVE_MODEL !== undefined || String(s.image || '').startsWith('sdserve'),
  );
  check(
    replicas.length >= 2,
    `compose has ${replicas.length} sdserve replica(s), 2 or more needed`,
  );
  const upstream = (nginx.server || []).map((s) => s.split(/\s+/)[0]);
  const deadlines = [Number(known.SDSERVE_REQUEST_TIMEOUT_S)];
  const caps = new Set();
  for (const [name, s] of replicas) {
    const env = s.environment || {};
    checkEnvNames(env, known, `compose ${name}`);
    const setting = (k) => env[k] ?? known[k];
    const port = setting('SDSERVE_PORT');
    check(upstream.includes(`${name}:${port}`), `nginx upstream does not list ${name}:${port}`);
    check(
      setting('SDSERVE_HOST') === '0.0.0.0',
      `${name}: SDSERVE_HOST must be 0.0.0.0 in a container`,
    );
    check(s.read_only === true, `${name}: root filesystem not read-only`);
    check((s.cap_drop || []).includes('ALL'), `${name}: capabilities not dropped`);
    check(
      (s.security_opt || []).some((o) => /^no-new-privileges(:true)?$/.test(o)),
      `${name}: no-new-privileges missing`,
    );
    check(
      (s.tmpfs || []).some((t) => t.split(':')[0] === '/tmp'),
      `${name}: no tmpfs /tmp`,
    );
    const test = [].concat(s.healthcheck?.test || []).join(' ');
    check(test.includes(`:${port}/healthz`), `${name}: healthcheck is not on /healthz`);
    const deadline = Number(setting('SDSERVE_REQUEST_TIMEOUT_S'));
    deadlines.push(deadline);
    const stop = parseSeconds(s.stop_grace_period ?? '10s');
    check(
      stop > deadline,
      `${name}: stop_grace_period ${stop} s is not above the request deadline ${deadline} s`,
    );
    check(
      stop > Number(setting('SDSERVE_DRAIN_TIMEOUT_S')),
      `${name}: stop_grace_period below SDSERVE_DRAIN_TIMEOUT_S`,
    );
    caps.add(parseBytes(setting('SDSERVE_MAX_BODY_BYTES')));
    const vols = (s.volumes || []).filter(
      (v) => (v.target || String(v).split(':')[1]) === '/models',
    );
    check(
      vols.length === 1 && (vols[0].read_only === true || String(vols[0]).endsWith(':ro')),
      `${name}: /models is not mounted read-only`,
    );
  }
  // the Kubernetes settings must fit the same nginx config if it fronts them
  const cm =
    deployDir && existsSync(join(deployDir, 'configmap.yaml'))
      ? loadDocs(join(deployDir, 'configmap.yaml')).find((o) => o.kind === 'ConfigMap')
      : null;
  if (cm?.data?.SDSERVE_REQUEST_TIMEOUT_S)
    deadlines.push(Number(cm.data.SDSERVE_REQUEST_TIMEOUT_S));
  if (cm?.data?.SDSERVE_MAX_BODY_BYTES) caps.add(parseBytes(cm.data.SDSERVE_MAX_BODY_BYTES));

  check((nginx.least_conn || []).length === 1, 'nginx: least_conn missing');
  const rt = parseSeconds((nginx.proxy_read_timeout || ['60s'])[0]);
  for (const d of deadlines)
    check(rt > d, `nginx proxy_read_timeout ${rt} s is not above the request deadline ${d} s`);
  const body = parseBytes((nginx.client_max_body_size || ['1m'])[0]);
  check(caps.size === 1, `the replicas disagree on the body cap: ${[...caps]}`);
  for (const cap of caps)
    check(body === cap, `nginx client_max_body_size ${body} != the service's body cap ${cap}`);
  check(
    (nginx.proxy_buffering || [])[0] === 'off',
    'nginx: proxy_buffering must be off (streamed PNG, SSE)',
  );
  const next = (nginx.proxy_next_upstream || ['error timeout'])[0].split(/\s+/);
  check(
    !next.includes('http_503'),
    'nginx: proxy_next_upstream must not retry 503s (see FACTS.md)',
  );
  check(
    next.includes('error') && next.includes('non_idempotent'),
    'nginx: proxy_next_upstream needs "error non_idempotent" (a POST to a replica that just exited)',
  );
  check((nginx.listen || []).length > 0, 'nginx: no listen');
  const ng = services.nginx;
  if (check(ng, 'compose: no nginx service')) {
    check(
      ng.read_only === true && (ng.cap_drop || []).includes('ALL'),
      'nginx service: not read-only with capabilities dropped',
    );
    check(
      String(ng.stop_signal) === 'SIGQUIT',
      'nginx service: stop_signal must be SIGQUIT (graceful)',
    );
    const nport = (nginx.listen[0].match(/(\d+)$/) || [])[1];
    check(
      (ng.ports || []).some((p) => String(p.target) === nport || String(p).endsWith(`:${nport}`)),
      `nginx service does not publish the listen port ${nport}`,
    );
  }
}

const [mode, ...args] = process.argv.slice(2);
try {
  if (mode === 'k8s') await checkK8s(args[0], args[1]);
  else if (mode === 'compose') checkCompose(args[0], args[1], args[2], args[3]);
  else
    throw new Error(
      'usage: check_deploy.mjs k8s DIR SETTINGS | compose CONFIG NGINX SETTINGS DEPLOY_DIR',
    );
} catch (e) {
  fail(`error: ${e.stack || e}`);
}
for (const p of problems) console.log(`FAIL: ${p}`);
console.log(problems.length ? `${problems.length} problem(s)` : `${mode}: all checks passed`);
process.exit(problems.length ? 1 : 0);
