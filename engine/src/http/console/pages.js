// Sluice console, pages: overview, topics (with the message browser) and
// consumer groups. Each page draws its frame once and refreshes its
// figures on every sample (`view.refresh`), so forms keep what is typed.
"use strict";

function cards(items) {
  return `<div class="cards">${items.map(([label, value, field]) =>
    `<div class="card"><div class="label">${esc(label)}</div>` +
    `<div class="value" data-field="${esc(field || label)}">${value}</div></div>`).join("")}</div>`;
}

function table(headers, rows, empty) {
  const head = headers.map((h) => h.startsWith("#") ? `<th class="num">${esc(h.slice(1))}</th>` : `<th>${esc(h)}</th>`).join("");
  const body = rows.length ? rows.join("") : `<tr><td colspan="${headers.length}" class="muted">${esc(empty || "none")}</td></tr>`;
  const thead = headers.some((h) => h) ? `<thead><tr>${head}</tr></thead>` : "";
  return `<table>${thead}<tbody>${body}</tbody></table>`;
}

// ---- overview ---------------------------------------------------------

Console.pages.overview = async (main, view) => {
  main.innerHTML = `<h1>Overview</h1><div id="overview-cards"></div><h2>Throughput</h2><div id="overview-charts" class="charts"></div>`;
  view.refresh = ({ overview: o, processors }) => {
    // The broker answered; its processors say whether all is well.
    const failing = processors.processors.filter((p) => p.state === "failed" || p.state === "degraded");
    const health = failing.length
      ? `<span class="state state-degraded">${failing.length} processor${failing.length > 1 ? "s" : ""} failing</span>`
      : stateTag("ok");
    document.getElementById("overview-cards").innerHTML = cards([
      ["Health", health, "health"],
      ["Version", esc(o.version), "version"],
      ["Uptime", duration(o.uptime_ms), "uptime"],
      ["Connections", num(o.connections), "connections"],
      ["Topics", num(o.topics), "topics"],
      ["Partitions", num(o.partitions), "partitions"],
      ["Disk used", bytes(o.disk_bytes), "disk_bytes"],
      ["Records in (total)", num(o.records_in), "records_in"],
      ["Records out (total)", num(o.records_out), "records_out"],
    ]);
    document.getElementById("overview-charts").innerHTML =
      chart("Records per second", [
        { name: "in (produced)", points: rates("overview", "records_in") },
        { name: "out (fetched)", points: rates("overview", "records_out") },
      ], (v) => rate(v), "records-rate") +
      chart("Bytes per second", [
        { name: "in", points: rates("overview", "bytes_in") },
        { name: "out", points: rates("overview", "bytes_out") },
      ], (v) => bytes(v) + "/s", "bytes-rate", 1024);
  };
};

// ---- topics -----------------------------------------------------------

Console.pages.topics = async (main, view) => {
  main.innerHTML = `<h1>Topics</h1><div id="topics-table"></div>
    <h2>Create a topic</h2>
    <form class="inline" id="create-topic">
      <label>Name <input name="name" required></label>
      <label>Partitions <input name="partitions" type="number" min="1" value="1"></label>
      <label>Configs (key=value per line) <textarea name="configs" placeholder="retention.ms=86400000"></textarea></label>
      <button type="submit">Create</button>
    </form>`;
  const draw = async () => {
    const { topics } = await api("GET", "/v1/topics");
    document.getElementById("topics-table").innerHTML = table(
      ["Name", "#Partitions", "#Records", "#Size", "Retention", "Cleanup"],
      topics.map((t) => `<tr data-topic="${esc(t.name)}"><td>${link("topics", t.name)}</td>` +
        `<td class="num">${num(t.partitions)}</td><td class="num" data-field="records">${num(t.records)}</td>` +
        `<td class="num">${bytes(t.size_bytes)}</td><td>${duration(t.retention_ms)}</td><td>${esc(t.cleanup_policy)}</td></tr>`),
      "no topics yet");
  };
  on(main, "#create-topic", "submit", async (form) => {
    const name = form.name.value.trim();
    const body = { name, partitions: Number(form.partitions.value), configs: Object.fromEntries(pairs(form.configs.value)) };
    await api("POST", "/v1/topics", body);
    banner(`created topic ${name}`, true);
    location.hash = "#/topics/" + encodeURIComponent(name);
  });
  await draw();
  view.refresh = draw;
};

Console.pages["topics/"] = async (main, view, path) => {
  // `#/topics/NAME` or `#/topics/NAME/PARTITION/OFFSET` (a record to show).
  const [name, partition, offset] = path.split("/");
  const topic = await api("GET", `/v1/topics/${encodeURIComponent(name)}`);
  main.innerHTML = `<h1>Topic ${esc(name)}</h1><div id="topic-cards"></div>
    <h2>Partitions</h2><div id="topic-partitions"></div>
    <h2>Configs <span class="muted">(overrides; the rest are the broker's defaults)</span></h2>
    <div id="topic-configs"></div>
    <form class="inline" id="set-config">
      <label>Config <input name="key" required placeholder="retention.ms"></label>
      <label>Value <input name="value" required></label>
      <button type="submit">Set</button>
    </form>
    <h2>Messages</h2><div id="topic-messages"></div>
    <h2>Delete</h2><button class="danger" id="delete-topic" type="button">Delete topic ${esc(name)}</button>`;
  const drawConfigs = (configs) => {
    document.getElementById("topic-configs").innerHTML = table(["Config", "Value", ""],
      Object.entries(configs).map(([k, v]) => `<tr data-config="${esc(k)}"><td>${esc(k)}</td><td data-field="config-value">${esc(v)}</td>` +
        `<td><button class="secondary" type="button" data-reset="${esc(k)}">Reset to default</button></td></tr>`),
      "no overrides");
    on(main, "[data-reset]", "click", async (button) => {
      const reply = await api("PATCH", `/v1/topics/${encodeURIComponent(name)}/configs`, { configs: { [button.dataset.reset]: null } });
      drawConfigs(reply.configs || {});
    });
  };
  const draw = (t) => {
    document.getElementById("topic-cards").innerHTML = cards([
      ["Partitions", num(t.partitions), "partitions"], ["Records", num(t.records), "records"],
      ["Size", bytes(t.size_bytes), "size_bytes"], ["Retention", duration(t.retention_ms), "retention"],
      ["Cleanup policy", esc(t.cleanup_policy), "cleanup_policy"],
    ]);
    document.getElementById("topic-partitions").innerHTML = table(
      ["#Partition", "#Log start", "#High watermark", "#Last stable offset", "#Size", "#Segments"],
      t.partition_details.map((p) => p.error
        ? `<tr><td class="num">${p.partition}</td><td colspan="5" class="state-failed">${esc(p.error)}</td></tr>`
        : `<tr data-partition="${p.partition}"><td class="num">${p.partition}</td>` +
          `<td class="num" data-field="log_start_offset">${num(p.log_start_offset)}</td>` +
          `<td class="num" data-field="high_watermark">${num(p.high_watermark)}</td>` +
          `<td class="num" data-field="last_stable_offset">${num(p.last_stable_offset)}</td>` +
          `<td class="num">${bytes(p.size_bytes)}</td><td class="num">${num(p.segments)}</td></tr>`));
  };
  draw(topic);
  drawConfigs(topic.configs || {});
  on(main, "#set-config", "submit", async (form) => {
    const reply = await api("PATCH", `/v1/topics/${encodeURIComponent(name)}/configs`,
      { configs: { [form.key.value.trim()]: form.value.value.trim() } });
    drawConfigs(reply.configs || {});
    banner(`set ${form.key.value.trim()} on ${name}`, true);
  });
  on(main, "#delete-topic", "click", async () => {
    if (!confirm(`Delete topic ${name} and all its records?`)) return;
    await api("DELETE", `/v1/topics/${encodeURIComponent(name)}`);
    banner(`deleted topic ${name}`, true);
    location.hash = "#/topics";
  });
  messageBrowser(document.getElementById("topic-messages"), name, topic.partitions,
    { partition: partition === undefined ? 0 : Number(partition), offset });
  view.refresh = async () => draw(await api("GET", `/v1/topics/${encodeURIComponent(name)}`));
};

// The records of one partition of `topic`: from the newest, an offset or a
// time, filtered by a substring of key or value. `start` may name a
// partition and an offset to open at.
function messageBrowser(container, topic, partitions, start = {}) {
  const options = Array.from({ length: partitions }, (_, p) =>
    `<option value="${p}" ${p === start.partition ? "selected" : ""}>${p}</option>`).join("");
  container.innerHTML = `<form class="inline messages-form">
      <label>Partition <select name="partition">${options}</select></label>
      <label>From <select name="mode"><option value="newest">the newest</option>
        <option value="offset" ${start.offset !== undefined ? "selected" : ""}>offset</option><option value="time">time</option></select></label>
      <label>Offset <input name="offset" type="number" min="0" value="${esc(start.offset ?? "")}"></label>
      <label>Time <input name="time" type="datetime-local" step="1"></label>
      <label>Limit <input name="limit" type="number" min="1" max="500" value="50"></label>
      <label>Key or value contains <input name="contains"></label>
      <button type="submit">Show</button>
      <button type="button" class="secondary next-page" disabled>Next page</button>
    </form><div class="messages"><p class="muted">Loading…</p></div>`;
  const form = container.querySelector("form");
  const out = container.querySelector(".messages");
  let next = null;
  const load = async (from) => {
    const query = new URLSearchParams({ partition: form.partition.value, limit: form.limit.value || "50" });
    if (form.contains.value) query.set("contains", form.contains.value);
    if (from !== undefined) query.set("offset", from);
    else if (form.mode.value === "offset") {
      if (form.offset.value === "") throw new Error("give an offset to start from");
      query.set("offset", form.offset.value);
    } else if (form.mode.value === "time") {
      const ms = new Date(form.time.value).getTime();
      if (!form.time.value || Number.isNaN(ms)) throw new Error("give a time to start from");
      query.set("from_ms", ms);
    }
    const page = await api("GET", `/v1/topics/${encodeURIComponent(topic)}/messages?${query}`);
    next = page.next_offset < page.last_stable_offset ? page.next_offset : null;
    form.querySelector(".next-page").disabled = next === null;
    out.innerHTML = `<p class="muted">Partition ${page.partition}: offsets ${num(page.log_start_offset)} to ${num(page.last_stable_offset)} (last stable);
      showing ${page.records.length} from ${num(page.from)}${form.contains.value ? `, holding “${esc(form.contains.value)}”` : ""}.</p>` +
      table(["#Offset", "Time", "Key", "Value", "Headers"], page.records.map((r) =>
        `<tr class="message" data-offset="${r.offset}"><td class="num">${r.offset}</td><td>${time(r.timestamp)}</td>` +
        `<td><pre>${r.key === null ? `<span class="muted">null</span>` : esc(r.key)}</pre></td>` +
        `<td><pre class="value">${r.value === null ? `<span class="muted">null</span>` : esc(r.value)}</pre>` +
        `${r.value_bytes > 16384 ? `<span class="muted">(${bytes(r.value_bytes)}, cut)</span>` : ""}</td>` +
        `<td>${r.headers.map((h) => `<div><b>${esc(h.key)}</b>: ${esc(h.value ?? "null")}</div>`).join("")}</td></tr>`),
      "no records here");
  };
  on(container, ".messages-form", "submit", () => load());
  on(container, ".next-page", "click", () => load(next));
  load().catch(failed);
}

// ---- consumer groups --------------------------------------------------

Console.pages.groups = async (main, view) => {
  main.innerHTML = `<h1>Consumer groups</h1><div id="groups-table"></div>`;
  view.refresh = ({ groups }) => {
    document.getElementById("groups-table").innerHTML = table(
      ["Group", "State", "#Members", "#Lag"],
      groups.groups.map((g) => `<tr data-group="${esc(g.group)}"><td>${link("groups", g.group)}</td><td>${stateTag(g.state)}</td>` +
        `<td class="num">${num(g.members)}</td><td class="num" data-field="lag">${num(g.lag)}</td></tr>`),
      "no groups");
  };
};

Console.pages["groups/"] = async (main, view, name) => {
  const path = `/v1/groups/${encodeURIComponent(name)}`;
  let group = await api("GET", path);
  main.innerHTML = `<h1>Consumer group ${esc(name)}</h1><div id="group-cards"></div>
    <h2>Lag</h2><div id="group-chart" class="charts"></div>
    <h2>Committed offsets</h2><div id="group-offsets"></div>
    <h2>Members</h2><div id="group-members"></div>
    <h2>Reset offsets <span class="muted">(the group must have no members)</span></h2>
    <form class="inline" id="reset-group">
      <label>Topic <select name="topic"></select></label>
      <label>To <select name="to"><option value="earliest">earliest</option><option value="latest">latest</option><option value="offset">offset…</option></select></label>
      <label>Offset <input name="offset" type="number" min="0"></label>
      <button type="submit">Reset</button>
    </form>`;
  const draw = (g) => {
    const lag = g.offsets.reduce((sum, o) => sum + o.lag, 0);
    for (const o of g.offsets) remember(`group:${name}:${o.topic}/${o.partition}`, { lag: o.lag });
    document.getElementById("group-cards").innerHTML = cards([
      ["State", stateTag(g.state), "state"], ["Members", num(g.members.length), "members"], ["Total lag", num(lag), "lag"],
    ]);
    const lines = [{ name: "total", points: series("group:" + name, "lag") }].concat(g.offsets.slice(0, 5).map((o) =>
      ({ name: `${o.topic}/${o.partition}`, points: series(`group:${name}:${o.topic}/${o.partition}`, "lag") })));
    document.getElementById("group-chart").innerHTML = chart("Lag (records behind the high watermark)", lines, num, "group-lag");
    document.getElementById("group-offsets").innerHTML = table(
      ["Topic", "#Partition", "#Committed offset", "#End offset", "#Lag"],
      g.offsets.map((o) => `<tr data-offset-row="${esc(o.topic)}/${o.partition}"><td>${link("topics", o.topic)}</td><td class="num">${o.partition}</td>` +
        `<td class="num" data-field="committed_offset">${num(o.committed_offset)}</td><td class="num">${num(o.end_offset)}</td>` +
        `<td class="num" data-field="lag">${num(o.lag)}</td></tr>`), "no committed offsets");
    document.getElementById("group-members").innerHTML = table(["Member", "Client", "Host", "Assignment"],
      g.members.map((m) => `<tr><td>${esc(m.member_id)}</td><td>${esc(m.client_id)}</td><td>${esc(m.client_host)}</td>` +
        `<td>${Object.entries(m.assignment || {}).map(([t, ps]) => `${esc(t)}: ${ps.join(", ")}`).join("<br>")}</td></tr>`),
      "no members (the group is empty)");
  };
  const topics = [...new Set(group.offsets.map((o) => o.topic))];
  document.querySelector("#reset-group select[name=topic]").innerHTML =
    topics.map((t) => `<option>${esc(t)}</option>`).join("");
  on(main, "#reset-group", "submit", async (form) => {
    const to = form.to.value === "offset" ? form.offset.value : form.to.value;
    if (to === "") throw new Error("give the offset to reset to");
    group = await api("POST", `${path}/reset`, { topic: form.topic.value, to });
    banner(`reset ${name} on ${form.topic.value} to ${to}`, true);
    draw(await api("GET", path));
  });
  draw(group);
  view.refresh = async () => draw(await api("GET", path));
};
