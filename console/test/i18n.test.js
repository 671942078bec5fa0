import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LANGUAGES, STRINGS, chooseLanguage, ruleName, translate } from '../src/i18n.js';

test('both languages have exactly the same keys', () => {
  const [first, ...others] = LANGUAGES.map((l) => Object.keys(STRINGS[l]).sort());
  for (const keys of others) assert.deepEqual(keys, first);
});

test('Chinese when the browser prefers any zh variant', () => {
  assert.equal(chooseLanguage(['zh-CN', 'en-US'], null), 'zh');
  assert.equal(chooseLanguage(['zh-Hant-TW'], null), 'zh');
  assert.equal(chooseLanguage(['fr-FR', 'zh'], null), 'zh');
});

test('English when the browser prefers it, or nothing we have', () => {
  assert.equal(chooseLanguage(['en-GB', 'zh-CN'], null), 'en');
  assert.equal(chooseLanguage(['fr-FR', 'de'], null), 'en');
  assert.equal(chooseLanguage([], null), 'en');
  assert.equal(chooseLanguage(undefined, null), 'en');
});

test('a stored choice wins over the browser, unless it is not a language we have', () => {
  assert.equal(chooseLanguage(['zh-CN'], 'en'), 'en');
  assert.equal(chooseLanguage(['en-GB'], 'zh'), 'zh');
  assert.equal(chooseLanguage(['zh-CN'], 'klingon'), 'zh');
});

test('placeholders are filled, unknown ones and unknown keys stay visible', () => {
  assert.equal(translate('en', 'passes', { count: 3 }), 'passes: 3');
  assert.equal(translate('zh', 'passes', { count: 3 }), '走航 3 次');
  assert.equal(translate('en', 'passes'), 'passes: {count}');
  assert.equal(translate('en', 'no-such-key'), 'no-such-key');
});

test('rules read as words, emergency tiers by their tier, unknown rules as sent', () => {
  assert.equal(ruleName('en', 'reference_ratio'), 'share of the limit');
  assert.equal(ruleName('zh', 'reference_ratio'), '占标率');
  assert.equal(ruleName('zh', 'tier:erpg2'), '等级 erpg2');
  assert.equal(ruleName('en', 'something_new'), 'something_new');
});
