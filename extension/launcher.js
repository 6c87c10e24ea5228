'use strict';
// amlops task launcher: the Node20_1/Node24 handler target of every amlops task.
//
// Finds Python >= 3.10, creates (once per agent, extension build and Python minor version) a virtual
// environment under the agent's tools directory holding the amlops wheel staged next to this file,
// then runs `python -u -m amlops.devops <TaskName>` with the agent's environment. Dependency-free on
// purpose: azure-pipelines-task-lib deletes inputs and secrets from process.env when loaded.
//
// Every failure (no Python, a failed install, a broken cache) ends in `task.complete result=Failed`
// with a message saying what to do, and the launcher always exits 0, as the agent expects.

const childProcess = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { pathToFileURL } = require('url');

const START = Date.now();
const HERE = __dirname;
const WINDOWS = process.platform === 'win32';
const MIN_PYTHON = [3, 10];
const EXTRAS = 'local,azure';
const MARKER = 'amlops-ready.json';
const LOCK_HEARTBEAT_MS = 15 * 1000;
const LOCK_STALE_MS = Number(process.env.AMLOPS_LOCK_STALE_SECONDS || 600) * 1000;
const LOCK_WAIT_MS = Number(process.env.AMLOPS_LOCK_WAIT_SECONDS || 1800) * 1000;
const INSTALL_TIMEOUT_MS = Number(process.env.AMLOPS_INSTALL_TIMEOUT_SECONDS || 1800) * 1000;
const DEBUG = String(process.env.SYSTEM_DEBUG || '').toLowerCase() === 'true';
// Variables the installer never needs: credentials the agent hands to the task.
const SECRET_VARIABLE = /^(INPUT_|ENDPOINT_AUTH_|SECRET_|SYSTEM_ACCESSTOKEN$)/i;
// Installer lines worth showing without System.Debug (all of them go to the install log).
const SHOWN_INSTALL_LINE = /^\s*(error|ERROR|×|Successfully installed|Installed \d+|Resolved \d+|Using (CPython|Python))/;
const IMPORT_FAILURE = /ModuleNotFoundError|ImportError|No module named|Error while finding module specification|site-packages/;

class TaskError extends Error {}

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

function neutralize(text) {
  return String(text).replace(/##vso\[/g, '##_vso[').replace(/##\[/g, '##_[');
}

function log(text) {
  process.stdout.write(neutralize(text) + '\n');
}

function debug(text) {
  if (DEBUG) {
    process.stdout.write('##[debug]' + neutralize(text) + '\n');
  }
}

function fail(message) {
  vso('task.logissue', { type: 'error' }, message);
  vso('task.complete', { result: 'Failed' }, message);
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
  const hash = crypto.createHash('sha256').update(fs.readFileSync(wheel));
  if (fs.existsSync(constraints)) {
    hash.update(fs.readFileSync(constraints));
  }
  return {
    taskName: task.name,
    version: wheels[0].split('-')[1],
    wheel,
    constraints: fs.existsSync(constraints) ? constraints : null,
    fingerprint: hash.digest('hex').slice(0, 16),
  };
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

// -- the cached virtual environment -----------------------------------------------------------------------
function toolsDirectory() {
  return process.env.AGENT_TOOLSDIRECTORY || path.join(os.homedir() || os.tmpdir(), '.cache', 'amlops-tools');
}

function environmentPaths(bundle, python) {
  const root = path.join(toolsDirectory(), 'amlops');
  const dir = path.join(root, `${bundle.version}-py${python.major}.${python.minor}`);
  return {
    root,
    dir,
    lock: `${dir}.lock`,
    log: `${dir}.install.log`,
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

async function ensureEnvironment(paths, bundle, python) {
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
    const installer = await install(paths, bundle, python);
    writeMarker(paths, bundle, python, installer);
    return 'installed';
  } finally {
    release();
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

function lockHolder(file) {
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

function takeLock(paths, identity) {
  try {
    const fd = fs.openSync(paths.lock, 'wx');
    fs.writeSync(fd, identity);
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

function holdLock(paths, identity) {
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
    if (released) {
      return;
    }
    released = true;
    clearInterval(timer);
    try {
      if (fs.readFileSync(paths.lock, 'utf8') === identity) {
        fs.unlinkSync(paths.lock);
      }
    } catch (error) {
      // already gone
    }
  };
  process.on('exit', release);
  return release;
}

async function acquireLock(paths) {
  fs.mkdirSync(paths.root, { recursive: true });
  const identity = JSON.stringify({ pid: process.pid, host: os.hostname(), started: new Date().toISOString() });
  const deadline = Date.now() + LOCK_WAIT_MS;
  let lastNote = 0;
  for (;;) {
    if (takeLock(paths, identity)) {
      return holdLock(paths, identity);
    }
    const holder = lockHolder(paths.lock);
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

// -- installing ------------------------------------------------------------------------------------------
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

function useUv() {
  const setting = String(process.env.AMLOPS_USE_UV || '').toLowerCase();
  return ['0', 'false', 'no'].includes(setting) ? null : findOnPath('uv');
}

function installerEnvironment() {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!SECRET_VARIABLE.test(key)) {
      env[key] = value;
    }
  }
  return Object.assign(env, { PIP_NO_INPUT: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1' });
}

function words(value) {
  return String(value || '').split(/\s+/).filter(Boolean);
}

function uvIndexArguments() {
  // uv reads UV_* variables; map the pip ones a private feed is usually configured with.
  const env = process.env;
  const args = [];
  if (env.PIP_INDEX_URL && !env.UV_INDEX_URL && !env.UV_DEFAULT_INDEX) {
    args.push('--index-url', env.PIP_INDEX_URL);
  }
  if (!env.UV_EXTRA_INDEX_URL && !env.UV_INDEX) {
    words(env.PIP_EXTRA_INDEX_URL).forEach((url) => args.push('--extra-index-url', url));
  }
  if (!env.UV_FIND_LINKS) {
    words(env.PIP_FIND_LINKS).forEach((link) => args.push('--find-links', link));
  }
  return args;
}

function maskIndexCredentials() {
  for (const url of [process.env.PIP_INDEX_URL, ...words(process.env.PIP_EXTRA_INDEX_URL)]) {
    try {
      const parsed = new URL(url);
      if (parsed.password) {
        vso('task.setsecret', null, decodeURIComponent(parsed.password));
      }
    } catch (error) {
      // not a URL
    }
  }
}

function runInstaller(paths, command, args) {
  return new Promise((resolve) => {
    const tail = [];
    const sink = fs.createWriteStream(paths.log, { flags: 'a' });
    sink.write(`\n$ ${path.basename(command)} ${args[0]} ...\n`);
    const child = childProcess.spawn(command, args, {
      cwd: paths.root, env: installerEnvironment(), windowsHide: true, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const timer = setTimeout(() => child.kill(), INSTALL_TIMEOUT_MS);
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
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearInterval(heartbeat);
      if (pending.trim()) {
        log(`  ${pending}`);
        tail.push(pending);
      }
      sink.end();
      resolve({ code: signal ? `signal ${signal}` : code, tail });
    });
  });
}

async function step(paths, what, command, args, fix) {
  const result = await runInstaller(paths, command, args);
  if (result.code !== 0) {
    const last = result.tail.filter((line) => /error|not |fail|denied|could/i.test(line)).pop() ||
      result.tail[result.tail.length - 1] || 'no output';
    throw new TaskError(`${what} failed (exit ${result.code}: ${last.trim()}); ${fix}. Full log: ${paths.log}`);
  }
}

async function install(paths, bundle, python) {
  const uv = useUv();
  const installer = uv ? 'uv' : 'pip';
  fs.rmSync(paths.dir, { recursive: true, force: true, maxRetries: 3 });
  fs.mkdirSync(paths.root, { recursive: true });
  fs.writeFileSync(paths.log, `amlops ${bundle.version} install, ${new Date().toISOString()}\n`);
  log(`amlops: preparing the Python environment ${paths.dir} (Python ${python.version}, ${installer}); ` +
    'this happens once per agent and extension version');
  maskIndexCredentials();
  const requirement = `amlops[${EXTRAS}] @ ${pathToFileURL(bundle.wheel).href}`;
  const constraints = bundle.constraints ? ['-c', bundle.constraints] : [];
  const feedFix = 'check that the agent reaches the package index (set PIP_INDEX_URL / PIP_EXTRA_INDEX_URL ' +
    'for a private feed)';
  if (uv) {
    await step(paths, 'creating the virtual environment', uv, ['venv', '--python', python.executable, paths.dir],
      'check the Python installation, or set AMLOPS_USE_UV=false to use pip');
    await step(paths, 'installing amlops', uv,
      ['pip', 'install', '--python', paths.python, ...uvIndexArguments(), ...constraints, requirement], feedFix);
  } else {
    await step(paths, 'creating the virtual environment', python.executable, ['-m', 'venv', paths.dir],
      'install the venv module (on Debian and Ubuntu: the python3-venv package) or put uv on PATH');
    await step(paths, 'installing amlops', paths.python,
      ['-m', 'pip', 'install', '--no-input', '--disable-pip-version-check', ...constraints, requirement], feedFix);
  }
  await step(paths, 'checking the installed environment', paths.python, ['-c', 'import amlops.devops'],
    `delete ${paths.dir} and rerun`);
  log(`amlops: the Python environment is ready (${((Date.now() - START) / 1000).toFixed(1)} s)`);
  return installer;
}

// -- running the task ----------------------------------------------------------------------------------
function taskEnvironment() {
  const env = Object.assign({}, process.env, {
    PYTHONIOENCODING: 'utf-8', PYTHONUTF8: '1', PYTHONUNBUFFERED: '1', AMLOPS_TASK_DIR: HERE,
    AMLOPS_OWNER_PIPE: '1',
  });
  delete env.PYTHONHOME;
  delete env.PYTHONPATH;
  return env;
}

function runTask(paths, bundle) {
  return new Promise((resolve) => {
    // stdin is a pipe only we hold: if this process is killed (even with SIGKILL) the task sees its end
    // and stops at once, and with it every step process it started (AMLOPS_OWNER_PIPE)
    const child = childProcess.spawn(paths.python, ['-u', '-m', 'amlops.devops', bundle.taskName], {
      env: taskEnvironment(), windowsHide: true, stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin.on('error', () => {});
    const forward = (signal) => () => child.kill(signal);
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    let completed = false;
    let printed = false;
    let recent = '';
    let errors = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      printed = true;
      recent = (recent + chunk.toString('utf8')).slice(-4096);
      completed = completed || recent.includes('##vso[task.complete ');
    });
    child.stderr.on('data', (chunk) => {
      process.stderr.write(chunk);
      errors = (errors + chunk.toString('utf8')).slice(-8192);
    });
    child.on('error', (error) => {
      errors += `\n${error.message}`;
    });
    child.on('close', (code, signal) => {
      process.removeListener('SIGINT', onInt);
      process.removeListener('SIGTERM', onTerm);
      resolve({ code, signal, completed, printed, errors });
    });
  });
}

function lastLine(text) {
  const lines = String(text).split(/\r?\n/).filter((line) => line.trim());
  return lines.length ? lines[lines.length - 1].trim() : 'no output';
}

async function main() {
  const bundle = readBundle();
  const python = findPython();
  const paths = environmentPaths(bundle, python);
  let how = await ensureEnvironment(paths, bundle, python);
  let outcome = await runTask(paths, bundle);
  const importFailed = !outcome.completed && outcome.code !== 0 && IMPORT_FAILURE.test(outcome.errors);
  if (importFailed && how === 'reused') {
    log(`amlops: the cached Python environment ${paths.dir} is broken (${lastLine(outcome.errors)}); rebuilding it`);
    invalidate(paths);
    how = await ensureEnvironment(paths, bundle, python);
    outcome = await runTask(paths, bundle);
  }
  if (!outcome.completed) {
    if (outcome.code !== 0 && IMPORT_FAILURE.test(outcome.errors)) {
      invalidate(paths);
    }
    const exit = outcome.signal ? `signal ${outcome.signal}` : `exit code ${outcome.code}`;
    throw new TaskError(`the amlops Python runtime stopped without a result (${exit}: ${lastLine(outcome.errors)}); ` +
      `rerun with the variable System.Debug=true, and if it persists delete ${paths.dir}`);
  }
}

main().catch((error) => {
  if (error instanceof TaskError) {
    fail(error.message);
  } else {
    fail(`the amlops launcher failed: ${error && error.stack ? lastLine(error.message) : error}; ` +
      'rerun with the variable System.Debug=true and report the log');
    debug(String(error && error.stack));
  }
}).finally(() => {
  process.exitCode = 0;
});
