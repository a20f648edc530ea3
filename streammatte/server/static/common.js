// What the streammatte pages share: the token, API calls, engine labels, and messages that
// say what to do. Plain ES2020, no build step, no third-party code.
"use strict";

(function () {
  // The token arrives once in the URL the server printed. Keep it for this tab and take it out
  // of the address bar so it is not shared by accident. The server has also set its cookie, so
  // links between the pages, <img>, <video> and downloads work without it in their URLs (it
  // takes ?token= on pages only). /obs keeps it: OBS reloads that exact URL.
  const token = (() => {
    const params = new URLSearchParams(location.search);
    const fromUrl = params.get("token");
    if (fromUrl) {
      sessionStorage.setItem("streammatte-token", fromUrl);
      if (!document.documentElement.hasAttribute("data-keep-token")) {
        params.delete("token");
        const rest = params.toString();
        history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
      }
      return fromUrl;
    }
    return sessionStorage.getItem("streammatte-token");
  })();

  // fetch() with the token; a non-2xx answer throws an Error carrying the server's own message
  // ({"error": ...}) and the status, so pages can say what to do about it.
  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (token) headers.set("Authorization", "Bearer " + token);
    let response;
    try {
      response = await fetch(path, { ...options, headers });
    } catch (cause) {
      const error = new Error("The server did not answer. Is streammatte serve still running?");
      error.status = 0;
      throw error;
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try {
        const body = await response.json();
        if (body.error) message = body.error;
      } catch (_) { /* not JSON: keep the status line */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  const TIERS = { fastest: "Fastest", fast: "Fast", balanced: "Balanced", best: "Best quality" };
  const TIER_ORDER = ["fastest", "fast", "balanced", "best"];
  const GROUPS = [
    ["people", "For people"],
    ["anything", "For anything: objects, animals, products"],
    ["static camera", "Static camera, video only"],
  ];

  function megabytes(bytes) {
    if (!bytes) return "";
    return bytes >= 1e9 ? (bytes / 1e9).toFixed(1) + " GB" : Math.max(1, Math.round(bytes / 1e6)) + " MB";
  }

  const SUBJECTS = { people: "People", anything: "Anything", "static camera": "Static camera" };

  // "Anything, fastest · u2netp": what it is good for first, the model name second.
  function engineLabel(engine) {
    const subject = SUBJECTS[engine.subject];
    const tier = TIERS[engine.tier];
    const what = subject && tier ? subject + ", " + tier.toLowerCase() : subject || tier;
    const name = what ? what + " · " + engine.name : engine.name;
    return engine.non_commercial ? name + " · non-commercial" : name;
  }

  // One line under the engine picker: the model's title, size and licence.
  function engineNote(engine) {
    const parts = [engine.title];
    if (engine.size_bytes) {
      parts.push(megabytes(engine.size_bytes) + (engine.cached === false ? ", downloaded on first use" : ""));
    }
    if (engine.licence) {
      parts.push(engine.non_commercial ? "licence " + engine.licence + ": non-commercial use only"
        : "licence " + engine.licence);
    }
    return parts.filter(Boolean).join(" · ");
  }

  // Fill a <select> with engines grouped by what they are good for, fastest first in a group.
  function fillEngines(select, engines, chosen) {
    select.textContent = "";
    const rank = (e) => {
      const t = TIER_ORDER.indexOf(e.tier);
      return t < 0 ? TIER_ORDER.length : t;
    };
    const grouped = new Map(GROUPS.map(([key]) => [key, []]));
    const other = [];
    for (const engine of engines) {
      (grouped.get(engine.subject) || other).push(engine);
    }
    const add = (parent, engine) => {
      const option = new Option(engineLabel(engine), engine.name);
      option.title = engineNote(engine);
      option.selected = engine.name === chosen;
      parent.appendChild(option);
    };
    for (const [key, label] of GROUPS) {
      const list = grouped.get(key);
      if (!list.length) continue;
      const group = document.createElement("optgroup");
      group.label = label;
      list.sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name)).forEach((e) => add(group, e));
      select.appendChild(group);
    }
    if (other.length) {
      const group = document.createElement("optgroup");
      group.label = "Other";
      other.forEach((e) => add(group, e));
      select.appendChild(group);
    }
  }

  // What went wrong with the camera, and what to do: {title, text}. ``obs``: the page has no
  // controls (OBS's Browser Source), so the fixes are OBS's.
  function cameraProblem(error, wanted, obs) {
    const name = (error && error.name) || "";
    const pick = obs ? "name another in this source's URL (?camera=<device id>)"
      : "pick another camera above";
    const again = obs ? "then refresh the source." : "then press Start camera again.";
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return { title: "The browser will not share a camera with this page",
        text: "Browsers only give pages a camera on https:// or on this machine itself " +
          "(http://127.0.0.1 or http://localhost). Open the page that way, or put the " +
          "server behind https." };
    }
    if (name === "NotFoundError" || name === "DevicesNotFoundError") {
      return { title: "No camera found",
        text: "Plug a camera in (or close the app that hides it), or " + pick + ", " + again };
    }
    if (name === "NotAllowedError" || name === "PermissionDeniedError" || name === "SecurityError") {
      return { title: "The camera is blocked",
        text: obs ? "OBS gives a Browser Source the camera only when OBS is started with " +
          "--enable-media-stream, " + again
          : "Allow this page to use the camera (the camera icon in the address bar) and " +
          "press Start camera again." };
    }
    if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
      return { title: "The camera would not start",
        text: "Another app may be using it. Close that app, or " + pick + ", " + again };
    }
    if (name === "OverconstrainedError") {
      return { title: "This camera cannot do that",
        text: (wanted ? "It cannot give " + wanted + ". " : "") +
          (obs ? "Ask for a smaller ?size= in this source's URL, " + again
            : "Pick a smaller resolution or another camera above.") };
    }
    return { title: "The camera did not start", text: (error && error.message) || String(error) };
  }

  window.streammatteCommon = {
    token, api, engineLabel, engineNote, fillEngines, cameraProblem, megabytes,
  };
})();
