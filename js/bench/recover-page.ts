// The benchmark page's script (bench/web_recover.py): the TS SDK in Chromium recovering one
// user's secret N times over the nodes' web listeners, with per-phase times. Bundled by
// scripts/build-web.mjs --entry bench/recover-page.ts; exposes window.pakrBench.
import { Client } from "../src/index.js";

declare const PAKR_OPERATOR_KEY: string;

async function run(userId: string, password: string, runs: number): Promise<object> {
  const [config, manifest] = await Promise.all([
    fetch("/config.json").then((r) => r.json() as Promise<{ tenant: string }>),
    fetch("/manifest.json").then((r) => r.json() as Promise<unknown>),
  ]);
  const phases: Record<string, number> = {};
  const client = await Client.fromManifest(manifest, {
    tenant: config.tenant,
    operatorKey: PAKR_OPERATOR_KEY,
    tokenProvider: async (user, audience) =>
      (await fetch(`/token?user=${encodeURIComponent(user)}&audience=${audience}`)).text(),
    onPhase: (name, seconds) => (phases[name] = (phases[name] ?? 0) + seconds),
  });
  const totals: number[] = [];
  const argon2: number[] = [];
  const breakdown: Record<string, number>[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      for (const key of Object.keys(phases)) delete phases[key];
      const started = performance.now();
      await client.recover(userId, password);
      totals.push((performance.now() - started) / 1000);
      argon2.push(phases["argon2"] ?? 0);
      breakdown.push({ ...phases });
    }
  } finally {
    await client.close();
  }
  return { totals, argon2, breakdown };
}

(window as unknown as { pakrBench: typeof run }).pakrBench = run;
document.title = "pakr bench ready";
