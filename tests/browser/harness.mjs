// What the browser drivers share: Debian's Chromium through playwright-core, axe-core checks
// (a "serious" or "critical" violation fails the run), screenshots, focus checks and the
// simulated systems' login form typed with the keyboard. Each driver prints one JSON line
// (what was checked) and exits 0, or prints why and exits 1.

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export function harness(script) {
  const [gateway, artifacts, executablePath = '/usr/bin/chromium'] = process.argv.slice(2);
  if (!gateway || !artifacts) {
    console.error(`usage: node ${script} GATEWAY_URL ARTIFACT_DIR [CHROMIUM]`);
    process.exit(2);
  }
  mkdirSync(artifacts, { recursive: true });
  const checked = { pages: [], screenshots: [], focus_order: [], axe: {} };
  const failures = [];

  function fail(message) {
    failures.push(message);
    throw new Error(message);
  }

  async function shot(page, name) {
    const path = `${artifacts}/${name}.png`;
    await page.screenshot({ path, fullPage: true });
    checked.screenshots.push(path);
  }

  // axe-core in the page (injected by the driver, so the page's CSP, which forbids scripts,
  // does not apply); WCAG 2.0/2.1 A and AA rules.
  async function axe(page, name) {
    await page.evaluate(AXE);
    const result = await page.evaluate(async () => {
      // eslint-disable-next-line no-undef
      const r = await axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) }));
    });
    checked.axe[name] = result.map((v) => `${v.impact}:${v.id}`);
    writeFileSync(`${artifacts}/${name}.axe.json`, JSON.stringify(result, null, 2));
    const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    if (bad.length > 0) {
      fail(`axe: ${bad.length} serious/critical violation(s) on ${name}: ` + bad.map((v) => `${v.id} (${v.help}) at ${v.nodes.join(', ')}`).join('; '));
    }
  }

  async function expectUrl(page, fragment) {
    if (!page.url().includes(fragment)) fail(`expected a URL with ${fragment}, at ${page.url()}`);
  }

  async function expectText(page, selector, text) {
    const content = await page.locator(selector).first().innerText();
    if (!content.includes(text)) fail(`${selector}: expected ${JSON.stringify(text)}, found ${JSON.stringify(content)}`);
  }

  // What has the keyboard focus: a short description, and whether a focus indicator is drawn.
  async function focused(page) {
    return page.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body) return { what: 'body', visible: true };
      const s = getComputedStyle(e);
      const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
      const what = `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}${e.className ? '.' + String(e.className).split(' ')[0] : ''}`;
      return { what, visible: outline || s.boxShadow !== 'none' };
    });
  }

  // Fills a simulated system's login form with the keyboard, as a person would.
  async function typeLogin(page, user) {
    await page.locator('#username').focus();
    await page.keyboard.type(user);
    await page.keyboard.press('Tab');
    await page.keyboard.type('demo123');
    await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  }

  // Runs `steps(page)` in a fresh headless Chromium, then prints the report and exits.
  async function run(steps) {
    const browser = await chromium.launch({
      executablePath,
      headless: true,
      // Tests run as root in CI containers, where Chromium's sandbox cannot start.
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
    });
    let status = 0;
    try {
      const context = await browser.newContext({ locale: 'vi-VN', viewport: { width: 1024, height: 900 } });
      await steps(await context.newPage());
    } catch (e) {
      if (failures.length === 0) failures.push(String(e && e.stack ? e.stack : e));
      status = 1;
    } finally {
      await browser.close();
    }
    if (status !== 0) {
      console.error(failures.join('\n'));
    }
    console.log(JSON.stringify({ ok: status === 0, failures, ...checked }));
    process.exit(status);
  }

  return { gateway, checked, fail, shot, axe, expectUrl, expectText, focused, typeLogin, run };
}
