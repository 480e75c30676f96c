// The what-if: the schedule a codebook would give on the node's recorded run, asked of the
// server (POST /adacache/whatif, nodes/whatif_route.py), which replays the run's trace through
// the core's own schedule. The browser keeps no copy of the rule. One request in flight per
// node; while the artist drags, only the latest codebook is asked next.
import { api } from "../../scripts/api.js";

function requestBody(summary, codebook) {
  return {
    trace: summary.trace ?? [],
    sigmas: summary.sigmas ?? [],
    positions: summary.positions ?? null,
    gap_distances: summary.calibration_sample?.gap_distances ?? null,
    codebook: { thresholds: codebook.thresholds, rates: codebook.rates },
  };
}

function keyOf(summary, codebook) {
  return `${summary.run ?? summary.prompt_id ?? ""}|${codebook.thresholds}|${codebook.rates}`;
}

// The prediction for `codebook` on the finished run `summary`: {computed, approximate, rates};
// undefined while the server has not answered (then `redraw` is called); null when there is
// none (no finished run, or the server refused the codebook). Never throws.
export function predictionFor(state, summary, codebook, redraw) {
  if (!summary?.sigmas?.length || !codebook) return null;
  const key = keyOf(summary, codebook);
  const known = state.predictions ?? (state.predictions = new Map());
  if (known.has(key)) return known.get(key);
  state.wantedPrediction = { key, body: requestBody(summary, codebook) };
  if (!state.predictionInFlight) ask(state, known, redraw);
  return undefined;
}

async function ask(state, known, redraw) {
  const wanted = state.wantedPrediction;
  state.wantedPrediction = null;
  state.predictionInFlight = true;
  try {
    const res = await api.fetchApi("/adacache/whatif", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(wanted.body),
    });
    const answer = await res.json();
    known.set(wanted.key, res.ok ? answer : null);  // a refused codebook: no what-if
    if (known.size > 64) known.delete(known.keys().next().value);
  } catch (e) {
    console.warn("AdaCache: what-if request failed", e);
    known.set(wanted.key, null);
  } finally {
    state.predictionInFlight = false;
  }
  if (state.wantedPrediction && !known.has(state.wantedPrediction.key)) {
    ask(state, known, redraw);  // the artist moved on: ask for the latest codebook
  }
  redraw();
}
