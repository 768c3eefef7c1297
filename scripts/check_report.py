"""Open a Snakemake HTML report in headless Chromium and check that every section renders.

The report is a JavaScript application: its sections exist only after the browser ran it.
A copy of the report gets a small driver script that, once the page has loaded, opens every
section (category) of the menu, shows each result in it and its caption, and writes what it
found as JSON into the page; ``chromium --dump-dom`` returns that page. Checks:

- the first page shows the rule graph, one node per rule;
- every section lists its results, every figure loads as an image with a size, every HTML
  table parses and has rows, every result's caption is shown;
- no JavaScript error.

With ``--screenshots DIR`` it also saves one screenshot of the first page and one per
section (the section's menu and its first result) for people to look at.

    python scripts/check_report.py report.html --screenshots screenshots --json check.json

Exit status 0 when every check passed; otherwise each problem is printed on one line.
Needs the ``chromium`` binary (Debian package ``chromium``).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

MARK = "report-check"
# The driver: runs in the report page after its own scripts (the global `app`, `categories`,
# `results` and `getResultMimeType` are the report application's).
DRIVER = """
<script>
(function () {
  const out = {errors: [], graph: null, sections: {}, results: {}};
  window.addEventListener("error", (e) => out.errors.push(String(e.message)));
  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const text = () => document.querySelector("#app").innerText;
  async function run() {
    await wait(300);
    const graph = document.querySelector("#app svg, #app canvas");
    out.graph = {element: graph ? graph.tagName : null, page: text().slice(0, 3000)};
    for (const category of Object.keys(categories)) {
      app.showCategory(category);
      await wait(200);
      const listed = [];
      for (const sub of Object.keys(categories[category])) {
        if (Object.keys(categories[category]).length > 1) {
          app.setView({navbarMode: "subcategory", category: category, subcategory: sub});
          await wait(150);
        }
        listed.push(text());
        for (const path of categories[category][sub]) {
          const entry = results[path];
          const mime = getResultMimeType(path);
          const found = {category: category, subcategory: sub, mime: mime, ok: false};
          if (mime.startsWith("image/")) {
            app.setView({content: "img", contentPath: entry.data_uri, resultPath: path});
            await wait(200);
            const img = Array.from(document.querySelectorAll("#app img")).find((i) => i.src === entry.data_uri);
            if (img && !img.complete) { await wait(500); }
            found.width = img ? img.naturalWidth : 0;
            found.height = img ? img.naturalHeight : 0;
            found.ok = found.width > 0 && found.height > 0;
          } else if (mime === "text/html") {
            app.setView({content: "html", contentPath: entry.data_uri, resultPath: path});
            await wait(200);
            const frame = document.querySelector("#app iframe");
            const page = await (await fetch(entry.data_uri)).text();
            const doc = new DOMParser().parseFromString(page, "text/html");
            found.rows = doc.querySelectorAll("table tbody tr").length;
            found.headers = Array.from(doc.querySelectorAll("table thead th")).map((th) => th.innerText || th.textContent);
            found.title = (doc.querySelector("h1") || {}).textContent || "";
            found.ok = !!frame && found.rows > 0;
          } else {
            found.ok = false;
            found.problem = "shown only as a download (" + mime + ")";
          }
          app.showResultInfo(path);
          await wait(150);
          found.info = text().slice(0, 4000);
          out.results[path] = found;
          app.showCategory(category);
          await wait(100);
        }
      }
      out.sections[category] = listed.join("\\n");
    }
    const pre = document.createElement("pre");
    pre.id = "MARK";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  window.addEventListener("load", () => { run().catch((e) => { out.errors.push(String(e)); }); });
})();
</script>
""".replace("MARK", MARK)
# Screenshot of one section: its menu on the left, its first result on the right.
SHOW_SECTION = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const category = CATEGORY;
  const sub = Object.keys(categories[category])[0];
  const path = categories[category][sub][0];
  const mime = getResultMimeType(path);
  const kind = mime.startsWith("image/") ? "img" : (mime === "text/html" ? "html" : null);
  if (kind) { app.setView({content: kind, contentPath: results[path].data_uri, resultPath: path}); }
  // The menu after the content: the app merges views with its state of before the call.
  setTimeout(() => app.showCategory(category), 200);
}, 200));
</script>
"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _chromium(binary: str, args: list[str], timeout: int,
              budget_ms: int = 60000, tries: int = 3) -> subprocess.CompletedProcess:
    """One headless Chromium run; a run that hangs (seen now and then on a loaded machine)
    is killed with all its helper processes and started again, up to ``tries`` times."""
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", f"--virtual-time-budget={budget_ms}", *args]
    for attempt in range(1, tries + 1):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
            return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the browser and its renderer processes
            proc.communicate()
            print(f"check_report: Chromium hung (try {attempt} of {tries}): {args[-1]}",
                  file=sys.stderr)
    raise RuntimeError(f"Chromium hung {tries} times on {args[-1]}")


def _with_script(report_html: str, script: str) -> str:
    at = report_html.rfind("</body>")
    if at < 0:
        raise ValueError("not an HTML page: no </body>")
    return report_html[:at] + script + report_html[at:]


# The report's data, each in its own <script id=...> element.
SCRIPT_IDS = {"results": "results", "categories": "categories", "rulegraph_spec": "rulegraph"}


def _embedded_json(report_html: str, variable: str) -> object:
    match = re.search(rf'<script id="{SCRIPT_IDS[variable]}">\s*var {variable} = (.*?);?\s*\n',
                      report_html)
    if not match:
        raise ValueError(f"the report holds no `var {variable}`")
    return json.loads(match.group(1).rstrip(";"))


def graph_rules(report_html: str) -> list[str]:
    """The rule names of the report's rule graph, in the order drawn."""
    spec = _embedded_json(report_html, "rulegraph_spec")
    for data in spec["data"]:
        if data["name"] == "node-data":
            return [node["rule"] for node in data["values"]]
    raise ValueError("the rule graph has no node data")


def drive(report: Path, binary: str, work: Path, timeout: int = 240) -> dict:
    """Run the driver in Chromium; the JSON it wrote into the page."""
    page = work / "driven.html"
    page.write_text(_with_script(report.read_text(errors="replace"), DRIVER))
    proc = _chromium(binary, ["--dump-dom", page.as_uri()], timeout)
    match = re.search(rf'<pre id="{MARK}">(.*?)</pre>', proc.stdout, re.S)
    if not match:
        raise RuntimeError(f"Chromium returned no check result (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-1500:]}")
    return json.loads(html.unescape(match.group(1)))


def screenshots(report: Path, binary: str, out_dir: Path, work: Path,
                timeout: int = 60) -> list[Path]:
    """The first page and one picture per section, as PNG files in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    source = report.read_text(errors="replace")
    views: list[tuple[str, str]] = [("00_first_page", "")]
    for i, category in enumerate(_embedded_json(source, "categories"), start=1):
        slug = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")
        views.append((f"{i:02d}_{slug}", SHOW_SECTION.replace("CATEGORY", json.dumps(category))))
    written = []
    for name, script in views:
        page = work / f"{name}.html"
        page.write_text(_with_script(source, script) if script else source)
        target = out_dir / f"{name}.png"
        proc = _chromium(binary, ["--window-size=1600,1000", f"--screenshot={target}",
                                  page.as_uri()], timeout, budget_ms=5000)
        if not target.is_file():
            raise RuntimeError(f"no screenshot {target.name} (exit {proc.returncode}): "
                               f"{proc.stderr.strip()[-800:]}")
        written.append(target)
    return written


def problems(found: dict, report_html: str) -> list[str]:
    """Every check that failed, one line each."""
    out = [f"JavaScript error: {error}" for error in found["errors"]]
    rules = graph_rules(report_html)
    doubled = sorted({r for r in rules if rules.count(r) > 1})
    if doubled:
        out.append(f"rule graph shows rules more than once: {', '.join(doubled)}")
    if not found["graph"] or not found["graph"]["element"]:
        out.append("first page: no rule graph drawn")
    categories = _embedded_json(report_html, "categories")
    results = _embedded_json(report_html, "results")
    for category, subs in categories.items():
        if category not in found["sections"]:
            out.append(f"section {category!r} was not opened")
        for paths in subs.values():
            for path in paths:
                got = found["results"].get(path)
                if got is None:
                    out.append(f"{category}: {path} not shown")
                    continue
                if not got["ok"]:
                    out.append(f"{category}: {path} did not render "
                               f"({got.get('problem') or got.get('mime')})")
                caption = html.unescape(re.sub(r"<[^>]+>", " ", results[path].get("caption") or ""))
                words = " ".join(caption.split())[:40]
                if not words:
                    out.append(f"{category}: {path} has no caption")
                elif words not in " ".join(got["info"].split()):
                    out.append(f"{category}: caption of {path} not shown")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="report.html of `snakemake --report`")
    parser.add_argument("--screenshots", type=Path, help="folder for PNG screenshots")
    parser.add_argument("--json", type=Path, help="write what the browser found here")
    parser.add_argument("--chromium", help="Chromium binary (default: found on PATH)")
    args = parser.parse_args(argv)
    binary = args.chromium or find_chromium()
    if binary is None:
        print("check_report: Chromium not found (Debian: apt-get install chromium)",
              file=sys.stderr)
        return 2
    if not args.report.is_file():
        print(f"check_report: {args.report}: report not found", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="report-check-") as tmp:
        # Chromium keeps its profile here, not in the user's home.
        os.environ.setdefault("HOME", tmp)
        found = drive(args.report.resolve(), binary, Path(tmp))
        if args.json:
            args.json.write_text(json.dumps(found, indent=1))
        if args.screenshots:
            for path in screenshots(args.report.resolve(), binary, args.screenshots, Path(tmp)):
                print(f"screenshot: {path}")
    failed = problems(found, args.report.read_text(errors="replace"))
    for line in failed:
        print(f"check_report: {line}", file=sys.stderr)
    shown = len(found["results"])
    print(f"{len(found['sections'])} sections, {shown} results shown, {len(failed)} problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
