// AdaCache in ComfyUI's template browser: this pack's example workflows in a fixed order, the
// runnable demo first, then the others by title.
//
// ComfyUI's server lists a pack's example workflows in the order it finds the files on disk
// (GET /workflow_templates, an unsorted glob: on ext4 a hash order), and frontend 1.32.9 shows
// them in that order under its default sort ("Newest": pack templates carry no date). The
// titles are the file names (see scripts/make_example_workflows.py). Only this pack's own list
// is reordered; its module name is this pack's folder, which this file's URL names
// (/extensions/<folder>/templates.js).
import { api } from "../../scripts/api.js";

const MODULE = decodeURIComponent(new URL(import.meta.url).pathname.split("/").at(-2));
const DEMO = "AdaCache demo";

export function orderTemplates(names) {
  const demo = (name) => (name.startsWith(DEMO) ? 0 : 1);
  return [...names].sort((a, b) => demo(a) - demo(b) || a.localeCompare(b));
}

const listTemplates = api.getWorkflowTemplates?.bind(api);
if (listTemplates) {
  api.getWorkflowTemplates = async (...args) => {
    const templates = await listTemplates(...args);
    if (Array.isArray(templates?.[MODULE])) templates[MODULE] = orderTemplates(templates[MODULE]);
    return templates;
  };
}
