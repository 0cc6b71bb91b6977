// What every embedded browser test of orchestrator/cadre/tests/it shares: headless Chromium
// (Debian's /usr/bin/chromium) in a throwaway profile, console and page errors collected,
// one screenshot on failure, and the verdict line the Rust side looks for.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

/** Throws `check failed: <what>` unless `cond`. */
export const check = (cond, what) => {
  if (!cond) throw new Error(`check failed: ${what}`);
};

/** A full-page screenshot `<name>.png` in $CADRE_SHOTS, taken from the top. */
export const shot = async (page, name) => {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(process.env.CADRE_SHOTS, `${name}.png`), fullPage: true });
};

/** Checks that the page needs no sideways scrolling (`what` names the page in the message). */
export const fitsWidth = async (page, what) => {
  const { scroll, inner } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
  check(scroll <= inner, `${what}: the page is ${scroll}px wide in a ${inner}px window`);
};

/**
 * Runs `run(page)` in a fresh Chromium page and exits: prints "<name> test passed" when it
 * returned with no console or page error (except console errors `ignore(text)` accepts),
 * otherwise every problem on stderr and exit code 1. `step()` names the step in progress for
 * the messages. On failure a screenshot `<name>-failure.png` goes to $CADRE_SHOTS when set.
 */
export async function runInChromium({ name, run, step, ignore = () => false }) {
  const problems = [];
  const profile = mkdtempSync(path.join(tmpdir(), "cadre-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 800 },
    timeout: 60_000,
  });
  let ok = false;
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(20_000);
    page.on("console", (m) => {
      if (m.type() === "error" && !ignore(m.text())) problems.push(`console error during "${step()}": ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error during "${step()}": ${e.stack ?? e.message}`));
    try {
      await run(page);
      ok = true;
    } catch (e) {
      problems.push(`failed at "${step()}": ${e.stack ?? e.message}`);
      if (process.env.CADRE_SHOTS) {
        await page.screenshot({ path: path.join(process.env.CADRE_SHOTS, `${name}-failure.png`), fullPage: true }).catch(() => {});
      }
    }
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  for (const p of problems) console.error(p);
  if (!ok || problems.length) process.exit(1);
  console.log(`${name} test passed`);
}
