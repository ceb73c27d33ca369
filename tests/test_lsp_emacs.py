"""A second real editor: Debian's Emacs 28 with eglot, in batch mode, configured with docs/editors.md's
eglot recipe verbatim, in a copy of examples/node-shop (a user's app folder), `minicloud-lsp` on PATH.

Batch Emacs has no command loop: the harness does what the loop would (runs `post-command-hook`,
where `eglot-ensure` connects) and waits with `accept-process-output`, each wait with its own deadline
(the whole run is capped at 120 s). It also evaluates the documented `workspace/executeCommand` form.
Its findings go to a JSON file read here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import copy_example
from .test_lsp_neovim import documented_block

MARKER = "<!-- emacs-eglot: tested by tests/test_lsp_emacs.py -->"
COMMAND_MARKER = "<!-- emacs-eglot-command: tested by tests/test_lsp_emacs.py -->"
# Without the recipe's :language-id: eglot derives the ids from the modes ("js", "python",
# "conf-toml"); the server must still know what the documents are.
PLAIN_RECIPE = """(with-eval-after-load 'eglot
  (dolist (mode '(js-mode python-mode conf-toml-mode))
    (add-to-list 'eglot-server-programs (cons mode '("minicloud-lsp")))))
(dolist (hook '(js-mode-hook python-mode-hook conf-toml-mode-hook))
  (add-hook hook #'eglot-ensure))
"""
REQUIRE_EGLOT = ["--batch", "--eval", "(progn (package-activate-all) (require 'eglot))"]

HARNESS = r""";;; -*- lexical-binding: t -*-
(require 'json)
(defvar mc-app (file-name-as-directory (getenv "MINICLOUD_APP")))
(defvar mc-step-seconds 12) ; each wait has its own deadline: one failure does not starve the rest
(defvar mc-result nil)

(defun mc-put (key value) (push (cons key value) mc-result))

(defun mc-wait (pred what)
  (let ((deadline (+ (float-time) mc-step-seconds)))
    (while (and (not (funcall pred)) (< (float-time) deadline))
      (accept-process-output nil 0.05)))
  (or (funcall pred) (error "Timed out waiting for %s" what)))

(defun mc-open (file)
  "Visit FILE as a user would; eglot-ensure connects from post-command-hook."
  (let ((buf (find-file-noselect (expand-file-name file mc-app))))
    (with-current-buffer buf
      (run-hooks 'post-command-hook)
      (mc-wait (lambda () (and (fboundp 'eglot-managed-p) (eglot-managed-p))) (format "eglot in %s" file)))
    buf))

(defun mc-labels (buf)
  "Completion labels at point in BUF through eglot's completion-at-point, once some arrive."
  (with-current-buffer buf
    (let ((deadline (+ (float-time) mc-step-seconds)) (tries 0) labels)
      (while (and (null labels) (or (= tries 0) (< (float-time) deadline)))
        (setq tries (1+ tries))
        (let ((table (nth 2 (eglot-completion-at-point))))
          (setq labels (mapcar (lambda (c) (or (plist-get (get-text-property 0 'eglot--lsp-item c) :label) c))
                               (and table (all-completions "" table)))))
        (unless labels (accept-process-output nil 0.1)))
      (vconcat labels))))

(defun mc-server (buf)
  (with-current-buffer buf
    (let ((server (eglot-current-server)))
      `(("mode" . ,(symbol-name major-mode))
        ("language_id" . ,(eglot--language-id server))
        ("root" . ,(expand-file-name (project-root (eglot--project server))))
        ("pid" . ,(process-id (jsonrpc--process server)))))))

(condition-case err
    (let ((js (mc-open "src/check.js"))
          (js2 (mc-open "server.js"))
          (py (mc-open "worker.py"))
          (toml (mc-open "minicloud.toml")))
      (with-current-buffer js (goto-char (point-max)))
      (with-current-buffer py (goto-char (point-max)))
      (with-current-buffer toml
        (goto-char (point-min))
        (re-search-forward "^\\[app\\]\n")) ; the blank line the test put under [app]
      (mc-put "js" (mc-labels js))
      (mc-put "python" (mc-labels py))
      (mc-put "toml" (mc-labels toml))
      (mc-put "servers" (vconcat (mapcar #'mc-server (list js js2 py toml))))
      (with-current-buffer js
        (let ((answer (eval (car (read-from-string (getenv "MINICLOUD_COMMAND"))) t)))
          (mc-put "command" `(("env" . ,(plist-get answer :env))
                              ("apis" . ,(vconcat (mapcar (lambda (api) (plist-get api :method))
                                                          (plist-get answer :apis)))))))))
  (error (mc-put "error" (error-message-string err))))

(with-temp-file (getenv "MINICLOUD_EMACS_OUT")
  (insert (json-encode mc-result)))
(kill-emacs 0)
"""


@pytest.fixture(scope="module")
def emacs() -> str:
    """Emacs with eglot; installed from Debian (emacs-nox, elpa-eglot) when missing and we are root."""

    def ready() -> str | None:
        found = shutil.which("emacs")
        if found and subprocess.run([found, *REQUIRE_EGLOT], capture_output=True, timeout=60).returncode == 0:
            return found
        return None

    if (found := ready()) is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "emacs-nox", "elpa-eglot"]
        with contextlib.suppress(subprocess.TimeoutExpired):
            if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
                subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
                subprocess.run(install, env=env, capture_output=True, timeout=600)
        found = ready()
    if found is None:
        pytest.skip("Emacs with eglot is not installed and could not be (apt-get install emacs-nox elpa-eglot)")
    return found


def run_emacs(emacs: str, folder: Path, recipe_text: str) -> tuple[Path, dict]:
    """The harness in a copy of examples/node-shop under `folder`, after `recipe_text` as init.el."""
    assert shutil.which("minicloud-lsp"), "minicloud-lsp is not on PATH (conftest puts the venv's bin first)"
    app = copy_example("node-shop", folder)
    (app / "src").mkdir()
    (app / "src" / "check.js").write_text("const url = process.env.")
    (app / "worker.py").write_text('import os\n\nurl = os.environ["')
    manifest = app / "minicloud.toml"
    manifest.write_text(manifest.read_text().replace("[app]\n", "[app]\n\n", 1))
    recipe = folder / "recipe.el"
    recipe.write_text(recipe_text)
    harness = folder / "harness.el"
    harness.write_text(HARNESS)
    out = folder / "result.json"
    env = {**os.environ, "MINICLOUD_APP": str(app), "MINICLOUD_EMACS_OUT": str(out), "HOME": str(folder),
           "MINICLOUD_COMMAND": documented_block(COMMAND_MARKER, "elisp")}
    # package-activate-all: what interactive start-up does before init.el (makes eglot-ensure autoload)
    proc = subprocess.run([emacs, "--batch", "--eval", "(package-activate-all)", "-l", str(recipe),
                           "-l", str(harness)], cwd=app, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert out.is_file(), f"Emacs wrote no result: {proc.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert "error" not in result, f"{result}\n{proc.stderr[-3000:]}"
    return app, result


def assert_completions(result: dict) -> None:
    assert "MINICLOUD_ENV" in result["js"], result
    assert {"MINICLOUD_ENV", "MINICLOUD_URL"} <= set(result["python"]), result
    assert "health_timeout" in result["toml"] and "health" not in result["toml"], result
    assert result["command"]["env"] == "test" and result["command"]["apis"], result


def test_emacs_eglot_documented_recipe(emacs: str, tmp_path: Path):
    app, result = run_emacs(emacs, tmp_path, documented_block(MARKER, "elisp"))
    assert_completions(result)
    js, js2, py, toml = result["servers"]
    assert (js["mode"], py["mode"], toml["mode"]) == ("js-mode", "python-mode", "conf-toml-mode"), result
    assert (js["language_id"], py["language_id"], toml["language_id"]) == ("javascript", "python", "toml")
    # every server works in the app folder (also for src/check.js); the two JS buffers share one
    assert {s["root"].rstrip("/") for s in result["servers"]} == {str(app)}, result
    assert js["pid"] == js2["pid"], result


def test_emacs_eglot_derived_language_ids(emacs: str, tmp_path: Path):
    """eglot's own ids: `js` for js-mode, `conf-toml` for conf-toml-mode."""
    _, result = run_emacs(emacs, tmp_path, PLAIN_RECIPE)
    js, _, py, toml = result["servers"]
    assert (js["language_id"], py["language_id"], toml["language_id"]) == ("js", "python", "conf-toml")
    assert_completions(result)
