// Sluice console, processors: the list, deploying a `.wasm` with its spec
// (multipart PUT, as `sluice processor deploy` sends), and a processor's
// page with its counters, plots, last error, dead letters and controls.
"use strict";

Console.pages.processors = async (main, view) => {
  main.innerHTML = `<h1>Processors</h1><div id="processors-table"></div>
    <h2>Deploy a processor</h2>
    <form class="inline" id="deploy">
      <label>Name <input name="name" required></label>
      <label>Plugin (.wasm) <input name="wasm" type="file" accept=".wasm,application/wasm" required></label>
      <label>Inputs (comma-separated) <input name="inputs" required></label>
      <label>Outputs (comma-separated) <input name="outputs"></label>
      <label>Config (key=value per line) <textarea name="config"></textarea></label>
      <label>On error <input name="on_error" value="fail" list="on-error-choices" title="fail, skip, dead-letter or dead-letter=TOPIC">
        <datalist id="on-error-choices"><option value="fail"><option value="skip"><option value="dead-letter"><option value="dead-letter=TOPIC"></datalist></label>
      <label>From <input name="from" value="earliest" title="earliest, latest, an offset, @MILLIS or an RFC 3339 time"></label>
      <button type="submit">Deploy</button>
    </form>`;
  on(main, "#deploy", "submit", async (form) => {
    const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
    const name = form.name.value.trim();
    const spec = {
      inputs: list(form.inputs.value), outputs: list(form.outputs.value),
      config: pairs(form.config.value), on_error: form.on_error.value.trim() || "fail",
    };
    if (form.from.value.trim()) spec.from = form.from.value.trim();
    const file = form.wasm.files[0];
    if (!file) throw new Error("choose the plugin's .wasm file");
    const body = new FormData();
    body.append("spec", new Blob([JSON.stringify(spec)], { type: "application/json" }));
    body.append("wasm", file, file.name);
    await api("PUT", `/v1/processors/${encodeURIComponent(name)}`, body);
    banner(`deployed ${name}`, true);
    location.hash = "#/processors/" + encodeURIComponent(name);
  });
  view.refresh = ({ processors }) => {
    document.getElementById("processors-table").innerHTML = table(
      ["Name", "State", "Inputs", "Outputs", "#Records in", "#Records out", "#Errors", "#Lag"],
      processors.processors.map((p) => `<tr data-processor="${esc(p.name)}"><td>${link("processors", p.name)}</td>` +
        `<td>${stateTag(p.state)}</td><td>${esc(p.inputs.join(", "))}</td><td>${esc(p.outputs.join(", "))}</td>` +
        `<td class="num" data-field="records_in">${num(p.records_in)}</td><td class="num">${num(p.records_out)}</td>` +
        `<td class="num">${num(p.errors)}</td><td class="num" data-field="lag">${num(p.lag)}</td></tr>`),
      "no processors deployed");
  };
};

function errorCoordinates(e) {
  if (!e) return `<span class="muted">none</span>`;
  const where = e.topic !== undefined && e.topic !== null
    ? ` at <a href="#/topics/${encodeURIComponent(e.topic)}/${e.partition}/${e.offset}">${esc(e.topic)}/${e.partition} offset ${e.offset}</a>`
    : "";
  return `<span class="state-failed">${esc(e.message)}</span>${where}${e.at_ms ? ` <span class="muted">(${time(e.at_ms)})</span>` : ""}`;
}

Console.pages["processors/"] = async (main, view, name) => {
  const path = `/v1/processors/${encodeURIComponent(name)}`;
  const first = await api("GET", path);
  const deadLetters = first.on_error.startsWith("dead-letter=") ? first.on_error.slice("dead-letter=".length) : null;
  main.innerHTML = `<h1>Processor ${esc(name)}</h1>
    <div class="toolbar"><button id="pause" type="button" class="secondary">Pause</button>
      <button id="resume" type="button" class="secondary">Resume</button>
      <button id="remove" type="button" class="danger">Remove</button></div>
    <div id="processor-cards"></div>
    <div class="panel">Last error: <span id="processor-error"></span></div>
    <div id="processor-charts" class="charts"></div>
    <h2>Partitions</h2><div id="processor-partitions"></div>
    <div id="processor-state"></div>
    <h2>Deployment</h2><div id="processor-spec"></div>
    ${deadLetters ? `<h2>Dead letters <span class="muted">(topic ${esc(deadLetters)})</span></h2><div id="dead-letters"></div>` : ""}`;
  const draw = (s) => {
    document.getElementById("processor-cards").innerHTML = cards([
      ["State", stateTag(s.state), "state"], ["Records in", num(s.records_in), "records_in"],
      ["Records out", num(s.records_out), "records_out"], ["Errors", num(s.errors), "errors"],
      ["Skipped", num(s.skipped), "skipped"], ["Dead-lettered", num(s.dead_lettered), "dead_lettered"],
      ["Lag", num(s.lag), "lag"],
    ]);
    document.getElementById("pause").disabled = s.state === "paused";
    document.getElementById("resume").disabled = s.state === "running";
    document.getElementById("processor-error").innerHTML = errorCoordinates(s.last_error);
    const key = "processor:" + name;
    document.getElementById("processor-charts").innerHTML =
      chart("Records per second", [{ name: "in", points: rates(key, "records_in") },
        { name: "out", points: rates(key, "records_out") }, { name: "errors", points: rates(key, "errors") }], rate, "processor-rate") +
      chart("Lag (records)", [{ name: "lag", points: series(key, "lag") }], num, "processor-lag");
    document.getElementById("processor-partitions").innerHTML = table(
      ["Input", "#Partition", "State", "#Committed", "#High watermark", "#Lag", "#In", "#Out", "#Errors", "#Memory", "Last error"],
      s.partitions.map((p) => `<tr data-partition="${esc(p.topic)}/${p.partition}"><td>${link("topics", p.topic)}</td>` +
        `<td class="num">${p.partition}</td><td>${stateTag(p.state)}</td><td class="num">${num(p.committed_offset)}</td>` +
        `<td class="num">${num(p.high_watermark)}</td><td class="num">${num(p.lag)}</td><td class="num">${num(p.records_in)}</td>` +
        `<td class="num">${num(p.records_out)}</td><td class="num">${num(p.errors)}</td><td class="num">${bytes(p.memory_bytes)}</td>` +
        `<td>${p.last_error ? errorCoordinates(p.last_error) : ""}</td></tr>`), "no partitions yet");
    const stateful = s.partitions.filter((p) => p.stateful);
    document.getElementById("processor-state").innerHTML = stateful.length === 0 ? "" :
      `<h2>State <span class="muted">(as of each partition's last commit)</span></h2>` + table(
        ["Input", "#Partition", "Stream time", "#Keys", "#Open windows", "#Timers", "#Late dropped", "#Commits", "#On disk", "Recovery"],
        stateful.map((p) => {
          const st = p.stateful;
          const recovery = st.restoring ? `restoring: ${num(st.restoring.records)} records, ${bytes(st.restoring.bytes)}`
            : st.rebuilding_until !== undefined ? `rebuilding to offset ${num(st.rebuilding_until)}` : "";
          return `<tr data-state-partition="${esc(p.topic)}/${p.partition}"><td>${link("topics", p.topic)}</td>` +
            `<td class="num">${p.partition}</td><td data-field="stream_time">${time(st.stream_time)}</td>` +
            `<td class="num" data-field="keys">${num(st.keys)}</td>` +
            `<td class="num" data-field="open_windows">${num(st.open_windows)}</td>` +
            `<td class="num" data-field="timers_pending">${num(st.timers_pending)}</td>` +
            `<td class="num" data-field="late_dropped">${num(st.late_dropped)}</td><td class="num" data-field="commits">${num(st.commits)}</td>` +
            `<td class="num">${bytes(st.state_bytes)}</td><td>${esc(recovery)}</td></tr>`;
        }));
    document.getElementById("processor-spec").innerHTML = table(["", ""], [
      ["Inputs", s.inputs.join(", ")], ["Outputs", s.outputs.join(", ")], ["Group", s.group],
      ["On error", s.on_error], ["Config", s.config.map(([k, v]) => `${k}=${v}`).join(", ")],
      ["Plugin", `${s.wasm_sha256.slice(0, 16)}… (${bytes(s.wasm_bytes)})`], ["Deployed", time(s.deployed_at_ms)],
    ].map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`));
  };
  const act = (verb) => async () => {
    draw(await api("POST", `${path}/${verb}`));
    banner(`${verb}d ${name}`, true);
  };
  on(main, "#pause", "click", act("pause"));
  on(main, "#resume", "click", act("resume"));
  on(main, "#remove", "click", async () => {
    if (!confirm(`Remove processor ${name} and its committed offsets?`)) return;
    await api("DELETE", path);
    banner(`removed ${name}`, true);
    location.hash = "#/processors";
  });
  draw(first);
  if (deadLetters) {
    const topic = await api("GET", `/v1/topics/${encodeURIComponent(deadLetters)}`).catch(() => null);
    const box = document.getElementById("dead-letters");
    if (topic) messageBrowser(box, deadLetters, topic.partitions);
    else box.innerHTML = `<p class="muted">No dead letters yet (the topic does not exist).</p>`;
  }
  view.refresh = async () => draw(await api("GET", path));
};
