// Drives the gateway's account page in a real browser: Debian's Chromium, headless, through
// playwright-core (no bundled browser), with axe-core checking each page for accessibility.
//
//   node tests/browser/account.mjs GATEWAY_URL ARTIFACT_DIR [CHROMIUM]
//
// Logs in through the simulated Ho Chi Minh City system, opens /account, switches to English,
// links Binh Duong using the keyboard only (Tab to the system list, arrows, Enter), unlinks it
// again through the confirmation page, and runs axe on every page it sees. Screenshots go to
// ARTIFACT_DIR. Prints one JSON line (what was checked) and exits 0, or prints why and exits 1.
// An axe violation of impact "serious" or "critical" fails the run.

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const [gateway, artifacts, executablePath = '/usr/bin/chromium'] = process.argv.slice(2);
if (!gateway || !artifacts) {
  console.error('usage: node account.mjs GATEWAY_URL ARTIFACT_DIR [CHROMIUM]');
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

// axe-core in the page (injected by the driver, so the page's CSP, which forbids scripts, does
// not apply); WCAG 2.0/2.1 A and AA rules.
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

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Tests run as root in CI containers, where Chromium's sandbox cannot start.
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
let status = 0;
try {
  const context = await browser.newContext({ locale: 'vi-VN', viewport: { width: 1024, height: 900 } });
  const page = await context.newPage();
  // Works without JavaScript: the gateway's pages carry none (CSP forbids it), so nothing here
  // depends on it; checked below by asserting no <script> element.

  // 1. Not logged in: the chooser, in Vietnamese.
  await page.goto(`${gateway}/account`);
  await expectUrl(page, '/login?request=');
  checked.pages.push('chooser');
  await axe(page, 'chooser');
  await shot(page, '01-chooser');

  // 2. Log in through Ho Chi Minh City's (simulated) system, back to the account page.
  await Promise.all([page.waitForNavigation(), page.locator('a[href^="/upstream/hcm/login"]').click()]);
  await typeLogin(page, 'lan');
  await expectUrl(page, '/account');
  if ((await page.getAttribute('html', 'lang')) !== 'vi') fail('the account page is not lang="vi"');
  await expectText(page, 'h1', 'Tài khoản của tôi');
  await expectText(page, '.national-id', '*********512');
  if ((await page.content()).includes('079190004512')) fail('the whole national ID number is on the page');
  if ((await page.locator('script').count()) > 0) fail('the account page has a script');
  checked.pages.push('account-vi');
  await axe(page, 'account-vi');
  await shot(page, '02-account-vi');

  // 3. The English switch.
  await Promise.all([page.waitForNavigation(), page.locator('.lang-switch a').click()]);
  if ((await page.getAttribute('html', 'lang')) !== 'en') fail('the English page is not lang="en"');
  await expectText(page, 'h1', 'My account');
  checked.pages.push('account-en');
  await axe(page, 'account-en');
  await shot(page, '03-account-en');

  // 4. Keyboard only: Tab from the top of the page to the system list, choose Binh Duong with
  //    the arrow keys, Tab to the button, Enter. Every stop must show a focus indicator.
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  let reached = false;
  for (let i = 0; i < 40 && !reached; i++) {
    await page.keyboard.press('Tab');
    const f = await focused(page);
    checked.focus_order.push(f.what);
    if (!f.visible) fail(`no visible focus indicator on ${f.what}`);
    reached = f.what.startsWith('select#link-upstream');
  }
  if (!reached) fail(`Tab never reached the system list; focus went ${checked.focus_order.join(' > ')}`);
  const order = checked.focus_order;
  if (order[0] !== 'a' && !order[0].startsWith('a')) fail(`the first stop is not the language switch: ${order[0]}`);
  // Choose Binh Duong: arrow down through the options until it is selected.
  for (let i = 0; i < 10; i++) {
    if ((await page.locator('#link-upstream').inputValue()) === 'bd') break;
    await page.keyboard.press('ArrowDown');
  }
  if ((await page.locator('#link-upstream').inputValue()) !== 'bd') fail('could not choose Binh Duong with the keyboard');
  await page.keyboard.press('Tab');
  const button = await focused(page);
  checked.focus_order.push(button.what);
  if (!button.what.startsWith('button#link-submit')) fail(`after the list, focus went to ${button.what}`);
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  // Binh Duong's (simulated) login, typed.
  await typeLogin(page, 'lannt');
  await expectUrl(page, 'linking=bd');
  await expectText(page, '.notice', 'is linked to your account');
  if ((await page.locator('tr.link').count()) !== 2) fail('two linked systems expected after linking');
  checked.pages.push('account-linked');
  await axe(page, 'account-linked');
  await shot(page, '04-account-linked');

  // 5. Unlink it again, through the confirmation page.
  await Promise.all([page.waitForNavigation(), page.locator('tr.link[data-upstream="bd"] a.unlink').click()]);
  await expectUrl(page, '/account/unlink');
  checked.pages.push('unlink-confirm');
  await axe(page, 'unlink-confirm');
  await shot(page, '05-unlink-confirm');
  await Promise.all([page.waitForNavigation(), page.locator('#unlink-confirm').click()]);
  await expectUrl(page, 'unlinked=bd');
  if ((await page.locator('tr.link').count()) !== 1) fail('one linked system expected after unlinking');
  await shot(page, '06-account-unlinked');
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
