'use strict';
// amlops task launcher: the Node20_1/Node24 handler target of every amlops task.
//
// Finds Python >= 3.10, creates (once per agent, extension build, Python minor version and set of extras)
// a virtual environment under the agent's tools directory holding the amlops wheel staged next to this
// file, then runs `python -u -m amlops.devops <TaskName>` with the agent's environment. Dependency-free on
// purpose: azure-pipelines-task-lib deletes inputs and secrets from process.env when loaded.
//
// Every failure (no Python, a failed install, a broken cache) ends in `task.complete result=Failed`
// with a message saying what to do, a cancel in `task.complete result=Cancelled`, and the launcher
// always exits 0, as the agent expects.

const childProcess = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const tls = require('tls');
const { pathToFileURL } = require('url');

const START = Date.now();
const HERE = __dirname;
const WINDOWS = process.platform === 'win32';
const MIN_PYTHON = [3, 10];
const MARKER = 'amlops-ready.json';
const ENV_PREFIX = 'env-';
const ENVIRONMENT_NAME = /^env-[0-9a-f]{16}-py\d+\.\d+-[a-z+]+$/;
const LOCK_HEARTBEAT_MS = 15 * 1000;
const LOCK_STALE_MS = Number(process.env.AMLOPS_LOCK_STALE_SECONDS || 600) * 1000;
const LOCK_WAIT_MS = Number(process.env.AMLOPS_LOCK_WAIT_SECONDS || 1800) * 1000;
const INSTALL_TIMEOUT_MS = Number(process.env.AMLOPS_INSTALL_TIMEOUT_SECONDS || 1800) * 1000;
const PRUNE_AFTER_MS = Number(process.env.AMLOPS_PRUNE_AFTER_DAYS || 7) * 24 * 3600 * 1000;
const DEBUG = String(process.env.SYSTEM_DEBUG || '').toLowerCase() === 'true';
// The agent cancels with SIGINT, SIGTERM 7.5 s later, then kills the tree 2.5 s later
// (Agent.Sdk ProcessInvoker: _sigintTimeout, _sigtermTimeout); task.complete must come before that.
const CANCEL_GRACE_MS = { SIGINT: 6500, SIGBREAK: 1500, SIGTERM: 1500 };
// Variables the installer never needs: credentials the agent hands to the task.
const SECRET_VARIABLE = /^(INPUT_|ENDPOINT_AUTH_|SECRET_|SYSTEM_ACCESSTOKEN$|AGENT_PROXYPASSWORD$)/i;
// Installer lines worth showing without System.Debug (all of them go to the install log).
const SHOWN_INSTALL_LINE = /^\s*(error|ERROR|×|Successfully installed|Installed \d+|Resolved \d+|Using (CPython|Python))/;
const IMPORT_FAILURE = /ModuleNotFoundError|ImportError|No module named|Error while finding module specification|site-packages/;

class TaskError extends Error {}
class Cancelled extends Error {}

// -- the agent's logging commands (escaped as Agent.Sdk CommandStringConvertor unescapes them) -----------
function escapeData(text) {
  return String(text).replace(/%/g, '%AZP25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

function escapeProperty(text) {
  return escapeData(text).replace(/;/g, '%3B').replace(/]/g, '%5D');
}

function vso(name, properties, data) {
  const pairs = Object.keys(properties || {}).map((key) => `${key}=${escapeProperty(properties[key])}`);
  const head = pairs.length ? `${name} ${pairs.join(';')}` : name;
  process.stdout.write(`##vso[${head}]${escapeData(data || '')}\n`);
}

const SECRETS = [];

function setSecret(value) {
  for (const form of [value, encodeURIComponent(value || '')]) {
    if (form && form.trim() && !SECRETS.includes(form)) {
      vso('task.setsecret', null, form);
      SECRETS.push(form);
      SECRETS.sort((a, b) => b.length - a.length);
    }
  }
}

function mask(text) {
  return SECRETS.reduce((masked, secret) => masked.split(secret).join('***'), String(text));
}

function neutralize(text) {
  return mask(text).replace(/##vso\[/g, '##_vso[').replace(/##\[/g, '##_[');
}

function log(text) {
  process.stdout.write(neutralize(text) + '\n');
}

function debug(text) {
  if (DEBUG) {
    process.stdout.write('##[debug]' + neutralize(text) + '\n');
  }
}

let completed = false;

function complete(result, message) {
  if (completed) {
    return;
  }
  completed = true;
  if (result === 'Failed') {
    vso('task.logissue', { type: 'error' }, mask(message));
  }
  vso('task.complete', { result }, mask(message));
}

// -- the bundle staged next to this file ---------------------------------------------------------------
function readBundle() {
  let task;
  try {
    task = JSON.parse(fs.readFileSync(path.join(HERE, 'task.json'), 'utf8').replace(/^\uFEFF/, ''));
  } catch (error) {
    throw new TaskError(`cannot read ${path.join(HERE, 'task.json')} (${error.message}); reinstall the extension`);
  }
  const wheels = fs.readdirSync(HERE).filter((name) => /^amlops-.+\.whl$/i.test(name));
  if (wheels.length !== 1) {
    throw new TaskError(`expected one amlops wheel in ${HERE}, found ${wheels.length}; reinstall the extension`);
  }
  const wheel = path.join(HERE, wheels[0]);
  const constraints = path.join(HERE, 'constraints.txt');
  const hasConstraints = fs.existsSync(constraints);
  return {
    taskName: task.name,
    version: wheels[0].split('-')[1],
    wheel,
    constraints: hasConstraints ? constraints : null,
    // The build, not the version: two builds of one version never share (and rebuild) one folder.
    fingerprint: fingerprint([wheel, hasConstraints ? constraints : null, __filename]),
  };
}

function fingerprint(files) {
  const hash = crypto.createHash('sha256');
  for (const file of files) {
    hash.update(file ? fs.readFileSync(file) : '');
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

// What the task's target needs: the smoke test only calls HTTP, `local` trains, `azure` talks to Azure ML.
function extrasFor(taskName, env) {
  if (taskName === 'AmlSmokeTest') {
    return [];
  }
  return String(env.INPUT_TARGET || 'azure').trim().toLowerCase() === 'local' ? ['local'] : ['azure'];
}

// -- Python ------------------------------------------------------------------------------------------
const PROBE = 'import json, sys; print(json.dumps({"version": list(sys.version_info[:3]), "executable": sys.executable}))';

function pythonCandidates() {
  const configured = String(process.env.INPUT_PYTHONPATH || '').trim();
  if (configured) {
    return [{ command: configured, args: [], configured: true }];
  }
  return [
    { command: 'python3', args: [] },
    { command: 'python', args: [] },
    { command: 'py', args: ['-3'] },
  ];
}

function probe(candidate) {
  const label = [candidate.command, ...candidate.args].join(' ');
  const result = childProcess.spawnSync(candidate.command, [...candidate.args, '-I', '-S', '-c', PROBE], {
    encoding: 'utf8', timeout: 60000, windowsHide: true, stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (result.error) {
    return { label, problem: result.error.code === 'ENOENT' ? 'not found' : result.error.message };
  }
  let info;
  try {
    info = JSON.parse(String(result.stdout).trim().split(/\r?\n/).pop());
  } catch (error) {
    return { label, problem: `not a working Python 3 (exit code ${result.status})` };
  }
  const [major, minor] = info.version;
  const version = info.version.join('.');
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    return { label, problem: `Python ${version} is too old` };
  }
  return { label, major, minor, version, executable: info.executable };
}

function findPython() {
  const tried = [];
  for (const candidate of pythonCandidates()) {
    const found = probe(candidate);
    if (!found.problem) {
      debug(`using ${found.label}: Python ${found.version} at ${found.executable}`);
      return found;
    }
    tried.push(`${found.label}: ${found.problem}`);
    if (candidate.configured) {
      throw new TaskError(`the pythonPath input does not name a usable Python 3.10+ (${tried[0]}); ` +
        'point it at a Python 3.10 or later executable, or leave it empty to use the one on PATH');
    }
  }
  throw new TaskError(`Python 3.10 or later was not found (tried ${tried.join('; ')}); install it on the ` +
    'agent (for example with the UsePythonVersion@0 task before this one) or set the pythonPath input');
}

// -- the agent's proxy and certificates -> what pip, uv, requests and urllib read ------------------------
// Agent.ProxyBypassList is a JSON array of regular expressions (the agent's .proxybypass file);
// NO_PROXY takes host names and `.domain` suffixes, so only the patterns that are plain names convert.
function bypassHost(pattern) {
  let text = String(pattern).trim().replace(/^\^/, '').replace(/\$$/, '');
  text = text.replace(/^(\(?https?\)?(\|https?\)?)?|https\?):\/\//, '').replace(/^https?:\/\//, '');
  text = text.replace(/^\.\*\\?\.?/, '.').replace(/\\\./g, '.').replace(/(:\d+)?\/?(\.\*)?$/, '');
  return text && !/[*+?()[\]{}|\\^$/]/.test(text) ? text : null;
}

function bypassHosts(value) {
  let patterns;
  try {
    patterns = JSON.parse(value || '[]');
  } catch (error) {
    patterns = String(value).split(/[,;\n]/);
  }
  return (Array.isArray(patterns) ? patterns : []).map(bypassHost).filter(Boolean);
}

function proxySettings(env) {
  const address = String(env.AGENT_PROXYURL || '').trim();
  if (!address) {
    return { variables: {}, secrets: [] };
  }
  let url;
  try {
    url = new URL(address);
  } catch (error) {
    throw new TaskError(`the agent's proxy URL (Agent.ProxyUrl) '${address}' is not a URL; fix it with ` +
      'the agent\'s `config --proxyurl http://host:port`');
  }
  const user = String(env.AGENT_PROXYUSERNAME || '');
  const password = String(env.AGENT_PROXYPASSWORD || env.SECRET_AGENT_PROXYPASSWORD || '');
  if (user) {
    url.username = encodeURIComponent(user);
    url.password = encodeURIComponent(password);
  }
  const proxy = url.href.replace(/\/$/, '');
  const variables = {};
  for (const name of ['HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy', 'http_proxy']) {
    variables[name] = proxy;
  }
  const bypass = bypassHosts(env.AGENT_PROXYBYPASSLIST);
  const existing = String(env.NO_PROXY || env.no_proxy || '').split(',').map((h) => h.trim()).filter(Boolean);
  const noProxy = Array.from(new Set([...existing, ...bypass])).join(',');
  if (noProxy) {
    variables.NO_PROXY = variables.no_proxy = noProxy;
  }
  return { variables, secrets: password ? [password, url.password] : [] };
}

// Agent.CAInfo adds a CA: the bundle handed to pip, uv, requests and ssl is Node's root store plus the
// bundle already configured (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT) plus the agent's CA.
function caSettings(env, folder) {
  const agentCa = String(env.AGENT_CAINFO || '').trim();
  if (!agentCa) {
    return {};
  }
  let extra;
  try {
    extra = fs.readFileSync(agentCa, 'utf8');
  } catch (error) {
    throw new TaskError(`the agent's CA certificate file (Agent.CAInfo) ${agentCa} cannot be read ` +
      `(${error.code || error.message}); fix the path with the agent's \`config --sslcacert\``);
  }
  const parts = [...tls.rootCertificates];
  for (const name of ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'PIP_CERT']) {
    try {
      parts.push(fs.readFileSync(env[name], 'utf8'));
    } catch (error) {
      // not set or not a file
    }
  }
  parts.push(extra);
  const text = parts.map((part) => part.trim()).join('\n') + '\n';
  fs.mkdirSync(folder, { recursive: true });
  const bundle = path.join(folder, `ca-${crypto.createHash('sha256').update(text).digest('hex').slice(0, 16)}.pem`);
  if (!fs.existsSync(bundle)) {
    const temporary = `${bundle}.tmp-${process.pid}`;
    fs.writeFileSync(temporary, text);
    fs.renameSync(temporary, bundle);
  }
  return { SSL_CERT_FILE: bundle, REQUESTS_CA_BUNDLE: bundle, PIP_CERT: bundle, CURL_CA_BUNDLE: bundle };
}

// What every child gets on top of the agent's environment: proxy (unless one is set already) and CA.
function networkVariables(env, folder) {
  const proxy = proxySettings(env);
  proxy.secrets.forEach(setSecret);
  const variables = {};
  for (const [name, value] of Object.entries(proxy.variables)) {
    if (!env[name] || name.toUpperCase() === 'NO_PROXY') {
      variables[name] = value;
    }
  }
  return Object.assign(variables, caSettings(env, folder));
}

// -- the cached virtual environments -----------------------------------------------------------------------
function toolsDirectory() {
  return process.env.AGENT_TOOLSDIRECTORY || path.join(os.homedir() || os.tmpdir(), '.cache', 'amlops-tools');
}

function environmentPaths(bundle, python, extras, root) {
  root = root || path.join(toolsDirectory(), 'amlops');
  const name = `${ENV_PREFIX}${bundle.fingerprint}-py${python.major}.${python.minor}-${extras.join('+') || 'core'}`;
  return pathsOf(root, name);
}

function pathsOf(root, name) {
  const dir = path.join(root, name);
  return {
    root,
    dir,
    lock: `${dir}.lock`,
    log: `${dir}.install.log`,
    users: `${dir}.users`,
    marker: path.join(dir, MARKER),
    python: WINDOWS ? path.join(dir, 'Scripts', 'python.exe') : path.join(dir, 'bin', 'python'),
  };
}

function isReady(paths, bundle) {
  try {
    const marker = JSON.parse(fs.readFileSync(paths.marker, 'utf8'));
    return marker.fingerprint === bundle.fingerprint && fs.existsSync(paths.python);
  } catch (error) {
    return false;
  }
}

function writeMarker(paths, bundle, python, installer) {
  const temporary = `${paths.marker}.tmp-${process.pid}`;
  const marker = {
    fingerprint: bundle.fingerprint, version: bundle.version, python: python.executable,
    pythonVersion: python.version, installer, created: new Date().toISOString(),
  };
  fs.writeFileSync(temporary, JSON.stringify(marker, null, 2));
  fs.renameSync(temporary, paths.marker);
}

function invalidate(paths) {
  try {
    fs.unlinkSync(paths.marker);
  } catch (error) {
    // already gone
  }
}

async function ensureEnvironment(paths, bundle, python, network) {
  // Registered before the readiness check: a pruner that removes the marker first then looks for users
  // either sees this job (and keeps the folder) or makes it install afresh under the lock.
  useEnvironment(paths);
  if (isReady(paths, bundle)) {
    debug(`reusing the Python environment ${paths.dir}`);
    return 'reused';
  }
  const release = await acquireLock(paths);
  try {
    if (isReady(paths, bundle)) {
      log(`amlops: another job prepared the Python environment ${paths.dir}; reusing it`);
      return 'reused';
    }
    const installer = await install(paths, bundle, python, network);
    writeMarker(paths, bundle, python, installer);
    return 'installed';
  } finally {
    release();
  }
}

// -- per-job use markers: a folder in use is never pruned ----------------------------------------------------
function identity() {
  return JSON.stringify({ pid: process.pid, host: os.hostname(), started: new Date().toISOString() });
}

function useEnvironment(paths) {
  fs.mkdirSync(paths.users, { recursive: true });
  const file = path.join(paths.users, `${os.hostname()}-${process.pid}.json`);
  fs.writeFileSync(file, identity());
  const timer = setInterval(() => {
    const now = new Date();
    try {
      fs.utimesSync(file, now, now);
    } catch (error) {
      // pruned by a clock-skewed host: the environment is checked again on the next start
    }
  }, LOCK_HEARTBEAT_MS);
  timer.unref();
  onExit(() => {
    clearInterval(timer);
    try {
      fs.unlinkSync(file);
    } catch (error) {
      // already gone
    }
  });
}

function liveUsers(paths) {
  let names;
  try {
    names = fs.readdirSync(paths.users);
  } catch (error) {
    return [];
  }
  return names.filter((name) => {
    const holder = holderOf(path.join(paths.users, name));
    return !holder.gone && !holder.stale;
  });
}

function lastUsed(paths) {
  const times = [paths.users, paths.marker, paths.dir].map((file) => {
    try {
      return fs.statSync(file).mtimeMs;
    } catch (error) {
      return 0;
    }
  });
  return Math.max(...times);
}

// Remove other builds' environments unused for AMLOPS_PRUNE_AFTER_DAYS, each under its own lock, and only
// when no job is registered as using it (checked after its marker is moved away).
function prune(current) {
  let names;
  try {
    names = fs.readdirSync(current.root);
  } catch (error) {
    return;
  }
  for (const name of names) {
    const full = path.join(current.root, name);
    if (name.startsWith('trash-')) {
      fs.rmSync(full, { recursive: true, force: true, maxRetries: 2 });
      continue;
    }
    if (!ENVIRONMENT_NAME.test(name) || full === current.dir) {
      continue;
    }
    const paths = pathsOf(current.root, name);
    if (Date.now() - lastUsed(paths) < PRUNE_AFTER_MS || liveUsers(paths).length) {
      continue;
    }
    try {
      pruneOne(paths);
    } catch (error) {
      debug(`could not prune ${paths.dir}: ${error.message}`);
    }
  }
}

function pruneOne(paths) {
  const me = identity();
  if (!takeLock(paths, me)) {
    return;
  }
  const aside = `${paths.marker}.pruning`;
  try {
    const hadMarker = fs.existsSync(paths.marker);
    if (hadMarker) {
      fs.renameSync(paths.marker, aside);
    }
    if (liveUsers(paths).length) {
      if (hadMarker) {
        fs.renameSync(aside, paths.marker);
      }
      return;
    }
    const trash = path.join(paths.root, `trash-${process.pid}-${Date.now()}`);
    fs.renameSync(paths.dir, trash);
    for (const file of [paths.users, paths.log, trash]) {
      fs.rmSync(file, { recursive: true, force: true, maxRetries: 2 });
    }
    log(`amlops: removed the unused Python environment ${paths.dir}`);
  } finally {
    dropLock(paths, me);
  }
}

// -- the lock: an exclusively created file, refreshed while held, broken when its holder is gone ----------
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

function holderOf(file) {
  let text;
  let stat;
  try {
    text = fs.readFileSync(file, 'utf8');
    stat = fs.statSync(file);
  } catch (error) {
    return { gone: true };
  }
  let info = {};
  try {
    info = JSON.parse(text);
  } catch (error) {
    // a holder between creating and writing the file, or garbage: judged by age alone
  }
  const age = Date.now() - stat.mtimeMs;
  const dead = info.host === os.hostname() && Number.isInteger(info.pid) && !alive(info.pid);
  return { stale: dead || age > LOCK_STALE_MS || (!info.pid && age > 10000), pid: info.pid, host: info.host, text };
}

function breakLock(file, staleText) {
  const aside = `${file}.stale-${process.pid}-${Date.now()}`;
  try {
    if (fs.readFileSync(file, 'utf8') !== staleText) {
      return;
    }
    fs.renameSync(file, aside);
    fs.unlinkSync(aside);
  } catch (error) {
    // another waiter broke it first
  }
}

function takeLock(paths, me) {
  try {
    const fd = fs.openSync(paths.lock, 'wx');
    fs.writeSync(fd, me);
    fs.closeSync(fd);
    return true;
  } catch (error) {
    if (error.code === 'EEXIST') {
      return false;
    }
    throw new TaskError(`cannot create ${paths.lock} (${error.message}); make the agent's tools directory ` +
      `${toolsDirectory()} writable for the agent's user`);
  }
}

function dropLock(paths, me) {
  try {
    if (fs.readFileSync(paths.lock, 'utf8') === me) {
      fs.unlinkSync(paths.lock);
    }
  } catch (error) {
    // already gone
  }
}

function holdLock(paths, me) {
  const timer = setInterval(() => {
    const now = new Date();
    try {
      fs.utimesSync(paths.lock, now, now);
    } catch (error) {
      // the lock was broken: the install goes on, the marker decides
    }
  }, LOCK_HEARTBEAT_MS);
  timer.unref();
  let released = false;
  const release = () => {
    if (!released) {
      released = true;
      clearInterval(timer);
      dropLock(paths, me);
    }
  };
  onExit(release);
  return release;
}

async function acquireLock(paths) {
  fs.mkdirSync(paths.root, { recursive: true });
  const me = identity();
  const deadline = Date.now() + LOCK_WAIT_MS;
  let lastNote = 0;
  for (;;) {
    checkCancelled();
    if (takeLock(paths, me)) {
      return holdLock(paths, me);
    }
    const holder = holderOf(paths.lock);
    if (holder.stale) {
      log(`amlops: removing an abandoned lock ${paths.lock} (pid ${holder.pid} on ${holder.host})`);
      breakLock(paths.lock, holder.text);
      continue;
    }
    if (Date.now() > deadline) {
      throw new TaskError(`waited ${LOCK_WAIT_MS / 60000} minutes for another job (pid ${holder.pid} on ` +
        `${holder.host}) to finish installing into ${paths.dir}; if no job is running there, delete ${paths.lock}`);
    }
    if (!holder.gone && Date.now() - lastNote > 30000) {
      log(`amlops: waiting for another job (pid ${holder.pid} on ${holder.host}) that is preparing ${paths.dir}`);
      lastNote = Date.now();
    }
    await sleep(300);
  }
}

// -- choosing the installer --------------------------------------------------------------------------------
function findOnPath(name) {
  const names = WINDOWS ? [`${name}.exe`, name] : [name];
  for (const dir of String(process.env.PATH || '').split(path.delimiter)) {
    for (const candidate of names) {
      const full = path.join(dir, candidate);
      try {
        if (dir && fs.statSync(full).isFile()) {
          return full;
        }
      } catch (error) {
        // not here
      }
    }
  }
  return null;
}

// PIP_* variables uv gets an equivalent for (see uvArguments) or that change nothing uv would do.
const PIP_VARIABLES_UV_MIRRORS = new Set([
  'PIP_INDEX_URL', 'PIP_EXTRA_INDEX_URL', 'PIP_FIND_LINKS', 'PIP_NO_INDEX', 'PIP_CERT', 'PIP_TRUSTED_HOST',
  'PIP_DEFAULT_TIMEOUT', 'PIP_TIMEOUT', 'PIP_RETRIES', 'PIP_NO_INPUT', 'PIP_DISABLE_PIP_VERSION_CHECK', 'PIP_CONFIG_FILE',
  'PIP_NO_CACHE_DIR', 'PIP_CACHE_DIR', 'PIP_PROGRESS_BAR', 'PIP_ROOT_USER_ACTION', 'PIP_NO_WARN_SCRIPT_LOCATION',
  'PIP_REQUIRE_VIRTUALENV', 'PIP_BREAK_SYSTEM_PACKAGES',
]);

// The files pip reads its configuration from (pip's own search order), when PIP_CONFIG_FILE is not devnull.
function pipConfigFiles(env, platform) {
  if (env.PIP_CONFIG_FILE && ['/dev/null', 'nul', String(os.devNull).toLowerCase()].includes(String(env.PIP_CONFIG_FILE).toLowerCase())) {
    return [];
  }
  const home = env.HOME || env.USERPROFILE || os.homedir();
  let files;
  if (platform === 'win32') {
    files = [path.join(env.PROGRAMDATA || 'C:\\ProgramData', 'pip', 'pip.ini'),
      path.join(home, 'pip', 'pip.ini'), path.join(env.APPDATA || path.join(home, 'AppData', 'Roaming'), 'pip', 'pip.ini')];
  } else {
    const xdgDirs = String(env.XDG_CONFIG_DIRS || '/etc/xdg').split(':').filter(Boolean);
    files = [...xdgDirs.map((dir) => path.join(dir, 'pip', 'pip.conf')), '/etc/pip.conf',
      path.join(home, '.pip', 'pip.conf'), path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), 'pip', 'pip.conf')];
    if (platform === 'darwin') {
      files.push('/Library/Application Support/pip/pip.conf', path.join(home, 'Library', 'Application Support', 'pip', 'pip.conf'));
    }
  }
  if (env.PIP_CONFIG_FILE) {
    files.push(env.PIP_CONFIG_FILE);
  }
  return files.filter((file) => {
    try {
      return fs.statSync(file).isFile();
    } catch (error) {
      return false;
    }
  });
}

// Why uv would not install what pip would (pip configuration it cannot read), or null when it can.
function uvMismatch(env, platform) {
  const files = pipConfigFiles(env, platform);
  if (files.length) {
    return `pip is configured by ${files.join(', ')}, which uv does not read`;
  }
  const unknown = Object.keys(env).filter((name) => /^PIP_/i.test(name) && !PIP_VARIABLES_UV_MIRRORS.has(name.toUpperCase()));
  return unknown.length ? `uv has no equivalent of ${unknown.join(', ')}` : null;
}

function words(value) {
  return String(value || '').split(/\s+/).filter(Boolean);
}

// uv reads UV_* variables; the PIP_* ones a feed is configured with become arguments and variables.
function uvSettings(env) {
  const args = [];
  const variables = {};
  if (env.PIP_INDEX_URL && !env.UV_INDEX_URL && !env.UV_DEFAULT_INDEX) {
    args.push('--index-url', env.PIP_INDEX_URL);
  }
  if (!env.UV_EXTRA_INDEX_URL && !env.UV_INDEX) {
    words(env.PIP_EXTRA_INDEX_URL).forEach((url) => args.push('--extra-index-url', url));
  }
  if (!env.UV_FIND_LINKS) {
    words(env.PIP_FIND_LINKS).forEach((link) => args.push('--find-links', link));
  }
  if (/^(1|true|yes|on)$/i.test(env.PIP_NO_INDEX || '')) {
    args.push('--no-index');
  }
  if (env.PIP_TRUSTED_HOST && !env.UV_INSECURE_HOST) {
    variables.UV_INSECURE_HOST = words(env.PIP_TRUSTED_HOST).join(' ');
  }
  if ((env.PIP_DEFAULT_TIMEOUT || env.PIP_TIMEOUT) && !env.UV_HTTP_TIMEOUT) {
    variables.UV_HTTP_TIMEOUT = String(Math.ceil(Number(env.PIP_DEFAULT_TIMEOUT || env.PIP_TIMEOUT)) || 30);
  }
  if (env.PIP_RETRIES && !env.UV_HTTP_RETRIES) {
    variables.UV_HTTP_RETRIES = String(env.PIP_RETRIES);
  }
  if (env.PIP_CERT && !env.SSL_CERT_FILE) {
    variables.SSL_CERT_FILE = env.PIP_CERT;
  }
  if (variables.SSL_CERT_FILE || env.SSL_CERT_FILE) {
    variables.UV_NATIVE_TLS = 'true';
  }
  return { args, variables };
}

function maskIndexCredentials(env) {
  for (const url of [env.PIP_INDEX_URL, ...words(env.PIP_EXTRA_INDEX_URL)]) {
    try {
      const parsed = new URL(url);
      if (parsed.password) {
        setSecret(decodeURIComponent(parsed.password));
      }
    } catch (error) {
      // not a URL
    }
  }
}

// AMLOPS_WHEELHOUSE (the pipeline variable amlops.wheelhouse): a folder holding every wheel the install
// needs, for agents that reach no package index.
function wheelhouse(env) {
  const folder = String(env.AMLOPS_WHEELHOUSE || '').trim();
  if (!folder) {
    return null;
  }
  let ok = false;
  try {
    ok = fs.statSync(folder).isDirectory();
  } catch (error) {
    ok = false;
  }
  if (!ok) {
    throw new TaskError(`the variable AMLOPS_WHEELHOUSE names ${folder}, which is not a folder; point it at the ` +
      'folder `pip download` filled (see docs/setup.md, "Air-gapped agents"), or remove the variable');
  }
  return path.resolve(folder);
}

// -- running installers -------------------------------------------------------------------------------------
const cancel = { signal: null, child: null, kind: null, timer: null };

function checkCancelled() {
  if (cancel.signal) {
    throw new Cancelled(`the task was cancelled (${cancel.signal})`);
  }
}

function spawnChild(command, args, options, kind) {
  // POSIX: a process group of its own, so the whole tree can be killed; Windows: the agent's console,
  // so the child gets the agent's Ctrl+C / Ctrl+Break itself.
  const child = childProcess.spawn(command, args, Object.assign({ windowsHide: true, detached: !WINDOWS }, options));
  cancel.child = child;
  cancel.kind = kind;
  child.on('close', () => {
    if (cancel.child === child) {
      cancel.child = null;
    }
  });
  return child;
}

function killTreeCommand(pid, platform) {
  return platform === 'win32' ? ['taskkill', ['/pid', String(pid), '/T', '/F']] : null;
}

function killTree(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  const command = killTreeCommand(child.pid, process.platform);
  try {
    if (command) {
      childProcess.spawnSync(command[0], command[1], { windowsHide: true, stdio: 'ignore', timeout: 5000 });
    } else {
      process.kill(-child.pid, 'SIGKILL');
    }
  } catch (error) {
    try {
      child.kill('SIGKILL');
    } catch (ignored) {
      // gone
    }
  }
}

function installerEnvironment(extra) {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!SECRET_VARIABLE.test(key)) {
      env[key] = value;
    }
  }
  return Object.assign(env, extra, { PIP_NO_INPUT: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1' });
}

function runInstaller(paths, command, args, env) {
  return new Promise((resolve) => {
    const tail = [];
    const sink = fs.createWriteStream(paths.log, { flags: 'a' });
    sink.write(`\n$ ${path.basename(command)} ${args.join(' ')}\n`);
    const child = spawnChild(command, args, { cwd: paths.root, env, stdio: ['ignore', 'pipe', 'pipe'] }, 'installer');
    const timer = setTimeout(() => killTree(child), INSTALL_TIMEOUT_MS);
    const started = Date.now();
    const heartbeat = setInterval(() => {
      log(`amlops: still ${args[0] === 'venv' || args[1] === 'venv' ? 'creating the environment' : 'installing'} ` +
        `(${Math.round((Date.now() - started) / 1000)} s)`);
    }, 20000);
    let pending = '';
    const onData = (chunk) => {
      sink.write(chunk);
      const lines = (pending + chunk.toString('utf8')).split(/\r?\n/);
      pending = lines.pop();
      for (const line of lines.filter((l) => l.trim())) {
        if (DEBUG || SHOWN_INSTALL_LINE.test(line)) {
          log(`  ${line}`);
        }
        tail.push(line);
        tail.splice(0, tail.length - 12);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (error) => {
      tail.push(error.message);
      sink.write(`${error.message}\n`);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearInterval(heartbeat);
      if (pending.trim()) {
        tail.push(pending);
      }
      sink.end(() => resolve({ code: signal ? `signal ${signal}` : code, tail }));
    });
  });
}

// The first line of the install log that says why it failed: network and certificate problems come
// before the resolver's conclusions (`ResolutionImpossible`) they cause.
const CAUSES = [
  [/Connection refused|ECONNREFUSED|ConnectionRefusedError/i, 'check that the agent reaches the package index ' +
    '(the proxy in the agent\'s configuration, PIP_INDEX_URL), or install from a wheelhouse (AMLOPS_WHEELHOUSE)'],
  [/Name or service not known|Temporary failure in name resolution|getaddrinfo|nodename nor servname|dns error|failed to lookup address/i,
    'check the agent\'s DNS and proxy settings, or install from a wheelhouse (AMLOPS_WHEELHOUSE)'],
  [/407 Proxy Authentication Required|Tunnel connection failed|ProxyError|proxy error/i,
    'check the proxy URL and credentials in the agent\'s configuration (config --proxyurl --proxyusername --proxypassword)'],
  [/CERTIFICATE_VERIFY_FAILED|certificate verify failed|invalid peer certificate|UnknownIssuer|self[- ]signed certificate|unable to get local issuer/i,
    'give the agent the CA that signs the index\'s (or the TLS-inspecting proxy\'s) certificate: config --sslcacert, ' +
    'which the task reads as Agent.CAInfo'],
  [/timed out|ConnectTimeout|operation timed out/i, 'check that the agent reaches the package index (proxy, firewall)'],
  [/No space left on device|ENOSPC/i, 'free disk space in the agent\'s tools directory'],
  [/Permission denied|EACCES|EPERM/i, 'make the agent\'s tools directory writable for the agent\'s user'],
  [/No matching distribution found for \S+|not found in the package registry|Could not find a version that satisfies the requirement \S+|No solution found/i,
    'check that the package index (or AMLOPS_WHEELHOUSE) holds the packages in constraints.txt'],
];

function firstCause(text) {
  const lines = String(text).split(/\r?\n/);
  for (const [pattern, fix] of CAUSES) {
    const line = lines.find((candidate) => pattern.test(candidate));
    if (line) {
      const match = line.match(pattern)[0];
      let detail = line.trim();
      if (detail.length > 240) {
        const at = Math.max(0, detail.indexOf(match) - 100);
        detail = `...${detail.slice(at, at + 220)}...`;
      }
      return { cause: match, detail, fix };
    }
  }
  return null;
}

function uploadLog(paths) {
  try {
    const copy = path.join(process.env.AGENT_TEMPDIRECTORY || os.tmpdir(), `amlops-install-${process.pid}.log`);
    fs.writeFileSync(copy, mask(fs.readFileSync(paths.log, 'utf8')));
    vso('task.uploadfile', null, copy);
    return copy;
  } catch (error) {
    return paths.log;
  }
}

async function step(paths, what, command, args, env, fix) {
  checkCancelled();
  const result = await runInstaller(paths, command, args, env);
  checkCancelled();
  if (result.code !== 0) {
    let text = '';
    try {
      text = fs.readFileSync(paths.log, 'utf8');
    } catch (error) {
      text = result.tail.join('\n');
    }
    const found = firstCause(text);
    const last = result.tail.filter((line) => /error|not |fail|denied|could/i.test(line)).pop() ||
      result.tail[result.tail.length - 1] || 'no output';
    const error = new TaskError(found
      ? `${what} failed: ${found.cause} (${found.detail}); ${found.fix}`
      : `${what} failed (exit ${result.code}: ${last.trim()}); ${fix}`);
    error.installFailure = true;
    throw error;
  }
}

function constraintPin(bundle, name) {
  if (!bundle.constraints) {
    return name;
  }
  const pattern = new RegExp(`^${name}==\\S+`, 'im');
  const found = fs.readFileSync(bundle.constraints, 'utf8').match(pattern);
  return found ? found[0] : name;
}

// uv from PATH, or from the index (pip into a shared folder once per uv version); null to use pip.
async function findUv(paths, bundle, python, env, sources) {
  const setting = String(process.env.AMLOPS_USE_UV || '').toLowerCase();
  if (['0', 'false', 'no'].includes(setting)) {
    return { uv: null, why: 'AMLOPS_USE_UV is false' };
  }
  const mismatch = uvMismatch(process.env, process.platform);
  if (mismatch) {
    return { uv: null, why: mismatch };
  }
  const onPath = findOnPath('uv');
  if (onPath) {
    return { uv: onPath };
  }
  const pin = constraintPin(bundle, 'uv');
  const folder = path.join(paths.root, `uv-${pin.replace(/[^A-Za-z0-9.]+/g, '_')}`);
  const binary = path.join(folder, 'bin', WINDOWS ? 'uv.exe' : 'uv');
  if (fs.existsSync(binary)) {
    return { uv: binary };
  }
  const scratch = `${folder}.tmp-${process.pid}`;
  try {
    await step(paths, 'fetching uv', python.executable, ['-m', 'pip', 'install', '--no-deps', '--no-input',
      '--disable-pip-version-check', '--target', scratch, ...sources.pipArgs, pin], env, 'using pip instead');
    fs.renameSync(scratch, folder);
  } catch (error) {
    if (error instanceof Cancelled) {
      throw error;
    }
    fs.rmSync(scratch, { recursive: true, force: true });
    if (!fs.existsSync(binary)) {
      return { uv: null, why: `uv could not be fetched (${lastLine(error.message)})` };
    }
  }
  return { uv: binary };
}

async function installWithUv(paths, uv, python, requirement, constraints, env, sources) {
  const settings = uvSettings(process.env);
  const uvEnv = Object.assign({}, env, settings.variables);
  await step(paths, 'creating the virtual environment', uv, ['venv', '--python', python.executable, paths.dir],
    uvEnv, 'check the Python installation, or set AMLOPS_USE_UV=false to use pip');
  const args = sources.wheelhouse ? sources.uvArgs : [...settings.args, ...sources.uvArgs];
  await step(paths, 'installing amlops', uv, ['pip', 'install', '--python', paths.python, ...args,
    ...constraints, requirement], uvEnv, 'check that the agent reaches the package index');
}

async function installWithPip(paths, python, requirement, constraints, env, sources) {
  await step(paths, 'creating the virtual environment', python.executable, ['-m', 'venv', paths.dir], env,
    'install the venv module (on Debian and Ubuntu: the python3-venv package)');
  await step(paths, 'installing amlops', paths.python, ['-m', 'pip', 'install', '--no-input',
    '--disable-pip-version-check', ...sources.pipArgs, ...constraints, requirement], env,
  'check that the agent reaches the package index (set PIP_INDEX_URL / PIP_EXTRA_INDEX_URL for a private feed)');
}

async function install(paths, bundle, python, network) {
  fs.rmSync(paths.dir, { recursive: true, force: true, maxRetries: 3 });
  fs.mkdirSync(paths.root, { recursive: true });
  fs.writeFileSync(paths.log, `amlops ${bundle.version} install, ${new Date().toISOString()}\n`);
  maskIndexCredentials(process.env);
  const env = installerEnvironment(network);
  const house = wheelhouse(process.env);
  const sources = house
    ? { wheelhouse: house, pipArgs: ['--no-index', '--find-links', house], uvArgs: ['--no-index', '--find-links', house] }
    : { wheelhouse: null, pipArgs: [], uvArgs: [] };
  const extras = paths.extras.length ? `[${paths.extras.join(',')}]` : '';
  const requirement = `amlops${extras} @ ${pathToFileURL(bundle.wheel).href}`;
  const constraints = bundle.constraints ? ['-c', bundle.constraints] : [];
  const { uv, why } = await findUv(paths, bundle, python, env, sources);
  log(`amlops: preparing the Python environment ${paths.dir} (Python ${python.version}, ` +
    `${uv ? 'uv' : 'pip'}${house ? `, wheelhouse ${house}` : ''}); this happens once per agent and extension build`);
  if (why) {
    debug(`installing with pip: ${why}`);
  }
  let installer = 'pip';
  if (uv) {
    try {
      await installWithUv(paths, uv, python, requirement, constraints, env, sources);
      installer = 'uv';
    } catch (error) {
      if (!(error instanceof TaskError) || !error.installFailure) {
        throw error;
      }
      log(`amlops: uv failed (${error.message}); installing with pip instead`);
      fs.rmSync(paths.dir, { recursive: true, force: true, maxRetries: 3 });
    }
  }
  if (installer === 'pip') {
    await installWithPip(paths, python, requirement, constraints, env, sources);
  }
  await step(paths, 'checking the installed environment', paths.python, ['-c', 'import amlops.devops'], env,
    `delete ${paths.dir} and rerun`);
  log(`amlops: the Python environment is ready (${((Date.now() - START) / 1000).toFixed(1)} s, ${installer})`);
  return installer;
}

// -- running the task ----------------------------------------------------------------------------------
function taskEnvironment(network) {
  const env = Object.assign({}, process.env, network, {
    PYTHONIOENCODING: 'utf-8', PYTHONUTF8: '1', PYTHONUNBUFFERED: '1', AMLOPS_TASK_DIR: HERE,
    AMLOPS_OWNER_PIPE: '1',
  });
  delete env.PYTHONHOME;
  delete env.PYTHONPATH;
  if (network.HTTPS_PROXY) {
    // Folded into HTTPS_PROXY: the runtime masks it from there, and must not remove the proxy variables
    // (it removes every variable that holds a secret it was given).
    delete env.AGENT_PROXYPASSWORD;
    delete env.SECRET_AGENT_PROXYPASSWORD;
  }
  return env;
}

function runTask(paths, bundle, network) {
  return new Promise((resolve) => {
    checkCancelled();
    // stdin is a pipe only we hold: if this process is killed (even with SIGKILL) the task sees its end
    // and stops at once, and with it every step process it started (AMLOPS_OWNER_PIPE)
    const child = spawnChild(paths.python, ['-u', '-m', 'amlops.devops', bundle.taskName], {
      env: taskEnvironment(network), stdio: ['pipe', 'pipe', 'pipe'],
    }, 'task');
    child.stdin.on('error', () => {});
    let done = false;
    let printed = false;
    let recent = '';
    let errors = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      printed = true;
      recent = (recent + chunk.toString('utf8')).slice(-4096);
      done = done || recent.includes('##vso[task.complete ');
    });
    child.stderr.on('data', (chunk) => {
      process.stderr.write(chunk);
      errors = (errors + chunk.toString('utf8')).slice(-8192);
    });
    child.on('error', (error) => {
      errors += `\n${error.message}`;
    });
    child.on('close', (code, signal) => {
      resolve({ code, signal, completed: done, printed, errors });
    });
  });
}

// -- cancel -----------------------------------------------------------------------------------------------
// What to do with the running child when the launcher gets `signal`: POSIX forwards it (the child is in a
// process group of its own); on Windows the agent's Ctrl+C / Ctrl+Break already reached the child through
// the shared console, and node's kill would terminate it abruptly. After graceMs the launcher reports
// Cancelled itself and kills the tree, before the agent's own kill.
function cancelPlan(platform, signal) {
  const forward = platform === 'win32' ? null : signal;
  return { forward, graceMs: CANCEL_GRACE_MS[signal] || CANCEL_GRACE_MS.SIGTERM };
}

function onSignal(signal) {
  const first = !cancel.signal;
  cancel.signal = cancel.signal || signal;
  const plan = cancelPlan(process.platform, signal);
  const child = cancel.child;
  if (child && cancel.kind === 'installer') {
    killTree(child);  // a half-done install is redone by the next job: nothing to wait for
  } else if (child && plan.forward && child.exitCode === null) {
    try {
      process.kill(child.pid, plan.forward);
    } catch (error) {
      // already gone
    }
  }
  debug(`${signal} received${first ? '' : ' again'}; the task gets ${plan.graceMs} ms to stop`);
  clearTimeout(cancel.timer);
  cancel.timer = setTimeout(() => {
    complete('Cancelled', 'the task was cancelled');
    killTree(cancel.child);
  }, plan.graceMs);
}

const exitHandlers = [];

function onExit(handler) {
  exitHandlers.push(handler);
}

function runExitHandlers() {
  while (exitHandlers.length) {
    try {
      exitHandlers.pop()();
    } catch (error) {
      // best effort
    }
  }
}

function lastLine(text) {
  const lines = String(text).split(/\r?\n/).filter((line) => line.trim());
  return lines.length ? lines[lines.length - 1].trim() : 'no output';
}

async function main() {
  const bundle = readBundle();
  const python = findPython();
  const extras = extrasFor(bundle.taskName, process.env);
  const paths = Object.assign(environmentPaths(bundle, python, extras), { extras });
  fs.mkdirSync(paths.root, { recursive: true });
  const network = networkVariables(process.env, path.join(paths.root, 'certificates'));
  let how;
  try {
    how = await ensureEnvironment(paths, bundle, python, network);
  } catch (error) {
    if (error instanceof TaskError && error.installFailure) {
      error.message += `. Install log: ${uploadLog(paths)}`;
    }
    throw error;
  }
  prune(paths);
  let outcome = await runTask(paths, bundle, network);
  const importFailed = !outcome.completed && outcome.code !== 0 && IMPORT_FAILURE.test(outcome.errors);
  if (importFailed && how === 'reused' && !cancel.signal) {
    log(`amlops: the cached Python environment ${paths.dir} is broken (${lastLine(outcome.errors)}); rebuilding it`);
    invalidate(paths);
    how = await ensureEnvironment(paths, bundle, python, network);
    outcome = await runTask(paths, bundle, network);
  }
  checkCancelled();
  if (!outcome.completed) {
    if (outcome.code !== 0 && IMPORT_FAILURE.test(outcome.errors)) {
      invalidate(paths);
    }
    const exit = outcome.signal ? `signal ${outcome.signal}` : `exit code ${outcome.code}`;
    throw new TaskError(`the amlops Python runtime stopped without a result (${exit}: ${lastLine(outcome.errors)}); ` +
      `rerun with the variable System.Debug=true, and if it persists delete ${paths.dir}`);
  }
}

function run() {
  const signals = WINDOWS ? ['SIGINT', 'SIGBREAK', 'SIGTERM'] : ['SIGINT', 'SIGTERM'];
  signals.forEach((signal) => process.on(signal, () => onSignal(signal)));
  process.on('exit', runExitHandlers);
  main().catch((error) => {
    if (error instanceof Cancelled || cancel.signal) {
      complete('Cancelled', 'the task was cancelled');
    } else if (error instanceof TaskError) {
      complete('Failed', error.message);
    } else {
      complete('Failed', `the amlops launcher failed: ${error && error.stack ? lastLine(error.message) : error}; ` +
        'rerun with the variable System.Debug=true and report the log');
      debug(String(error && error.stack));
    }
  }).finally(() => {
    clearTimeout(cancel.timer);
    runExitHandlers();
    process.exitCode = 0;
  });
}

if (require.main === module) {
  run();
} else {
  module.exports = {
    bypassHost, bypassHosts, proxySettings, caSettings, uvMismatch, uvSettings, pipConfigFiles, firstCause,
    extrasFor, cancelPlan, killTreeCommand, environmentPaths, fingerprint,
  };
}
