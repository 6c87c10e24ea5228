'use strict';
// Unit tests of extension/launcher.js's pure parts, including the Windows branches this machine cannot run.
// Run: node --test tests/devops/launcher.test.js (tests/devops/test_devops_cancel.py runs it under pytest).

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const test = require('node:test');

const launcher = require('../../extension/launcher.js');

test('POSIX forwards the agent\'s signal to the task; Windows does not (the console delivered it)', () => {
  assert.deepEqual(launcher.cancelPlan('linux', 'SIGINT'), { forward: 'SIGINT', graceMs: 6500 });
  assert.deepEqual(launcher.cancelPlan('linux', 'SIGTERM'), { forward: 'SIGTERM', graceMs: 1500 });
  assert.deepEqual(launcher.cancelPlan('win32', 'SIGINT'), { forward: null, graceMs: 6500 });
  assert.deepEqual(launcher.cancelPlan('win32', 'SIGBREAK'), { forward: null, graceMs: 1500 });
});

test('the grace periods end before the agent\'s next step (SIGTERM at 7.5 s, kill 2.5 s later)', () => {
  assert.ok(launcher.cancelPlan('linux', 'SIGINT').graceMs < 7500);
  assert.ok(launcher.cancelPlan('win32', 'SIGBREAK').graceMs < 2500);
});

test('the tree is killed with taskkill /T on Windows, by process group elsewhere', () => {
  assert.deepEqual(launcher.killTreeCommand(42, 'win32'), ['taskkill', ['/pid', '42', '/T', '/F']]);
  assert.equal(launcher.killTreeCommand(42, 'linux'), null);
});

test('pip configuration files are found per platform, and PIP_CONFIG_FILE=devnull turns them off', () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'launcher-test-'));
  fs.mkdirSync(path.join(home, 'AppData', 'Roaming', 'pip'), { recursive: true });
  fs.writeFileSync(path.join(home, 'AppData', 'Roaming', 'pip', 'pip.ini'), '[global]\n');
  fs.mkdirSync(path.join(home, '.config', 'pip'), { recursive: true });
  fs.writeFileSync(path.join(home, '.config', 'pip', 'pip.conf'), '[global]\n');
  const windows = { USERPROFILE: home, APPDATA: path.join(home, 'AppData', 'Roaming'), PROGRAMDATA: home };
  assert.deepEqual(launcher.pipConfigFiles(windows, 'win32'), [path.join(home, 'AppData', 'Roaming', 'pip', 'pip.ini')]);
  const linux = { HOME: home, XDG_CONFIG_DIRS: path.join(home, 'none') };
  assert.ok(launcher.pipConfigFiles(linux, 'linux').includes(path.join(home, '.config', 'pip', 'pip.conf')));
  assert.deepEqual(launcher.pipConfigFiles(Object.assign({ PIP_CONFIG_FILE: os.devNull }, linux), 'linux'), []);
  assert.match(launcher.uvMismatch(linux, 'linux'), /pip is configured by .*pip\.conf, which uv does not read/);
  fs.rmSync(home, { recursive: true, force: true });
});

test('uv is used only when every PIP_ variable has an equivalent', () => {
  const base = { PIP_CONFIG_FILE: os.devNull, HOME: os.tmpdir(), XDG_CONFIG_DIRS: '/nonexistent' };
  assert.equal(launcher.uvMismatch(Object.assign({ PIP_INDEX_URL: 'https://feed/simple' }, base), 'linux'), null);
  assert.match(launcher.uvMismatch(Object.assign({ PIP_CLIENT_CERT: '/c.pem' }, base), 'linux'), /PIP_CLIENT_CERT/);
  const settings = launcher.uvSettings({ PIP_INDEX_URL: 'https://feed/simple', PIP_EXTRA_INDEX_URL: 'https://a https://b',
    PIP_CERT: '/ca.pem', PIP_TRUSTED_HOST: 'feed', PIP_DEFAULT_TIMEOUT: '60', PIP_NO_INDEX: 'true' });
  assert.deepEqual(settings.args, ['--index-url', 'https://feed/simple', '--extra-index-url', 'https://a',
    '--extra-index-url', 'https://b', '--no-index']);
  assert.deepEqual(settings.variables, { UV_INSECURE_HOST: 'feed', UV_HTTP_TIMEOUT: '60', SSL_CERT_FILE: '/ca.pem',
    UV_NATIVE_TLS: 'true' });
});

test('the agent\'s proxy becomes HTTPS_PROXY with URL-encoded credentials, both password forms masked', () => {
  const settings = launcher.proxySettings({ AGENT_PROXYURL: 'http://proxy.corp:8080', AGENT_PROXYUSERNAME: 'DOMAIN\\me',
    SECRET_AGENT_PROXYPASSWORD: 'p@ss;w/rd', AGENT_PROXYBYPASSLIST: '["^.*\\\\.corp\\\\.local$", "github\\\\.com", "(a|b)+"]' });
  assert.equal(settings.variables.HTTPS_PROXY, 'http://DOMAIN%5Cme:p%40ss%3Bw%2Frd@proxy.corp:8080');
  assert.equal(settings.variables.http_proxy, settings.variables.HTTPS_PROXY);
  assert.equal(settings.variables.NO_PROXY, '.corp.local,github.com');
  assert.deepEqual(settings.secrets, ['p@ss;w/rd', 'p%40ss%3Bw%2Frd']);
  assert.deepEqual(launcher.proxySettings({}), { variables: {}, secrets: [] });
  assert.throws(() => launcher.proxySettings({ AGENT_PROXYURL: 'not a url' }), /Agent.ProxyUrl/);
});

test('the agent\'s CA is added to the root store and the configured bundle', () => {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'launcher-ca-'));
  const ca = path.join(folder, 'agent-ca.pem');
  fs.writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nAGENTCA\n-----END CERTIFICATE-----\n');
  const variables = launcher.caSettings({ AGENT_CAINFO: ca }, folder);
  const bundle = fs.readFileSync(variables.SSL_CERT_FILE, 'utf8');
  assert.ok(bundle.includes('AGENTCA') && bundle.split('BEGIN CERTIFICATE').length > 50);
  assert.equal(variables.PIP_CERT, variables.SSL_CERT_FILE);
  assert.equal(variables.REQUESTS_CA_BUNDLE, variables.SSL_CERT_FILE);
  assert.throws(() => launcher.caSettings({ AGENT_CAINFO: path.join(folder, 'missing.pem') }, folder), /Agent.CAInfo/);
  fs.rmSync(folder, { recursive: true, force: true });
});

test('the first real cause of a failed install is named, not the resolver\'s conclusion', () => {
  const log = [
    'WARNING: Retrying (Retry(total=0)) after connection broken by \'NewConnectionError(\': Failed to establish a new ' +
      'connection: [Errno 111] Connection refused\')\': /simple/lightgbm/',
    'ERROR: Could not find a version that satisfies the requirement lightgbm (from versions: none)',
    'ERROR: ResolutionImpossible: To fix this you could try to: ...',
  ].join('\n');
  const found = launcher.firstCause(log);
  assert.equal(found.cause, 'Connection refused');
  assert.match(found.fix, /proxy|AMLOPS_WHEELHOUSE/);
  assert.equal(launcher.firstCause('invalid peer certificate: UnknownIssuer').fix.includes('Agent.CAInfo'), true);
  assert.equal(launcher.firstCause('all good'), null);
});

test('each task installs only the extras its target needs', () => {
  assert.deepEqual(launcher.extrasFor('AmlSmokeTest', { INPUT_TARGET: 'azure' }), []);
  assert.deepEqual(launcher.extrasFor('AmlRunPipeline', { INPUT_TARGET: 'local' }), ['local']);
  assert.deepEqual(launcher.extrasFor('AmlDeployAci', {}), ['azure']);
});
