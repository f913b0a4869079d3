// The editor bar over the canvas: group the selected nodes into a block (a name, exposed
// parameters), ungroup one, open and leave groups, save a group as a template (the palette's blocks),
// arrange the canvas. The spec's groups themselves live in the Editor (graph.js).

const $ = (id) => document.getElementById(id);

export function wireEditorBar(editor, { api, toast }) {
  const guard = (fn) => async () => {
    try {
      await fn();
    } catch (e) {
      toast(e.message);
    }
  };
  editor.onLevel = () => showLevel(editor);
  $("arrange").addEventListener("click", () => editor.arrange());
  $("leave-group").addEventListener("click", guard(() => editor.leave()));
  $("open-group").addEventListener(
    "click",
    guard(() => {
      const node = selectedGroup(editor);
      if (!node) throw new Error("select a group node to open (or double-click it)");
      return editor.enter(node);
    }),
  );
  $("group").addEventListener("click", guard(() => openGroupDialog(editor)));
  $("ungroup").addEventListener("click", guard(() => ungroup(editor, api)));
  $("group-dialog").addEventListener("close", guard(() => groupFromDialog(editor)));
  $("save-block").addEventListener(
    "click",
    guard(async () => {
      const open = editor.stack[editor.stack.length - 1];
      const node = selectedGroup(editor);
      const name = node ? node.groupName : open && open.name;
      if (!name) throw new Error("select a group node (or open a group) to save it as a block");
      editor.commitOpenGroup();
      await api("PUT", `/api/templates/${encodeURIComponent(name)}`, { groups: editor.groups });
      await refreshTemplates(editor, { api, toast });
      toast(`saved block ${name}; it is in the palette under Blocks`, "info");
    }),
  );
  showLevel(editor);
  return refreshTemplates(editor, { api, toast });
}

// the selected group node replaced by its nodes (every copy), as the server flattens it
async function ungroup(editor, api) {
  const node = selectedGroup(editor);
  if (!node) throw new Error("select a group node to ungroup");
  if (editor.stack.length) throw new Error("leave the open group first: ungroup works at the top level");
  const spec = editor.toSpec($("spec-name").value.trim() || "untitled");
  const only = encodeURIComponent(node.specId);
  const problems = await editor.load(await api("POST", `/api/flatten?only=${only}`, spec));
  if (problems.length) throw new Error(problems.join("\n"));
}

function selectedGroup(editor) {
  return editor.selection().nodes.find((n) => n.groupName);
}

// "spec › unit" while a group is open, and the Leave button
function showLevel(editor) {
  const names = editor.stack.map((f) => f.name);
  $("crumbs").textContent = ["spec", ...names].join(" › ");
  $("leave-group").hidden = !names.length;
}

// the palette's Blocks: the data directory's templates, one click adds one
export async function refreshTemplates(editor, { api, toast }) {
  const templates = await api("GET", "/api/templates");
  const list = $("templates");
  list.replaceChildren(
    ...templates.map((t) => {
      const b = document.createElement("button");
      b.textContent = t.title || t.name;
      b.dataset.template = t.name;
      if (t.error) {
        b.disabled = true;
        b.title = t.error;
        return b;
      }
      b.title = `group ${t.name}: ${t.interface.params.map((p) => p.name).join(", ")}`;
      b.addEventListener("click", async () => {
        try {
          await editor.addTemplate(t);
        } catch (e) {
          toast(e.message);
        }
      });
      return b;
    }),
  );
}

// the dialog lists every parameter of the selected nodes; naming one exposes it, and
// parameters given the same name are set together (one width for a whole block)
function openGroupDialog(editor) {
  const { nodes, refused } = editor.selection();
  if (!nodes.length) throw new Error("select the nodes to group first (click, Ctrl+click or Ctrl+drag)");
  if (refused) throw new Error(`${refused.title} is a ${refused.specType}: a group holds layers only`);
  const rows = [];
  for (const n of nodes) {
    for (const p of n.paramSpecs) {
      const tr = document.createElement("tr");
      const input = document.createElement("input");
      input.dataset.node = n.specId;
      input.dataset.param = p.name;
      input.placeholder = "not exposed";
      input.pattern = "[A-Za-z0-9_]+";
      const cells = [n.title, p.name, String(n.widgetsByName[p.name].value)];
      tr.append(...cells.map((text) => Object.assign(document.createElement("td"), { textContent: text })));
      const td = document.createElement("td");
      td.append(input);
      tr.append(td);
      rows.push(tr);
    }
  }
  $("group-params").replaceChildren(...rows);
  if (!$("group-name").value) $("group-name").value = "block";
  $("group-dialog").returnValue = "";
  $("group-dialog").showModal();
}

async function groupFromDialog(editor) {
  if ($("group-dialog").returnValue !== "ok") return;
  const exposed = {};
  for (const input of $("group-params").querySelectorAll("input")) {
    const name = input.value.trim();
    if (name) (exposed[name] ||= []).push([input.dataset.node, input.dataset.param]);
  }
  const name = $("group-name").value.trim();
  const problems = await editor.groupSelection(name, $("group-title").value.trim(), exposed);
  $("group-name").value = "";
  $("group-title").value = "";
  if (problems.length) throw new Error(problems.join("\n"));
}
