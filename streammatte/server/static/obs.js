// /obs: only the processed stream, full frame, for OBS's Browser Source. Starts by itself.
// With ?alpha=1 the server sends colour (left half) and alpha (right half, grey) because
// WebRTC codecs carry no alpha; a WebGL shader puts them back together on a transparent
// canvas, so OBS receives a real cut-out.
"use strict";

(function () {
  const sm = window.streammatte;
  const video = document.getElementById("processed");
  const canvas = document.getElementById("cutout");
  const message = document.getElementById("message");
  const settings = sm.settingsFromUrl();
  const alphaMode = settings.alpha === true;
  let gl = null, texture = null;

  function setupWebgl() {
    gl = canvas.getContext("webgl", { premultipliedAlpha: false, alpha: true });
    if (!gl) throw new Error("this browser has no WebGL: open /obs without ?alpha=1");
    const vs = `attribute vec2 p; varying vec2 uv;
      void main() { uv = vec2((p.x + 1.0) / 2.0, (1.0 - p.y) / 2.0); gl_Position = vec4(p, 0, 1); }`;
    const fs = `precision mediump float; varying vec2 uv; uniform sampler2D frame;
      void main() {
        vec3 colour = texture2D(frame, vec2(uv.x * 0.5, uv.y)).rgb;
        float a = texture2D(frame, vec2(0.5 + uv.x * 0.5, uv.y)).g;
        gl_FragColor = vec4(colour, a);
      }`;
    const program = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
      const shader = gl.createShader(type);
      gl.shaderSource(shader, src);
      gl.compileShader(shader);
      gl.attachShader(program, shader);
    }
    gl.linkProgram(program);
    gl.useProgram(program);
    const buffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    const loc = gl.getAttribLocation(program, "p");
    gl.enableVertexAttribArray(loc);
    gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
    texture = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, texture);
    for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_MAG_FILTER, gl.LINEAR],
      [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) {
      gl.texParameteri(gl.TEXTURE_2D, k, v);
    }
  }

  function render() {
    if (video.videoWidth > 0) {
      const w = video.videoWidth / 2, h = video.videoHeight;
      if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
      gl.viewport(0, 0, w, h);
      gl.clearColor(0, 0, 0, 0);
      gl.clear(gl.COLOR_BUFFER_BIT);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, video);
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    }
  }

  function draw() {
    render();
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(draw);
    else requestAnimationFrame(draw);
  }

  // A titled message on the page's dark panel; none: the page is transparent again.
  function say(title, text) {
    message.textContent = "";
    if (!title) return;
    const strong = document.createElement("strong");
    strong.textContent = "streammatte: " + title;
    const p = document.createElement("p");
    p.textContent = text || "";
    message.append(strong, p);
  }

  async function start() {
    try {
      if (alphaMode) {
        setupWebgl();
        video.classList.add("hidden");
      } else {
        canvas.hidden = true;
      }
      sm.state.status = "connecting";
      say("connecting…", "Asking for the camera and the server.");
      sm.state.session = await sm.connect(settings, {
        onStream: (stream) => {
          video.srcObject = stream;
          sm.state.status = "live";
          say("");
          if (alphaMode) draw();
        },
        onMessage: (m) => {
          if (m.type === "stats") sm.state.stats = m;
          else if (m.type === "error") say("the server could not apply a setting", m.message);
        },
        onState: (s) => {
          if (s === "failed") say("the connection was lost", "Reload this source to connect again.");
        },
      });
    } catch (e) {
      sm.state.status = "error";
      if (e.camera) {
        const problem = sm.cameraProblem(e, sm.params.get("size"), true);
        sm.state.error = problem.title + ": " + problem.text;
        say(problem.title.toLowerCase(), problem.text);
      } else {
        sm.state.error = e.message || String(e);
        say("the server did not start the session", sm.state.error);
      }
    }
  }

  // Mean RGBA of a rectangle of what OBS would see (fractions of the output size).
  sm.sampleOutput = (x0, y0, x1, y1) => {
    if (!alphaMode) return sm.sampleVideo(video, x0, y0, x1, y1);
    if (!gl || !canvas.width) return null;
    const w = canvas.width, h = canvas.height;
    const sx = Math.floor(x0 * w), sw = Math.max(1, Math.floor((x1 - x0) * w));
    const sh = Math.max(1, Math.floor((y1 - y0) * h));
    const sy = h - Math.floor(y0 * h) - sh;  // GL rows start at the bottom
    render();
    const data = new Uint8Array(sw * sh * 4);
    gl.readPixels(sx, sy, sw, sh, gl.RGBA, gl.UNSIGNED_BYTE, data);
    const sum = [0, 0, 0, 0];
    for (let i = 0; i < data.length; i += 4) for (let c = 0; c < 4; c++) sum[c] += data[i + c];
    return { width: w, height: h, mean: sum.map((v) => v / (data.length / 4)) };
  };
  start();
})();
