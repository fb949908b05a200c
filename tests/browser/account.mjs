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

import { harness } from './harness.mjs';

const { gateway, checked, fail, shot, axe, expectUrl, expectText, focused, typeLogin, run } = harness('account.mjs');

await run(async (page) => {
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
});
