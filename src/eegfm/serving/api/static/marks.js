// The reviewer's marks: added (a double click on the traces, or the form), edited and deleted
// here, and kept on the server that scored the recording (/v1/marks/{recording_id}, stored there as
// BIDS events.tsv): never sent anywhere else. The list is saved whole after every change.
"use strict";

(function () {
  const T = window.eegfmTraces;
  const { state } = T;
  const $ = (id) => document.getElementById(id);
  const ID = /^[0-9a-f]{32}$/;
  const marks = { recordingId: null, editing: null, saving: Promise.resolve() };

  function say(text, isError) {
    $("marks-status").textContent = text;
    $("marks-status").className = isError ? "error" : "muted";
  }

  function changed() {
    window.eegfmOverview.refresh();
    window.eegfmEEG.redraw();
  }

  // The marks stored for this recording, once its id is known (the first traces reply).
  async function open(recordingId) {
    if (!ID.test(recordingId || "") || recordingId === marks.recordingId) return;
    marks.recordingId = recordingId;
    $("marks-export").disabled = false;
    try {
      const reply = await state.call(`/v1/marks/${recordingId}`, { method: "GET" });
      state.marks = reply.marks || [];
      say(state.marks.length ? `${state.marks.length} marks stored on this server` : "no marks yet");
      changed();
    } catch (err) {
      say(`marks: ${err.message}`, true);
    }
  }

  function reset() {
    Object.assign(marks, { recordingId: null, editing: null });
    state.marks = [];
    $("marks-export").disabled = true;
    cancel();
    say("");
  }

  // The whole list saved; the server's copy (with its ids) replaces ours. Saves run one at a time.
  function save() {
    const body = JSON.stringify({ marks: state.marks.map(({ shown, ...m }) => m) });
    marks.saving = marks.saving.then(async () => {
      say("saving ...");
      try {
        const reply = await state.call(`/v1/marks/${marks.recordingId}`, {
          method: "PUT", body, contentType: "application/json",
        });
        state.marks = reply.marks;
        say(`${state.marks.length} marks saved on this server`);
        $("marks").dataset.saved = String(state.marks.length);
      } catch (err) {
        say(`marks not saved: ${err.message}`, true);
      }
      changed();
    });
    return marks.saving;
  }

  function channels(names) {
    const menu = $("mark-channel");
    const current = menu.value;
    menu.replaceChildren(Object.assign(document.createElement("option"), { value: "", textContent: "all" }),
      ...names.map((n) => Object.assign(document.createElement("option"), { value: n, textContent: n })));
    menu.value = names.includes(current) ? current : "";
  }

  // A new mark at `onset` (seconds) on `channel` ("" for all): the form filled, its text to write.
  function begin(onset, channel) {
    cancel();
    $("mark-onset").value = T.fmt(onset, 1);
    if (channel && ![...$("mark-channel").options].some((o) => o.value === channel)) channels([channel]);
    $("mark-channel").value = channel || "";
    $("mark-text").focus();
  }

  function edit(index) {
    const m = state.marks[index];
    if (!m) return;
    marks.editing = index;
    $("mark-onset").value = T.fmt(m.onset_s, 1);
    $("mark-duration").value = String(m.duration_s || 0);
    $("mark-channel").value = m.channel || "";
    $("mark-text").value = m.text;
    $("mark-save").textContent = "Save mark";
    $("mark-delete").hidden = $("mark-cancel").hidden = false;
  }

  function cancel() {
    marks.editing = null;
    $("mark-form").reset();
    $("mark-save").textContent = "Add mark";
    $("mark-delete").hidden = $("mark-cancel").hidden = true;
  }

  function submitted(event) {
    event.preventDefault();
    if (!marks.recordingId) return say("marks: wait for the EEG to load", true);
    const onset = T.parseTime($("mark-onset").value);
    if (!Number.isFinite(onset) || onset < 0 || onset > (state.duration || Infinity)) {
      return say(`onset: expected a time from 0:00 to ${T.fmt(state.duration || 0)} (m:ss.s)`, true);
    }
    const mark = {
      onset_s: Math.round(onset * 1000) / 1000,
      duration_s: Math.max(0, Number($("mark-duration").value) || 0),
      text: $("mark-text").value.trim().replace(/[\t\r\n]+/g, " "),
      channel: $("mark-channel").value || null,
    };
    if (!mark.text) return say("text: expected what the mark is (1-200 characters)", true);
    if (marks.editing === null) state.marks.push(mark);
    else state.marks[marks.editing] = { ...state.marks[marks.editing], ...mark };
    cancel();
    save();
  }

  function deleted() {
    if (marks.editing === null) return;
    state.marks.splice(marks.editing, 1);
    cancel();
    save();
  }

  // The server's events.tsv, fetched with the key and handed to the browser as a download.
  async function exported() {
    try {
      const text = await state.call(`/v1/marks/${marks.recordingId}/events.tsv`, { method: "GET", text: true });
      const link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob([text], { type: "text/tab-separated-values" }));
      link.download = "events.tsv";
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    } catch (err) {
      say(`export: ${err.message}`, true);
    }
  }

  $("mark-form").addEventListener("submit", submitted);
  $("mark-delete").addEventListener("click", deleted);
  $("mark-cancel").addEventListener("click", cancel);
  $("marks-export").addEventListener("click", exported);
  window.eegfmMarks = { open, reset, begin, edit, cancel, channels, save };
})();
