// The Key Lifecycle page's buttons: POST the action as JSON (the cookie alone never triggers a DAG)
// and show Airflow's answer as text. Nothing from the server is ever parsed as HTML.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const root = document.body.dataset.root;
  const status = document.getElementById("action-status");

  function show(text, runUrl) {
    status.textContent = text;
    if (runUrl) {
      const link = document.createElement("a");
      link.href = runUrl;
      link.target = "_top";
      link.textContent = " open the run";
      status.appendChild(link);
    }
  }

  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      show(`${button.textContent.trim()}: triggering…`);
      try {
        const response = await fetch(`${root}/api/actions/${encodeURIComponent(button.dataset.action)}`, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ key: button.dataset.key }),
        });
        const answer = await response.json();
        if (response.ok) {
          show(`${button.textContent.trim()}: ${answer.dag_id} run ${answer.dag_run_id} triggered.`, answer.url);
        } else {
          show(`${button.textContent.trim()} refused (${response.status}): ${answer.detail}`);
        }
      } catch (error) {
        show(`${button.textContent.trim()} failed: ${error}`);
      } finally {
        button.disabled = false;
      }
    });
  }
});
