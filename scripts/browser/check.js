// make browser-check: LiveEngine tried as a new user would, in headless
// Chromium. It starts `liveengine all` on free loopback ports with a temp data
// dir, pushes a test clip over RTMP with the ffmpeg CLI, and drives the
// server's own pages:
//   a) hls.js plays /hls/ID/index.m3u8 (webrtc/hls.html)
//   b) the WHEP player page plays the same stream (webrtc/whep.html)
//   c) a browser publishes over WHIP with the fake camera and microphone
//      (webrtc/whip.html, what OBS's WHIP output does); it plays over HLS
//      (ffprobe) and WHEP
//   d) three tabs hold a call (webrtc/room.html, tokens from
//      `liveengine room-token`); one leaves and the others see it go
//   e) two tabs on the control demo page (http://CONTROL/) chat, and a gift
//      bought with the sandbox top-up shows as an animation event in both
// Each check prints PASS or FAIL with figures; the exit code is 1 when any
// failed. CHECKS=a,b runs a subset; KEEP=1 keeps the temp dir and logs.
"use strict";
const { chromium } = require("playwright-core");
const { spawn, execFile } = require("child_process");
const crypto = require("crypto");
const dgram = require("dgram");
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");

const ROOT = path.resolve(__dirname, "../..");
const BIN = process.env.LIVEENGINE_BIN || path.join(ROOT, "bin/liveengine");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHECKS = (process.env.CHECKS || "a,b,c,d,e").split(",");
const t0 = Date.now();
const results = [];
const children = [];
let browser = null, tmp = null, cleaning = null;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const secs = (ms) => (ms / 1000).toFixed(1) + " s";
function say(m) { console.log(`[${secs(Date.now() - t0).padStart(6)}] ${m}`); }

// poll calls fn until it returns a truthy value or the deadline passes.
async function poll(what, ms, fn, every = 250) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (err) { last = err; }
    if (Date.now() > end) throw new Error(`timed out after ${secs(ms)} waiting for ${what}` + (last instanceof Error ? `: ${last.message}` : ""));
    await sleep(every);
  }
}

function record(id, name, ok, figures) {
  if (cleaning) return; // interrupted: the browser is going away
  results.push({ id, name, ok, figures });
  console.log(`${ok ? "PASS" : "FAIL"} ${id}) ${name}: ${figures}`);
}

// ---- processes -------------------------------------------------------------

function start(name, cmd, args, env) {
  const out = fs.openSync(path.join(tmp, name + ".log"), "a");
  const p = spawn(cmd, args, { env: Object.assign({}, process.env, env), stdio: ["ignore", out, out], detached: true });
  p.logName = name;
  p.exited = new Promise((r) => p.on("exit", (code, sig) => { p.done = true; r(code ?? sig); }));
  children.push(p);
  return p;
}

async function stopChild(p) {
  if (p.done) return;
  try { process.kill(-p.pid, "SIGTERM"); } catch (err) { return; }
  const t = await Promise.race([p.exited, sleep(15000).then(() => "timeout")]);
  if (t === "timeout") { try { process.kill(-p.pid, "SIGKILL"); } catch (err) {} await p.exited; }
}

function logTail(name, n = 25) {
  try { return fs.readFileSync(path.join(tmp, name + ".log"), "utf8").trim().split("\n").slice(-n).join("\n"); } catch (err) { return ""; }
}

function run(cmd, args, opts = {}) {
  return new Promise((ok, fail) => execFile(cmd, args, Object.assign({ maxBuffer: 1 << 24, timeout: 60000 }, opts), (err, stdout, stderr) => {
    if (err) fail(new Error(`${path.basename(cmd)} ${args.slice(0, 3).join(" ")}…: ${err.message} ${stderr}`.trim()));
    else ok(stdout);
  }));
}

async function cleanup() {
  if (cleaning) return cleaning;
  cleaning = (async () => {
    if (browser) await Promise.race([browser.close().catch(() => {}), sleep(10000)]);
    for (const p of children.slice().reverse()) await stopChild(p);
    if (tmp && !process.env.KEEP) fs.rmSync(tmp, { recursive: true, force: true });
    else if (tmp) say("kept " + tmp);
  })();
  return cleaning;
}
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, async () => { say("interrupted"); await cleanup(); process.exit(130); });
// Last resort if node exits some other way: the servers run in their own
// process groups, so nothing else would stop them.
process.on("exit", () => { for (const p of children) if (!p.done) try { process.kill(-p.pid, "SIGKILL"); } catch (err) {} });

// ---- ports -----------------------------------------------------------------

function freeTCP() {
  return new Promise((ok, fail) => {
    const s = net.createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); });
  });
}

function udpFree(port) {
  return new Promise((ok) => {
    const s = dgram.createSocket("udp4");
    s.on("error", () => ok(false));
    s.bind(port, "127.0.0.1", () => s.close(() => ok(true)));
  });
}

// ICE uses one port number for UDP and TCP.
async function freeICE() {
  for (let i = 0; i < 20; i++) {
    const p = await freeTCP();
    if (await udpFree(p)) return p;
  }
  throw new Error("no port free for both UDP and TCP");
}

// ---- HTTP ------------------------------------------------------------------

async function http(method, url, body, headers = {}) {
  const h = Object.assign({}, headers);
  if (body !== undefined) h["Content-Type"] = "application/json";
  const res = await fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try { data = JSON.parse(text); } catch (err) {}
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${text.slice(0, 300)}`);
  return data;
}

// ---- the checks --------------------------------------------------------------

// playHLS opens the hls.js page and samples playback every second for
// `seconds` after the first frame.
async function playHLS(ctx, env, streamID, seconds) {
  const page = await ctx.newPage();
  await page.goto(`${env.engine}/webrtc/hls.html?stream=${streamID}` + (process.env.HLS_RENDITION ? "&rendition=" + process.env.HLS_RENDITION : ""));
  const r0 = await poll("the first hls.js frame", 20000, () => page.evaluate(() => report.firstFrame !== null || report.fatal ? report : null));
  if (r0.fatal) throw new Error("fatal hls.js error " + r0.fatal);
  // Frames advance: a sample every second, each later than the last.
  const samples = [];
  const q0 = await page.evaluate(() => document.getElementById("v").getVideoPlaybackQuality().totalVideoFrames);
  let stuck = 0;
  for (let i = 0; i <= seconds; i++) {
    await sleep(1000);
    const s = await page.evaluate(() => ({ t: report.currentTime, lat: report.latency, w: report.width, h: document.getElementById("v").videoHeight, fatal: report.fatal,
      frames: document.getElementById("v").getVideoPlaybackQuality().totalVideoFrames }));
    if (s.fatal) throw new Error("fatal hls.js error " + s.fatal);
    if (samples.length && s.t <= samples[samples.length - 1].t) stuck++;
    samples.push(s);
  }
  const r = await page.evaluate(() => report);
  await page.close();
  const last = samples[samples.length - 1];
  const lats = samples.map((s) => s.lat).filter((x) => x != null).sort((a, b) => a - b);
  return { firstFrame: r.firstFrame, advanced: last.t - samples[0].t, frames: last.frames - q0, stuck, w: last.w, h: last.h, levels: r.levels,
    stalls: r.stalls, errors: [...new Set(r.errors)], fatal: r.fatal, seconds, level: r.levelName, jumps: r.jumps || 0,
    latP50: lats.length ? lats[lats.length >> 1] : null, latMax: lats.length ? lats[lats.length - 1] : null };
}

function hlsFigures(h) {
  const f = (x) => (x == null ? "?" : x.toFixed(2) + " s");
  return `first frame ${h.firstFrame} ms, ${h.advanced.toFixed(1)} s played in ${h.seconds} s wall (${h.frames} frames, ${h.stuck} stuck samples), ` +
    `${h.w}x${h.h}, levels [${h.levels}] playing ${h.level}, stalls ${h.stalls}, jumps to live ${h.jumps}, latency p50 ${f(h.latP50)} max ${f(h.latMax)}, non-fatal errors [${h.errors.join(", ")}]`;
}

// a) hls.js in low-latency mode plays the multivariant playlist for 10 s.
async function checkHLS(ctx, env, streamID) {
  const h = await playHLS(ctx, env, streamID, 10);
  // Every 1 s sample later than the last, 9 of 10 s played, real frames.
  const ok = h.stuck === 0 && h.advanced >= 9 && h.w > 0 && h.frames >= 100 && !h.fatal; // ≥ 10 fps
  record("a", "hls.js 1.7.4 plays LL-HLS index.m3u8", ok, hlsFigures(h));
}

// playWHEP opens the WHEP player page and waits for advancing video.
async function playWHEP(ctx, env, streamID, rendition) {
  const page = await ctx.newPage();
  const start = Date.now();
  await page.goto(`${env.engine}/webrtc/whep.html?stream=${streamID}` + (rendition ? `&rendition=${rendition}` : ""));
  await poll("WHEP video", 20000, () => page.evaluate(() => {
    if (report.error) throw new Error(report.error);
    return document.getElementById("v").videoWidth > 0 && document.getElementById("v").currentTime > 0;
  }));
  const firstFrame = Date.now() - start;
  const a = await page.evaluate(() => document.getElementById("v").currentTime);
  const f0 = await page.evaluate(async () => { let n = 0; (await pc.getStats()).forEach((x) => { if (x.type === "inbound-rtp" && x.kind === "video") n = x.framesDecoded; }); return n; });
  await sleep(4000);
  const s = await page.evaluate(async () => {
    const v = document.getElementById("v");
    const stats = { audioBytes: 0, videoBytes: 0, audioPackets: 0, framesDecoded: 0, codecs: [] };
    const st = await pc.getStats();
    const codecs = {};
    st.forEach((x) => { if (x.type === "codec") codecs[x.id] = x.mimeType; });
    st.forEach((x) => {
      if (x.type !== "inbound-rtp") return;
      if (x.kind === "audio") { stats.audioBytes = x.bytesReceived; stats.audioPackets = x.packetsReceived; }
      if (x.kind === "video") { stats.videoBytes = x.bytesReceived; stats.framesDecoded = x.framesDecoded; }
      if (codecs[x.codecId]) stats.codecs.push(codecs[x.codecId]);
    });
    const ms = v.srcObject;
    return Object.assign(stats, { t: v.currentTime, w: v.videoWidth, h: v.videoHeight,
      audioTracks: ms.getAudioTracks().filter((t) => t.readyState === "live").length, tracks: report.tracks, state: report.state });
  });
  s.advanced = s.t - a;
  s.frames = s.framesDecoded - f0;
  s.firstFrame = firstFrame;
  s.page = page;
  return s;
}

function whepFigures(s) {
  return `first frame ${s.firstFrame} ms, ${s.w}x${s.h}, ${s.advanced.toFixed(1)} s played in 4 s, ${s.frames} frames decoded in those 4 s, ` +
    `audio track ${s.audioTracks ? "live" : "missing"} (${s.audioPackets} packets), codecs [${s.codecs.join(", ")}], ${s.state}`;
}

// Video that moves (≥ 5 fps; a starved rung shows a frame a second while
// the audio clock runs on) and audio that arrives.
const whepOK = (s) => s.w > 0 && s.advanced >= 2.5 && s.frames >= 20 && s.audioTracks > 0 && s.audioPackets > 0;

// b) the WHEP player page plays the RTMP stream: H.264 passthrough, AAC → Opus.
async function checkWHEP(ctx, env, streamID) {
  const s = await playWHEP(ctx, env, streamID);
  record("b", "WHEP player page plays the RTMP stream", whepOK(s), whepFigures(s));
  await s.page.close();
  // A ladder rung, pinned (the player's Rendition field).
  const r = await playWHEP(ctx, env, streamID, "240p");
  record("b", "WHEP player page plays the 240p rung", whepOK(r), whepFigures(r));
  await r.page.close();
  await checkWHEPSwitch(ctx, env, streamID);
}

// b) an unpinned WHEP viewer that starts its bandwidth estimate low
// (start_bitrate) is moved from the source to the 240p rung by the server's
// ABR: Chromium keeps decoding through the switch (the rung's pictures come
// its encode time after the source's; the server keeps the timestamps
// going forward), and the server counts a switch at a fresh keyframe, none
// forced after its 5 s wait.
async function checkWHEPSwitch(ctx, env, streamID) {
  const metric = async (how) => {
    const m = (await (await fetch(`${env.engine}/metrics`)).text()).match(new RegExp(`^liveengine_webrtc_rendition_switches_total\\{how="${how}"\\} (\\d+)`, "m"));
    return m ? +m[1] : 0;
  };
  const [key0, forced0] = [await metric("keyframe"), await metric("forced")];
  const page = await ctx.newPage();
  await page.goto(`${env.engine}/webrtc/whep.html?stream=${streamID}&start_bitrate=150000`);
  // framesDecoded every 100 ms: the longest stretch without a new frame.
  await page.evaluate(() => {
    window.samples = [];
    setInterval(async () => {
      if (!pc) return;
      let n = 0;
      (await pc.getStats()).forEach((x) => { if (x.type === "inbound-rtp" && x.kind === "video") n = x.framesDecoded; });
      samples.push([performance.now(), n, document.getElementById("v").videoWidth]);
    }, 100);
  });
  let switchedAt = 0;
  await poll("the 240p rung in the player", 30000, () => page.evaluate(() => {
    if (report.error) throw new Error(report.error);
    return samples.some((s) => s[2] > 0 && s[2] < 640);
  }));
  await sleep(4000);
  const r = await page.evaluate(() => {
    const first = samples.find((s) => s[1] > 0);
    const sw = samples.find((s) => s[2] > 0 && s[2] < 640);
    let gap = 0, last = first;
    for (const s of samples) {
      if (s[0] < first[0]) continue;
      if (s[1] > last[1]) { gap = Math.max(gap, s[0] - last[0]); last = s; }
    }
    const end = samples[samples.length - 1];
    return { widths: [...new Set(samples.map((s) => s[2]).filter((w) => w > 0))], gap: Math.round(gap), framesAfter: end[1] - sw[1], secsAfter: (end[0] - sw[0]) / 1000 };
  });
  const [key1, forced1] = [await metric("keyframe"), await metric("forced")];
  const ok = r.widths.includes(640) && r.widths.some((w) => w < 640) && key1 > key0 && forced1 === forced0 && r.gap < 1000 && r.framesAfter >= 20;
  record("b", "WHEP viewer starting low is switched to the 240p rung", ok,
    `widths seen ${r.widths.join(" -> ")}, switches at a fresh keyframe +${key1 - key0}, forced +${forced1 - forced0}, longest gap without a new frame ${r.gap} ms, ` +
    `${r.framesAfter} frames decoded in the ${r.secsAfter.toFixed(1)} s after the switch`);
  await page.close();
}

// c) the browser publishes over WHIP as OBS would; HLS (ffprobe) and WHEP play it.
async function checkWHIP(ctx, env, stream) {
  const pub = await ctx.newPage();
  const start = Date.now();
  // 640x360 keeps the ladder (one rung) affordable on a small machine.
  await pub.goto(`${env.engine}/webrtc/whip.html?size=640x360&key=${stream.stream_key}`);
  await poll("the WHIP session to connect", 20000, () => pub.evaluate(() => {
    if (report.error) throw new Error(report.error);
    return report.state === "connected";
  }));
  const connected = Date.now() - start;
  // The playlist of the stream's public id appears once the first segment is cut.
  const hlsURL = `${env.engine}/hls/${stream.id}/index.m3u8`;
  await poll("the WHIP stream's HLS playlist", 30000, async () => (await fetch(hlsURL)).ok, 500);
  const playlistAt = Date.now() - start;
  const probe = JSON.parse(await run("ffprobe", ["-v", "error", "-rw_timeout", "15000000", "-show_entries", "stream=codec_type,codec_name,width,height,sample_rate",
    "-of", "json", `${env.engine}/hls/${stream.id}/source/stream.m3u8`]));
  const byType = {};
  for (const s of probe.streams || []) byType[s.codec_type] = s;
  const hlsOK = byType.video && byType.video.codec_name === "h264" && byType.audio && byType.audio.codec_name === "aac";
  const hlsFig = `ffprobe: ${byType.video ? `${byType.video.codec_name} ${byType.video.width}x${byType.video.height}` : "no video"}, ` +
    `${byType.audio ? `${byType.audio.codec_name} ${byType.audio.sample_rate} Hz` : "no audio"}`;
  const s = await playWHEP(ctx, env, stream.id);
  await s.page.close();
  // The page keeps its resolution as OBS does, so HLS carries what was asked for.
  const sizeOK = byType.video && byType.video.width === 640 && byType.video.height === 360;
  record("c", "browser WHIP publish (fake camera + mic): HLS (ffprobe) and WHEP", hlsOK && sizeOK && whepOK(s),
    `connected in ${connected} ms, playlist after ${playlistAt} ms, ${hlsFig}; WHEP: ${whepFigures(s)}`);
  // And hls.js plays it like the RTMP stream (8 s).
  const h = await playHLS(ctx, env, stream.id, 8);
  // Plays (≥ 5 of 8 s, ≥ 5 fps, no fatal error); stalls are reported, not
  // failed: a browser publisher's timing is looser than ffmpeg's.
  record("c", "hls.js plays the browser's WHIP stream", h.advanced >= 5 && h.w > 0 && h.frames >= 40 && !h.fatal, hlsFigures(h));
  // Stop (WHIP DELETE): the playlist ends and the control plane sees it.
  const stopAt = Date.now();
  await pub.evaluate(() => stop());
  let ended = null;
  try {
    ended = await poll("the WHIP stream to end", 15000, async () => {
      const pl = await (await fetch(`${env.engine}/hls/${stream.id}/source/stream.m3u8`)).text();
      const st = await http("GET", `${env.api}/streams/${stream.id}`);
      return pl.includes("#EXT-X-ENDLIST") && st.status !== "live" && st.status;
    }, 500);
  } catch (e) { ended = null; }
  record("c", "WHIP DELETE ends the stream", !!ended, ended ? `EXT-X-ENDLIST and status "${ended}" after ${Date.now() - stopAt} ms` : "no EXT-X-ENDLIST or still live after 15 s");
  await pub.close();
}

// roomView is what one room tab shows: its remote video tiles.
function roomView(page) {
  return page.evaluate(() => [...document.querySelectorAll("#grid .tile")].filter((t) => !t.id.startsWith("t-self")).map((t) => {
    const v = t.querySelector("video");
    return { id: t.id, label: t.querySelector("span").textContent, w: v.videoWidth, t: v.currentTime };
  }));
}

// d) three tabs join one call, each sees and plays the other two; one leaves.
async function checkRoom(ctx, env) {
  const names = ["ana", "ben", "caro"];
  const room = "call-" + crypto.randomBytes(3).toString("hex");
  const pages = [];
  const start = Date.now();
  for (const n of names) {
    const out = await run(BIN, ["room-token", "-config", "", "-room", room, "-identity", n, "-name", n.toUpperCase()], { env: Object.assign({}, process.env, env.vars) });
    const page = await ctx.newPage();
    page.on("pageerror", (e) => say(`room ${n}: page error ${e.message}`));
    await page.goto(`${env.engine}/webrtc/room.html?token=${out.split("\n")[0].trim()}`);
    await poll(`${n} to join`, 10000, () => page.evaluate(() => /in call-/.test(document.getElementById("who").textContent)));
    await page.click("#cam");
    await page.click("#mic");
    pages.push(page);
  }
  const others = (i) => names.filter((_, j) => j !== i).map((n) => n.toUpperCase());
  // Each tab: two remote video tiles labelled with the other two and the
  // source the server announced ("camera": the page matched the track to
  // its track_published message), playing.
  let views;
  const allPlaying = async () => {
    views = await Promise.all(pages.map(roomView));
    return views.every((v, i) => v.length === 2 && others(i).every((o) => v.some((x) => x.label === o + " camera" && x.w > 0 && x.t > 0)));
  };
  let err = null;
  try { await poll("every tab to play the other two", 25000, allPlaying, 500); } catch (e) { err = e; }
  const mediaAt = Date.now() - start;
  if (err) {
    record("d", "three tabs hold a call", false, `${err.message}; tiles: ${JSON.stringify(views)}`);
    for (const [i, p] of pages.entries()) say(`${names[i]} log:\n` + await p.evaluate(() => document.getElementById("log").textContent));
    return;
  }
  // ANA turns her camera off and on again (renegotiation both ways).
  const camOff = Date.now();
  await pages[0].click("#cam");
  let toggled = "", toggleErr = null;
  try {
    await poll("ANA's camera tile to go", 10000, async () => (await Promise.all(pages.slice(1).map(roomView))).every((v) => !v.some((x) => x.label.startsWith("ANA"))));
    toggled = `camera off seen in ${Date.now() - camOff} ms`;
    const camOn = Date.now();
    await pages[0].click("#cam");
    await poll("ANA's camera to play again", 15000, allPlaying, 500);
    toggled += `, back on and playing in ${Date.now() - camOn} ms`;
  } catch (e) { toggleErr = e; toggled = e.message; }
  const before = await Promise.all(pages.map(roomView));
  await sleep(2000);
  const after = await Promise.all(pages.map(roomView));
  const advancing = after.every((v, i) => v.every((x) => { const b = before[i].find((y) => y.id === x.id); return b && x.t > b.t; }));
  // The third tab leaves; the others see its tile go.
  const leaveAt = Date.now();
  await pages[2].click("#leave");
  let gone = true;
  try {
    await poll("CARO's tile to go in the other tabs", 15000, async () => {
      views = await Promise.all(pages.slice(0, 2).map(roomView));
      return views.every((v) => v.length === 1 && !v.some((x) => x.label.startsWith("CARO")));
    }, 250);
  } catch (e) { gone = false; err = e; }
  const leftIn = Date.now() - leaveAt;
  // BEN closes his tab without pressing Leave; ANA sees him go too.
  const closeAt = Date.now();
  await pages[1].close();
  let closedGone = true, closeErr = null;
  try {
    await poll("BEN's tile to go after his tab closed", 20000, async () => (await roomView(pages[0])).length === 0, 250);
  } catch (e) {
    closedGone = false; closeErr = e;
    say("ana's tiles: " + JSON.stringify(await roomView(pages[0])) + "\nana's log:\n" + await pages[0].evaluate(() => document.getElementById("log").textContent));
  }
  const closedIn = Date.now() - closeAt;
  const logs = await pages[0].evaluate(() => document.getElementById("log").textContent);
  const toldLeft = /caro left/.test(logs) && /ben left/.test(logs);
  const sizes = after.map((v) => v.map((x) => x.w).join("/")).join(", ");
  record("d", "three tabs hold a call (room.html)", !toggleErr && advancing && gone && closedGone && toldLeft,
    `all 3 tabs playing the other 2 after ${mediaAt} ms (remote widths ${sizes}); ANA's ${toggled}; video ${advancing ? "advancing" : "NOT advancing"} in every tile; ` +
    `CARO pressed Leave: ${gone ? `tile gone in ${leftIn} ms` : `tile still there after ${leftIn} ms (${err && err.message})`}; ` +
    `BEN closed his tab: ${closedGone ? `tile gone in ${closedIn} ms` : `tile still there (${closeErr && closeErr.message})`}; ` +
    `participant_left ${toldLeft ? "shown" : "NOT shown"} for both`);
  for (const p of pages) if (!p.isClosed()) await p.close();
  await checkLiveRoom(ctx, env);
}

// A live room: its host publishes from room.html and viewers watch the
// engine stream room-ROOM over WHEP.
async function checkLiveRoom(ctx, env) {
  const room = "live-" + crypto.randomBytes(3).toString("hex");
  const out = await run(BIN, ["room-token", "-config", "", "-room", room, "-identity", "host", "-kind", "live"], { env: Object.assign({}, process.env, env.vars) });
  const host = await ctx.newPage();
  await host.goto(`${env.engine}/webrtc/room.html?token=${out.split("\n")[0].trim()}`);
  await poll("the host to join", 10000, () => host.evaluate(() => /\(live\)/.test(document.getElementById("who").textContent)));
  await host.click("#cam");
  await host.click("#mic");
  try {
    await poll("the room's engine stream", 20000, async () => (await fetch(`${env.engine}/hls/room-${room}/index.m3u8`)).ok, 500);
    const s = await playWHEP(ctx, env, "room-" + room);
    await s.page.close();
    record("d", "live room: the host's camera plays over WHEP as room-ROOM", whepOK(s), whepFigures(s));
  } finally {
    await host.close();
  }
}

// e) two tabs on the control demo page: chat both ways, a sandbox top-up and a
// gift whose animation event reaches both tabs.
async function checkChat(ctx, env, stream) {
  const users = ["dora", "eli"];
  const pages = [];
  for (const u of users) {
    const c = await browser.newContext(); // separate tabs, separate sessionStorage anyway
    const page = await c.newPage();
    page.on("pageerror", (e) => say(`demo ${u}: page error ${e.message}`));
    await page.goto(`${env.control}/?stream=${stream.id}`);
    await page.fill("#auth [name=username]", u);
    await page.fill("#auth [name=password]", "correct horse battery");
    await page.click("#auth [name=register]");
    await poll(`${u} to join the chat`, 15000, () => page.evaluate((id) => report.subscribed === id, stream.id));
    pages.push(page);
  }
  // Chat: each tab says one line, both tabs see both lines.
  const sent = Date.now();
  await pages[0].fill("#say [name=body]", "hello from dora");
  await pages[0].press("#say [name=body]", "Enter");
  await pages[1].fill("#say [name=body]", "hi dora, eli here");
  await pages[1].press("#say [name=body]", "Enter");
  let chatErr = null;
  try {
    await poll("both comments in both tabs", 10000, async () => (await Promise.all(pages.map((p) => p.evaluate(() => report.comments.map((c) => c.body))))).every(
      (list) => list.includes("hello from dora") && list.includes("hi dora, eli here")));
  } catch (e) { chatErr = e; }
  const chatMs = Date.now() - sent;
  let video = null, videoErr = null;
  try {
    video = await poll("the demo page's video to play", 15000, () => pages[1].evaluate(() => {
      const v = document.getElementById("v");
      return v.videoWidth > 0 && v.currentTime > 1 && { w: v.videoWidth, t: v.currentTime, firstFrame: Math.round(report.firstFrame) };
    }));
  } catch (e) { videoErr = e; say("demo page log: " + await pages[1].evaluate(() => document.getElementById("log").textContent + " errors: " + report.errors.join("; "))); }
  record("e", "chat between two tabs (control demo page, hls.js video)", !chatErr && !videoErr, chatErr ? chatErr.message :
    `both lines in both tabs after ${chatMs} ms; ` + (videoErr ? videoErr.message : `video ${video.w}px wide, first frame ${video.firstFrame} ms after load, t=${video.t.toFixed(1)} s`));
  // Gift: eli buys coins with the sandbox and sends the first gift of the catalog.
  await pages[1].click("#topup");
  const coins = await poll("the sandbox top-up", 10000, () => pages[1].evaluate(() => Number(document.getElementById("coins").textContent) >= 1000 && document.getElementById("coins").textContent));
  await poll("the gift buttons", 10000, () => pages[1].evaluate(() => document.querySelectorAll("#gifts button").length > 0));
  const gave = Date.now();
  await pages[1].click("#gifts button");
  let giftErr = null;
  try {
    await poll("the gift event and its animation in both tabs", 10000, async () => (await Promise.all(pages.map((p) => p.evaluate(() => report.gifts.length > 0 && report.animations > 0)))).every(Boolean));
  } catch (e) { giftErr = e; }
  const giftMs = Date.now() - gave;
  const seen = await Promise.all(pages.map((p) => p.evaluate(() => report.gifts[0])));
  const balance = await pages[1].evaluate(() => document.getElementById("coins").textContent);
  const earnings = await http("GET", `${env.api}/earnings`, undefined, { Authorization: "Bearer " + env.streamerToken }).catch((e) => ({ error: e.message }));
  const board = await http("GET", `${env.api}/streams/${stream.id}/leaderboard`).catch((e) => ({ error: e.message }));
  record("e", "gift after a sandbox top-up, animation event in both tabs", !giftErr,
    giftErr ? giftErr.message : `topped up to ${coins} coins, gift "${seen[0].name}" (${seen[0].coins} coins) animated in both tabs ${giftMs} ms after the click, ` +
    `sender balance ${balance}, streamer earnings ${earnings.available_coins} coins, stream leaderboard ${JSON.stringify(board).slice(0, 160)}`);
  for (const p of pages) await p.context().close();
}

// ---- main --------------------------------------------------------------------

async function main() {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "le-browser-"));
  const [httpPort, controlPort, rtmpPort, icePort] = [await freeTCP(), await freeTCP(), await freeTCP(), await freeICE()];
  const engine = `http://127.0.0.1:${httpPort}`, control = `http://127.0.0.1:${controlPort}`;
  const vars = {
    LIVEENGINE_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    LIVEENGINE_CONTROL_ADDR: `127.0.0.1:${controlPort}`,
    LIVEENGINE_RTMP_ADDR: `127.0.0.1:${rtmpPort}`,
    LIVEENGINE_WEBRTC_ICE_UDP_PORT: String(icePort),
    LIVEENGINE_WEBRTC_ICE_TCP_PORT: String(icePort),
    LIVEENGINE_WEBRTC_ICE_HOST: "127.0.0.1",
    // The 640x360 clips get no rung from the default ladder (no upscaling,
    // no rung the source's own size); the mobile ladder gives them one,
    // 240p, cheap enough for a small machine.
    LIVEENGINE_TRANSCODE_LADDER: "mobile",
    LIVEENGINE_WEBRTC_ROOM_SECRET: crypto.randomBytes(24).toString("hex"),
    LIVEENGINE_CONTROL_JWT_SECRET: crypto.randomBytes(24).toString("hex"),
    LIVEENGINE_CONTROL_DATABASE_URL: `sqlite://${tmp}/liveengine.db`,
    LIVEENGINE_CONTROL_PUBLIC_RTMP_URL: `rtmp://127.0.0.1:${rtmpPort}/live`,
    LIVEENGINE_CONTROL_PUBLIC_HTTP_URL: engine,
    LIVEENGINE_CONTROL_ADMINS: "admin",
  };
  const env = { engine, control, api: control + "/api/v1", vars };
  say(`temp dir ${tmp}; engine ${engine}, control ${control}, rtmp :${rtmpPort}, ice :${icePort}; load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);

  // A 10 s 640x360 clip, 1 s GOP, pushed in a loop with -c copy: the server,
  // not the publisher, should be what costs CPU.
  const clip = path.join(tmp, "clip.flv");
  await run("ffmpeg", ["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p",
    "-b:v", "800k", "-c:a", "aac", "-b:a", "96k", "-f", "flv", clip]);

  const server = start("liveengine", BIN, ["all", "-config", path.join(ROOT, "configs/liveengine.yaml")], vars);
  await poll("the control API", 30000, async () => {
    if (server.done) throw new Error("liveengine exited:\n" + logTail("liveengine"));
    return (await fetch(env.api + "/health")).ok && (await fetch(engine + "/webrtc/")).ok;
  });
  say("liveengine is up");

  // The new-user path from the README: a streamer account and a stream.
  const streamer = await http("POST", env.api + "/auth/register", { username: "streamer", email: "streamer@example.com", password: "correct horse battery", role: "streamer" });
  env.streamerToken = streamer.access_token;
  const auth = { Authorization: "Bearer " + streamer.access_token };
  const rtmpStream = await http("POST", env.api + "/streams", { title: "RTMP test clip", category: "test" }, auth);
  const whipStream = await http("POST", env.api + "/streams", { title: "Browser WHIP", category: "test" }, auth);
  if (CHECKS.includes("e")) {
    const admin = await http("POST", env.api + "/auth/register", { username: "admin", email: "admin@example.com", password: "correct horse battery" });
    await http("POST", env.api + "/gifts", { name: "Rose", price: 10, animation_url: "", tier: 1, active: true }, { Authorization: "Bearer " + admin.access_token });
  }
  start("ffmpeg-rtmp", "ffmpeg", ["-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", clip, "-c", "copy", "-f", "flv", rtmpStream.rtmp_url]);
  await poll("the RTMP stream's HLS playlist", 20000, async () => (await fetch(`${engine}/hls/${rtmpStream.id}/index.m3u8`)).ok, 250);
  say(`RTMP stream ${rtmpStream.id} is live`);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Our handlers close the browser and then the servers.
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
    args: ["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required",
      "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
      // Background tabs would otherwise throttle timers and pause video.
      "--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"],
  });
  say("chromium " + browser.version());
  const ctx = await browser.newContext({ permissions: ["camera", "microphone"] });

  const steps = [
    ["a", () => checkHLS(ctx, env, rtmpStream.id)],
    ["b", () => checkWHEP(ctx, env, rtmpStream.id)],
    ["c", () => checkWHIP(ctx, env, whipStream)],
    ["d", () => checkRoom(ctx, env)],
    ["e", () => checkChat(ctx, env, rtmpStream)],
  ];
  for (const [id, fn] of steps) {
    if (!CHECKS.includes(id)) continue;
    if (id === "e" && results.some((r) => !r.ok)) { record("e", "chat and gifts", false, "skipped: run only after a-d pass"); continue; }
    const before = results.length;
    try { await fn(); } catch (err) { record(id, "check " + id, false, err.message); }
    if (results.slice(before).some((r) => !r.ok) && !cleaning) say("server log tail:\n" + logTail("liveengine", 15));
  }
}

main().catch((err) => { record("-", "setup", false, err.stack || err.message); if (tmp) say("server log tail:\n" + logTail("liveengine")); })
  .finally(async () => {
    await cleanup();
    const failed = results.filter((r) => !r.ok).length;
    console.log(`${failed ? "FAIL" : "PASS"}: ${results.length - failed} of ${results.length} checks passed in ${secs(Date.now() - t0)} (load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}, ${os.cpus().length} CPUs)`);
    process.exit(failed ? 1 : 0);
  });
