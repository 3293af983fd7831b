// The mrenhance report's slice viewer (see mrenhance/report/viewer.py); no dependencies.
(function () {
  "use strict";
  const MAGMA = Uint8Array.from(atob("@MAGMA@"), c => c.charCodeAt(0));
  const AXES = {axial: 2, coronal: 1, sagittal: 0};
  async function inflate(b64) {
    const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(v) { return Math.abs(v) < 1e-6 ? "0" : Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4); }

  class Viewer {
    constructor(root, c) {
      this.root = root; this.c = c;
      const [nx, ny, nz] = c.shape;
      this.n = [nx, ny, nz];
      this.axis = 2; this.slice = (c.start || [nx >> 1, ny >> 1, nz >> 1]).slice();
      this.zoom = 1; this.centre = null;
      const [lo, hi] = c.range;
      this.toQ = v => (v - lo) * 255 / (hi - lo);
      this.fromQ = q => lo + q * (hi - lo) / 255;
      this.win = [this.toQ(c.window[0]), this.toQ(c.window[1])];
      this.build();
    }
    build() {
      const c = this.c, r = this.root;
      if (c.title) r.appendChild(el("h3", {}, c.title));
      const ctl = el("div", {class: "controls"});
      const ax = el("span", {class: "axis", role: "group", "aria-label": "view axis"});
      this.axisButtons = ["axial", "coronal", "sagittal"].map(name => {
        const b = el("button", {type: "button", class: "axis-btn", "data-axis": name, title: name + " (key " + name[0] + ")"}, name);
        b.addEventListener("click", () => { this.axis = AXES[name]; this.sync(); });
        ax.appendChild(b); return b;
      });
      ctl.appendChild(ax);
      const sl = el("label", {}, "slice ");
      this.slider = el("input", {type: "range", class: "slider", min: 0, step: 1, "aria-label": "slice"});
      this.sliceText = el("span", {class: "slice-number"});
      sl.appendChild(this.slider); sl.appendChild(this.sliceText); ctl.appendChild(sl);
      const wl = el("label", {}, "window ");
      this.loIn = el("input", {type: "range", class: "win-lo", min: 0, max: 255, step: 1, "aria-label": "window minimum"});
      this.hiIn = el("input", {type: "range", class: "win-hi", min: 0, max: 255, step: 1, "aria-label": "window maximum"});
      this.winText = el("span", {class: "win-text"});
      wl.appendChild(this.loIn); wl.appendChild(this.hiIn); wl.appendChild(this.winText); ctl.appendChild(wl);
      const zl = el("label", {}, "zoom ");
      this.zoomSel = el("select", {class: "zoom", "aria-label": "zoom"});
      for (const z of [1, 2, 4, 8]) this.zoomSel.appendChild(el("option", {value: z}, z + "x"));
      zl.appendChild(this.zoomSel); ctl.appendChild(zl);
      const reset = el("button", {type: "button"}, "reset");
      ctl.appendChild(reset);
      r.appendChild(ctl);
      this.panelBox = el("div", {class: "panels"}); r.appendChild(this.panelBox);
      this.readout = el("div", {class: "readout"}, "move the pointer over a panel: voxel and values; the zoom follows it");
      r.appendChild(this.readout);
      this.panels = c.images.map(img => {
        const fig = el("figure"); const canvas = el("canvas", {"data-name": img.name, "data-kind": img.kind});
        fig.appendChild(canvas); fig.appendChild(el("figcaption", {title: img.name}, img.name));
        this.panelBox.appendChild(fig);
        canvas.addEventListener("pointermove", e => this.pointer(e, canvas));
        canvas.addEventListener("pointerleave", () => { this.centre = null; this.draw(); });
        canvas.addEventListener("wheel", e => { e.preventDefault(); this.step(e.deltaY > 0 ? -1 : 1); }, {passive: false});
        return {img, canvas, fig, data: null, off: document.createElement("canvas")};
      });
      this.slider.addEventListener("input", () => { this.slice[this.axis] = +this.slider.value; this.draw(); });
      const win = () => { let a = +this.loIn.value, b = +this.hiIn.value; if (b <= a) b = a + 1; this.win = [a, b]; this.draw(); };
      this.loIn.addEventListener("input", win); this.hiIn.addEventListener("input", win);
      this.zoomSel.addEventListener("change", () => { this.zoom = +this.zoomSel.value; this.draw(); });
      reset.addEventListener("click", () => {
        this.win = [this.toQ(c.window[0]), this.toQ(c.window[1])]; this.zoom = 1; this.zoomSel.value = "1";
        this.slice = (c.start || this.n.map(v => v >> 1)).slice(); this.sync();
      });
      this.root.addEventListener("keydown", e => {
        if (e.key === "ArrowUp" || e.key === "PageUp") { this.step(1); e.preventDefault(); }
        if (e.key === "ArrowDown" || e.key === "PageDown") { this.step(-1); e.preventDefault(); }
        const named = {a: "axial", c: "coronal", s: "sagittal"}[e.key];
        if (named && e.target.tagName !== "INPUT") { this.axis = AXES[named]; this.sync(); }
      });
      this.root.tabIndex = 0;
    }
    step(d) { const a = this.axis; this.slice[a] = Math.min(this.n[a] - 1, Math.max(0, this.slice[a] + d)); this.sync(); }
    async load() {
      for (const p of this.panels) p.data = await inflate(p.img.data);
      this.sync(); this.root.dataset.ready = "1";
    }
    // the displayed slice: columns and rows as in mrenhance.report.figures.display_slice
    dims() {
      const a = this.axis, [nx, ny, nz] = this.n, [vx, vy, vz] = this.c.voxel_mm;
      if (a === 2) return {cols: nx, rows: ny, cw: vx, rh: vy};
      if (a === 1) return {cols: nx, rows: nz, cw: vx, rh: vz};
      return {cols: ny, rows: nz, cw: vy, rh: vz};
    }
    index(col, row) {  // voxel (x, y, z) shown at display column col, row row (row 0 on top)
      const a = this.axis, s = this.slice[a], d = this.dims(), up = d.rows - 1 - row;
      if (a === 2) return [col, up, s];
      if (a === 1) return [col, s, up];
      return [s, col, up];
    }
    sync() {
      const a = this.axis;
      this.slider.max = this.n[a] - 1; this.slider.value = this.slice[a];
      this.axisName = ["sagittal", "coronal", "axial"][a];
      for (const b of this.axisButtons) b.setAttribute("aria-pressed", String(b.dataset.axis === this.axisName));
      this.loIn.value = Math.round(this.win[0]); this.hiIn.value = Math.round(this.win[1]);
      this.draw();
    }
    draw() {
      const a = this.axis, d = this.dims(), [nx, ny] = this.n;
      const abs = this.slice[a] + this.c.offset[a];
      this.sliceText.textContent = ` ${"xyz"[a]} = ${abs} (${this.slice[a] + 1} of ${this.n[a]} shown` +
        (this.c.stride > 1 ? `, every ${this.c.stride}th voxel)` : ")");
      this.root.dataset.axis = this.axisName; this.root.dataset.slice = String(abs);
      this.winText.textContent = ` ${fmt(this.fromQ(this.win[0]))} to ${fmt(this.fromQ(this.win[1]))}`;
      const mm = Math.min(4, Math.max(1, 260 / Math.max(d.cols * d.cw, d.rows * d.rh)));
      const W = Math.round(d.cols * d.cw * mm), H = Math.round(d.rows * d.rh * mm);
      const [w0, w1] = this.win, gain = 255 / (w1 - w0);
      for (const p of this.panels) {
        if (!p.data) continue;
        const off = p.off; off.width = d.cols; off.height = d.rows;
        const octx = off.getContext("2d"), im = octx.createImageData(d.cols, d.rows), px = im.data;
        const err = p.img.kind === "error", src = p.data;
        for (let row = 0; row < d.rows; row++) {
          for (let col = 0; col < d.cols; col++) {
            const [x, y, z] = this.index(col, row);
            const q = src[x + nx * (y + ny * z)], o = 4 * (row * d.cols + col);
            if (err) { px[o] = MAGMA[3 * q]; px[o + 1] = MAGMA[3 * q + 1]; px[o + 2] = MAGMA[3 * q + 2]; }
            else { const g = Math.max(0, Math.min(255, (q - w0) * gain)); px[o] = px[o + 1] = px[o + 2] = g; }
            px[o + 3] = 255;
          }
        }
        octx.putImageData(im, 0, 0);
        const cv = p.canvas; if (cv.width !== W) cv.width = W; if (cv.height !== H) cv.height = H;
        const ctx = cv.getContext("2d"); ctx.imageSmoothingEnabled = false;
        const sw = d.cols / this.zoom, sh = d.rows / this.zoom;
        const ctr = this.centre || [d.cols / 2, d.rows / 2];
        const sx = Math.min(d.cols - sw, Math.max(0, ctr[0] - sw / 2));
        const sy = Math.min(d.rows - sh, Math.max(0, ctr[1] - sh / 2));
        p.view = {sx, sy, sw, sh, W, H};
        ctx.fillStyle = "#000"; ctx.fillRect(0, 0, W, H);
        ctx.drawImage(off, sx, sy, sw, sh, 0, 0, W, H);
      }
    }
    pointer(e, canvas) {
      const p = this.panels.find(q => q.canvas === canvas); if (!p || !p.view) return;
      const r = canvas.getBoundingClientRect(), v = p.view, d = this.dims();
      const col = Math.floor(v.sx + (e.clientX - r.left) / r.width * v.sw);
      const row = Math.floor(v.sy + (e.clientY - r.top) / r.height * v.sh);
      if (col < 0 || row < 0 || col >= d.cols || row >= d.rows) return;
      const [x, y, z] = this.index(col, row), [nx, ny] = this.n, o = this.c.offset;
      const vals = this.panels.filter(q => q.data).map(q => {
        const qv = q.data[x + nx * (y + ny * z)];
        const val = q.img.kind === "error" ? qv * this.c.error_range[1] / 255 : this.fromQ(qv);
        return `${q.img.name} ${fmt(val)}`;
      });
      this.readout.textContent = `voxel (${x + o[0]}, ${y + o[1]}, ${z + o[2]})  ` + vals.join("  |  ");
      if (this.zoom > 1) { this.centre = [col + 0.5, row + 0.5]; this.draw(); }
    }
  }
  async function start() {
    const viewers = [];
    for (const root of document.querySelectorAll(".mrv")) {
      const c = JSON.parse(document.getElementById(root.dataset.payload).textContent);
      const v = new Viewer(root, c); viewers.push(v); await v.load();
    }
    window.mrenhanceViewers = viewers;
    document.body.dataset.viewersReady = String(viewers.length);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
