import { Worker } from 'node:worker_threads';
const rss = () => (process.memoryUsage().rss / 1048576).toFixed(0);
console.log('base', rss());
const mods = process.argv.slice(2);
for (const m of mods) {
  const w = new Worker(`import(${JSON.stringify(m)}).then(() => require('node:worker_threads').parentPort.postMessage('ok'))`, { eval: true });
  await new Promise((r) => w.once('message', r));
  await new Promise((r) => setTimeout(r, 300));
  console.log('after worker loading', m, rss());
}
