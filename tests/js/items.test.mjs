// What a transcript line says (items.js lineText): heard and unheard words after a cut, the cut's
// time, "(speaking…)" while words are still to come. `node --test tests/js/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SPEAKING, lineText } from "../../realtime_nb/widget/items.js";

const TEXT = "The weather in Paris is sunny with a light breeze.";

test("a line that was not cut is all heard", () => {
  const l = lineText({ id: "a", role: "assistant", text: TEXT });
  assert.deepEqual(l, { heard: TEXT, unheard: "", cut: false, cutMs: null, pending: false, placeholder: null });
});

test("a cut line: heard up to the cut (back to a whole word), the rest unheard, the cut's time", () => {
  // The kernel's estimate falls inside "sunny": that word was not heard.
  const l = lineText({ id: "a", role: "assistant", text: TEXT, truncated: true, truncated_ms: 1230, heard_text: "The weather in Paris is su" });
  assert.equal(l.heard, "The weather in Paris is ");
  assert.equal(l.unheard, "sunny with a light breeze.");
  assert.equal(l.heard + l.unheard, TEXT);
  assert.equal(l.cut, true);
  assert.equal(l.cutMs, 1230);
  // On a word boundary it stays where it is.
  const m = lineText({ id: "a", text: TEXT, truncated: true, truncated_ms: 900, heard_text: "The weather" });
  assert.deepEqual([m.heard, m.unheard], ["The weather", " in Paris is sunny with a light breeze."]);
});

test("a truncation asked for and not yet confirmed is a cut; the view's own report gives the time", () => {
  const asked = lineText({ id: "a", text: TEXT, truncate_requested_ms: 640, heard_text: "The " });
  assert.equal(asked.cut, true);
  assert.equal(asked.cutMs, 640);
  const reported = lineText({ id: "a", text: TEXT, truncated: true }, { played_ms: 410, reason: "interrupted" });
  assert.equal(reported.cutMs, 410);
  assert.equal(reported.unheard, "", "no heard_text: nothing to mark");
  // A heard_text that is not the start of the text (the transcript changed since) marks nothing.
  assert.equal(lineText({ id: "a", text: TEXT, truncated: true, truncated_ms: 5, heard_text: "Other" }).unheard, "");
});

test("(speaking…) while the words are still to come", () => {
  assert.equal(lineText({ id: "u", role: "user", has_audio: true, pending: true }).placeholder, SPEAKING);
  assert.equal(lineText({ id: "a", role: "assistant", status: "in_progress", pending: true }).placeholder, SPEAKING);
  // Words arriving: the words, still pending.
  const partial = lineText({ id: "a", role: "assistant", status: "in_progress", text: "The wea", pending: true });
  assert.equal(partial.placeholder, null);
  assert.equal(partial.pending, true);
  // Audio whose transcript never comes (transcription off): "(audio)", not speaking forever.
  assert.equal(lineText({ id: "u", role: "user", has_audio: true, pending: false }).placeholder, "(audio)");
});
