// The npm etcd3 client with a user name and password against one endpoint (argv[2]): what a
// user with readwrite on the foo prefix may do, and what etcd refuses. Run by auth.sh against
// etcd and rusted; NODE_PATH must reach etcd3 (.ci/run installs it).
const { Etcd3 } = require('etcd3');
const host = process.argv[2];
const noRetry = { faultHandling: { host: () => ({ execute: f => f() }), global: { execute: f => f() } } };
const client = (auth) => new Etcd3({ hosts: `http://${host}:2379`, auth, ...noRetry });
const show = (e) => `${e.constructor.name}: ${e.message}`;
async function attempt(label, f) {
  try {
    console.log(label, JSON.stringify(await f()));
  } catch (e) {
    console.log(label, show(e));
  }
}
(async () => {
  const alice = client({ username: 'alice', password: 'alicepw' });
  await attempt('put foo6', () => alice.put('foo6').value('n').then(r => r.prev_kv || null));
  await attempt('get foo6', () => alice.get('foo6').string());
  await attempt('prefix foo6', () => alice.getAll().prefix('foo6').strings());
  await attempt('get bar', () => alice.get('bar').string());
  await attempt('put bar', () => alice.put('bar').value('x').then(() => 'ok'));
  await attempt('delete foo6', () => alice.delete().key('foo6').then(r => r.deleted));
  await attempt('txn bar', () => alice.if('bar', 'Value', '==', 'x').then(alice.put('foo7').value('t')).commit().then(r => r.succeeded));
  await attempt('lease', async () => { const l = alice.lease(10, { autoKeepAlive: false }); await l.grant(); await l.revoke(); return 'ok'; });
  alice.close();
  const wrong = client({ username: 'alice', password: 'nope' });
  await attempt('wrong password', () => wrong.get('foo6').string());
  wrong.close();
  const nobody = client(undefined);
  await attempt('no credentials', () => nobody.get('foo6').string());
  nobody.close();
})();
